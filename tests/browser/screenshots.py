"""Take the README's screenshots of the page into docs/screenshots/.

    .venv/bin/python -m tests.browser.screenshots

It starts a real server (temporary SQLite database) whose OpenAI-compatible provider is a
small scripted upstream that streams canned answers, so the pictures show realistic
markdown; DashScope is left unconfigured, so its models show as unavailable. It drives
Debian's Chromium like the browser tests. Chinese needs a CJK font on the machine
(``apt-get install fonts-wqy-microhei``).
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path

import orjson
from aiohttp import web
from playwright.async_api import Page, async_playwright, expect

from liaotian.settings import Settings
from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.server_harness import run_server

OUT = Path(__file__).parents[2] / "docs" / "screenshots"
MODEL = "qwen2.5-7b-instruct"
OWNER = "screenshots"

BACKOFF_QUESTION = "How do I retry an async call with exponential backoff in Python?"
BACKOFF_ANSWER = """\
Wrap the call in a loop that waits **twice as long** after each failure, with a little \
random *jitter* so many clients don't retry in lockstep:

```python
import asyncio
import random


async def retry(call, attempts=5, base=0.5, cap=10.0):
    for attempt in range(attempts):
        try:
            return await call()
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            delay = min(cap, base * 2**attempt)
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
```

| attempt | wait (s) | with jitter |
|--------:|---------:|:-----------:|
| 1 | 0.5 | 0.38–0.63 |
| 2 | 1.0 | 0.75–1.25 |
| 3 | 2.0 | 1.5–2.5 |

A few tips:

