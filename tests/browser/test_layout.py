"""Layout, measured in the browser: phone tables and figures, the header during a search,
the logo."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.cluster import create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server

PHONE = {"width": 390, "height": 844}
WORDS = ["Algorithm", "Complexity", "Implementation", "Characteristics", "Determinism"]
TABLE = (
    "\n\n| " + " | ".join(WORDS) + " |\n"
    "|" + "---|" * len(WORDS) + "\n"
    "| " + " | ".join(WORDS[::-1]) + " |\n"
)

# Table cells whose single word the layout broke over lines (more than one line box).
BROKEN_CELLS = """(table) => [...table.querySelectorAll("th, td")].filter((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  return range.getClientRects().length !== 1;
}).map((cell) => cell.textContent)"""

# How the figures under an answer sit: which items start a line, and whether their
# separator ("·", a ::before) is visible (inside the box that clips the list).
FIGURES = """(meta) => {
  const items = [...meta.querySelectorAll(".meta-part")];
  const clip = (meta.querySelector(".meta-parts") ?? meta).getBoundingClientRect();
  return items.map((item, index) => {
    const box = item.getBoundingClientRect();
    const previous = index > 0 ? items[index - 1].getBoundingClientRect() : null;
    const first = previous === null
      ? box.top > meta.querySelector(".chip").getBoundingClientRect().bottom - 1
      : box.top >= previous.bottom - 1;
    const separator = getComputedStyle(item, "::before").content.includes("·");
    const dot = separator && box.left >= clip.left - 0.5;
    return { text: item.textContent, startsLine: first, dot };
  });
}"""


@pytest.fixture
async def phone(browser: Browser, owner: str, server: RunningServer) -> AsyncIterator[ChatPage]:
    context = await new_context(browser, owner, viewport=PHONE, is_mobile=True, has_touch=True)
    chat = await ChatPage.open(context, server)
    yield chat
    await chat.assert_healthy()
    await context.close()


async def test_a_wide_table_scrolls_sideways_on_a_phone(phone: ChatPage) -> None:
    """A table wider than a phone keeps its words whole and scrolls in its own box; the
    page itself does not scroll sideways."""
    chat = phone
    await chat.input.fill(TABLE)
    await chat.input.press("Enter")
    answer = await chat.wait_answer()
    table = answer.locator("table")
    await expect(table.locator("th")).to_have_count(len(WORDS))
    await expect(table.locator("td")).to_have_text(WORDS[::-1])
    assert await table.evaluate(BROKEN_CELLS) == []
    wrap = answer.locator(".table-wrap")
    sizes = await wrap.evaluate("(wrap) => [wrap.scrollWidth, wrap.clientWidth]")
    assert sizes[0] > sizes[1], sizes
    await wrap.evaluate("(wrap) => { wrap.scrollLeft = wrap.scrollWidth; }")
    assert await wrap.evaluate("(wrap) => wrap.scrollLeft") > 0
    assert await chat.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def test_the_figures_under_an_answer_never_start_a_line_with_a_separator(
    phone: ChatPage,
) -> None:
    """On a phone the figures line wraps; no line starts with "·", and items on the same
    line are still separated by one."""
    chat = phone
    await chat.send("figures please")
    answer = await chat.wait_answer()
    figures = await answer.locator(".msg-meta").evaluate(FIGURES)
    assert len(figures) >= 3, figures
    assert any(item["startsLine"] for item in figures), figures  # it does wrap here
    # A separator shows exactly between two items on the same line.
    for item in figures:
        assert item["dot"] != item["startsLine"], figures


async def test_the_header_keeps_the_open_conversation_during_a_search(chat: ChatPage) -> None:
    """A sidebar search that hides the open conversation leaves its title and Export."""
    await chat.send("apples and pears")
    await chat.wait_answer()
    await chat.new_chat()
    await chat.send("bananas")
    await chat.wait_answer()
    title = chat.page.locator(".topbar-title")
    export = chat.page.locator(".export-menu")
    await expect(title).to_have_text("bananas")
    results = chat.page.locator(".search-result")
    await chat.page.get_by_placeholder("Search conversations").fill("apples")
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("apples and pears")
    await expect(title).to_have_text("bananas")
    await expect(export).to_be_visible()
    # Reopened from the URL (the list never had it) and searched: still there.
    await chat.page.reload()
    await chat.wait_connected()
    await expect(title).to_have_text("bananas")
    await chat.page.get_by_placeholder("Search conversations").fill("apples")
    await expect(results).to_have_count(1)
    await expect(title).to_have_text("bananas")
    await expect(export).to_be_visible()
    # And an answer in it, while the search hides it, keeps it too.
    await chat.send("more bananas")
    await chat.wait_answer()
    await expect(title).to_have_text("bananas")
    await expect(export).to_be_visible()


LOGOS = ".logo, .empty-logo, .avatar:not(.account .avatar)"


async def test_the_logo_is_drawn_not_a_character(chat: ChatPage) -> None:
    """Every logo (sidebar, empty state, answers, the typing placeholder) is an SVG, with no
    character in it that needs a CJK font."""
    page = chat.page
    await expect(page.locator(".empty-logo svg")).to_be_visible()
    await expect(page.locator(".sidebar .logo svg")).to_be_visible()
    await chat.send("logo check")
    await chat.wait_answer()
    await expect(chat.last_answer.locator(".avatar svg")).to_be_visible()
    logos = page.locator(LOGOS)
    assert await logos.count() >= 2
    for text in await logos.all_text_contents():
        assert text.strip() == ""
    icon = await page.evaluate('document.querySelector("link[rel=icon]").href')
    assert icon.endswith(".svg")
    response = await page.request.get(icon)
    assert response.ok
    assert "聊" not in await response.text()


async def test_the_sign_in_logo_is_drawn(
    browser: Browser, owner: str, database_url: str, make_settings: SettingsFactory
) -> None:
    """The sign-in screen's logo is an SVG too."""
    await create_user(database_url)
    async with run_server(make_settings()) as server:
        context = await new_context(browser, owner)
        chat = await ChatPage.open(context, server, connect=False)
        logo = chat.sign_in_screen.locator(".logo")
        await expect(logo.locator("svg")).to_be_visible()
        assert (await logo.text_content() or "").strip() == ""
        await chat.assert_healthy()
        await context.close()
