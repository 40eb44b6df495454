"""How answers look: TeX math (KaTeX as MathML), and highlighting languages fetched lazily."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import BrowserContext, Request, expect

from tests.browser.chat_page import ChatPage
from tests.server_harness import RunningServer

# Chunks the first load must not fetch: KaTeX and any highlight.js language.
LAZY_CHUNK = re.compile(r"/assets/(katex|python|javascript|typescript|bash|rust)-[\w-]+\.js$")


@pytest.fixture
def requests(context: BrowserContext) -> list[str]:
    """The URLs the page requests, from its first load on."""
    urls: list[str] = []

    def record(request: Request) -> None:
        urls.append(request.url)

    context.on("request", record)
    return urls


async def ask(chat: ChatPage, prompt: str) -> None:
    """Send ``prompt`` as it is (newlines too) and wait for the whole answer."""
    await chat.input.fill(prompt)
    await chat.input.press("Enter")
    await chat.wait_answer()


async def test_math_in_all_four_delimiters_renders_as_mathml(chat: ChatPage) -> None:
    """$…$, \\(…\\), $$…$$ and \\[…\\] become MathML; currency and code stay text."""
    prompt = (
        "\nInline $E=mc^2$ and \\(a^2+b^2\\).\n\n"
        "$$\\int_0^1 x\\,dx$$\n\n"
        "\\[\n\\sqrt{2}\n\\]\n\n"
        "It costs $5 and $10.\n\nAnd `$x$` is code.\n\n"
        "```\n$$y$$\n```\n"
    )
    await ask(chat, prompt)
    answer = chat.last_answer_text
    inline = answer.locator("p:not(.math-block) math")
    await expect(inline).to_have_count(2)
    await expect(inline.first.locator("annotation")).to_have_text("E=mc^2")
    await expect(inline.nth(1).locator("annotation")).to_have_text("a^2+b^2")
    blocks = answer.locator(".math-block math[display='block']")
    await expect(blocks).to_have_count(2)
    await expect(blocks.first.locator("annotation")).to_have_text("\\int_0^1 x\\,dx")
    await expect(blocks.nth(1).locator("annotation")).to_have_text("\\sqrt{2}")
    # The MathML is laid out as math (MathML Core), not as unknown inline elements.
    assert await blocks.first.evaluate("e => e instanceof MathMLElement")
    await expect(answer.locator("p", has_text="It costs")).to_have_text("It costs $5 and $10.")
    await expect(answer.locator("p:not(.math-block) code")).to_have_text("$x$")
    await expect(answer.locator("pre code")).to_have_text("$$y$$\n")
    await expect(answer.locator(".math-source")).to_have_count(0)


async def test_invalid_tex_shows_its_source(chat: ChatPage) -> None:
    """TeX KaTeX cannot parse is shown as written, marked, without an error thrown."""
    await ask(chat, "\nbad $\\frac{1}{$ and good $x^2$")
    answer = chat.last_answer_text
    await expect(answer.locator(".math-error")).to_have_text("$\\frac{1}{$")
    await expect(answer.locator(".math-error")).to_have_attribute("title", re.compile("KaTeX"))
    await expect(answer.locator("math")).to_have_count(1)


async def test_math_needs_no_inline_style_and_makes_no_link(chat: ChatPage) -> None:
    """KaTeX's output carries no style attribute (the CSP would refuse it: the fixture fails
    the test on any violation) and untrusted commands such as \\href make no link."""
    await ask(chat, "\nA $\\fcolorbox{red}{yellow}{x}$ box, a $\\href{https://example.com}{link}$.")
    answer = chat.last_answer_text
    await expect(answer.locator("math")).to_have_count(2)
    assert await answer.locator("[style]").count() == 0
    assert await answer.locator("[href]").count() == 0


# A display formula streamed 4 characters at a time: most prefixes are TeX cut short.
FORMULA = "$$\n\\int_0^1 \\frac{x^2}{2}\\,dx = \\left(\\frac{1}{6}\\right)\n$$"


async def test_a_streaming_formula_never_shows_an_error(chat: ChatPage) -> None:
    """While a display formula streams in, no render shows a TeX error; the end is math."""
    await chat.page.evaluate(
        """() => {
          window.__mathErrors = 0;
          new MutationObserver((records) => {
            for (const record of records) for (const node of record.addedNodes) {
              if (node instanceof Element &&
                  (node.matches('.math-error, .katex-error') ||
                   node.querySelector('.math-error, .katex-error'))) window.__mathErrors++;
            }
          }).observe(document.body, { childList: true, subtree: true });
        }"""
    )
    await ask(chat, f"[delay=15]\n\n{FORMULA}\n\ndone")
    await expect(chat.last_answer_text.locator(".math-block math")).to_have_count(1)
    assert await chat.page.evaluate("window.__mathErrors") == 0


async def test_every_prefix_of_a_formula_renders_without_an_error(chat: ChatPage) -> None:
    """Each prefix of the text (as streaming shows it) renders without a TeX error."""
    await ask(chat, "\n$x$")  # KaTeX is loaded from here on
    await expect(chat.last_answer_text.locator("math")).to_have_count(1)
    text = f"Here:\n\n{FORMULA}\n\nand \\[\n\\sqrt{{x}}\n\\]"
    failing = await chat.page.evaluate(
        """(text) => {
          const failing = [];
          for (let end = 1; end <= text.length; end++) {
            const view = document.createElement('lt-markdown');
            view.text = text.slice(0, end);
            document.body.append(view);
            if (view.querySelector('.math-error, .katex-error')) failing.push(text.slice(0, end));
            view.remove();
          }
          return failing;
        }""",
        text,
    )
    assert failing == []


async def test_highlighting_languages_load_when_a_block_needs_them(
    context: BrowserContext, server: RunningServer, requests: list[str]
) -> None:
    """The first load fetches no language (nor KaTeX); a ```py block fetches python and is
    highlighted once it has arrived."""
    chat = await ChatPage.open(context, server)
    await chat.page.wait_for_load_state("networkidle")
    assert [url for url in requests if LAZY_CHUNK.search(url)] == []
    await ask(chat, "\n```py\ndef answer():\n    return 42\n```")
    block = chat.last_answer_text.locator(".code-block")
    await expect(block.locator(".code-lang")).to_have_text("py")
    await expect(block.locator(".hljs-keyword").first).to_have_text("def")
    fetched = [url for url in requests if LAZY_CHUNK.search(url)]
    assert len(fetched) == 1
    assert "/assets/python-" in fetched[0]
    await ask(chat, "\n```ts\nconst x: number = 1;\n```")
    await expect(chat.last_answer_text.locator(".hljs-keyword").first).to_have_text("const")
    await chat.assert_healthy()
