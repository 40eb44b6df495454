"""Images on the page: attached by the button, by pasting and by dropping, uploaded with
progress, sent with the message, shown in it and enlarged in a lightbox; refused (with the
reason, before anything is sent) for a model without vision, and when too large.

The server runs the shipped ``fake`` provider: ``fake-echo`` reads images and its echo
starts with ``(1 image)``; ``qwen-plus`` (on the fake upstream) is configured without vision.
"""

from __future__ import annotations

import asyncio
import re
import struct
import uuid
import zlib
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, FilePayload, expect

from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade
from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server

TOO_LARGE = "10 MiB"


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    settings = make_settings(
        fake_provider=True, default_model="fake-echo", models={"qwen-plus": {"vision": False}}
    )
    async with run_server(settings) as running:
        yield running


def png(width: int = 24, height: int = 16) -> bytes:
    """A valid PNG of one colour (built here: no image library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x30\x80\xd0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# Hands the page a file the way a paste or a drop would (a DataTransfer with one File);
# with a size, the file is that many zero bytes.
GIVE_FILE = """async ([kind, bytes, name, type, size]) => {
  const data = new DataTransfer();
  data.items.add(new File([size ? new Uint8Array(size) : new Uint8Array(bytes)], name, { type }));
  const init = { bubbles: true, cancelable: true };
  if (kind === "paste") {
    const box = document.querySelector("#composer-input");
    box.dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: data }));
  } else {
    const form = document.querySelector("form.composer");
    for (const event of ["dragover", "drop"]) {
      form.dispatchEvent(new DragEvent(event, { ...init, dataTransfer: data }));
    }
  }
}"""


async def give(
    chat: ChatPage,
    kind: str,
    data: bytes,
    name: str,
    *,
    media_type: str = "image/png",
    size: int = 0,
) -> None:
    await chat.page.evaluate(GIVE_FILE, [kind, list(data), name, media_type, size])


async def test_attach_by_button_send_and_enlarge(chat: ChatPage) -> None:
    """An image chosen with the attach button is uploaded, sent, shown in the message, read
    by the model, and opens in a lightbox that Esc closes."""
    await chat.page.locator('[data-role="file-input"]').set_input_files(
        files=FilePayload(name="chart.png", mimeType="image/png", buffer=png())
    )
    thumb = chat.page.locator(".composer-image")
    await expect(thumb).to_have_attribute("data-status", "done")
    await expect(thumb.locator("img")).to_have_attribute("alt", "chart.png")
    await chat.send("what is in it?")
    await expect(thumb).to_have_count(0)
    image = chat.questions.last.locator(".msg-images img")
    owner = await chat.page.evaluate("localStorage.getItem('liaotian.client_id')")
    await expect(image).to_have_attribute(
        "src", re.compile(rf"^/attachments/[A-Za-z0-9_-]+\?client_id={owner}$")
    )
    assert await image.evaluate("(img) => img.decode().then(() => img.naturalWidth)") == 24
    answer = await chat.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text("(1 image) what is in it?")

    await chat.questions.last.locator('[data-action="open-image"]').click()
    dialog = chat.page.locator("dialog.lightbox")
    await expect(dialog).to_have_attribute("open", "")
    await expect(dialog.locator("img")).to_have_attribute("alt", "chart.png")
    await chat.page.keyboard.press("Escape")
    await expect(dialog).not_to_have_attribute("open", "")


async def test_paste_and_drop_attach_images(chat: ChatPage) -> None:
    """A pasted image and a dropped one are both attached and sent with the message."""
    await give(chat, "paste", png(), "pasted.png")
    await give(chat, "drop", png(8, 8), "dropped.png")
    thumbs = chat.page.locator(".composer-image")
    await expect(thumbs).to_have_count(2)
    await expect(thumbs.nth(0)).to_have_attribute("data-status", "done")
    await expect(thumbs.nth(1)).to_have_attribute("data-status", "done")
    await chat.send("two")
    await expect(chat.questions.last.locator(".msg-images img")).to_have_count(2)
    answer = await chat.wait_answer()
    await expect(answer.locator("lt-markdown")).to_have_text("(2 images) two")


async def test_another_tab_shows_the_images_and_the_parts(
    chat: ChatPage, context: BrowserContext, server: RunningServer
) -> None:
    """A tab open on the conversation shows the next question's images and its answer's
    thinking and sources as they come (from the reply's events, not a reload)."""
    await chat.send("first")
    await chat.wait_answer()
    other = await ChatPage.open(context, server, f"/c/{chat.conversation_id()}")
    await expect(other.answers).to_have_count(1)
    for action in ("think", "search"):
        await chat.page.locator(f'[data-action="{action}"]').click()
    await give(chat, "paste", png(), "shared.png")
    await expect(chat.page.locator(".composer-image")).to_have_attribute("data-status", "done")
    await chat.send("/fake think=3 sources=1\nsee")
    await chat.wait_answer()
    await expect(other.questions.last.locator(".msg-images img")).to_have_attribute(
        "alt", "shared.png"
    )
    answer = await other.wait_answer()
    await expect(answer.locator(".thinking-toggle")).to_have_text(re.compile("Thought for"))
    await expect(answer.locator(".sources li")).to_have_count(1)
    await expect(answer.locator("lt-markdown.markdown")).to_have_text("(1 image) see 1")
    await expect(answer.locator("sup.cite a")).to_have_attribute("href", "https://example.com/1")
    await other.assert_healthy()


async def test_images_alone_can_be_sent_and_come_back_from_history(chat: ChatPage) -> None:
    """A message of only an image is sent; after a reload it shows the image again."""
    await give(chat, "paste", png(), "only.png")
    await expect(chat.page.locator(".composer-image")).to_have_attribute("data-status", "done")
    await chat.send_button.click()
    await chat.wait_answer()
    await chat.page.reload()
    await chat.wait_connected()
    image = chat.questions.last.locator(".msg-images img")
    await expect(image).to_have_attribute("alt", "only.png")
    assert await image.evaluate("(img) => img.decode().then(() => img.naturalWidth)") == 24
    await expect(chat.questions.last.locator(".bubble")).to_have_count(0)


async def test_a_model_without_vision_refuses_images_with_the_reason(chat: ChatPage) -> None:
    """For a model without vision the attach button says why (on hover and when pressed), and
    a pasted image is refused above the box; nothing is uploaded or sent."""
    await chat.page.locator("select.model-select").select_option("qwen-plus")
    attach = chat.page.locator('[data-action="attach"]')
    await expect(attach).to_have_attribute("aria-disabled", "true")
    await give(chat, "paste", png(), "pasted.png")
    problem = chat.page.locator(".composer-problem")
    await expect(problem).to_contain_text("qwen-plus cannot read images.")
    await expect(chat.page.locator(".composer-image")).to_have_count(0)
    await problem.get_by_role("button", name="Dismiss").click()
    await expect(problem).to_have_count(0)
    # It stays focusable (aria-disabled), so the keyboard reaches it and hears why too.
    await attach.focus()
    await attach.press("Enter")
    await expect(problem).to_contain_text("qwen-plus cannot read images.")
    await expect(chat.questions).to_have_count(0)


async def test_switching_to_a_model_without_vision_keeps_images_unsent(chat: ChatPage) -> None:
    """Images attached for one model are not sent to another that cannot read them."""
    await give(chat, "paste", png(), "pasted.png")
    await expect(chat.page.locator(".composer-image")).to_have_attribute("data-status", "done")
    await chat.page.locator("select.model-select").select_option("qwen-plus")
    await chat.type_and_send("look")
    await expect(chat.page.locator(".composer-problem")).to_contain_text(
        "qwen-plus cannot read images."
    )
    await expect(chat.questions).to_have_count(0)
    await expect(chat.page.locator(".composer-image")).to_have_count(1)
    await expect(chat.input).to_have_value("look")


async def test_too_large_and_refused_files_are_explained(chat: ChatPage) -> None:
    """An image over the size limit is refused before uploading, a file the server cannot
    read is refused by it; both say why in words."""
    await give(chat, "paste", b"", "huge.png", size=11 * 1024 * 1024)
    thumb = chat.page.locator(".composer-image")
    await expect(thumb).to_have_attribute("data-status", "error")
    problem = chat.page.locator(".composer-problem")
    await expect(problem).to_contain_text("This image is too large for the server.")
    await expect(problem).to_contain_text(f"Images up to {TOO_LARGE} are accepted")
    await expect(chat.send_button).to_be_disabled()
    await thumb.locator('[data-action="remove-image"]').click()
    await expect(thumb).to_have_count(0)
    await expect(problem).to_have_count(0)

    await give(chat, "paste", b"not an image at all", "broken.png")
    await expect(thumb).to_have_attribute("data-status", "error")
    await expect(problem).to_contain_text("This file is not an image the server accepts.")
    await expect(problem).to_contain_text("Attach a PNG, JPEG, WebP or GIF image.")


async def test_signed_in_images_go_with_the_session_cookie(
    context: BrowserContext, make_settings: SettingsFactory, database_url: str
) -> None:
    """Signed in, an image is uploaded and shown with the session cookie alone (no client id
    in its URL), and the model reads it."""
    name, password = f"bob-{uuid.uuid4().hex[:8]}", "correct horse battery"
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        await Accounts(engine).add_user(name, password)
    finally:
        await engine.dispose()
    settings = make_settings(fake_provider=True, default_model="fake-echo")
    async with run_server(settings) as server:
        chat = await ChatPage.open(context, server, connect=False)
        await chat.sign_in(name, password)
        await chat.wait_connected()
        await give(chat, "paste", png(), "signed.png")
        await expect(chat.page.locator(".composer-image")).to_have_attribute("data-status", "done")
        await chat.send("hi")
        image = chat.questions.last.locator(".msg-images img")
        await expect(image).to_have_attribute("src", re.compile(r"^/attachments/[A-Za-z0-9_-]+$"))
        assert await image.evaluate("(img) => img.decode().then(() => img.naturalWidth)") == 24
        answer = await chat.wait_answer()
        await expect(answer.locator("lt-markdown")).to_have_text("(1 image) hi")
        await chat.assert_healthy()
