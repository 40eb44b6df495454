"""/v1/responses against a real server and the fake upstream, through the official SDK
(raw HTTP for malformed requests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from tests.cluster import Cluster, create_user, run_cluster
from tests.conftest import SettingsFactory, fresh_postgres_database
from tests.fake_upstream import (
    DASHSCOPE_PATH,
    FakeUpstream,
    expected_reasoning,
    expected_reply,
    message_text,
)
from tests.server_harness import RunningServer, reply_finished, run_server
from tests.wsclient import RawClient, of_type

MODEL = "qwen-plus"
SLOW = "[tokens=40] [delay=15]"
SLOW_TEXT = "".join(f"t{n} " for n in range(40))
ENDLESS = "[tokens=2000] [delay=20]"


def sdk(base_url: str, key: str = "alice") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[AsyncOpenAI]:
    async with sdk(server.http_url) as api:
        yield api


async def collect(stream: Any, limit: int | None = None) -> list[Any]:
    """The stream's events (the first ``limit`` of them, then the stream is closed)."""
    events = []
    async for event in stream:
        events.append(event)
        if limit is not None and len(events) == limit:
            break
    await stream.close()
    return events


def text_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def upstream_messages(fake: FakeUpstream) -> list[tuple[str, str]]:
    """The (role, text) messages of the last answer the fake upstream was asked for."""
    request = [r for r in fake.requests if r.path.endswith(DASHSCOPE_PATH.split("/api")[1])][-1]
    return [(m["role"], message_text(m)) for m in request.body["input"]["messages"]]


async def conversations(server: RunningServer, owner: str = "alice") -> list[dict[str, Any]]:
    """The owner's conversations as the page lists them."""
    ws = await RawClient.open(f"{server.ws_url}?client_id={owner}")
    await ws.recv()  # hello
    await ws.send({"type": "conversations.list"})
    listed: list[dict[str, Any]] = (await ws.until(of_type("conversations")))[-1]["conversations"]
    await ws.close()
    return listed


async def stored_conversations(server: RunningServer, owner: str = "alice") -> int:
    """How many conversations the owner has, archived ones included."""
    store = server.services.store
    kept, _ = await store.list_conversations(owner, limit=100)
    archived, _ = await store.list_conversations(owner, limit=100, archived=True)
    return len(kept) + len(archived)


async def post(server: RunningServer, body: bytes | dict[str, Any], **headers: str) -> Any:
    """A raw POST /v1/responses: (status, JSON answer)."""
    data = body if isinstance(body, bytes) else None
    json_ = None if isinstance(body, bytes) else body
    headers = {"Authorization": "Bearer alice", "Content-Type": "application/json", **headers}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.http_url}/v1/responses", data=data, json=json_, headers=headers
        ) as answer,
    ):
        return answer.status, await answer.json()


# -- answers -----------------------------------------------------------------------------------


async def test_non_stream_answer_is_the_models_text(client: AsyncOpenAI) -> None:
    """A plain create returns the completed response with the model's text and usage."""
    response = await client.responses.create(model=MODEL, input="hello there")
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == expected_reply("hello there")
    assert response.usage is not None
    assert response.usage.output_tokens > 0


async def test_stream_text_and_contiguous_sequence_numbers(client: AsyncOpenAI) -> None:
    """A stream's deltas make the text; sequence numbers run 0..n-1; it ends completed."""
    events = await collect(
        await client.responses.create(model=MODEL, input="stream me", stream=True)
    )
    assert text_of(events) == expected_reply("stream me")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == expected_reply("stream me")


async def test_reasoning_streams_as_reasoning_text(client: AsyncOpenAI) -> None:
    """reasoning.effort turns thinking on: reasoning_text deltas, then a reasoning item."""
    prompt = "[think=3] why"
    events = await collect(
        await client.responses.create(
            model=MODEL, input=prompt, reasoning={"effort": "low"}, stream=True
        )
    )
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert reasoning == expected_reasoning(prompt)
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output_text == expected_reply(prompt)


