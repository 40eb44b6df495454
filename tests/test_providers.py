"""The DashScope and OpenAI-compatible providers, run for real against tests/fake_upstream.py."""

from __future__ import annotations

import ast
import asyncio
import graphlib
import itertools
import re
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from hypothesis import given, settings
from hypothesis import strategies as st

import liaotian.providers
from liaotian.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderInterrupted,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from liaotian.providers.base import ChatMessage, ChatRequest, Finish, Provider, StreamItem
from liaotian.providers.dashscope import dashscope_providers
from liaotian.providers.http import parse_retry_after
from liaotian.providers.openai_compat import openai_providers
from liaotian.providers.registry import ProviderContext, ProviderRegistry
from liaotian.providers.sse import SseDecodeError, SseDecoder, SseEvent, iter_sse
from liaotian.settings import Settings
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, count_input_tokens, expected_reply, reply_chunks

KEY = "test-key"
KINDS = ["dashscope", "openai"]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


ProviderFactory = Callable[..., Awaitable[Provider]]


@pytest.fixture
def make_provider(make_settings: SettingsFactory, http: aiohttp.ClientSession) -> ProviderFactory:
    """``await make_provider(kind, **settings_overrides)``: a started provider on the fake."""

    async def make(kind: str, **overrides: Any) -> Provider:
        factory = dashscope_providers if kind == "dashscope" else openai_providers
        [provider] = factory(ProviderContext(make_settings(**overrides), http))
        await provider.start()
        return provider

    return make


def chat(prompt: str, *, stream: bool = True, **options: Any) -> ChatRequest:
    messages = [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "an earlier question"),
        ChatMessage("assistant", "an earlier answer"),
        ChatMessage("user", prompt),
    ]
    return ChatRequest(model="fake-chat", messages=messages, stream=stream, **options)


def input_tokens(request: ChatRequest) -> int:
    return count_input_tokens([{"content": message.content} for message in request.messages])


async def collect(stream: AsyncIterator[StreamItem]) -> tuple[list[str], Finish]:
    """All deltas and the Finish, checking that Finish comes exactly once, last."""
    deltas: list[str] = []
    finishes: list[Finish] = []
    async for item in stream:
        assert not finishes, "an item after Finish"
        if isinstance(item, Finish):
            finishes.append(item)
        else:
            deltas.append(item)
    assert len(finishes) == 1
    return deltas, finishes[0]


async def collect_error(stream: AsyncIterator[StreamItem]) -> tuple[list[str], ProviderError]:
    """The deltas yielded before the stream raised, and the error."""
    deltas: list[str] = []
    try:
        async for item in stream:
            assert isinstance(item, str), f"unexpected {item!r}"
            deltas.append(item)
    except ProviderError as error:
        return deltas, error
    raise AssertionError("the stream did not fail")


# --- streaming


