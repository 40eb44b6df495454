"""Keyboard shortcuts, as in ChatGPT and Open WebUI, and their cheat sheet."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.chat_page import ChatPage
from tests.fake_upstream import expected_reply

SLOW = "count slowly [tokens=400] [delay=20]"


async def test_new_chat_search_and_message_box_shortcuts(chat: ChatPage) -> None:
    """Ctrl+Shift+O starts a new chat in the message box, Ctrl+K goes to the search,
    Shift+Esc back to the message box."""
    page = chat.page
    await chat.send("shortcut topic")
    await chat.wait_answer()
    assert chat.conversation_id() is not None
    await page.locator("body").click()
    await page.keyboard.press("Control+Shift+O")
    await expect(page.locator("lt-empty-state")).to_be_visible()
    assert chat.conversation_id() is None
    await expect(chat.input).to_be_focused()
    await page.keyboard.press("Control+K")
    search = page.get_by_placeholder("Search conversations")
    await expect(search).to_be_focused()
    await page.keyboard.type("shortcut")
    await expect(chat.conversations).to_have_count(1)
    await page.keyboard.press("Shift+Escape")
    await expect(chat.input).to_be_focused()
    # Enter still sends, Shift+Enter still adds a line.
    await page.keyboard.type("one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("two")
    await page.keyboard.press("Enter")
    await expect(chat.questions.last.locator(".bubble")).to_have_text("one\ntwo")
    await chat.wait_answer()


async def test_meta_works_like_ctrl(chat: ChatPage) -> None:
    """⌘ (Meta) does what Ctrl does."""
    await chat.page.keyboard.press("Meta+K")
    await expect(chat.page.get_by_placeholder("Search conversations")).to_be_focused()


async def test_escape_stops_and_ctrl_shift_c_copies_the_last_answer(chat: ChatPage) -> None:
    """Esc stops the streaming answer; Ctrl+Shift+C copies the last answer's markdown."""
    page = chat.page
    await chat.send("copy *this* one")
    await chat.wait_answer()
    await chat.send(SLOW)
    await expect(chat.last_answer_text).to_contain_text("t3 ")
    await page.keyboard.press("Escape")
    await chat.wait_answer("cancelled")
    await chat.input.fill("")
    await page.evaluate("navigator.clipboard.writeText('')")
    await page.keyboard.press("Control+Shift+C")
    await expect(chat.last_answer.locator('[data-action="copy"].done')).to_be_visible()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("t0 t1 t2 t3")
    # The first answer is not the last one.
    assert copied != expected_reply("copy *this* one")


async def test_the_cheat_sheet_opens_with_question_mark_or_ctrl_slash(chat: ChatPage) -> None:
    """? (outside a text field) or Ctrl+/ shows every shortcut in an accessible dialog that
    Esc closes; ? typed in the message box is just a character."""
    page = chat.page
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await chat.input.click()
    await page.keyboard.type("why?")
    await expect(chat.input).to_have_value("why?")
    await expect(dialog).to_have_count(0)
    await page.keyboard.press("Control+/")
    await expect(dialog).to_be_visible()
    for label in (
        "New chat",
        "Search conversations",
        "Go to the message box",
        "Stop the answer being written",
        "Copy the last answer",
        "Send the message",
        "New line in the message",
        "Show these shortcuts",
    ):
        await expect(dialog.locator("dt", has_text=label)).to_have_count(1)
    await expect(dialog.locator(".shortcut", has_text="New chat").locator("kbd")).to_have_text(
        ["Ctrl", "Shift", "O"]
    )
    await expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(chat.input).to_have_value("why?")
    await page.locator(".topbar-title").click()
    await page.keyboard.press("?")
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()
    # In Chinese too.
    await page.locator('[data-control="language"]').select_option("zh-CN")
    await page.locator(".topbar-title").click()
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="键盘快捷键")).to_be_visible()
    await expect(page.get_by_role("dialog").locator("dt").first).to_have_text("新对话")
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
