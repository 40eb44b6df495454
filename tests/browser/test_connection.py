"""The connection: resuming answers after a reload or a drop, two tabs, the indicator."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import BrowserContext, WebSocketRoute, expect

from tests.browser.chat_page import ChatPage
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer

SLOW = "a long answer [tokens=200] [delay=15]"


class Relay:
    """Sits between the page and the server's WebSocket; can cut the connection."""

    def __init__(self) -> None:
        self.links: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.sent: list[dict[str, Any]] = []

    def __call__(self, page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()

        def forward(message: str | bytes) -> None:
            if isinstance(message, str):
                self.sent.append(json.loads(message))
            server_side.send(message)

        page_side.on_message(forward)
        self.links.append((page_side, server_side))

    async def cut(self) -> None:
        """Close both sides, as a network failure would."""
        page_side, server_side = self.links[-1]
        await server_side.close()
        await page_side.close(code=4002, reason="cut by the test")


async def test_reload_mid_answer_shows_the_whole_answer(chat: ChatPage) -> None:
    """Reloading while an answer streams shows it again and follows it to its end."""
    await chat.send(SLOW)
    await expect(chat.last_answer_text).to_contain_text("t10 ")
    await chat.page.reload()
    await chat.wait_connected()
    answer = await chat.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text(expected_reply(SLOW).strip())
    await expect(chat.answers).to_have_count(1)


async def test_a_dropped_connection_resumes_the_answer_in_place(
    context: BrowserContext, server: RunningServer
) -> None:
    """After a drop the page reconnects by itself; the answer goes on, nothing lost or doubled."""
    relay = Relay()
    page = await context.new_page()
    await page.route_web_socket(re.compile(r"/ws\?client_id="), relay)
    chat = await ChatPage.load(page, server)
    await chat.send(SLOW)
    await expect(chat.last_answer_text).to_contain_text("t10 ")
    await relay.cut()
    await expect(page.locator(".connection")).to_have_attribute("data-status", "waiting")
    await expect(page.locator(".banner")).to_contain_text("Connection lost")
    await chat.wait_connected()
    answer = await chat.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text(expected_reply(SLOW).strip())
    resumed = [frame for frame in relay.sent if frame["type"] == "chat.subscribe"]
    assert len(resumed) == 1
    assert resumed[0]["after_seq"] > 0
    await expect(page.locator(".banner")).to_have_count(0)
    await chat.assert_healthy()


async def test_two_tabs_both_show_a_conversations_new_messages(
    context: BrowserContext, server: RunningServer
) -> None:
    """A message sent in one tab, and its answer, appear in the other tab of the same owner."""
    first = await ChatPage.open(context, server)
    await first.send("hello from tab one")
    await first.wait_answer()
    conversation_id = first.conversation_id()
    second = await ChatPage.open(context, server, f"/c/{conversation_id}")
    await expect(second.questions).to_have_count(1)
    await first.send("and more from tab one [tokens=30] [delay=10]")
    await expect(second.questions.last).to_contain_text("and more from tab one")
    answer = await second.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text(expected_reply("[tokens=30]").strip())
    await expect(second.answers).to_have_count(2)
    for tab in (first, second):
        await tab.assert_healthy()


async def test_other_tabs_see_new_renamed_and_deleted_conversations(
    context: BrowserContext, server: RunningServer
) -> None:
    """The sidebar of every tab follows conversations started, renamed or deleted elsewhere."""
    first = await ChatPage.open(context, server)
    second = await ChatPage.open(context, server)
    await first.send("started in tab one")
    await expect(second.conversations.locator(".conv-title")).to_have_text(["started in tab one"])
    item = first.conversations.first
    await item.hover()
    await item.locator("summary").click()
    await item.locator('[data-action="rename"]').click()
    await first.page.get_by_label("New title").fill("renamed in tab one")
    await first.page.get_by_label("New title").press("Enter")
    await expect(second.conversations.locator(".conv-title")).to_have_text(["renamed in tab one"])
    await item.hover()
    await item.locator("summary").click()
    await item.locator('[data-action="delete"]').click()
    await first.page.locator("dialog.confirm").get_by_role("button", name="Delete").click()
    await expect(second.conversations).to_have_count(0)
    for tab in (first, second):
        await tab.assert_healthy()