@pytest.mark.parametrize("kind", KINDS)
async def test_streams_the_exact_text_chunk_by_chunk(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Each upstream chunk becomes one delta, in order, with nothing added or lost."""
    provider = await make_provider(kind)
    prompt = "Hello there — 你好, how are you?"
    deltas, _ = await collect(provider.stream(chat(prompt)))
    assert deltas == reply_chunks(prompt)
    assert "".join(deltas) == expected_reply(prompt)


@pytest.mark.parametrize("kind", KINDS)
async def test_finish_carries_usage_and_stop_reason(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """The Finish has the upstream's finish reason and token usage."""
    provider = await make_provider(kind)
    request = chat("count my words please")
    _, finish = await collect(provider.stream(request))
    assert finish.finish_reason == "stop"
    assert finish.usage.input_tokens == input_tokens(request)
    assert finish.usage.output_tokens == len(reply_chunks("count my words please"))


@pytest.mark.parametrize("kind", KINDS)
async def test_max_tokens_reaches_upstream_and_length_is_reported(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """max_tokens is sent, and a cut answer finishes with reason "length"."""
    provider = await make_provider(kind)
    deltas, finish = await collect(provider.stream(chat("[tokens=10]", max_tokens=3)))
    assert deltas == ["t0 ", "t1 ", "t2 "]
    assert finish.finish_reason == "length"


@pytest.mark.parametrize("kind", KINDS)
async def test_non_stream_yields_the_whole_text_once(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """With stream=False the answer is one delta, then Finish with usage."""
    provider = await make_provider(kind)
    request = chat("in one piece", stream=False)
    deltas, finish = await collect(provider.stream(request))
    assert deltas == [expected_reply("in one piece")]
    assert finish.finish_reason == "stop"
    assert finish.usage.input_tokens == input_tokens(request)


async def test_dashscope_request_uses_the_native_sse_format(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """DashScope gets its native body, incremental output and the SSE header."""
    provider = await make_provider("dashscope")
    await collect(provider.stream(chat("hi", temperature=0.5, max_tokens=50)))
    [sent] = fake.requests
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["X-DashScope-SSE"] == "enable"
    assert sent.body["input"]["messages"][-1] == {"role": "user", "content": "hi"}
    assert sent.body["parameters"] == {
        "result_format": "message",
        "incremental_output": True,
        "temperature": 0.5,
        "max_tokens": 50,
    }


async def test_openai_request_asks_for_usage_in_the_stream(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """OpenAI gets stream=true with include_usage, so the Finish can carry usage."""
    provider = await make_provider("openai")
    await collect(provider.stream(chat("hi", temperature=0.2)))
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.2
    assert "max_tokens" not in sent.body


# --- error replies


@pytest.mark.parametrize("kind", KINDS)
async def test_429_raises_rate_limited_with_retry_after(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A 429 becomes ProviderRateLimited carrying the Retry-After seconds."""
    provider = await make_provider(kind)
    deltas, error = await collect_error(provider.stream(chat("[fault=429][retry_after=3]")))
    assert deltas == []
    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == 3.0


@pytest.mark.parametrize("kind", KINDS)
async def test_500_raises_unavailable(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A 5xx reply becomes ProviderUnavailable."""
    provider = await make_provider(kind)
    _, error = await collect_error(provider.stream(chat("[fault=500]")))
    assert isinstance(error, ProviderUnavailable)


@pytest.mark.parametrize("kind", KINDS)
async def test_wrong_key_raises_auth_error(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A rejected key (401) becomes ProviderAuthError, and the key is not in the message."""
    if kind == "dashscope":
        provider = await make_provider(kind, dashscope_api_key="wrong-secret")
    else:  # discovery would already fail, so list the model
        endpoint = {"name": "lab", "base_url": fake.openai_base_url, "api_key": "wrong-secret"}
        provider = await make_provider(
            kind, openai_base_url=None, openai_endpoints=[{**endpoint, "models": ["m"]}]
        )
    _, error = await collect_error(provider.stream(chat("hi")))
    assert isinstance(error, ProviderAuthError)
    assert "wrong-secret" not in str(error)


@pytest.mark.parametrize("kind", KINDS)
async def test_other_4xx_raises_bad_request(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A 400 becomes ProviderBadRequest."""
    provider = await make_provider(kind)
    _, error = await collect_error(provider.stream(chat("[fault=400]")))
    assert isinstance(error, ProviderBadRequest)


@pytest.mark.parametrize("kind", KINDS)
async def test_non_stream_error_reply_is_mapped(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Without streaming, error replies map the same way (here 429 with Retry-After)."""
    provider = await make_provider(kind)
    _, error = await collect_error(provider.stream(chat("[fault=429]", stream=False)))
    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == 2.0


async def test_refused_connection_raises_unavailable(make_provider: ProviderFactory) -> None:
    """Nothing listening at the base URL becomes ProviderUnavailable."""
    with socket.socket() as sock:  # a port that was just free, so nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = await make_provider(
        "dashscope", dashscope_base_url=f"http://127.0.0.1:{port}/api/v1"
    )
    _, error = await collect_error(provider.stream(chat("hi")))
    assert isinstance(error, ProviderUnavailable)


# --- broken streams


@pytest.mark.parametrize("kind", KINDS)
async def test_dropped_connection_fails_after_the_first_chunks(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A connection cut mid-answer raises ProviderInterrupted (the stream ended without
    finishing), after the chunks that did arrive were yielded."""
    provider = await make_provider(kind)
    prompt = "[fault=drop_after=2] a long enough answer"
    deltas, error = await collect_error(provider.stream(chat(prompt)))
    assert deltas == reply_chunks(prompt)[:2]
    assert isinstance(error, ProviderInterrupted), error


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_ending_without_finish_is_interrupted(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A body that ends cleanly but before the finish raises ProviderInterrupted."""
    provider = await make_provider(kind)
    deltas, error = await collect_error(provider.stream(chat("[tokens=5][fault=eof_after=3]")))
    assert deltas == ["t0 ", "t1 ", "t2 "]
    assert isinstance(error, ProviderInterrupted)


@pytest.mark.parametrize("kind", KINDS)
async def test_malformed_data_raises_unavailable(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A data line that is not JSON raises ProviderUnavailable after the good chunk."""
    provider = await make_provider(kind)
    deltas, error = await collect_error(provider.stream(chat("[tokens=5][fault=malformed]")))
    assert deltas == ["t0 "]
    assert isinstance(error, ProviderUnavailable)


async def test_dashscope_error_event_raises_with_its_status(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A DashScope ``event:error`` with ``:HTTP_STATUS/400`` raises ProviderBadRequest."""
    provider = await make_provider("dashscope")
    deltas, error = await collect_error(provider.stream(chat("[tokens=5][fault=stream_error]")))
    assert deltas == ["t0 "]
    assert isinstance(error, ProviderBadRequest)
    assert "DataInspectionFailed" in str(error)


async def test_openai_error_object_in_stream_raises_unavailable(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """An OpenAI ``{"error": {"type": "server_error"}}`` chunk raises ProviderUnavailable."""
    provider = await make_provider("openai")
    deltas, error = await collect_error(provider.stream(chat("[tokens=5][fault=stream_error]")))
    assert deltas == ["t0 "]
    assert isinstance(error, ProviderUnavailable)


# --- timeouts


@pytest.mark.parametrize("kind", KINDS)
async def test_hung_upstream_hits_the_first_token_timeout(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Headers but no event within provider_first_token_timeout raises ProviderTimeout."""
    provider = await make_provider(kind, provider_first_token_timeout=0.3)
    started = asyncio.get_running_loop().time()
    _, error = await collect_error(provider.stream(chat("[fault=hang]")))
    assert isinstance(error, ProviderTimeout)
    assert "first token" in str(error)
    assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize("kind", KINDS)
async def test_silence_between_chunks_hits_the_idle_timeout(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """A gap longer than provider_idle_timeout after the first token raises ProviderTimeout."""
    provider = await make_provider(kind, provider_idle_timeout=0.3)
    deltas, error = await collect_error(provider.stream(chat("[tokens=3][delay=5000]")))
    assert deltas == ["t0 "]
    assert isinstance(error, ProviderTimeout)
    assert "nothing for" in str(error)


async def test_long_answer_hits_the_total_timeout(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """An answer still streaming after provider_total_timeout raises ProviderTimeout."""
    provider = await make_provider("openai", provider_total_timeout=0.5)
    deltas, error = await collect_error(provider.stream(chat("[tokens=1000][delay=20]")))
    assert 0 < len(deltas) < 1000
    assert isinstance(error, ProviderTimeout)
    assert "in total" in str(error)


async def test_non_stream_hang_hits_the_total_timeout(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Without streaming, a hung upstream raises ProviderTimeout at the total timeout."""
    provider = await make_provider("dashscope", provider_total_timeout=0.3)
    _, error = await collect_error(provider.stream(chat("[fault=hang]", stream=False)))
    assert isinstance(error, ProviderTimeout)


async def test_slow_consumer_is_not_upstream_silence(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Time the consumer spends between deltas does not count toward the idle timeout."""
    provider = await make_provider("dashscope", provider_idle_timeout=0.2)
    deltas: list[str] = []
    stream = provider.stream(chat("[tokens=3]"))
    assert isinstance(stream, AsyncGenerator)
    async with aclosing(stream):
        async for item in stream:
            if isinstance(item, str):
                deltas.append(item)
                await asyncio.sleep(0.35)  # the behaviour under test: a consumer this slow
    assert deltas == ["t0 ", "t1 ", "t2 "]


async def test_timeout_leaves_the_task_uncancelled(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """The cancellation a timeout uses internally does not leak into the consuming task."""
    provider = await make_provider("openai", provider_first_token_timeout=0.2)
    _, error = await collect_error(provider.stream(chat("[fault=hang]")))
    assert isinstance(error, ProviderTimeout)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # would raise CancelledError if a cancel were still pending


class ScriptedUpstream:
    """A real HTTP server that answers every chat request, in either dialect, with one
    scripted body: each step is bytes to send, seconds to wait, or None to hang until the
    client goes away. ``accept_only`` never answers at all (not even the headers)."""

    def __init__(self) -> None:
        self.script: list[bytes | float | None] = []
        self.accept_only = False
        self.disconnected = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedUpstream:
        app = web.Application()
        app.router.add_post("/api/v1/services/aigc/text-generation/generation", self._answer)
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake-chat"}]})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        try:
            if self.accept_only:
                await asyncio.Event().wait()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for step in self.script:
                if isinstance(step, bytes):
                    await response.write(step)
                elif step is None:
                    await asyncio.Event().wait()
                else:
                    await asyncio.sleep(step)
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected.set()
            raise


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def make_scripted_provider(
    scripted: ScriptedUpstream, make_settings: SettingsFactory, http: aiohttp.ClientSession
) -> ProviderFactory:
    """``await make_scripted_provider(kind, **settings_overrides)``: a provider on ``scripted``."""

    async def make(kind: str, **overrides: Any) -> Provider:
        settings = make_settings(
            dashscope_base_url=f"{scripted.url}/api/v1",
            openai_base_url=f"{scripted.url}/v1",
            **overrides,
        )
        factory = dashscope_providers if kind == "dashscope" else openai_providers
        [provider] = factory(ProviderContext(settings, http))
        await provider.start()
        return provider

    return make


def dashscope_event(text: str, finish: str = "null", *, newline: bytes = b"\n") -> bytes:
    """One DashScope result event, its lines ending with ``newline``."""
    payload = orjson.dumps(
        {
            "output": {"choices": [{"message": {"content": text}, "finish_reason": finish}]},
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    )
    lines = [b"id:1", b"event:result", b":HTTP_STATUS/200", b"data:" + payload, b"", b""]
    return newline.join(lines)


def openai_event(text: str | None, finish: str | None = None, *, newline: bytes = b"\n") -> bytes:
    """One ``chat.completion.chunk`` event (``text=None``: the usage chunk)."""
    if text is None:
        chunk: dict[str, Any] = {
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    else:
        chunk = {"choices": [{"delta": {"content": text}, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + newline + newline


def answer(kind: str, texts: list[str], *, newline: bytes = b"\n") -> list[bytes]:
    """The whole body of a finished answer made of ``texts``, event by event."""
    if kind == "dashscope":
        return [
            dashscope_event(text, "stop" if i == len(texts) - 1 else "null", newline=newline)
            for i, text in enumerate(texts)
        ]
    return [
        *(
            openai_event(text, "stop" if i == len(texts) - 1 else None, newline=newline)
            for i, text in enumerate(texts)
        ),
        openai_event(None, newline=newline),
        b"data: [DONE]" + newline + newline,
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_keep_alive_comments_do_not_hold_off_the_idle_timeout(
    kind: str, scripted: ScriptedUpstream, make_scripted_provider: ProviderFactory
) -> None:
    """Comments (keep-alives) after the first token are not text: the idle timeout fires."""
    provider = await make_scripted_provider(kind, provider_idle_timeout=0.3)
    scripted.script = [answer(kind, ["a", "b"])[0]] + [b": keep-alive\n\n", 0.05] * 100
    started = asyncio.get_running_loop().time()
    deltas, error = await collect_error(provider.stream(chat("hi")))
    assert deltas == ["a"]
    assert isinstance(error, ProviderTimeout)
    assert "nothing for" in str(error)
    assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize("kind", KINDS)
async def test_no_response_head_hits_the_first_token_timeout_and_leaves_the_task_alone(
    kind: str, scripted: ScriptedUpstream, make_scripted_provider: ProviderFactory
) -> None:
    """An upstream that accepts the request but never answers times out at the first-token
    timeout; the cancellation used inside does not leak into the consuming task."""
    provider = await make_scripted_provider(kind, provider_first_token_timeout=0.3)
    scripted.accept_only = True
    _, error = await collect_error(provider.stream(chat("hi")))
    assert isinstance(error, ProviderTimeout)
    assert "first token" in str(error)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.wait_for(scripted.disconnected.wait(), 5)


@pytest.mark.parametrize("kind", KINDS)
async def test_idle_timeout_closes_the_upstream_connection(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """After an idle timeout the upstream sees its connection go away."""
    provider = await make_provider(kind, provider_idle_timeout=0.3)
    _, error = await collect_error(provider.stream(chat("[tokens=3][delay=5000]")))
    assert isinstance(error, ProviderTimeout)
    await fake.wait_for(lambda stats: stats.disconnects == 1 and stats.streams_open == 0)


async def test_silence_after_the_finish_reason_still_finishes(
    scripted: ScriptedUpstream, make_scripted_provider: ProviderFactory
) -> None:
    """A timeout once the answer is complete (waiting for usage or [DONE]) is not an error."""
    provider = await make_scripted_provider("openai", provider_idle_timeout=0.3)
    scripted.script = [openai_event("done", "stop"), None]
    deltas, finish = await collect(provider.stream(chat("hi")))
    assert deltas == ["done"]
    assert finish.finish_reason == "stop"


@pytest.mark.parametrize("kind", KINDS)
async def test_crlf_answer_sent_one_byte_at_a_time_streams_the_exact_text(
    kind: str, scripted: ScriptedUpstream, make_scripted_provider: ProviderFactory
) -> None:
    """CRLF lines, with every byte (CR and LF apart, UTF-8 sequences cut) in a write of its
    own, give the same deltas, usage and finish."""
    provider = await make_scripted_provider(kind)
    texts = ["你", "好 ", "there"]
    body = b"".join(answer(kind, texts, newline=b"\r\n"))
    scripted.script = [step for byte in body for step in (bytes([byte]), 0.0005)]
    deltas, finish = await collect(provider.stream(chat("hi")))
    assert deltas == texts
    assert finish.finish_reason == "stop"
    assert finish.usage.input_tokens == 3


# --- cancellation


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelling_the_consumer_closes_the_upstream_stream(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Cancelling the task that iterates the stream closes the upstream connection."""
    provider = await make_provider(kind)
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(chat("[tokens=1000][delay=20]")):
            first_delta.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await first_delta.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for(lambda stats: stats.disconnects == 1 and stats.streams_open == 0)
    assert fake.stats.streams_completed == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_closing_the_iterator_closes_the_upstream_stream(
    kind: str, fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """aclose() on the stream after a delta closes the upstream connection."""
    provider = await make_provider(kind)
    stream = provider.stream(chat("[tokens=1000][delay=20]"))
    assert isinstance(stream, AsyncGenerator)
    async with aclosing(stream):
        assert await anext(stream) == "t0 "
    await fake.wait_for(lambda stats: stats.disconnects == 1 and stats.streams_open == 0)


async def test_cancel_while_waiting_for_the_first_token_closes_upstream(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Cancelling before any token (upstream silent) also closes the connection."""
    provider = await make_provider("dashscope")
    task = asyncio.create_task(collect(provider.stream(chat("[fault=hang]"))))
    await fake.wait_for(lambda stats: stats.streams_open == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for(lambda stats: stats.disconnects == 1)


async def test_finished_stream_returns_the_connection_to_the_pool(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """Discovery and consecutive answers reuse one pooled upstream connection."""
    provider = await make_provider("openai")
    await collect(provider.stream(chat("one")))
    await collect(provider.stream(chat("two")))
    assert len(fake.requests) == 3  # /models, then the two answers
    assert len({request.peer for request in fake.requests}) == 1


# --- models


async def test_openai_models_are_discovered(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """start() lists the endpoint's models from GET /models, ids unprefixed."""
    provider = await make_provider("openai")
    models = provider.models()
    assert [model.id for model in models] == fake.models
    assert [model.upstream for model in models] == fake.models
    assert all(model.provider == "openai" and model.available for model in models)


async def test_named_endpoint_prefixes_its_model_ids(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """An endpoint named N exposes N/<id>, sends the raw id upstream, and streams."""
    endpoint = {"name": "lab", "base_url": fake.openai_base_url, "api_key": KEY}
    provider = await make_provider("openai", openai_base_url=None, openai_endpoints=[endpoint])
    models = provider.models()
    assert [model.id for model in models] == ["lab/fake-chat", "lab/fake-mini"]
    assert models[0].upstream == "fake-chat"
    request = ChatRequest(model=models[0].upstream, messages=[ChatMessage("user", "hi")])
    deltas, _ = await collect(provider.stream(request))
    assert "".join(deltas) == expected_reply("hi")
    assert fake.requests[-1].body["model"] == "fake-chat"


async def test_listed_endpoint_models_skip_discovery(
    fake: FakeUpstream, make_provider: ProviderFactory
) -> None:
    """An endpoint with ``models`` set is never asked for /models."""
    endpoint = {"name": "lab", "base_url": fake.openai_base_url, "models": ["a", "b"]}
    provider = await make_provider("openai", openai_base_url=None, openai_endpoints=[endpoint])
    assert [model.id for model in provider.models()] == ["lab/a", "lab/b"]
    assert fake.stats.requests == 0


async def test_discovery_failure_is_recorded_by_the_registry(
    make_settings: SettingsFactory, http: aiohttp.ClientSession
) -> None:
    """A /models failure raises from start(); the registry reports it and lists nothing."""
    settings = make_settings(openai_api_key="wrong")
    [provider] = openai_providers(ProviderContext(settings, http))
    with pytest.raises(ProviderAuthError):
        await provider.start()
    registry = ProviderRegistry([provider])
    await registry.start()
    assert registry.models() == []
    status = registry.status()["openai"]
    assert isinstance(status, dict)
    assert "ProviderAuthError" in status["error"]


def module_imports(path: Path) -> set[str]:
    """The ``liaotian.providers`` modules that ``path`` imports when it is loaded (imports
    inside functions and under ``if TYPE_CHECKING:`` happen later or never)."""
    imported: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    return {name for name in imported if name.startswith("liaotian.providers")}


def test_provider_modules_import_each_other_without_a_cycle() -> None:
    """The registry builds on the interface, which imports nothing of it, and no provider
    module needs itself back while it loads."""
    package = Path(liaotian.providers.__file__).parent
    graph = {
        "liaotian.providers" + ("" if path.stem == "__init__" else f".{path.stem}"): (
            module_imports(path)
        )
        for path in package.glob("*.py")
    }
    assert graph["liaotian.providers.base"] == set()
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    assert order.index("liaotian.providers.base") < order.index("liaotian.providers.registry")


def test_no_openai_configuration_means_no_provider() -> None:
    """Without OPENAI_BASE_URL and endpoints the factory builds nothing."""
    settings = Settings(local_enabled=False)
    assert openai_providers(ProviderContext(settings, http=None)) == []  # type: ignore[arg-type]


async def test_dashscope_without_key_lists_models_as_unavailable(
    http: aiohttp.ClientSession,
) -> None:
    """Without DASHSCOPE_API_KEY the models are listed, unavailable, naming the setting."""
    settings = Settings(local_enabled=False)
    [provider] = dashscope_providers(ProviderContext(settings, http))
    models = provider.models()
    assert [model.id for model in models] == list(settings.dashscope_models)
    assert not any(model.available for model in models)
    with pytest.raises(ProviderNotConfigured, match="qwen3-max needs DASHSCOPE_API_KEY on the"):
        ProviderRegistry([provider]).resolve("qwen3-max")


async def test_dashscope_without_key_refuses_to_stream(http: aiohttp.ClientSession) -> None:
    """Streaming without a key raises ProviderAuthError when iterated, sending nothing."""
    [provider] = dashscope_providers(ProviderContext(Settings(local_enabled=False), http))
    _, error = await collect_error(provider.stream(chat("hi")))
    assert isinstance(error, ProviderAuthError)


# --- the SSE decoder


class ConnectedProtocol(BaseProtocol):
    """A protocol that says it is connected, so a StreamReader can be fed by hand."""

    @property
    def connected(self) -> bool:
        return True


def body_reader() -> StreamReader:
    loop = asyncio.get_running_loop()
    return StreamReader(ConnectedProtocol(loop), 2**16, loop=loop)


async def decode(pieces: list[bytes]) -> list[SseEvent]:
    """Decode ``pieces`` fed to a real aiohttp StreamReader one network read at a time."""
    reader = body_reader()

    class Body:  # all iter_sse reads of a response
        content = reader

    async def feed() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)  # let the decoder take this read on its own
        reader.feed_eof()

    feeder = asyncio.create_task(feed())
    events = [event async for event in iter_sse(Body())]  # type: ignore[arg-type]
    await feeder
    return events


SAMPLE = (
    b'id:1\r\nevent:result\r\n:HTTP_STATUS/200\r\ndata:{"a": 1}\r\n\r\n'
    b": keep-alive\n\n"
    b"data: first line\ndata:  second line\nid: 7\n\n"
    b"event: done\ndata: \xe4\xbd\xa0\xe5\xa5\xbd\n\n"
)
SAMPLE_EVENTS = [
    SseEvent("result", '{"a": 1}', "1", ("HTTP_STATUS/200",)),
    SseEvent("message", "first line\n second line", "7", ()),
    SseEvent("done", "你好", "7", ()),
]


async def test_sse_decodes_crlf_multiline_data_ids_and_comments() -> None:
    """CRLF and LF lines, multi-line data, sticky ids and comment lines decode per spec."""
    assert await decode([SAMPLE]) == SAMPLE_EVENTS


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=12))
async def test_sse_decoding_does_not_depend_on_network_reads(cuts: list[int]) -> None:
    """Splitting the body anywhere (mid-line, mid-CRLF, mid-UTF-8) gives the same events."""
    bounds = [0, *sorted(cuts), len(SAMPLE)]
    pieces = [SAMPLE[start:end] for start, end in itertools.pairwise(bounds)]
    assert await decode([piece for piece in pieces if piece]) == SAMPLE_EVENTS


async def test_sse_drops_an_event_cut_off_by_the_end_of_the_body() -> None:
    """An event without its blank line at EOF is not dispatched."""
    assert await decode([b"data: whole\n\ndata: partial\n"]) == [
        SseEvent("message", "whole", None, ())
    ]


async def test_sse_rejects_an_endless_line() -> None:
    """A line longer than the event limit raises SseDecodeError instead of buffering forever."""
    reader = body_reader()
    reader.feed_data(b"data: " + b"x" * 2000)

    class Body:
        content = reader

    with pytest.raises(SseDecodeError):
        async for _ in iter_sse(Body(), max_event_bytes=1000):  # type: ignore[arg-type]
            pass


def feed_all(pieces: Iterable[bytes], **options: Any) -> list[SseEvent]:
    """Decode ``pieces`` with one SseDecoder, one feed per piece."""
    decoder = SseDecoder(**options)
    return [event for piece in pieces for event in decoder.feed(piece)]


async def test_sse_decoding_survives_one_byte_per_read() -> None:
    """Every byte in a network read of its own (CRLF, UTF-8 split everywhere) changes nothing."""
    one_by_one = [SAMPLE[i : i + 1] for i in range(len(SAMPLE))]
    assert await decode(one_by_one) == SAMPLE_EVENTS
    assert feed_all(one_by_one) == SAMPLE_EVENTS


def test_sse_crlf_stream_decodes_the_same_wherever_it_is_cut() -> None:
    """A stream of CRLF lines and CRLF blank lines gives the same events cut at any byte."""
    body = b"id: 1\r\nevent: result\r\ndata: a\r\ndata: b\r\n\r\n: ping\r\n\r\ndata: c\r\n\r\n"
    expected = [SseEvent("result", "a\nb", "1", ()), SseEvent("message", "c", "1", ())]
    for cut in range(len(body) + 1):
        assert feed_all([body[:cut], body[cut:]]) == expected, cut


def test_sse_keeps_a_bare_cr_as_text() -> None:
    """A CR without its LF is part of the line, even right before a CRLF, wherever cut."""
    body = b"data: a\rb\r\r\n\r\n"
    for cut in range(len(body) + 1):
        assert feed_all([body[:cut], body[cut:]]) == [SseEvent("message", "a\rb\r", None, ())]


def test_sse_blank_line_runs_and_events_without_data_dispatch_nothing() -> None:
    """Extra blank lines, comment-only blocks and data-less events dispatch nothing and leave
    no event type or comment behind for the next event."""
    body = b"\n\n\n: only a comment\n\n\n\nevent: x\n\n\ndata: one\n\n\n\ndata: two\n\n"
    expected = [SseEvent("message", "one", None, ()), SseEvent("message", "two", None, ())]
    assert feed_all([body]) == expected
    assert feed_all([body[i : i + 1] for i in range(len(body))]) == expected


def test_sse_dispatches_every_event_of_one_read_in_order() -> None:
    """A read holding many events (a burst after a stall) yields all of them, in order."""
    body = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(100))
    assert feed_all([body]) == [SseEvent("message", str(i), str(i), ()) for i in range(100)]


def test_sse_skips_a_byte_order_mark_split_across_reads() -> None:
    """A leading byte-order mark is skipped even when it arrives a byte at a time."""
    body = b"\xef\xbb\xbfdata: x\n\n"
    for pieces in ([body], [body[:1], body[1:2], body[2:]], [body[:2], body[2:]]):
        assert feed_all(pieces) == [SseEvent("message", "x", None, ())]


def reference_events(body: bytes) -> list[SseEvent]:
    """The WHATWG SSE algorithm written line by line, as plainly as possible: the oracle.

    Lines end with LF or CRLF (not a bare CR, as the decoder documents); an unterminated
    last line and an event without its blank line are dropped."""
    text = body.decode("utf-8", "replace").removeprefix("\ufeff")
    events: list[SseEvent] = []
    data: list[str] = []
    event_type, last_id, comments = "", None, []
    for line in re.split(r"\r?\n", text)[:-1]:
        if not line:
            if data:
                events.append(
                    SseEvent(event_type or "message", "\n".join(data), last_id, tuple(comments))
                )
            data, event_type, comments = [], "", []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not field:
            comments.append(value)
        elif field == "data":
            data.append(value)
        elif field == "event":
            event_type = value
        elif field == "id" and "\0" not in value:
            last_id = value
    return events


SSE_ATOMS = [
    b"data:", b"data: ", b"data", b"event:", b"event: e", b"id:", b"id: 5", b"id:\0",
    b":", b": c", b"retry: 3", b"\r", b"\n", b"\r\n", b"\n\n", b" ", b"x",
    b"\xe4\xbd\xa0", b"\xef\xbb\xbf", b"\xff",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from(SSE_ATOMS), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_sse_decoder_agrees_with_a_line_by_line_reference(body: bytes, cuts: list[int]) -> None:
    """Any body of SSE fragments, cut into any reads, decodes as the plain algorithm says."""
    bounds = [0, *sorted(min(cut, len(body)) for cut in cuts), len(body)]
    pieces = [body[start:end] for start, end in itertools.pairwise(bounds)]
    assert feed_all(pieces) == reference_events(body)


# --- Retry-After


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After is read as seconds or an HTTP date; retry-after-ms wins; junk is None."""
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert 25 < (parse_retry_after({"Retry-After": soon}) or 0) <= 30
    assert parse_retry_after({"Retry-After": "7", "retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
