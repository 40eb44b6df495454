"""The Python client's reply parts (thinking, sources, answer text), options and
capabilities, against a real server whose ``fake-echo`` model thinks and searches on cue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from liaotian.client import (
    Client,
    ReasoningDelta,
    Reply,
    ReplyPart,
    SourcesPart,
    TextDelta,
    error_from_frame,
)
from liaotian.errors import UnsupportedCapability
from liaotian.providers.fake import FAKE_MODEL_ID
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reasoning, expected_reply
from tests.server_harness import RunningServer, run_server
from tests.tcp_proxy import TcpProxy
from tests.test_attachments import png

TIMEOUT = 20.0
QUESTION = "/fake think=4 sources=2\nwhat is new"
ANSWER = "what is new [1] [2]"
THOUGHTS = "r0 r1 r2 r3 "


@pytest.fixture
async def fake_server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings(fake_provider=True, provider_retries=0)) as running:
        yield running


@pytest.fixture
async def client(fake_server: RunningServer) -> AsyncIterator[Client]:
    async with Client(fake_server.http_url, client_id="alice", request_timeout=TIMEOUT) as c:
        yield c


async def all_parts(reply: Reply) -> list[ReplyPart]:
    async with asyncio.timeout(TIMEOUT):
        return [part async for part in reply.parts()]


async def ask(client: Client, message: str = QUESTION, **options: Any) -> Reply:
    options = {"thinking": True, "search": True, **options}
    return await client.send(message, model=FAKE_MODEL_ID, **options)


async def test_parts_come_apart_and_the_text_joins_to_the_answer(client: Client) -> None:
    """Thinking, sources and text come as their own parts, in order; the text parts join
    into exactly the answer and the thinking ones into exactly the thinking."""
    parts = await all_parts(await ask(client))
    kinds = [type(part).__name__ for part in parts]
    assert kinds == sorted(kinds, key=["ReasoningDelta", "SourcesPart", "TextDelta"].index)
    assert "".join(p.text for p in parts if isinstance(p, ReasoningDelta)) == THOUGHTS
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == ANSWER
    [sources] = [part for part in parts if isinstance(part, SourcesPart)]
    assert [(s["index"], s["url"]) for s in sources.sources] == [
        (1, "https://example.com/1"),
        (2, "https://example.com/2"),
    ]


async def test_iterating_a_reply_yields_only_the_answer_text(client: Client) -> None:
    """``async for text in reply`` yields answer text only, never the thinking."""
    reply = await ask(client)
    async with asyncio.timeout(TIMEOUT):
        texts = [text async for text in reply]
    assert "".join(texts) == ANSWER


async def test_result_carries_reasoning_sources_and_thinking_time(client: Client) -> None:
    """The result has the reasoning, the sources, thinking_ms and reasoning tokens."""
    reply = await ask(client)
    async with asyncio.timeout(TIMEOUT):
        result = await reply.result()
    assert (result.text, result.reasoning) == (ANSWER, THOUGHTS)
    assert [source["title"] for source in result.sources] == ["Source 1", "Source 2"]
    assert result.thinking_ms is not None
    assert result.reasoning_tokens == 4
    assert (reply.thinking, reply.search) == (True, True)


async def test_without_thinking_or_search_there_are_no_such_parts(client: Client) -> None:
    """thinking=False and no search: only the answer text, no reasoning, no sources."""
    reply = await ask(client, thinking=False, search=None)
    async with asyncio.timeout(TIMEOUT):
        result = await reply.result()
    assert (result.text, result.reasoning, result.sources) == ("what is new", None, ())
    assert result.thinking_ms is None
    assert reply.thinking is False


async def test_resume_across_a_cut_during_thinking_is_exact(fake_server: RunningServer) -> None:
    """Cut the network while the model thinks: after the reconnect the thinking, the
    sources and the text go on with no gap and no duplicate."""
    question = "/fake think=60 delay_ms=10 sources=2\nwhat is new"
    async with (
        TcpProxy(fake_server.port) as proxy,
        Client(f"ws://127.0.0.1:{proxy.port}", client_id="alice", request_timeout=TIMEOUT) as c,
    ):
        reply = await ask(c, question)
        parts: list[ReplyPart] = []
        async with asyncio.timeout(TIMEOUT):
            async for part in reply.parts():
                parts.append(part)
                if len(parts) == 1:  # the first thought: 60 more take 600 ms to come
                    assert isinstance(part, ReasoningDelta)
                    proxy.cut()
        result = await reply.result()
    assert c.reconnects >= 1
    thoughts = "".join(f"r{i} " for i in range(60))
    assert "".join(p.text for p in parts if isinstance(p, ReasoningDelta)) == thoughts
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == ANSWER
    assert len([part for part in parts if isinstance(part, SourcesPart)]) == 1
    assert (result.reasoning, result.text, len(result.sources)) == (thoughts, ANSWER, 2)


async def test_history_returns_each_message_with_its_parts(client: Client) -> None:
    """conversation.history gives the answer's reasoning, sources and thinking time."""
    reply = await ask(client)
    await asyncio.wait_for(reply.result(), TIMEOUT)
    page = await client.history(reply.conversation_id)
    answer = page["messages"][-1]
    assert (answer["content"], answer.get("reasoning")) == (ANSWER, THOUGHTS)
    assert [source["url"] for source in answer.get("sources", [])] == [
        "https://example.com/1",
        "https://example.com/2",
    ]
    assert answer.get("thinking_ms") is not None


