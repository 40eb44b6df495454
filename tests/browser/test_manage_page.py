"""Managing conversations in the page: pin, archive and restore, select several, import,
share links."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server


async def start_conversation(chat: ChatPage, text: str) -> str:
    """Send ``text`` in a new chat; return the new conversation's id."""
    if chat.conversation_id() is not None:
        await chat.new_chat()
    await chat.send(text)
    await chat.wait_answer()
    conversation_id = chat.conversation_id()
    assert conversation_id is not None
    return conversation_id


async def menu_action(chat: ChatPage, title: str, action: str) -> None:
    """Open the menu of the conversation titled ``title`` and choose ``action``."""
    item = chat.conversations.filter(has_text=title)
    await item.hover()
    await item.locator("summary").click()
    await item.locator(f'[data-action="{action}"]').click()


async def test_pinning_puts_a_conversation_on_top_under_pinned(chat: ChatPage) -> None:
    """Pin moves an older conversation to the top, under Pinned, after a reload too; Unpin
    puts it back in its place."""
    for text in ("older one", "newer one"):
        await start_conversation(chat, text)
    titles = chat.conversations.locator(".conv-title")
    await expect(titles).to_have_text(["newer one", "older one"])
    await menu_action(chat, "older one", "pin")
    await expect(titles).to_have_text(["older one", "newer one"])
    await expect(chat.page.locator(".conv-group.pinned .conv-group-title")).to_have_text("Pinned")
    await chat.page.reload()
    await chat.wait_connected()
    await expect(titles).to_have_text(["older one", "newer one"])
    await menu_action(chat, "older one", "unpin")
    await expect(titles).to_have_text(["newer one", "older one"])
    await expect(chat.page.locator(".conv-group.pinned")).to_have_count(0)


async def test_archiving_hides_a_conversation_until_it_is_restored(chat: ChatPage) -> None:
    """Archive takes a conversation out of the list into Archived; Restore brings it back."""
    for text in ("keep me", "put away"):
        await start_conversation(chat, text)
    await menu_action(chat, "put away", "archive")
    await expect(chat.conversations.locator(".conv-title")).to_have_text(["keep me"])
    await chat.page.locator('[data-action="show-archived"]').click()
    archived = chat.page.locator(".archived-list .conv-item")
    await expect(archived).to_have_text(["put away"])
    await archived.locator('[data-action="restore"]').click()
    await expect(archived).to_have_count(0)
    await chat.page.locator('[data-action="archived-back"]').click()
    await expect(chat.conversations.locator(".conv-title")).to_have_text(["put away", "keep me"])


async def test_selected_conversations_are_deleted_together_after_a_confirmation(
    chat: ChatPage,
) -> None:
    """Select mode: two conversations checked, Delete, confirm: both gone, the third stays."""
    for text in ("alpha", "beta", "gamma"):
        await start_conversation(chat, text)
    await chat.page.locator('[data-action="select"]').click()
    for title in ("alpha", "gamma"):
        await chat.conversations.filter(has_text=title).get_by_role("checkbox").check()
    await expect(chat.page.locator(".bulk-count")).to_have_text("2 selected")
    await chat.page.locator('[data-action="bulk-delete"]').click()
    dialog = chat.page.locator("dialog.confirm")
    await expect(dialog).to_contain_text("Delete 2 conversations?")
    await dialog.locator('[data-action="confirm"]').click()
    await expect(chat.conversations.locator(".conv-title")).to_have_text(["beta"])
    await chat.page.reload()
    await chat.wait_connected()
    await expect(chat.conversations.locator(".conv-title")).to_have_text(["beta"])


async def test_selected_conversations_export_as_one_json_file(chat: ChatPage) -> None:
    """Export of two selected conversations downloads one file in liaotian's format."""
    for text in ("one", "two"):
        await start_conversation(chat, text)
    await chat.page.locator('[data-action="select"]').click()
    for title in ("one", "two"):
        await chat.conversations.filter(has_text=title).get_by_role("checkbox").check()
    async with chat.page.expect_download() as waiting:
        await chat.page.locator('[data-action="bulk-export"]').click()
    download = await waiting.value
    saved = await download.path()
    exported = json.loads(await asyncio.to_thread(saved.read_text, encoding="utf-8"))
    assert [item["format"] for item in exported] == ["liaotian.conversation"] * 2
    assert sorted(item["messages"][0]["content"] for item in exported) == ["one", "two"]


def chatgpt_export() -> list[dict[str, object]]:
    """A ChatGPT ``conversations.json`` with one conversation of one exchange."""

    def node(
        node_id: str, parent: str | None, children: list[str], role: str | None, text: str
    ) -> dict[str, object]:
        message = None
        if role is not None:
            message = {
                "id": node_id,
                "author": {"role": role},
                "create_time": 1_700_000_000.0,
                "content": {"content_type": "text", "parts": [text]},
                "status": "finished_successfully",
            }
        return {"id": node_id, "parent": parent, "children": children, "message": message}

    return [
        {
            "title": "Imported from ChatGPT",
            "create_time": 1_700_000_000.0,
            "update_time": 1_700_000_100.0,
            "conversation_id": "0b1c2d3e-0000-4000-8000-000000000001",
            "id": "0b1c2d3e-0000-4000-8000-000000000001",
            "current_node": "a1",
            "mapping": {
                "root": node("root", None, ["u1"], None, ""),
                "u1": node("u1", "root", ["a1"], "user", "What is a tree?"),
                "a1": node("a1", "u1", [], "assistant", "A graph without cycles."),
            },
        }
    ]


