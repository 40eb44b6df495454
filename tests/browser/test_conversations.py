"""Conversations: the sidebar, the URL, rename, delete, search, switching, long histories."""

from __future__ import annotations

from playwright.async_api import BrowserContext, expect

from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server
from tests.wsclient import RawClient, of_type


async def start_conversation(chat: ChatPage, text: str) -> str:
    """Send ``text`` in a new chat; return the new conversation's id."""
    if chat.conversation_id() is not None:
        await chat.new_chat()
    await chat.send(text)
    await chat.wait_answer()
    conversation_id = chat.conversation_id()
    assert conversation_id is not None
    return conversation_id


async def test_sidebar_lists_conversations_newest_first_by_first_message(chat: ChatPage) -> None:
    """Each conversation is titled by its first message; the newest is on top and current."""
    for text in ("first topic", "second topic", "third topic"):
        await start_conversation(chat, text)
    await expect(chat.conversations.locator(".conv-title")).to_have_text(
        ["third topic", "second topic", "first topic"]
    )
    await expect(chat.conversations.first).to_have_class("conv-item active")
    await expect(chat.page.locator(".topbar-title")).to_have_text("third topic")


async def test_the_url_reopens_the_conversation(chat: ChatPage) -> None:
    """/c/<id> is in the address bar, so a reload (or the link) opens the same conversation."""
    conversation_id = await start_conversation(chat, "remember me")
    assert chat.page.url.endswith(f"/c/{conversation_id}")
    await chat.page.reload()
    await chat.wait_connected()
    await expect(chat.questions).to_have_count(1)
    await expect(chat.last_answer_text).to_have_text(expected_reply("remember me"))
    await expect(chat.page.locator(".topbar-title")).to_have_text("remember me")


async def test_a_link_to_a_missing_conversation_says_so(chat: ChatPage) -> None:
    """Opening an unknown conversation id shows that it is not here, with a way out."""
    await chat.page.goto(chat.server.http_url + "/c/nope")
    await chat.wait_connected()
    await expect(chat.page.locator(".missing")).to_contain_text("This conversation is not here")
    await chat.page.get_by_role("button", name="Start a new chat").click()
    await expect(chat.page.locator("lt-empty-state")).to_be_visible()


async def test_rename_changes_the_title(chat: ChatPage) -> None:
    """Rename from the conversation's menu edits the title in place."""
    await start_conversation(chat, "old title")
    item = chat.conversations.first
    await item.hover()
    await item.locator("summary").click()
    await item.locator('[data-action="rename"]').click()
    field = chat.page.get_by_label("New title")
    await field.fill("New title, better")
    await field.press("Enter")
    await expect(chat.conversations.first.locator(".conv-title")).to_have_text("New title, better")
    await expect(chat.page.locator(".topbar-title")).to_have_text("New title, better")


async def test_delete_asks_first_then_removes_the_conversation(chat: ChatPage) -> None:
    """Delete asks for confirmation; Cancel keeps the conversation, Delete removes it."""
    await start_conversation(chat, "keep me?")
    dialog = chat.page.locator("dialog.confirm")
    for choice in ("Cancel", "Delete"):
        item = chat.conversations.first
        await item.hover()
        await item.locator("summary").click()
        await item.locator('[data-action="delete"]').click()
        await expect(dialog).to_be_visible()
        await expect(dialog).to_contain_text("“keep me?” and all of its messages will be deleted")
        await dialog.get_by_role("button", name=choice).click()
        await expect(dialog).to_be_hidden()
        if choice == "Cancel":
            await expect(chat.conversations).to_have_count(1)
    await expect(chat.conversations).to_have_count(0)
    await expect(chat.page.locator("lt-empty-state")).to_be_visible()
    assert chat.conversation_id() is None


async def test_search_lists_conversations_whose_words_start_with_the_text(chat: ChatPage) -> None:
    """Typing in the search box lists the conversations with a word starting with it."""
    for text in ("Rust lifetimes", "Python asyncio", "rusty bikes"):
        await start_conversation(chat, text)
    search = chat.page.get_by_label("Search conversations")
    await search.fill("rust")
    results = chat.page.locator(".search-result .conv-title")
    await expect(results).to_have_count(2)
    assert sorted(await results.all_inner_texts()) == ["Rust lifetimes", "rusty bikes"]
    await search.fill("nothing like this")
    await expect(chat.page.locator(".sidebar-empty")).to_contain_text("nothing like this")
    await chat.page.get_by_label("Clear search").click()
    await expect(chat.conversations).to_have_count(3)


async def test_switching_conversations_while_one_streams_keeps_both(chat: ChatPage) -> None:
    """An answer goes on while another conversation is used, and is whole when reopened."""
    slow = "long one [tokens=150] [delay=20]"
    await chat.send(slow)
    await expect(chat.last_answer_text).to_contain_text("t3 ")
    await expect(chat.conversations.first.locator(".live-dot")).to_be_visible()
    await chat.new_chat()
    await chat.send("quick one")
    await chat.wait_answer()
    await expect(chat.last_answer_text).to_have_text(expected_reply("quick one"))
    await chat.page.locator(".conv-link", has_text="long one").click()
    answer = await chat.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text(expected_reply(slow).strip())
    await expect(chat.questions).to_have_count(1)
    await expect(chat.page.locator(".live-dot")).to_have_count(0)


async def test_long_histories_load_earlier_pages_on_scrolling_up(
    context: BrowserContext, make_settings: SettingsFactory, owner: str
) -> None:
    """A conversation longer than a page opens at its end; scrolling up loads the rest."""
    # 55 messages in a row: more than the default per-minute limit allows.
    async with run_server(make_settings(messages_per_minute=1000)) as server:
        conversation_id = await seed_conversation(server, owner, 55)
        chat = await ChatPage.open(context, server, f"/c/{conversation_id}")
        await expect(chat.questions.last).to_contain_text("message 54")
        await expect(chat.questions).to_have_count(50)
        await chat.page.locator(".scroller").evaluate("element => element.scrollTo(0, 0)")
        await expect(chat.questions).to_have_count(55)
        await expect(chat.questions.first).to_contain_text("message 0")
        await chat.assert_healthy()


async def seed_conversation(server: RunningServer, owner: str, exchanges: int) -> str:
    """One conversation of ``exchanges`` questions and answers, sent over protocol v1."""
    client = await RawClient.open(f"{server.ws_url}?client_id={owner}")
    await client.recv()
    conversation_id: str | None = None
    for n in range(exchanges):
        frame: dict[str, object] = {"type": "chat.send", "message": f"message {n}", "id": n}
        if conversation_id:
            frame["conversation_id"] = conversation_id
        await client.send(frame)
        done = await client.until(of_type("reply.done"))
        conversation_id = done[-1]["conversation_id"]
    await client.close()
    assert conversation_id is not None
    return conversation_id
