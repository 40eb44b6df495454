"""Reply parts on the page: the thinking panel, the Think and Search switches, sources and
their ``[n]`` links, and all of them again from history and after a reload mid-reply.

The server runs the shipped ``fake`` provider (``fake-echo`` claims thinking, search and
vision; ``/fake think=N sources=K`` scripts them) next to ``qwen-plus`` on the fake
upstream, configured to have none of those capabilities.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import WebSocket, expect

from tests.browser.chat_page import ChatPage
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server

PLAIN = {"vision": False, "thinking": False, "search": False}
ALWAYS_THINKS = {"thinking": True, "thinking_default": True, "thinking_fixed": True}


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    settings = make_settings(
        fake_provider=True,
        default_model="fake-echo",
        models={"qwen-plus": PLAIN, "qwen-max": ALWAYS_THINKS},
    )
    async with run_server(settings) as running:
        yield running


def record_frames(chat: ChatPage) -> list[dict[str, Any]]:
    """Every frame the page sends on the sockets it opens from now on."""
    sent: list[dict[str, Any]] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: sent.append(json.loads(payload)))

    chat.page.on("websocket", on_socket)
    return sent


def reasoning(count: int) -> str:
    """The fake provider's thinking of ``think=count``."""
    return "".join(f"r{i} " for i in range(count)).strip()


async def switch_on(chat: ChatPage, action: str) -> None:
    button = chat.page.locator(f'[data-action="{action}"]')
    await button.click()
    await expect(button).to_have_attribute("aria-pressed", "true")


async def test_thinking_streams_then_collapses_and_expands_on_click(chat: ChatPage) -> None:
    """Thinking streams live in an open panel, folds to "Thought for" once the answer starts,
    and opens again on click."""
    await switch_on(chat, "think")
    await chat.send("/fake think=150 tokens=5 delay_ms=20")
    answer = chat.last_answer
    thinking = answer.locator(".thinking")
    toggle = thinking.locator(".thinking-toggle")
    await expect(thinking.locator(".thinking-body")).to_contain_text("r5 ")
    await expect(toggle).to_have_text("Thinking…")
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await chat.wait_answer()
    await expect(toggle).to_have_text(re.compile(r"Thought for (\d+ s|less than a second)"))
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(thinking.locator(".thinking-body")).to_be_hidden()
    await expect(answer.locator("lt-markdown.markdown:not(.reasoning)")).to_have_text(
        "t0 t1 t2 t3 t4"
    )
    await expect(answer.locator(".msg-meta")).to_contain_text("150 thinking tokens")
    await toggle.press("Enter")
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(thinking.locator(".thinking-body")).to_have_text(reasoning(150))
    await toggle.click()
    await expect(thinking.locator(".thinking-body")).to_be_hidden()


async def test_reload_mid_thinking_continues_in_place(chat: ChatPage) -> None:
    """Reloading while the model thinks shows its thinking again and goes on, nothing doubled."""
    await switch_on(chat, "think")
    await chat.send("/fake think=300 tokens=3 delay_ms=10")
    await expect(chat.last_answer.locator(".thinking-body")).to_contain_text("r10 ")
    await chat.page.reload()
    await chat.wait_connected()
    answer = await chat.wait_answer()
    await expect(chat.answers).to_have_count(1)
    await answer.locator(".thinking-toggle").click()
    await expect(answer.locator(".thinking-body")).to_have_text(reasoning(300))
    await expect(answer.locator("lt-markdown.markdown:not(.reasoning)")).to_have_text("t0 t1 t2")


async def test_switches_show_only_for_models_that_can(chat: ChatPage) -> None:
    """Think and Search the web show for a model that can; a plain model has neither, and
    its attach button says why it takes no image."""
    think = chat.page.locator('[data-action="think"]')
    search = chat.page.locator('[data-action="search"]')
    attach = chat.page.locator('[data-action="attach"]')
    await expect(think).to_have_attribute("aria-pressed", "false")
    await expect(search).to_have_attribute("aria-pressed", "false")
    await expect(attach).to_have_attribute("aria-disabled", "false")
    await chat.page.locator("select.model-select").select_option("qwen-plus")
    await expect(think).to_have_count(0)
    await expect(search).to_have_count(0)
    await expect(attach).to_have_attribute("aria-disabled", "true")
    await expect(attach).to_have_attribute(
        "title", "qwen-plus cannot read images. Choose a model that can to attach them."
    )


