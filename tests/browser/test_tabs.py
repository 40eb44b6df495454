"""Two tabs of the same owner on one conversation."""

from __future__ import annotations

from playwright.async_api import BrowserContext, expect

from tests.browser.chat_page import ChatPage
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer

SLOW = "count slowly [tokens=400] [delay=20]"


async def test_enter_while_another_tab_answers_says_why(
    chat: ChatPage, context: BrowserContext, server: RunningServer
) -> None:
    """Enter in a tab while another tab's answer streams in the same conversation says so
    (and keeps the text); once that answer ends, the note goes and Enter sends."""
    await chat.send("first")
    await chat.wait_answer()
    conversation_id = chat.conversation_id()
    other = await ChatPage.open(context, server, f"/c/{conversation_id}")
    await expect(other.last_answer_text).to_have_text(expected_reply("first"))
    await chat.send(SLOW)
    await expect(other.last_answer).to_have_attribute("data-status", "streaming")
    await other.input.fill("me too")
    await other.input.press("Enter")
    note = other.page.locator(".composer-problem")
    await expect(note).to_contain_text("An answer is being written in another tab.")
    await expect(note).to_contain_text("Wait for it to finish, or stop it")
    await expect(other.input).to_have_value("me too")
    # In the tab that is writing it, the same Enter says it is this conversation's answer.
    await chat.input.fill("and me")
    await chat.input.press("Enter")
    await expect(chat.page.locator(".composer-problem")).to_contain_text(
        "An answer is still being written in this conversation."
    )
    await chat.stop_button.click()
    await expect(other.last_answer).to_have_attribute("data-status", "cancelled")
    await expect(note).to_have_count(0)
    await other.input.press("Enter")
    await expect(other.questions.last.locator(".bubble")).to_have_text("me too")
    await other.wait_answer()
    await other.assert_healthy()