async def test_the_sdks_stream_helper_assembles_the_response(client: AsyncOpenAI) -> None:
    """responses.stream() accepts the events (its checks of item identities pass)."""
    async with client.responses.stream(
        model=MODEL, input="[think=2] helper", reasoning={"effort": "high"}
    ) as stream:
        final = await stream.get_final_response()
    assert final.output_text == expected_reply("[think=2] helper")
    assert final.status == "completed"


async def test_a_failed_answer_is_an_error_without_stream(client: AsyncOpenAI) -> None:
    """Without a stream, a provider failure is the HTTP error of its fault."""
    with pytest.raises(openai.BadRequestError) as failed:
        await client.responses.create(model=MODEL, input="[fault=400] no")
    assert failed.value.code == "provider_bad_request"


async def test_a_failed_stream_ends_with_response_failed(client: AsyncOpenAI) -> None:
    """In a stream, a provider failure ends it with response.failed and the error."""
    events = await collect(
        await client.responses.create(model=MODEL, input="[fault=400] no", stream=True)
    )
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None
    assert events[-1].response.error.code == "provider_bad_request"


async def test_input_messages_and_instructions_reach_the_model(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    """Earlier messages are given whole; system items join the instructions."""
    await client.responses.create(
        model=MODEL,
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Use English."},
            {"role": "user", "content": "my name is Ann"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hi Ann"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "who am I?"}]},
        ],
    )
    assert upstream_messages(fake) == [
        ("system", "Be brief.\n\nUse English."),
        ("user", "my name is Ann"),
        ("assistant", "Hi Ann"),
        ("user", "who am I?"),
    ]


# -- continuing -------------------------------------------------------------------------------


async def test_previous_response_id_continues_one_conversation(
    server: RunningServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    """The model sees the earlier turn, and the page lists one conversation."""
    first = await client.responses.create(model=MODEL, input="first turn")
    second = await client.responses.create(
        model=MODEL, input="second turn", previous_response_id=first.id
    )
    assert upstream_messages(fake) == [
        ("user", "first turn"),
        ("assistant", expected_reply("first turn")),
        ("user", "second turn"),
    ]
    assert second.previous_response_id == first.id
    assert second.conversation is not None
    assert first.conversation is not None
    assert second.conversation.id == first.conversation.id
    assert [c["id"] for c in await conversations(server)] == [first.conversation.id]


async def test_conversation_continues_a_page_conversation(
    server: RunningServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    """conversation= answers below the page conversation's newest message."""
    ws = await RawClient.open(f"{server.ws_url}?client_id=alice")
    await ws.recv()
    await ws.send({"type": "chat.send", "id": "s", "message": "from the page"})
    started = (await ws.until(of_type("reply.started")))[-1]
    await ws.until(of_type("reply.done"))
    await ws.close()
    response = await client.responses.create(
        model=MODEL, input="from the API", conversation=started["conversation_id"]
    )
    assert response.conversation is not None
    assert response.conversation.id == started["conversation_id"]
    assert response.previous_response_id == "resp_" + started["message_id"]
    assert upstream_messages(fake)[0] == ("user", "from the page")


async def test_an_older_previous_response_id_branches(
    client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    """Continuing from an answer that is not the newest starts a branch below it."""
    first = await client.responses.create(model=MODEL, input="root")
    await client.responses.create(model=MODEL, input="branch one", previous_response_id=first.id)
    await client.responses.create(model=MODEL, input="branch two", previous_response_id=first.id)
    assert upstream_messages(fake) == [
        ("user", "root"),
        ("assistant", expected_reply("root")),
        ("user", "branch two"),
    ]


async def test_store_false_is_not_retrievable_and_leaves_nothing(
    server: RunningServer, client: AsyncOpenAI
) -> None:
    """An unstored response answers but cannot be read, even while it streams, and no
    conversation remains."""
    stream = await client.responses.create(model=MODEL, input=SLOW, store=False, stream=True)
    events = []
    async for event in stream:
        events.append(event)
        if len(events) == 6:
            with pytest.raises(openai.NotFoundError):
                await client.responses.retrieve(events[0].response.id)
    assert text_of(events) == SLOW_TEXT
    assert events[-1].response.store is False
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(events[0].response.id)
    await server.services.engine.forget_pending()
    assert await stored_conversations(server) == 0


# -- background, resuming, cancelling ---------------------------------------------------------


async def test_background_stream_resumes_exactly_after_a_cut(client: AsyncOpenAI) -> None:
    """Cut after K events, retrieve with starting_after: no gap, no duplicate, whole text."""
    cut = 9
    stream = await client.responses.create(model=MODEL, input=SLOW, background=True, stream=True)
    head = await collect(stream, limit=cut)
    response_id = head[0].response.id
    rest = await collect(
        await client.responses.retrieve(
            response_id, stream=True, starting_after=head[-1].sequence_number
        )
    )
    events = head + rest
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert text_of(events) == SLOW_TEXT
    assert events[-1].type == "response.completed"


async def test_background_without_stream_returns_at_once(client: AsyncOpenAI) -> None:
    """background: the create returns in_progress; the answer completes on its own."""
    response = await client.responses.create(model=MODEL, input=SLOW, background=True)
    assert response.status == "in_progress"
    assert response.background is True
    events = await collect(await client.responses.retrieve(response.id, stream=True))
    assert events[-1].response.status == "completed"
    assert (await client.responses.retrieve(response.id)).output_text == SLOW_TEXT


async def test_cancel_stops_the_provider(
    server: RunningServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    """Cancelling a background response closes the upstream; GET then says cancelled."""
    response = await client.responses.create(model=MODEL, input=ENDLESS, background=True)
    await fake.wait_for(lambda s: s.streams_open == 1)
    cancelled = await client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    await fake.wait_for(lambda s: s.disconnects >= 1)
    assert (await client.responses.retrieve(response.id)).status == "cancelled"
    again = await client.responses.cancel(response.id)  # idempotent
    assert again.status == "cancelled"


async def test_closing_a_foreground_stream_cancels_the_answer(
    server: RunningServer, client: AsyncOpenAI, fake: FakeUpstream
) -> None:
    """A client that leaves a non-background stream cancels the answer at the provider."""
    stream = await client.responses.create(model=MODEL, input=ENDLESS, stream=True)
    head = await collect(stream, limit=6)
    await fake.wait_for(lambda s: s.disconnects >= 1)
    reply_id = head[0].response.id.removeprefix("resp_")
    await reply_finished(server, "alice", reply_id)
    assert (await client.responses.retrieve(head[0].response.id)).status == "cancelled"


async def test_leaving_a_non_stream_request_cancels_the_answer(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A client that gives up waiting for a non-stream answer cancels it at the provider."""
    waiting = asyncio.create_task(post(server, {"model": MODEL, "input": ENDLESS}))
    await fake.wait_for(lambda s: s.streams_open == 1)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await fake.wait_for(lambda s: s.disconnects >= 1)


async def test_a_finished_response_streams_again_whole(client: AsyncOpenAI) -> None:
    """GET ?stream=true of an ended response replays every event, numbered as before."""
    events = await collect(await client.responses.create(model=MODEL, input="again", stream=True))
    replay = await collect(await client.responses.retrieve(events[0].response.id, stream=True))
    assert [(e.type, e.sequence_number) for e in replay] == [
        (e.type, e.sequence_number) for e in events
    ]


async def test_a_rebuilt_response_resumes_with_its_terminal_event(
    make_settings: SettingsFactory,
) -> None:
    """Once the log is gone, a resume sends only the terminal event, numbered after N."""
    async with (
        run_server(make_settings(reply_log_ttl=0)) as server,
        sdk(server.http_url) as client,
    ):
        response = await client.responses.create(model=MODEL, input="old one")
        # A second reply expires the first one's log (expiry runs when a log is created).
        await client.responses.create(model=MODEL, input="newer")
        events = await collect(
            await client.responses.retrieve(response.id, stream=True, starting_after=3)
        )
    assert [(e.type, e.sequence_number) for e in events] == [("response.completed", 4)]
    assert events[0].response.output_text == expected_reply("old one")


# -- refusals ---------------------------------------------------------------------------------


async def test_unknown_response_is_404(client: AsyncOpenAI) -> None:
    """An unknown or malformed id is 404 for GET and cancel."""
    for response_id in ("resp_0123456789abcdef", "nothing"):
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response_id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.cancel(response_id)


async def test_unknown_previous_response_and_conversation_are_404(client: AsyncOpenAI) -> None:
    """Continuing what does not exist is 404, naming the parameter."""
    with pytest.raises(openai.NotFoundError) as missing:
        await client.responses.create(model=MODEL, input="x", previous_response_id="resp_nope")
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.responses.create(model=MODEL, input="x", conversation="nope")
    assert unknown.value.body["param"] == "conversation"  # type: ignore[index]


@pytest.fixture
async def accounts(
    make_settings: SettingsFactory, database_url: str
) -> AsyncIterator[tuple[RunningServer, dict[str, str]]]:
    tokens = {name: await create_user(database_url, name) for name in ("alice", "bob")}
    async with run_server(make_settings()) as server:
        yield server, tokens


async def test_another_owners_response_is_404(
    accounts: tuple[RunningServer, dict[str, str]],
) -> None:
    """bob can neither read, stream, cancel nor continue alice's response."""
    server, tokens = accounts
    async with (
        sdk(server.http_url, tokens["alice"]) as alice,
        sdk(server.http_url, tokens["bob"]) as bob,
    ):
        response = await alice.responses.create(model=MODEL, input=ENDLESS, background=True)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(response.id, stream=True)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.cancel(response.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.create(model=MODEL, input="x", previous_response_id=response.id)
        assert (await alice.responses.cancel(response.id)).status == "cancelled"


async def test_without_a_valid_token_is_401(
    accounts: tuple[RunningServer, dict[str, str]],
) -> None:
    """With accounts, no or a wrong token is 401."""
    server, _ = accounts
    async with sdk(server.http_url, "not-a-token") as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.responses.create(model=MODEL, input="x")
    status, answer = await post(server, {"model": MODEL, "input": "x"}, Authorization="")
    assert (status, answer["error"]["code"]) == (401, "missing_api_key")


BASE = {"model": MODEL, "input": "x"}
IMAGE = {"type": "input_image", "image_url": "https://a.example/a.png"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({**BASE, "stream": "yes"}, "stream", "invalid_value"),
        ({**BASE, "model": 7}, "model", "invalid_value"),
        ({"model": MODEL}, "input", "invalid_value"),
        ({**BASE, "max_output_tokens": "9"}, "max_output_tokens", "invalid_value"),
        ({**BASE, "reasoning": {"effort": "max"}}, "reasoning.effort", "invalid_value"),
        ({**BASE, "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
        ({**BASE, "input": [{"role": "assistant", "content": "x"}]}, "input", "invalid_value"),
        (
            {**BASE, "input": [{"role": "user", "content": [IMAGE]}]},
            "input[0].content[0].type",
            "unsupported_content",
        ),
        ({**BASE, "tools": [{"type": "web_search"}]}, "tools", "unsupported_parameter"),
        (
            {**BASE, "text": {"format": {"type": "json_object"}}},
            "text.format",
            "unsupported_parameter",
        ),
        ({**BASE, "background": True, "store": False}, "store", "invalid_value"),
        (
            {**BASE, "previous_response_id": "resp_a", "conversation": "c"},
            "conversation",
            "invalid_value",
        ),
        ({**BASE, "store": False, "conversation": "c"}, "store", "invalid_value"),
    ],
)
async def test_invalid_requests_are_400_naming_the_parameter(
    server: RunningServer, body: dict[str, Any], param: str, code: str
) -> None:
    """A wrong field is refused with 400, its param and code, and nothing is stored."""
    status, answer = await post(server, body)
    assert status == 400
    assert (answer["error"]["param"], answer["error"]["code"]) == (param, code)
    assert await stored_conversations(server) == 0


async def test_bad_json_is_400(server: RunningServer) -> None:
    """A body that is not JSON is 400 invalid_json."""
    status, answer = await post(server, b'{"model": ')
    assert (status, answer["error"]["code"]) == (400, "invalid_json")


async def test_unknown_model_is_404_and_stores_nothing(server: RunningServer) -> None:
    """An unknown model is 404 model_not_found and leaves no conversation."""
    status, answer = await post(server, {"model": "gpt-9", "input": "x"})
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (
        404,
        "model_not_found",
        "model",
    )
    assert await stored_conversations(server) == 0


async def test_oversized_body_is_413(make_settings: SettingsFactory) -> None:
    """A body over max_api_body_bytes is 413."""
    async with run_server(make_settings(max_api_body_bytes=4096)) as server:
        status, answer = await post(server, {"model": MODEL, "input": "x" * 5000})
    assert (status, answer["error"]["code"]) == (413, "request_too_large")


async def test_a_busy_conversation_is_409(client: AsyncOpenAI) -> None:
    """A second answer in a conversation that streams one is 409."""
    first = await client.responses.create(model=MODEL, input=ENDLESS, background=True)
    assert first.conversation is not None
    with pytest.raises(openai.ConflictError):
        await client.responses.create(model=MODEL, input="x", conversation=first.conversation.id)
    await client.responses.cancel(first.id)


# -- several processes ------------------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path, fake: FakeUpstream) -> AsyncIterator[Cluster]:
    async with (
        fresh_postgres_database() as url,
        run_cluster(tmp_path, url, fake.dashscope_base_url, count=2) as running,
    ):
        yield running


@pytest.mark.scaleout
async def test_resume_on_another_process_is_exact(cluster: Cluster) -> None:
    """Start a background stream on process A, cut it, resume on B: no gap, no duplicate."""
    a, b = (server.http_url for server in cluster.servers)
    async with sdk(a, cluster.token) as on_a, sdk(b, cluster.token) as on_b:
        stream = await on_a.responses.create(model=MODEL, input=SLOW, background=True, stream=True)
        head = await collect(stream, limit=9)
        rest = await collect(
            await on_b.responses.retrieve(
                head[0].response.id, stream=True, starting_after=head[-1].sequence_number
            )
        )
        events = head + rest
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert text_of(events) == SLOW_TEXT
        cancelled = await on_b.responses.create(model=MODEL, input=ENDLESS, background=True)
        assert (await on_a.responses.cancel(cancelled.id)).status == "cancelled"


@pytest.mark.scaleout
async def test_an_unstored_response_is_not_found_on_another_process_while_it_streams(
    cluster: Cluster,
) -> None:
    """store: false streaming on process A is 404 on process B too (not a failed one)."""
    a, b = (server.http_url for server in cluster.servers)
    async with sdk(a, cluster.token) as on_a, sdk(b, cluster.token) as on_b:
        stream = await on_a.responses.create(model=MODEL, input=SLOW, stream=True, store=False)
        events = []
        async for event in stream:
            events.append(event)
            if len(events) == 3:  # streaming now: ask the other process
                with pytest.raises(openai.NotFoundError):
                    await on_b.responses.retrieve(events[0].response.id)
        assert events[-1].type == "response.completed"
        assert text_of(events) == SLOW_TEXT
