"""Chatting in the browser: streaming, stop, regenerate, edit, copy."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.chat_page import ChatPage
from tests.fake_upstream import expected_reply


async def test_send_streams_the_answer_as_markdown(chat: ChatPage) -> None:
    """A sent message shows at once; its answer streams in and ends with its details."""
    await chat.send("hello **world**")
    await expect(chat.questions.last).to_contain_text("hello **world**")
    answer = await chat.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text(expected_reply("hello **world**").replace("**", ""))
    await expect(answer.locator("lt-markdown strong")).to_have_text("world")
    meta = answer.locator(".msg-meta")
    await expect(meta.locator(".chip")).to_have_text("Completed")
    await expect(meta).to_contain_text("qwen-plus")
    await expect(meta).to_contain_text("to first token")
    await expect(meta).to_contain_text("out tokens")
    assert chat.conversation_id() is not None