async def test_a_chatgpt_export_is_imported_once(chat: ChatPage, tmp_path: Path) -> None:
    """Importing a ChatGPT file says how many came in and lists it; again, it skips it."""
    file = tmp_path / "conversations.json"
    file.write_text(json.dumps(chatgpt_export()), encoding="utf-8")
    await chat.page.locator(".import-file").set_input_files(file)
    toast = chat.page.locator('.toast[data-code="imported"]')
    await expect(toast).to_contain_text("Imported 1, skipped 0.")
    await expect(chat.conversations.locator(".conv-title")).to_have_text(["Imported from ChatGPT"])
    await chat.conversations.first.locator(".conv-link").click()
    await expect(chat.questions.locator(".bubble")).to_have_text(["What is a tree?"])
    await expect(chat.last_answer_text).to_have_text("A graph without cycles.")
    await chat.page.locator(".import-file").set_input_files(file)
    await expect(toast.last).to_contain_text("Imported 0, skipped 1.")
    await expect(chat.conversations).to_have_count(1)


async def test_a_file_that_is_not_an_export_is_refused_in_words(
    chat: ChatPage, tmp_path: Path
) -> None:
    """A JSON file that is no export gets the server's reason, and nothing is imported."""
    file = tmp_path / "nonsense.json"
    file.write_text('{"hello": "world"}', encoding="utf-8")
    await chat.page.locator(".import-file").set_input_files(file)
    await expect(chat.page.locator('.toast[data-code="import_failed"]')).to_contain_text(
        "The file could not be imported"
    )
    await expect(chat.conversations).to_have_count(0)


async def test_a_share_link_opens_without_signing_in_until_it_is_revoked(
    chat: ChatPage, browser: Browser, server: RunningServer
) -> None:
    """Share → Create link gives a full URL that a stranger opens; Revoke takes it off the
    list and the link answers 404."""
    await start_conversation(chat, "share this please")
    await chat.page.locator('lt-header [data-action="share"]').click()
    dialog = chat.page.locator("dialog.share-dialog")
    await expect(dialog).to_be_visible()
    await dialog.locator('[data-control="share-expiry"]').select_option(label="After 7 days")
    await dialog.locator('[data-action="create-share"]').click()
    url = await dialog.locator(".share-url").input_value()
    assert url.startswith(server.http_url + "/s/")
    await expect(dialog.locator(".share-item")).to_have_count(1)
    await expect(dialog.locator(".share-item")).to_contain_text("expires")

    stranger: BrowserContext = await browser.new_context()
    try:
        page = await stranger.new_page()
        response = await page.goto(url)
        assert response is not None
        assert response.status == 200
        await expect(page.locator("body")).to_contain_text(expected_reply("share this please"))
        await dialog.locator('[data-action="revoke-share"]').click()
        await expect(dialog.locator(".share-item")).to_have_count(0)
        await expect(dialog.locator(".share-url")).to_have_count(0)
        response = await page.goto(url)
        assert response is not None
        assert response.status == 404
    finally:
        await stranger.close()


async def test_a_copy_link_continues_a_shared_conversation_as_ones_own(
    chat: ChatPage, browser: Browser, server: RunningServer
) -> None:
    """/?copy=SHARE_ID (another owner) opens a new conversation of theirs with the shared
    messages, and the parameter leaves the URL."""
    await start_conversation(chat, "worth continuing")
    await chat.page.locator('lt-header [data-action="share"]').click()
    dialog = chat.page.locator("dialog.share-dialog")
    await dialog.locator('[data-action="create-share"]').click()
    url = await dialog.locator(".share-url").input_value()
    share_id = url.rsplit("/", 1)[-1]

    other_context = await new_context(browser, "browser-someone-else")
    try:
        other = await ChatPage.open(other_context, server, f"/?copy={share_id}")
        await expect(other.questions.locator(".bubble")).to_have_text(["worth continuing"])
        await expect(other.page).to_have_url(re.compile(r"/c/[^?]+$"))
        await expect(other.conversations).to_have_count(1)
        await other.send("and then?")
        await other.wait_answer()
        await other.assert_healthy()
    finally:
        await other_context.close()


async def test_share_links_switched_off_are_explained(
    context: BrowserContext, make_settings: SettingsFactory
) -> None:
    """With share_links off, the share dialog says so instead of offering a link."""
    async with run_server(make_settings(share_links=False)) as server:
        chat = await ChatPage.open(context, server)
        await start_conversation(chat, "private")
        await chat.page.locator('lt-header [data-action="share"]').click()
        dialog = chat.page.locator("dialog.share-dialog")
        await expect(dialog.locator('[data-code="share_links_disabled"]')).to_contain_text(
            "Share links are switched off on this server."
        )
        await expect(dialog.locator('[data-action="create-share"]')).to_have_count(0)
        await chat.assert_healthy()


async def test_a_generated_title_replaces_the_first_message_live(
    context: BrowserContext, make_settings: SettingsFactory
) -> None:
    """After the first answer, the title model's title reaches the sidebar and the header
    without a reload."""
    async with run_server(make_settings(title_model="auto")) as server:
        chat = await ChatPage.open(context, server)
        await chat.send("Explain qubits [title=Quantum basics]")
        await chat.wait_answer()
        await expect(chat.conversations.locator(".conv-title")).to_have_text(["Quantum basics"])
        await expect(chat.page.locator(".topbar-title")).to_have_text("Quantum basics")
        await expect(chat.page).to_have_title("Quantum basics · liaotian")
        await chat.assert_healthy()
