"""The shared page (/s/ID): the snapshot, rendered like the chat page, inert and local."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlparse

from playwright.async_api import BrowserContext, Page, Request, expect

from liaotian.store.shares import ShareStore
from tests.browser.test_security import DANGEROUS, PAYLOADS
from tests.server_harness import RunningServer
from tests.share_seed import Turn, add_sibling, seed_conversation

ANSWER = "Here is **bold**, `code` and $E = mc^2$.\n\n```python\nprint('hi')\n```"


async def shared(server: RunningServer, turns: Sequence[Turn]) -> str:
    """A share of a conversation of ``turns`` (the whole active path); its id."""
    database = server.services.store.database
    seeded = await seed_conversation(database, "alice", turns, title="Shared title")
    created = await ShareStore(database).create("alice", seeded.conversation_id)
    return created.id


async def open_share(
    context: BrowserContext, server: RunningServer, share_id: str
) -> tuple[Page, list[str], list[str]]:
    """The shared page, loaded; the script errors and the requests it made go in the lists."""
    page = await context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def record(request: Request) -> None:
        requests.append(request.url)

    page.on("request", record)
    await page.goto(f"{server.http_url}/s/{share_id}")
    await expect(page.locator(".share-title")).to_be_visible()
    return page, errors, requests


async def test_the_page_shows_the_snapshot_rendered_and_read_only(
    context: BrowserContext, server: RunningServer
) -> None:
    """Title, question and markdown answer (code highlighted, math typeset), reasoning folded,
    no composer; a Continue link to /?copy=ID."""
    share_id = await shared(
        server,
        [
            ("user", "What is it?"),
            {"role": "assistant", "content": ANSWER, "reasoning": "Let me think."},
        ],
    )
    page, errors, _ = await open_share(context, server, share_id)
    await expect(page.locator(".share-title")).to_have_text("Shared title")
    await expect(page.locator(".msg-user .bubble")).to_have_text("What is it?")
    answer = page.locator(".msg-assistant lt-markdown.markdown:not(.reasoning)")
    await expect(answer.locator("strong")).to_have_text("bold")
    await expect(answer.locator("pre code.hljs")).to_be_visible()
    await expect(answer.locator("math, .katex")).not_to_have_count(0)
    thinking = page.locator("details.share-thinking")
    await expect(thinking).not_to_have_attribute("open", "")
    await expect(thinking.locator(".reasoning")).to_be_hidden()
    await expect(page.locator("textarea, input")).to_have_count(0)
    await expect(page.locator("a.share-continue")).to_have_attribute("href", f"/?copy={share_id}")
    assert errors == []
    assert await page.evaluate("window.__cspViolations") == []


async def test_other_branches_are_not_on_the_page(
    context: BrowserContext, server: RunningServer
) -> None:
    """A message of another branch never shows on the shared page."""
    database = server.services.store.database
    seeded = await seed_conversation(
        database, "alice", [("user", "Q"), ("assistant", "ACTIVE ANSWER")]
    )
    await add_sibling(database, seeded.message_ids[1], "assistant", "OTHER BRANCH")
    created = await ShareStore(database).create("alice", seeded.conversation_id)
    page, _, _ = await open_share(context, server, created.id)
    await expect(page.locator(".msg-assistant")).to_have_count(1)
    await expect(page.locator("main")).to_contain_text("ACTIVE ANSWER")
    await expect(page.locator("main")).not_to_contain_text("OTHER BRANCH")


async def test_script_in_a_shared_conversation_never_runs(
    context: BrowserContext, server: RunningServer
) -> None:
    """Every payload, as a question and as a markdown answer, stays inert on the page."""
    turns: list[tuple[str, str]] = []
    for payload in PAYLOADS:
        turns += [("user", payload), ("assistant", payload)]
    share_id = await shared(server, turns)
    dialogs: list[str] = []
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"{server.http_url}/s/{share_id}")
    await expect(page.locator(".msg-assistant")).to_have_count(len(PAYLOADS))
    await page.locator(".msg-assistant").last.hover()
    assert await page.evaluate("window.__xss") is None
    assert await page.evaluate(DANGEROUS) == []
    assert dialogs == []
    assert await page.evaluate("window.__cspViolations") == []


async def test_the_page_loads_nothing_from_another_origin(
    context: BrowserContext, server: RunningServer
) -> None:
    """Every request the shared page makes, images and links in the answer included, goes
    to the server itself."""
    share_id = await shared(
        server,
        [
            ("user", "links?"),
            {
                "role": "assistant",
                "content": "See [1] and ![cat](https://example.com/cat.png)",
                "sources": [
                    {
                        "index": 1,
                        "url": "https://example.com/a",
                        "title": "A",
                        "site": "example.com",
                        "icon": "https://example.com/favicon.ico",
                    }
                ],
            },
        ],
    )
    page, _, requests = await open_share(context, server, share_id)
    await expect(page.locator(".sources a")).to_have_attribute("href", "https://example.com/a")
    await page.wait_for_load_state("networkidle")
    origin = urlparse(server.http_url).netloc
    assert requests
    assert [url for url in requests if urlparse(url).netloc != origin] == []


async def test_an_unknown_share_says_so(context: BrowserContext, server: RunningServer) -> None:
    """An unknown link shows the not-found page (no script needed)."""
    page = await context.new_page()
    response = await page.goto(f"{server.http_url}/s/{'x' * 32}")
    assert response is not None
    assert response.status == 404
    await expect(page.locator("body")).to_contain_text("does not exist")