async def test_a_model_that_always_thinks_shows_it_and_is_not_told(chat: ChatPage) -> None:
    """For a model whose thinking cannot be switched, Think shows on but cannot change, and
    no choice is sent (the server would refuse one)."""
    sent = record_frames(chat)
    await chat.page.reload()  # a socket opened from now on
    await chat.wait_connected()
    await chat.page.locator("select.model-select").select_option("qwen-max")
    think = chat.page.locator('[data-action="think"]')
    await expect(think).to_have_attribute("aria-pressed", "true")
    await expect(think).to_have_attribute("aria-disabled", "true")
    await expect(think).to_have_attribute(
        "title", "qwen-max always thinks; it cannot be switched off"
    )
    await think.focus()
    await think.press("Enter")
    await expect(think).to_have_attribute("aria-pressed", "true")
    await chat.send("hello")
    await chat.wait_answer()
    send = next(frame for frame in sent if frame["type"] == "chat.send")
    assert send["model"] == "qwen-max"
    assert "thinking" not in send


async def test_switches_are_sent_and_remembered_per_model(chat: ChatPage) -> None:
    """The switches go with every send (and regenerate), stay after a reload, and do what
    they say: thinking and sources come only when asked for."""
    sent = record_frames(chat)
    await chat.page.reload()  # a socket opened from now on
    await chat.wait_connected()
    await switch_on(chat, "think")
    await switch_on(chat, "search")
    await chat.send("/fake think=3 sources=2 tokens=2")
    answer = await chat.wait_answer()
    await expect(answer.locator(".thinking")).to_have_count(1)
    await expect(answer.locator(".sources li")).to_have_count(2)
    send = next(frame for frame in sent if frame["type"] == "chat.send")
    assert (send["thinking"], send["search"]) == (True, True)

    await chat.page.reload()
    await chat.wait_connected()
    await expect(chat.page.locator('[data-action="think"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(chat.page.locator('[data-action="search"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await chat.page.locator('[data-action="think"]').click()
    await chat.page.locator('[data-action="search"]').click()
    await chat.last_answer.locator('[data-action="regenerate"]').click()
    answer = await chat.wait_answer()
    await expect(answer.locator(".msg-meta")).to_be_visible()
    await expect(answer.locator(".thinking")).to_have_count(0)
    await expect(answer.locator(".sources")).to_have_count(0)
    regenerate = next(frame for frame in sent if frame["type"] == "chat.regenerate")
    assert regenerate["thinking"] is False
    assert "search" not in regenerate


async def test_sources_are_listed_and_cited_with_safe_links(chat: ChatPage) -> None:
    """Sources are a numbered list under the answer; each [n] of its text links to source n
    (a new tab, no referrer), except in code."""
    await switch_on(chat, "search")
    await chat.send("/fake sources=2\nSee `x[1]` and [2].")
    answer = await chat.wait_answer()
    items = answer.locator(".sources li")
    await expect(items).to_have_count(2)
    first = items.first.locator("a")
    await expect(first).to_have_text("Source 1")
    await expect(first).to_have_attribute("href", "https://example.com/1")
    await expect(first).to_have_attribute("target", "_blank")
    await expect(first).to_have_attribute("rel", "noopener noreferrer")
    await expect(items.first.locator(".source-site")).to_have_text("example.com")
    text = answer.locator("lt-markdown.markdown")
    await expect(text.locator("code")).to_have_text("x[1]")
    cites = text.locator("sup.cite a")
    # "[2]" in the text, then the " [1] [2]" the fake provider ends with; not the one in code.
    await expect(cites).to_have_count(3)
    await expect(cites.first).to_have_attribute("href", "https://example.com/2")
    await expect(cites.first).to_have_attribute("rel", "noopener noreferrer")
    await expect(cites.first).to_have_attribute("target", "_blank")
    await expect(cites.first).to_have_attribute("aria-label", "Source 2: Source 2")
    await expect(text.locator("code a")).to_have_count(0)


async def test_history_shows_thinking_folded_and_sources(chat: ChatPage) -> None:
    """After a reload, an answer shows its thinking (folded, with its time) and its sources."""
    await switch_on(chat, "think")
    await switch_on(chat, "search")
    await chat.send("/fake think=4 sources=1 tokens=2")
    await chat.wait_answer()
    await chat.page.reload()
    await chat.wait_connected()
    answer = await chat.wait_answer()
    toggle = answer.locator(".thinking-toggle")
    await expect(toggle).to_have_text(re.compile(r"Thought for"))
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await toggle.click()
    await expect(answer.locator(".thinking-body")).to_have_text(reasoning(4))
    await expect(answer.locator(".sources li a")).to_have_attribute("href", "https://example.com/1")
    await expect(answer.locator("sup.cite a")).to_have_count(1)


async def test_the_panel_and_switches_speak_chinese(chat: ChatPage) -> None:
    """In Chinese the switches and the thinking panel are in Chinese too."""
    await chat.page.evaluate("localStorage.setItem('liaotian.locale', 'zh-CN')")
    await chat.page.reload()
    await chat.wait_connected()
    await expect(chat.page.locator('[data-action="think"]')).to_have_text("深度思考")
    await expect(chat.page.locator('[data-action="search"]')).to_have_text("联网搜索")
    await switch_on(chat, "think")
    await chat.send("/fake think=2 tokens=1")
    answer = await chat.wait_answer()
    await expect(answer.locator(".thinking-toggle")).to_have_text(re.compile(r"已思考"))


async def test_export_keeps_thinking_and_sources(chat: ChatPage) -> None:
    """The Markdown export quotes the thinking and lists the sources; the JSON keeps both."""
    await switch_on(chat, "think")
    await switch_on(chat, "search")
    await chat.send("/fake think=2 sources=1 tokens=1")
    await chat.wait_answer()
    texts = {}
    for action in ("export-markdown", "export-json"):
        await chat.page.locator(".export-menu summary").click()
        async with chat.page.expect_download() as info:
            await chat.page.locator(f'[data-action="{action}"]').click()
        path = await (await info.value).path()
        texts[action] = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    markdown = texts["export-markdown"]
    assert "*Thinking*\n\n> r0 r1\n" in markdown
    assert "**Sources**\n\n1. [Source 1](<https://example.com/1>)\n" in markdown
    answer = json.loads(texts["export-json"])["messages"][1]
    assert answer["reasoning"] == "r0 r1 "
    assert answer["sources"][0]["url"] == "https://example.com/1"
    assert answer["thinking_ms"] is not None


async def test_reload_mid_answer_does_not_time_the_replayed_thinking(chat: ChatPage) -> None:
    """After a reload mid-answer, the replayed thinking is not timed by its burst: its time
    shows once the server gives it."""
    await switch_on(chat, "think")
    await chat.send("/fake think=60 tokens=300 delay_ms=20")
    await expect(chat.last_answer.locator(".markdown:not(.reasoning)")).to_contain_text("t5 ")
    await chat.page.reload()
    await chat.wait_connected()
    toggle = chat.last_answer.locator(".thinking-toggle")
    await expect(chat.last_answer.locator(".markdown:not(.reasoning)")).to_contain_text("t20 ")
    await expect(chat.last_answer).to_have_attribute("data-status", "streaming")
    await expect(toggle).to_have_text("Thoughts")
    await chat.wait_answer()
    await expect(toggle).to_have_text(re.compile(r"Thought for \d+ s"))


async def test_the_thinking_budget_goes_with_a_thinking_request(chat: ChatPage) -> None:
    """A thinking budget set under Advanced is sent when the model is asked to think."""
    sent = record_frames(chat)
    await chat.page.reload()  # a socket opened from now on
    await chat.wait_connected()
    await chat.page.locator('[data-action="settings"]').click()
    await chat.page.get_by_text("Advanced").click()
    await chat.page.get_by_label("Thinking budget").fill("64")
    await chat.page.get_by_label("Thinking budget").press("Tab")
    await chat.page.keyboard.press("Escape")
    await switch_on(chat, "think")
    await chat.send("/fake think=2 tokens=1")
    await chat.wait_answer()
    send = next(frame for frame in sent if frame["type"] == "chat.send")
    assert (send["thinking"], send["thinking_budget"]) == (True, 64)
