"""One owner on one machine: without accounts, the page shows what the CLI and the Python
client started, and a /c/<id> link opens in any browser on the machine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from liaotian.client import Client
from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server
from tests.test_chat_cli import run_cli, server_url


@pytest.fixture
async def shared(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    """A server with the default open-mode owner: shared."""
    async with run_server(make_settings(open_owner="shared")) as running:
        yield running


async def test_the_page_lists_what_the_cli_and_the_python_client_started(
    browser: Browser, shared: RunningServer, tmp_path: Path
) -> None:
    run = await run_cli(tmp_path, "--server", server_url(shared), "asked from the terminal")
    assert run.returncode == 0, run.stderr
    async with Client(shared.ws_url, client_id="a-script") as client:
        reply = await client.send("asked from a script")
        await reply.result()

    context = await new_context(browser, "browser-own-id")
    try:
        chat = await ChatPage.open(context, shared)
        await expect(chat.conversations.locator(".conv-title")).to_have_text(
            ["asked from a script", "asked from the terminal"]
        )
        await chat.conversations.last.click()
        await expect(chat.last_answer_text).to_have_text(expected_reply("asked from the terminal"))
        await chat.assert_healthy()
    finally:
        await context.close()


async def test_a_link_opens_in_a_second_browser(browser: Browser, shared: RunningServer) -> None:
    """Two browsers (each its own stored client id) open the same /c/<id>."""
    first_context = await new_context(browser, "first-browser")
    second_context = await new_context(browser, "second-browser")
    try:
        first = await ChatPage.open(first_context, shared)
        await first.send("open me elsewhere")
        await first.wait_answer()
        conversation_id = first.conversation_id()
        assert conversation_id is not None
        second = await ChatPage.open(second_context, shared, f"/c/{conversation_id}")
        await expect(second.questions).to_have_text(["open me elsewhere"])
        await expect(second.last_answer_text).to_have_text(expected_reply("open me elsewhere"))
        await expect(second.page.locator(".missing")).to_have_count(0)
        await first.assert_healthy()
        await second.assert_healthy()
    finally:
        await first_context.close()
        await second_context.close()
