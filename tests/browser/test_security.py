"""Nothing a model or a user writes ever runs as script; the page keeps to its CSP."""

from __future__ import annotations

import aiohttp
from playwright.async_api import BrowserContext, Dialog, expect

from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream
from tests.server_harness import run_server

# Each payload sets window.__xss (or opens a dialog) if it ever runs.
PAYLOADS = [
    '<script>window.__xss = "script"</script>',
    "<img src=x onerror=\"window.__xss = 'img'\">",
    '[click me](javascript:window.__xss="link")',
    '[case](JaVaScRiPt:alert("case"))',
    "<svg onload=\"window.__xss = 'svg'\"><circle r=5 /></svg>",
    "<iframe srcdoc=\"<script>parent.__xss = 'iframe'</script>\"></iframe>",
    "<a href=\"javascript:window.__xss='a'\">raw link</a>",
    '![pic](javascript:window.__xss="image")',
    "![x](x onerror=alert(1))",
    "<details open ontoggle=\"window.__xss = 'details'\">x</details>",
    '<b onmouseover="window.__xss=1">hover</b><style>*{display:none}</style>',
    '<math><mtext><table><mglyph><style><img src=x onerror=window.__xss="mxss">',
    '[data](data:text/html,<script>alert("data")</script>)',
    "javascript:alert('autolink')",
    '<object data="javascript:alert(1)"></object><embed src="javascript:alert(1)">',
    '```html\n<script>window.__xss = "code"</script>\n```',
    "**bold <img src=x onerror=alert('inline')> text**",
]

DANGEROUS = """() => {
  const found = [];
  for (const element of document.querySelectorAll("*")) {
    for (const attribute of element.attributes) {
      if (/^on/i.test(attribute.name)) found.push(element.tagName + " " + attribute.name);
      const url = /^(href|src|action|data|srcdoc)$/i.test(attribute.name);
      if (url && /^\\s*(javascript|data):/i.test(attribute.value)) {
        found.push(element.tagName + " " + attribute.name + "=" + attribute.value);
      }
    }
  }
  const forbidden = "iframe, object, embed, lt-markdown svg, lt-markdown img, lt-markdown style";
  for (const element of document.querySelectorAll(forbidden)) found.push(element.tagName);
  const scripts = [...document.scripts].filter((script) => !script.src);
  if (scripts.length) found.push(scripts.length + " inline scripts");
  return found;
}"""


async def assert_nothing_ran(chat: ChatPage, dialogs: list[str]) -> None:
    assert await chat.page.evaluate("window.__xss") is None
    assert dialogs == []
    assert await chat.page.evaluate(DANGEROUS) == []
    await chat.assert_healthy()


def record_dialogs(chat: ChatPage) -> list[str]:
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    chat.page.on("dialog", dismiss)
    return dialogs


async def test_script_in_messages_answers_and_titles_never_runs(chat: ChatPage) -> None:
    """Each payload is a first message (so also a title), echoed in the answer; none runs."""
    dialogs = record_dialogs(chat)
    for payload in PAYLOADS:
        if chat.conversation_id() is not None:
            await chat.new_chat()
        await chat.input.fill(payload)
        await chat.input.press("Enter")
        await chat.wait_answer()
        await expect(chat.questions.last.locator(".bubble")).to_have_text(payload)
        await chat.last_answer.hover()
        await assert_nothing_ran(chat, dialogs)
    await expect(chat.conversations).to_have_count(len(PAYLOADS))
    # The same text again, now rendered from the stored history.
    await chat.page.reload()
    await chat.wait_connected()
    await chat.wait_answer()
    await chat.page.locator(".conversations").hover()
    await assert_nothing_ran(chat, dialogs)


async def test_script_in_a_renamed_title_never_runs(chat: ChatPage) -> None:
    """A title renamed to markup is shown as text, in the list, the header and the tab."""
    dialogs = record_dialogs(chat)
    await chat.send("harmless")
    await chat.wait_answer()
    title = '<img src=x onerror="window.__xss=1"><script>alert(1)</script>'
    item = chat.conversations.first
    await item.hover()
    await item.locator("summary").click()
    await item.locator('[data-action="rename"]').click()
    await chat.page.get_by_label("New title").fill(title)
    await chat.page.get_by_label("New title").press("Enter")
    await expect(chat.conversations.first.locator(".conv-title")).to_have_text(title)
    await expect(chat.page.locator(".topbar-title")).to_have_text(title)
    await expect(chat.page).to_have_title(f"{title} · liaotian")
    await assert_nothing_ran(chat, dialogs)


async def test_links_open_safely_and_images_become_links(chat: ChatPage) -> None:
    """Links open in a new tab without an opener; images are links, never loaded."""
    await chat.send("[site](https://example.com/a) and ![a cat](https://example.com/cat.png)")
    answer = await chat.wait_answer()
    links = answer.locator("lt-markdown a")
    await expect(links).to_have_count(2)
    for index in range(2):
        await expect(links.nth(index)).to_have_attribute("target", "_blank")
        await expect(links.nth(index)).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(links.nth(1)).to_have_text("Image: a cat")
    await expect(links.nth(1)).to_have_attribute("href", "https://example.com/cat.png")
    await expect(answer.locator("img")).to_have_count(0)


async def test_the_page_is_served_with_a_strict_policy(chat: ChatPage) -> None:
    """The page and its assets carry a CSP without inline script or other origins."""
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/c/some-conversation"):
            async with session.get(chat.server.http_url + path) as response:
                assert response.status == 200
                policy = response.headers["Content-Security-Policy"]
                assert "script-src 'self'" in policy
                assert "unsafe-inline" not in policy
                assert "unsafe-eval" not in policy
                assert response.headers["Cache-Control"] == "no-cache"
        script = await chat.page.locator("script[src]").get_attribute("src")
        assert script is not None
        assert script.startswith("/assets/")
        async with session.get(chat.server.http_url + script) as response:
            assert response.status == 200
            assert "immutable" in response.headers["Cache-Control"]


HOSTILE_MODEL = "<img src=x onerror=window.__xss='model'>"
HOSTILE_ERROR = "<script>window.__xss='error'</script><img src=x onerror=alert('error')>"


async def test_model_names_and_error_texts_never_run(
    context: BrowserContext, make_settings: SettingsFactory
) -> None:
    """An upstream that names a model, or words an error, as HTML: shown as text only."""
    async with FakeUpstream(
        api_key="test-key", models=(HOSTILE_MODEL,), error_message=HOSTILE_ERROR
    ) as hostile:
        settings = make_settings(
            dashscope_base_url=hostile.dashscope_base_url,
            openai_base_url=hostile.openai_base_url,
        )
        async with run_server(settings) as server:
            chat = await ChatPage.open(context, server)
            dialogs = record_dialogs(chat)
            await expect(chat.page.locator("option", has_text=HOSTILE_MODEL)).to_have_count(1)
            await chat.send("[fault=400] please fail")
            await chat.wait_answer("error")
            await expect(
                chat.page.get_by_text("<script>window.__xss", exact=False)
            ).not_to_have_count(0)
            await assert_nothing_ran(chat, dialogs)
