"""Browser tests: Debian's Chromium driven by Playwright for Python, against a real server
and the fake upstream.

Each test gets its own browser, launched in the test's event loop (where the server runs
too; a launch takes well under a second), a fresh context (so its own localStorage, hence
its own owner) and a page that fails the test if it throws or violates the CSP.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright, expect

from tests.browser.chat_page import ChatPage
from tests.server_harness import RunningServer

CHROMIUM = os.environ.get("LIAOTIAN_TEST_CHROMIUM", "/usr/bin/chromium")
DIST = Path(__file__).parents[2] / "src" / "liaotian" / "web" / "dist" / "index.html"
# The machine has no network: without these, Chromium waits on connections it never gets.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}

expect.set_options(timeout=10_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is a browser test (``-m browser`` selects them)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup dev installs Debian's chromium")
    if not DIST.is_file():
        pytest.fail("the page is not built: run scripts/setup (npm ci && npm run build in web/)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def owner() -> str:
    """The page's client id (the owner of its conversations), fixed so tests can seed data."""
    return f"browser-{uuid.uuid4().hex[:12]}"


async def new_context(
    browser: Browser, owner: str, *, locale: str = "en-US", **options: object
) -> BrowserContext:
    """A context whose pages use ``owner`` as their client id and record CSP violations."""
    context = await browser.new_context(
        locale=locale, viewport=options.pop("viewport", DESKTOP), **options
    )
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    await context.add_init_script(
        f"""
        localStorage.setItem("liaotian.client_id", {owner!r});
        window.__cspViolations = [];
        document.addEventListener("securitypolicyviolation", (event) => {{
          window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
        }});
        """
    )
    return context


@pytest.fixture
async def context(browser: Browser, owner: str) -> AsyncIterator[BrowserContext]:
    context = await new_context(browser, owner)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def chat(context: BrowserContext, server: RunningServer) -> AsyncIterator[ChatPage]:
    """The page at /, connected; at the end, no script error and no CSP violation."""
    page = await ChatPage.open(context, server)
    yield page
    await page.assert_healthy()