- Retry only errors that can pass (timeouts, `503`), never a `400`.
- Cap the total time, not just the attempts.
- See [the AWS Builders' Library](https://aws.amazon.com/builders-library/) on jitter.
"""

ZH_QUESTION = "用表格比较 SQLite 和 PostgreSQL：适用场景、并发和运维。"
ZH_ANSWER = """\
两者都很可靠，区别主要在**部署方式**和**并发写入**：

| 方面 | SQLite | PostgreSQL |
|------|--------|------------|
| 适用场景 | 单机应用、嵌入式、测试 | 多用户服务、数据分析 |
| 并发 | 多读单写（WAL 模式） | 多版本并发控制，读写互不阻塞 |
| 运维 | 一个文件，零配置 | 需要服务进程、备份与监控 |

**建议**：先用 SQLite 起步；当需要多个服务进程同时写入时，再迁移到 PostgreSQL。
"""

SLOW_QUESTION = "Explain how WebSockets differ from HTTP long polling."
SLOW_ANSWER = """\
**HTTP long polling** keeps asking: the client sends a request, the server holds it until \
there is news, answers, and the client immediately asks again. Every message pays for a \
full HTTP request and response.

**WebSockets** upgrade one HTTP connection into a full-duplex channel:

1. The client sends `GET /ws` with `Upgrade: websocket`.
2. The server answers `101 Switching Protocols`.
3. From then on, both sides send small frames whenever they like.

For a chat that streams answers token by token, that means lower latency, far less \
overhead per token, and one connection that can carry many conversations at once.
"""

ANSWERS = {
    BACKOFF_QUESTION: (BACKOFF_ANSWER, 0.0),
    ZH_QUESTION: (ZH_ANSWER, 0.0),
    SLOW_QUESTION: (SLOW_ANSWER, 0.12),
    "What is a context window?": ("The number of tokens a model reads at once.", 0.0),
    "Write a haiku about the sea": (
        "Waves fold into foam —\nthe tide keeps its own hours,\nsalt on the window.",
        0.0,
    ),
}


class ScriptedUpstream:
    """An OpenAI-compatible upstream that streams the canned answer to each question."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedUpstream:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        question = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        answer, delay = ANSWERS.get(question, ("echo: " + question, 0.0))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = re.findall(r"\s*\S+", answer) + ([""] if answer.endswith("\n") else [])
        for piece in pieces:
            await response.write(_chunk({"content": piece}, None))
            await asyncio.sleep(delay or 0.004)
        await response.write(_chunk({}, "stop"))
        usage = {"prompt_tokens": 24, "completion_tokens": len(pieces), "total_tokens": 0}
        await response.write(b"data: %s\n\n" % orjson.dumps({"choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        return response


def _chunk(delta: dict[str, str], finish: str | None) -> bytes:
    payload = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: %s\n\n" % orjson.dumps(payload)


async def ask(page: Page, question: str) -> None:
    await page.locator("#composer-input").fill(question)
    await page.locator("#composer-input").press("Enter")
    answer = page.locator('article[data-role="assistant"][data-message-id]').last
    await expect(answer).to_have_attribute("data-status", "completed", timeout=30_000)


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        async with ScriptedUpstream() as upstream:
            settings = Settings(
                database_url=f"sqlite+aiosqlite:///{tmp}/screens.db",
                local_enabled=False,
                openai_base_url=upstream.base_url,
                openai_api_key="none",
                default_model=MODEL,
            )
            async with run_server(settings) as server, async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                await shoot(browser, server.http_url)
                await browser.close()
            unavailable = Settings(
                database_url=f"sqlite+aiosqlite:///{tmp}/unavailable.db",
                local_enabled=False,
                openai_base_url=upstream.base_url,
                openai_api_key="none",
                default_model="qwen3-max",
            )
            async with run_server(unavailable) as server, async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                await page.goto(server.http_url)
                await expect(page.locator(".composer-problem")).to_be_visible()
                await page.screenshot(path=OUT / "model-unavailable.png")
                await browser.close()
            await shoot_sign_in(f"sqlite+aiosqlite:///{tmp}/accounts.db", upstream.base_url)
    print(f"screenshots saved in {OUT}")


async def shoot(browser: object, url: str) -> None:
    from playwright.async_api import Browser

    assert isinstance(browser, Browser)
    init = f'localStorage.setItem("liaotian.client_id", "{OWNER}");'
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-US", color_scheme="light"
    )
    await context.add_init_script(init)
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator(".connection")).to_have_attribute("data-status", "open")
    for question in ("Write a haiku about the sea", "What is a context window?"):
        await ask(page, question)
        await page.locator('[data-action="new-chat"]').click()
    await page.screenshot(path=OUT / "empty.png")

    await ask(page, BACKOFF_QUESTION)
    await page.mouse.move(0, 0)
    await page.screenshot(path=OUT / "conversation.png")
    conversation_url = page.url

    await page.locator('[data-action="new-chat"]').click()
    await page.locator("#composer-input").fill(SLOW_QUESTION)
    await page.locator("#composer-input").press("Enter")
    answer = page.locator('article[data-role="assistant"][data-message-id]').last
    await expect(answer.locator("lt-markdown ol")).to_be_visible(timeout=30_000)
    await expect(page.locator('[data-action="stop"]')).to_be_visible()
    await page.screenshot(path=OUT / "streaming.png")
    await expect(answer).to_have_attribute("data-status", "completed", timeout=30_000)

    await page.goto(conversation_url)
    await page.locator('[data-theme-choice="dark"]').click()
    await expect(page.locator(".connection")).to_have_attribute("data-status", "open")
    await page.mouse.move(0, 0)
    await page.screenshot(path=OUT / "dark.png")
    await page.locator('[data-theme-choice="light"]').click()
    await context.close()

    zh = await browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="zh-CN", color_scheme="light"
    )
    await zh.add_init_script(init)
    page = await zh.new_page()
    await page.goto(url)
    await expect(page.locator(".connection")).to_have_attribute("data-status", "open")
    await ask(page, ZH_QUESTION)
    await page.mouse.move(0, 0)
    await page.screenshot(path=OUT / "zh-CN.png")
    await zh.close()

    phone = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-US",
    )
    await phone.add_init_script(init)
    page = await phone.new_page()
    await page.goto(conversation_url)
    await expect(page.locator(".connection")).to_have_attribute("data-status", "open")
    await expect(page.locator('article[data-role="assistant"]').last).to_be_visible()
    await page.screenshot(path=OUT / "mobile.png")
    await phone.close()


async def shoot_sign_in(database_url: str, upstream_url: str) -> None:
    """The sign-in screen of a server that has a user (so signing in is required)."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        await Accounts(engine).add_user("alice", "correct horse battery")
    finally:
        await engine.dispose()
    settings = Settings(
        database_url=database_url,
        local_enabled=False,
        openai_base_url=upstream_url,
        openai_api_key="none",
        default_model=MODEL,
    )
    async with run_server(settings) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800}, locale="en-US", color_scheme="light"
        )
        page = await context.new_page()
        await page.goto(server.http_url)
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.get_by_label("User name").fill("alice")
        await page.screenshot(path=OUT / "sign-in.png")
        await browser.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