async def test_models_carry_their_capabilities(client: Client) -> None:
    """models() lists what each model can do."""
    listing = await client.models()
    [echo] = [model for model in listing["models"] if model["id"] == FAKE_MODEL_ID]
    capabilities = echo.get("capabilities")
    assert capabilities is not None
    assert (capabilities["vision"], capabilities["thinking"], capabilities["search"]) == (
        True,
        True,
        True,
    )


async def test_asking_a_model_beyond_its_capabilities_raises_a_typed_error(
    client: Client,
) -> None:
    """Thinking asked of a model that cannot think raises UnsupportedCapability naming it."""
    with pytest.raises(UnsupportedCapability) as refused:
        await client.send("hi", model="fake-mini", thinking=True)
    assert refused.value.capability == "thinking"


def test_an_unsupported_capability_frame_keeps_its_capability() -> None:
    """error_from_frame builds UnsupportedCapability with the frame's capability."""
    error = error_from_frame(
        {"code": "unsupported_capability", "message": "no eyes", "capability": "vision"}
    )
    assert isinstance(error, UnsupportedCapability)
    assert (error.capability, error.message) == ("vision", "no eyes")


# -- a reply sent again from its start -------------------------------------------------------


async def test_a_reply_rebuilt_from_its_start_is_not_yielded_twice() -> None:
    """When a resumed reply comes again from reply.started (its log rebuilt), iterators go
    on from where they were, and the reply's parts are the rebuilt ones, not doubled."""
    connections = 0
    event = {"conversation_id": "c1", "message_id": "m1"}

    async def handler(connection: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        await connection.send(orjson.dumps({"type": "hello", "protocol": 1}).decode())
        async for data in connection:
            frame = orjson.loads(data)
            frames: list[dict[str, Any]] = [
                {"type": "reply.started", "id": frame["id"], "seq": 0, "model": "x"},
                {"type": "reply.reasoning", "seq": 1, "text": "think"},
                {"type": "reply.delta", "seq": 2, "text": "Hel"},
            ]
            if not first:  # rebuilt from the database: one part of each, then done
                frames[1:] = [
                    {"type": "reply.reasoning", "seq": 1, "text": "thinking"},
                    {"type": "reply.delta", "seq": 2, "text": "Hello"},
                    {"type": "reply.done", "seq": 3, "status": "completed"},
                ]
            for item in frames:
                await connection.send(orjson.dumps({**event, **item}).decode())
            if first:
                connection.transport.abort()

    async with (
        serve(handler, "127.0.0.1", 0) as ws_server,
        Client(f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}", client_id="a") as c,
    ):
        reply = await c.send("hi")
        parts = await all_parts(reply)
        result = await reply.result()
    assert reply.replaced
    assert "".join(p.text for p in parts if isinstance(p, ReasoningDelta)) == "thinking"
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == "Hello"
    assert (result.reasoning, result.text) == ("thinking", "Hello")


async def test_images_are_uploaded_and_sent_with_the_message(client: Client) -> None:
    """images= uploads each image first and sends their ids: the model sees them, and the
    reply names them as the user's attachments."""
    reply = await client.send("what are these?", model=FAKE_MODEL_ID, images=[png(), png(8, 8)])
    async with asyncio.timeout(TIMEOUT):
        result = await reply.result()
    assert result.text == "(2 images) what are these?"
    assert [image["media_type"] for image in reply.user_attachments] == ["image/png"] * 2


async def test_a_dashscope_model_gives_the_same_parts(server: RunningServer) -> None:
    """Through the DashScope dialect (the fake upstream): thinking, sources and text come
    apart, each exactly as the upstream sent it."""
    prompt = "[think=5][search=2] tell me"
    async with Client(server.http_url, client_id="alice", request_timeout=TIMEOUT) as client:
        reply = await client.send(prompt, model="qwen-plus", thinking=True, search=True)
        async with asyncio.timeout(TIMEOUT):
            texts = [text async for text in reply]
            result = await reply.result()
    assert "".join(texts) == result.text == expected_reply(prompt)
    assert result.reasoning == expected_reasoning(prompt)
    assert [(s["index"], s["url"], s["site"]) for s in result.sources] == [
        (i, f"https://site{i}.example/page", f"Site {i}") for i in (1, 2)
    ]


async def test_parts_of_unknown_kinds_are_skipped_but_counted() -> None:
    """An event type the client does not know (a future part) is not yielded, and its seq
    still counts: last_seq is the reply's last event."""
    event = {"conversation_id": "c1", "message_id": "m1"}

    async def handler(connection: ServerConnection) -> None:
        await connection.send(orjson.dumps({"type": "hello", "protocol": 1}).decode())
        async for data in connection:
            frames: list[dict[str, Any]] = [
                {"type": "reply.started", "id": orjson.loads(data)["id"], "seq": 0},
                {"type": "reply.tool_call", "seq": 1, "name": "clock"},
                {"type": "reply.delta", "seq": 2, "text": "noon"},
                {"type": "reply.done", "seq": 3, "status": "completed"},
            ]
            for item in frames:
                await connection.send(orjson.dumps({**event, **item}).decode())

    async with (
        serve(handler, "127.0.0.1", 0) as ws_server,
        Client(f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}", client_id="a") as c,
    ):
        reply = await c.send("what time is it?")
        parts = await all_parts(reply)
    assert parts == [TextDelta("noon")]
    assert reply.last_seq == 3
