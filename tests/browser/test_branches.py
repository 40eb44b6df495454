"""Branches in the page: ‹ 2/3 › between versions, the same branch on every device."""

from __future__ import annotations

import asyncio
import json

from playwright.async_api import Browser, Locator, expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer

SLOW = "[tokens=400] [delay=20]"


def branch(message: Locator) -> Locator:
    """The ``‹ n/m ›`` of a message (``data-branch`` is ``"n/m"``)."""
    return message.locator(".branch-nav")


async def answer_id(chat: ChatPage) -> str:
    answer_id = await chat.last_answer.get_attribute("data-message-id")
    assert answer_id is not None
    return answer_id


async def test_regenerating_twice_flips_among_three_answers_on_two_devices(
    chat: ChatPage, browser: Browser, owner: str, server: RunningServer
) -> None:
    """Regenerate twice keeps all three answers: ‹ › flips among them, and another device
    shows the chosen one and follows a flip made on the first."""
    await chat.send("tell me a story")
    await chat.wait_answer()
    answers = [await answer_id(chat)]
    for count in (2, 3):
        await chat.last_answer.locator('[data-action="regenerate"]').click()
        await expect(chat.last_answer).not_to_have_attribute("data-message-id", answers[-1])
        await chat.wait_answer()
        await expect(branch(chat.last_answer)).to_have_attribute("data-branch", f"{count}/{count}")
        answers.append(await answer_id(chat))
    assert len(set(answers)) == 3
    await expect(chat.answers).to_have_count(1)
    await expect(chat.last_answer_text).to_have_text(expected_reply("tell me a story"))

    await branch(chat.last_answer).get_by_role("button", name="Previous version").click()
    await expect(chat.last_answer).to_have_attribute("data-message-id", answers[1])
    await expect(branch(chat.last_answer)).to_have_attribute("data-branch", "2/3")

    # Another device (another browser context, the same owner) shows the same branch.
    other_context = await new_context(browser, owner)
    try:
        other = await ChatPage.open(other_context, server, f"/c/{chat.conversation_id()}")
        await expect(other.last_answer).to_have_attribute("data-message-id", answers[1])
        await expect(branch(other.last_answer)).to_have_attribute("data-branch", "2/3")
        # A flip there is followed here.
        await branch(other.last_answer).get_by_role("button", name="Previous version").click()
        await expect(other.last_answer).to_have_attribute("data-message-id", answers[0])
        await expect(chat.last_answer).to_have_attribute("data-message-id", answers[0])
        await expect(branch(chat.last_answer)).to_have_attribute("data-branch", "1/3")
        await expect(
            branch(chat.last_answer).get_by_role("button", name="Previous version")
        ).to_be_disabled()
        await other.assert_healthy()
    finally:
        await other_context.close()
    # And the choice is the server's: a reload shows it.
    await chat.page.reload()
    await chat.wait_connected()
    await expect(chat.last_answer).to_have_attribute("data-message-id", answers[0])


async def test_an_edit_keeps_the_first_question_and_its_answer_one_flip_away(
    chat: ChatPage,
) -> None:
    """Editing a question adds a version of it with its own answer; ‹ brings back the first."""
    await chat.send("apples")
    await chat.wait_answer()
    await chat.send("pears")
    await chat.wait_answer()
    question = chat.questions.last
    await question.hover()
    await question.locator('[data-action="edit"]').click()
    await chat.page.get_by_label("Edit your message").fill("plums")
    await chat.page.get_by_label("Edit your message").press("Enter")
    await expect(chat.questions.last.locator(".bubble")).to_have_text("plums")
    await chat.wait_answer()
    await expect(chat.last_answer_text).to_have_text(expected_reply("plums"))
    await expect(branch(chat.questions.last)).to_have_attribute("data-branch", "2/2")
    await expect(chat.questions).to_have_count(2)

    await branch(chat.questions.last).get_by_role("button", name="Previous version").click()
    await expect(chat.questions.last.locator(".bubble")).to_have_text("pears")
    await expect(chat.last_answer_text).to_have_text(expected_reply("pears"))
    await expect(branch(chat.questions.last)).to_have_attribute("data-branch", "1/2")
    await expect(chat.questions.first.locator(".bubble")).to_have_text("apples")


async def test_versions_cannot_be_flipped_while_an_answer_is_written(chat: ChatPage) -> None:
    """While an answer streams, ‹ › are disabled; once it is stopped, they work again."""
    await chat.send("first")
    await chat.wait_answer()
    await chat.last_answer.locator('[data-action="regenerate"]').click()
    await chat.wait_answer()
    question = chat.questions.last
    await question.hover()
    await question.locator('[data-action="edit"]').click()
    await chat.page.get_by_label("Edit your message").fill(f"second {SLOW}")
    await chat.page.get_by_label("Edit your message").press("Enter")
    await expect(chat.last_answer).to_have_attribute("data-status", "streaming")
    previous = branch(chat.questions.last).get_by_role("button", name="Previous version")
    await expect(previous).to_be_disabled()
    await chat.stop_button.click()
    await chat.wait_answer("cancelled")
    await expect(previous).to_be_enabled()
    # Keyboard: focus the button and press Enter.
    await previous.focus()
    await previous.press("Enter")
    await expect(chat.questions.last.locator(".bubble")).to_have_text("first")
    await expect(branch(chat.last_answer)).to_have_attribute("data-branch", "2/2")


async def test_export_gives_the_branch_shown(chat: ChatPage) -> None:
    """Export as JSON after flipping back to the first question gives that branch only,
    each message following the one before it."""
    await chat.send("apples")
    await chat.wait_answer()
    question = chat.questions.last
    await question.hover()
    await question.locator('[data-action="edit"]').click()
    await chat.page.get_by_label("Edit your message").fill("plums")
    await chat.page.get_by_label("Edit your message").press("Enter")
    await chat.wait_answer()
    await expect(chat.last_answer_text).to_have_text(expected_reply("plums"))
    await branch(chat.questions.last).get_by_role("button", name="Previous version").click()
    await expect(chat.last_answer_text).to_have_text(expected_reply("apples"))
    await chat.page.locator(".export-menu summary").click()
    async with chat.page.expect_download() as info:
        await chat.page.locator('[data-action="export-json"]').click()
    saved = await (await info.value).path()
    exported = json.loads(await asyncio.to_thread(saved.read_text, encoding="utf-8"))
    messages = exported["messages"]
    assert [m["content"] for m in messages] == ["apples", expected_reply("apples")]
    assert [m["parent_id"] for m in messages] == [None, messages[0]["id"]]
    assert exported["conversation"]["active_message_id"] == messages[1]["id"]
