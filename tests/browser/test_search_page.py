"""Full-text search in the page: results with highlighted snippets, opened at the message."""

from __future__ import annotations

import itertools
import re
from typing import Any

from playwright.async_api import BrowserContext, expect

from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.wsclient import RawClient, of_type

_ids = itertools.count(1)


async def send(
    client: RawClient, message: str, conversation_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Send ``message``; return the reply's done event and the user message's id."""
    frame: dict[str, Any] = {"type": "chat.send", "message": message, "id": next(_ids), **extra}
    if conversation_id is not None:
        frame["conversation_id"] = conversation_id
    await client.send(frame)
    frames = await client.until(of_type("reply.done"))
    started = next(f for f in frames if f["type"] == "reply.started")
    return {**frames[-1], "user_message_id": started["user_message_id"]}


async def test_a_two_character_chinese_word_is_found_and_opened_at_its_message(
    context: BrowserContext, make_settings: SettingsFactory, owner: str
) -> None:
    """Searching 协议 lists the conversation with 协议 marked in its snippet; opening it
    scrolls to that message, more than a page back, and highlights it."""
    async with run_server(make_settings(messages_per_minute=1000)) as server:
        client = await RawClient.open(f"{server.ws_url}?client_id={owner}")
        await client.recv()
        first = await send(client, "我们来讨论网络协议的设计")
        conversation_id = first["conversation_id"]
        for n in range(54):
            await send(client, f"message {n}", conversation_id)
        await send(client, "天气怎么样")
        await client.close()

        chat = await ChatPage.open(context, server)
        search = chat.page.get_by_label("Search conversations")
        await search.fill("协议")
        result = chat.page.locator(".search-result")
        await expect(result).to_have_count(1)
        await expect(result.locator("mark").first).to_have_text("协议")
        snippet = await result.locator(".search-snippet").inner_html()
        assert "<script" not in snippet
        message_id = await result.get_attribute("data-message-id")
        assert message_id
        await result.locator(".search-link").click()
        found = chat.page.locator(f'article[data-message-id="{message_id}"]')
        await expect(found).to_have_class(re.compile(r"\bfound\b"))
        await expect(found).to_be_in_viewport()
        assert chat.conversation_id() == conversation_id
        await chat.assert_healthy()


async def test_a_result_on_another_branch_opens_that_branch(
    chat: ChatPage, owner: str, server: RunningServer
) -> None:
    """A match only on a branch left by an edit opens with that branch shown (‹ 1/2 ›)."""
    client = await RawClient.open(f"{server.ws_url}?client_id={owner}")
    await client.recv()
    first = await send(client, "说说协议栈")
    conversation_id = first["conversation_id"]
    await client.send(
        {
            "type": "chat.edit",
            "id": "edit",
            "conversation_id": conversation_id,
            "message_id": first["user_message_id"],
            "message": "换个话题吧",
        }
    )
    await client.until(of_type("reply.done"))
    await client.close()

    await chat.page.reload()
    await chat.wait_connected()
    await chat.page.get_by_label("Search conversations").fill("协议")
    result = chat.page.locator(".search-result")
    await expect(result).to_have_count(1)
    await result.locator(".search-link").click()
    await expect(chat.questions.last.locator(".bubble")).to_have_text("说说协议栈")
    await expect(chat.questions.last.locator(".branch-nav")).to_have_attribute("data-branch", "1/2")
    message_id = await result.get_attribute("data-message-id")
    await expect(chat.page.locator(f'article[data-message-id="{message_id}"]')).to_be_visible()


async def test_search_is_a_keyboard_shortcut_listed_in_the_shortcuts(chat: ChatPage) -> None:
    """Ctrl+K puts the keyboard in the search box; Esc there clears the search."""
    await chat.send("bananas are yellow")
    await chat.wait_answer()
    await chat.input.focus()
    await chat.page.keyboard.press("Control+k")
    search = chat.page.get_by_label("Search conversations")
    await expect(search).to_be_focused()
    await chat.page.keyboard.type("banan")
    await expect(chat.page.locator(".search-result")).to_have_count(1)
    await search.press("Escape")
    await expect(chat.page.locator(".search-result")).to_have_count(0)
    await expect(chat.conversations).to_have_count(1)
    await chat.page.keyboard.press("Control+/")
    await expect(chat.page.locator("dialog.shortcuts")).to_contain_text("Search conversations")
