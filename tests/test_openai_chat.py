"""POST /v1/chat/completions against a real server, the fake upstream and the official SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai import AsyncOpenAI

from liaotian.replies.status import ReplyStatus
from tests.cluster import create_user
from tests.conftest import SettingsFactory
from tests.fake_upstream import (
    OPENAI_MODELS_PATH,
    FakeUpstream,
    count_input_tokens,
    expected_reasoning,
    expected_reply,
    reply_chunks,
)
from tests.server_harness import RunningServer, reply_finished, run_server
from tests.test_auth import open_with
from tests.wsclient import RawClient

MODEL = "qwen-plus"


def sdk(server: RunningServer, key: str = "alice") -> AsyncOpenAI:
    """The SDK as owner ``key`` (open mode, per-client: the key is the client id); no
    retries, so each call is one request."""
    return AsyncOpenAI(base_url=server.http_url + "/v1", api_key=key, max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def post(
    server: RunningServer,
    body: Any,
    *,
    key: str | None = "alice",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST a body (JSON, or ``raw`` bytes); the status, the JSON answer and the headers."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.http_url + "/v1/chat/completions", data=data, headers=sent) as got,
    ):
        return got.status, await got.json(content_type=None), dict(got.headers)


def asked(fake: FakeUpstream) -> int:
    """Requests for an answer the upstream got (model lists left out)."""
    return sum(request.path != OPENAI_MODELS_PATH for request in fake.requests)


async def conversations(server: RunningServer, owner: str = "alice") -> list[Any]:
    """Every conversation of ``owner``, archived ones included, once unkept ones are gone."""
    store = server.services.store
    await server.services.engine.forget_pending()
    kept, _ = await store.list_conversations(owner, limit=100)
    archived, _ = await store.list_conversations(owner, limit=100, archived=True)
    return kept + archived


async def reply_status(server: RunningServer, completion_id: str, owner: str = "alice") -> str:
    """The stored status of a reply, by its completion id or message id."""
    found = await server.services.store.reply_status(owner, completion_id.removeprefix("chatcmpl-"))
    assert found is not None
    return found.status


# -- answers ---------------------------------------------------------------------------------


async def test_the_answer_is_the_models_text_with_ids_and_usage(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A non-streaming completion has the upstream's text, a chatcmpl- id naming the reply,
    the model id, finish reason stop and the upstream's token counts."""
    async with sdk(server) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=user("hello there"), temperature=0
        )
        assert completion.choices[0].message.content == expected_reply("hello there")
        assert completion.choices[0].message.role == "assistant"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.object == "chat.completion"
        assert completion.model == MODEL
        assert completion.id.startswith("chatcmpl-")
        sent = fake.requests[-1].body["input"]["messages"]
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == count_input_tokens(sent)
        assert completion.usage.completion_tokens == len(reply_chunks("hello there"))
        assert completion.usage.total_tokens == (
            completion.usage.prompt_tokens + completion.usage.completion_tokens
        )


async def test_a_streamed_answer_is_the_same_text_in_chunks(server: RunningServer) -> None:
    """Streaming: the role first, then the text in pieces, then an empty delta with the
    finish reason; every chunk has the completion's id."""
    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=user("stream this please"), stream=True, temperature=0
        )
        chunks = [chunk async for chunk in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected_reply(
            "stream this please"
        )
        assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
        assert chunks[-1].choices[0].delta.content is None
        assert {c.id for c in chunks} == {chunks[0].id}
        assert chunks[0].id.startswith("chatcmpl-")
        assert {c.object for c in chunks} == {"chat.completion.chunk"}


async def test_include_usage_adds_a_last_chunk_with_the_usage(server: RunningServer) -> None:
    """With stream_options.include_usage every chunk has usage null and a last chunk with
    no choices carries the usage."""
    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=user("count me"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert all(chunk.usage is None for chunk in chunks[:-1])
        last = chunks[-1]
        assert last.choices == []
        assert last.usage is not None
        assert last.usage.completion_tokens == len(reply_chunks("count me"))
        assert last.usage.completion_tokens_details is not None
        assert last.usage.completion_tokens_details.reasoning_tokens == 0


async def test_enable_thinking_gives_reasoning_content_apart_from_the_text(
    server: RunningServer,
) -> None:
    """Qwen's enable_thinking (extra_body): the reasoning in message.reasoning_content,
    the answer alone in content, reasoning tokens in the usage."""
    prompt = "[think=5] why is the sky blue?"
    async with sdk(server) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=user(prompt), extra_body={"enable_thinking": True}
        )
        message = completion.choices[0].message
        assert message.content == expected_reply(prompt)
        assert message.model_extra == {"reasoning_content": expected_reasoning(prompt)}
        assert completion.usage is not None
        assert completion.usage.completion_tokens_details
        assert completion.usage.completion_tokens_details.reasoning_tokens == 5


async def test_reasoning_effort_streams_reasoning_deltas_before_the_text(
    server: RunningServer,
) -> None:
    """reasoning_effort "high" turns thinking on: reasoning_content deltas, then content."""
    prompt = "[think=4] think first"
    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=user(prompt), stream=True, reasoning_effort="high"
        )
        deltas = [chunk.choices[0].delta async for chunk in stream]
        reasoning = [d.model_extra.get("reasoning_content") for d in deltas if d.model_extra]
        assert "".join(part for part in reasoning if part) == expected_reasoning(prompt)
        texts = [i for i, d in enumerate(deltas) if d.content]
        thoughts = [
            i
            for i, d in enumerate(deltas)
            if d.model_extra and "reasoning_content" in d.model_extra
        ]
        assert max(thoughts) < min(texts)


async def test_reasoning_effort_none_turns_thinking_off(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """reasoning_effort "none" asks the provider not to think; no reasoning comes."""
    async with sdk(server) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=user("[think=3] quick"), reasoning_effort="none"
        )
        assert completion.choices[0].message.model_extra == {}
        assert fake.requests[-1].body["parameters"].get("enable_thinking") is False


async def test_reasoning_effort_is_ignored_for_a_model_that_cannot_think(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """Generic clients send reasoning_effort to any model: one that cannot think answers."""
    async with sdk(server) as client:
        completion = await client.chat.completions.create(
            model="qwen-max", messages=user("plain"), reasoning_effort="medium"
        )
    assert completion.choices[0].message.content == expected_reply("plain")
    assert "enable_thinking" not in fake.requests[-1].body["parameters"]


async def test_enable_thinking_for_a_model_that_cannot_think_is_400(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """Qwen's explicit enable_thinking for a model without thinking: 400
    unsupported_capability; nothing sent."""
    status, answer, _ = await post(
        server, {"model": "qwen-max", "messages": user("hm"), "enable_thinking": True}
    )
    assert (status, answer["error"]["code"]) == (400, "unsupported_capability")
    assert asked(fake) == 0


async def test_system_messages_and_history_reach_the_model_whole(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """System and developer messages become one system prompt; every earlier turn goes to
    the model in order, then the last user message."""
    async with sdk(server) as client:
        await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use metric"}]},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "re: one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "re: two"}]},
                {"role": "user", "content": "three"},
            ],
        )
        sent = [(m["role"], m["content"]) for m in fake.requests[-1].body["input"]["messages"]]
        assert sent == [
            ("system", "be brief\n\nuse metric"),
            ("user", "one"),
            ("assistant", "re: one"),
            ("user", "two"),
            ("assistant", "re: two"),
            ("user", "three"),
        ]


async def test_max_completion_tokens_caps_the_answer(server: RunningServer) -> None:
    """max_completion_tokens (over max_tokens) reaches the model: finish reason length."""
    async with sdk(server) as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=user("[tokens=9] go"), max_tokens=8, max_completion_tokens=3
        )
        assert completion.choices[0].message.content == "t0 t1 t2 "
        assert completion.choices[0].finish_reason == "length"


# -- kept or not ----------------------------------------------------------------------------


async def test_without_store_nothing_is_left_once_answered(server: RunningServer) -> None:
    """store defaults to false: the turn is answered and its conversation is gone after."""
    async with sdk(server) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=user("forget me"))
        assert completion.choices[0].message.content == expected_reply("forget me")
        assert await conversations(server) == []


async def test_an_unkept_turn_is_not_announced_to_open_pages(server: RunningServer) -> None:
    """An open page of the owner hears of a stored turn but never of an unkept one."""
    page = await RawClient.open(f"{server.ws_url}?client_id=alice")
    assert (await page.recv())["type"] == "hello"
    async with sdk(server) as client:
        await client.chat.completions.create(model=MODEL, messages=user("quiet one"))
        kept = await client.chat.completions.create(
            model=MODEL, messages=user("loud one"), store=True
        )
        first = await page.recv()
        assert first["type"] == "reply.started"
        assert first["message_id"] == kept.id.removeprefix("chatcmpl-")
        await page.close()


async def test_store_true_keeps_the_whole_history_as_a_conversation(
    server: RunningServer,
) -> None:
    """store: true leaves a conversation in the list (not archived), titled from its first
    user message, with the system prompt, every given message and the answer."""
    async with sdk(server) as client:
        completion = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "second"},
            ],
            store=True,
        )
        (conversation,) = await conversations(server)
        assert not conversation.archived
        assert conversation.title == "first"
        assert conversation.system_prompt == "be kind"
        page, _ = await server.services.store.history("alice", conversation.id, limit=10)
        assert [(m.role, m.content) for m in page] == [
            ("user", "first"),
            ("assistant", "an answer"),
            ("user", "second"),
            ("assistant", expected_reply("second")),
        ]
        assert page[-1].id == completion.id.removeprefix("chatcmpl-")


# -- leaving cancels -------------------------------------------------------------------------


async def test_closing_the_stream_cancels_the_reply_at_the_provider(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A client that closes the stream mid-answer stops the provider; the kept reply ends
    cancelled with the text so far."""
    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=user("[tokens=500] [delay=20] long"), stream=True, store=True
        )
        pieces = stream.__aiter__()
        first = await anext(pieces)
        await anext(pieces)
        await stream.close()
        await fake.wait_for(lambda stats: stats.disconnects >= 1, within=10)
        await reply_finished(server, "alice", first.id.removeprefix("chatcmpl-"))
        assert await reply_status(server, first.id) == ReplyStatus.CANCELLED


async def test_leaving_before_a_whole_answer_cancels_it_too(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A non-streaming client that disconnects while it waits stops the provider."""
    body = orjson.dumps(
        {"model": MODEL, "messages": user("[tokens=500] [delay=20] slow"), "store": True}
    )
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer alice\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await fake.wait_for(lambda stats: stats.streams_open == 1, within=10)
    writer.close()
    await writer.wait_closed()
    await fake.wait_for(lambda stats: stats.disconnects >= 1, within=10)
    (conversation,) = await conversations(server)
    page, _ = await server.services.store.history("alice", conversation.id, limit=10)
    await reply_finished(server, "alice", page[-1].id)
    assert await reply_status(server, page[-1].id) == ReplyStatus.CANCELLED


# -- who asks --------------------------------------------------------------------------------


@pytest.fixture
async def tokens(database_url: str) -> dict[str, str]:
    return {name: await create_user(database_url, name) for name in ("alice", "bob")}


@pytest.fixture
async def secured(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings()) as running:
        yield running


async def test_with_accounts_a_missing_or_bad_token_is_refused(
    secured: RunningServer, fake: FakeUpstream
) -> None:
    """With users, no token is 401 missing_api_key and a wrong one 401 invalid_api_key."""
    status, answer, _ = await post(secured, {"model": MODEL, "messages": user("hi")}, key=None)
    assert (status, answer["error"]["code"]) == (401, "missing_api_key")
    async with sdk(secured, "lt_not-a-token") as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert refused.value.code == "invalid_api_key"
    assert asked(fake) == 0


async def test_a_users_kept_turns_are_not_anothers(
    secured: RunningServer, tokens: dict[str, str]
) -> None:
    """A conversation kept by alice's token is listed for alice, not for bob."""
    async with sdk(secured, tokens["alice"]) as client:
        await client.chat.completions.create(model=MODEL, messages=user("mine only"), store=True)
        listed = {}
        for name in ("alice", "bob"):
            page = await open_with(secured, tokens[name])
            assert (await page.recv())["type"] == "hello"
            await page.send({"type": "conversations.list", "id": 1})
            answer = await page.recv()
            listed[name] = [c["title"] for c in answer["conversations"]]
            await page.close()
        assert listed == {"alice": ["mine only"], "bob": []}


# -- refusals --------------------------------------------------------------------------------


async def test_malformed_json_is_400_invalid_json(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A body that is not JSON is 400 invalid_json in OpenAI's error format."""
    status, answer, _ = await post(server, None, raw=b'{"model": "qwen-plus",')
    assert status == 400
    assert answer["error"]["code"] == "invalid_json"
    assert answer["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}],
            },
            "messages[0].content",
        ),
        ({"model": MODEL, "messages": user("hi"), "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "messages": user("hi"), "temperature": 2.5}, "temperature"),
        ({"model": MODEL, "messages": user("hi"), "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": user("hi"), "stream": "yes"}, "stream"),
        ({"model": MODEL, "messages": user("hi"), "reasoning_effort": "lots"}, "reasoning_effort"),
    ],
)
async def test_a_missing_or_mistyped_field_is_400_naming_it(
    server: RunningServer, fake: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    """A field missing, of the wrong type or out of range: 400 with param naming it."""
    status, answer, _ = await post(server, body)
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (
        400,
        "invalid_value",
        param,
    )
    assert asked(fake) == 0


async def test_unknown_fields_are_ignored(server: RunningServer) -> None:
    """Fields liaotian does not read (OpenAI's others, future ones) do not stop a turn."""
    status, answer, _ = await post(
        server,
        {
            "model": MODEL,
            "messages": user("fine"),
            "top_p": 0.5,
            "seed": 3,
            "stop": ["x"],
            "metadata": {"a": "b"},
            "user": "someone",
            "n": 1,
            "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "text"},
            "something_new": {"x": 1},
        },
    )
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == expected_reply("fine")


async def test_an_unknown_model_is_404_and_nothing_is_stored(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """An unknown model: 404 model_not_found, param model; nothing stored or sent."""
    async with sdk(server) as client:
        with pytest.raises(openai.NotFoundError) as refused:
            await client.chat.completions.create(model="gpt-9", messages=user("hi"), store=True)
    assert (refused.value.code, refused.value.param) == ("model_not_found", "model")
    assert await conversations(server) == []
    assert asked(fake) == 0


async def test_a_body_over_the_cap_is_413_and_nothing_is_stored(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """A body over max_api_body_bytes: 413 request_too_large; nothing stored or sent."""
    async with run_server(make_settings(max_api_body_bytes=1024)) as server:
        body = {"model": MODEL, "messages": user("x" * 2000), "store": True}
        status, answer, _ = await post(server, body)
        assert (status, answer["error"]["code"]) == (413, "request_too_large")
        assert await conversations(server) == []
    assert asked(fake) == 0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ],
)
async def test_what_liaotian_cannot_do_is_refused_by_name(
    server: RunningServer, fake: FakeUpstream, extra: dict[str, Any], param: str
) -> None:
    """Several choices, tools, structured output, logprobs, audio, predictions: 400
    unsupported_parameter naming the parameter; nothing sent upstream."""
    status, answer, _ = await post(server, {"model": MODEL, "messages": user("hi"), **extra})
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (
        400,
        "unsupported_parameter",
        param,
    )
    assert asked(fake) == 0


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}],
            "invalid_value",
        ),
        ([{"role": "system", "content": "only a system prompt"}], "invalid_value"),
        ([{"role": "user", "content": "  \n "}], "empty_message"),
        (
            [{"role": "tool", "content": "42", "tool_call_id": "c1"}, *user("hi")],
            "unsupported_role",
        ),
        ([{"role": "robot", "content": "beep"}, *user("hi")], "invalid_value"),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    ],
                }
            ],
            "unsupported_content",
        ),
    ],
)
async def test_messages_liaotian_cannot_answer_are_400(
    server: RunningServer, fake: FakeUpstream, messages: list[Any], code: str
) -> None:
    """A last message not the user's, an empty one, tool messages, unknown roles and
    images are refused with 400 and their code; nothing is stored or sent."""
    status, answer, _ = await post(server, {"model": MODEL, "messages": messages, "store": True})
    assert (status, answer["error"]["code"]) == (400, code), answer
    assert await conversations(server) == []
    assert asked(fake) == 0


async def test_images_are_refused_with_a_pointer_to_the_page(server: RunningServer) -> None:
    """An image part's refusal says images go through the page for now."""
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    _, answer, _ = await post(
        server, {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    )
    assert answer["error"]["param"] == "messages[0].content[0]"
    assert "through the page" in answer["error"]["message"]


async def test_a_message_over_max_message_chars_is_400(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """The last message over max_message_chars: 400 message_too_long; nothing sent."""
    async with run_server(make_settings(max_message_chars=10)) as server:
        status, answer, _ = await post(server, {"model": MODEL, "messages": user("x" * 11)})
        assert (status, answer["error"]["code"]) == (400, "message_too_long")
    assert asked(fake) == 0


async def test_messages_per_minute_gives_429_with_retry_after(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """Over messages_per_minute: 429 rate_limited with Retry-After; nothing more sent."""
    async with run_server(make_settings(messages_per_minute=1)) as server:
        assert (await post(server, {"model": MODEL, "messages": user("one")}))[0] == 200
        status, answer, headers = await post(server, {"model": MODEL, "messages": user("two")})
        assert (status, answer["error"]["code"]) == (429, "rate_limited")
        assert answer["error"]["type"] == "rate_limit_error"
        assert int(headers["Retry-After"]) >= 1
    assert asked(fake) == 1


async def test_a_request_refused_for_its_body_or_model_costs_no_rate(
    make_settings: SettingsFactory,
) -> None:
    """With messages_per_minute = 1, requests refused before the turn (unknown model,
    unsupported parameter, thinking for a model that cannot) leave the one message."""
    async with run_server(make_settings(messages_per_minute=1)) as server:
        refused = [
            {"model": "gpt-9", "messages": user("a")},
            {"model": MODEL, "messages": user("b"), "n": 2},
            {"model": "qwen-max", "messages": user("c"), "enable_thinking": True},
        ]
        assert [(await post(server, body))[0] for body in refused] == [404, 400, 400]
        assert (await post(server, {"model": MODEL, "messages": user("d")}))[0] == 200


# -- the provider fails ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_failure_before_the_answer_is_its_http_status(
    server: RunningServer, stream: bool
) -> None:
    """The provider refusing before any token: the request gets the failure's status
    (streaming too: nothing was sent yet), not a 200."""
    status, answer, _ = await post(
        server, {"model": MODEL, "messages": user("[fault=401] hi"), "stream": stream}
    )
    assert status == 502
    assert answer["error"]["type"] == "server_error"
    assert answer["error"]["code"] == "provider_auth"


async def test_an_unavailable_provider_is_503_with_retry_after(server: RunningServer) -> None:
    """The provider answering 500 (after liaotian's own retries): 503 with Retry-After."""
    async with sdk(server) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(model=MODEL, messages=user("[fault=500] hi"))
    assert failed.value.status_code == 503
    assert failed.value.response.headers["Retry-After"]


async def test_a_failure_mid_stream_ends_it_with_an_error_event(server: RunningServer) -> None:
    """A reply that fails after it began: the text so far, then an error event that the
    SDK raises as APIError with liaotian's error code."""
    texts: list[str] = []

    async def read(stream: AsyncIterator[Any]) -> None:
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")

    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=user("[tokens=6] [fault=drop_after=3] cut"), stream=True
        )
        with pytest.raises(openai.APIError) as failed:
            await read(stream)
    assert "".join(texts) == "t0 t1 t2 "
    assert failed.value.code == "provider_interrupted"


async def test_the_error_event_is_openais_error_object_then_done(server: RunningServer) -> None:
    """On the wire, a failed stream's last events are data: {"error": {...}} and
    data: [DONE]."""
    body = {"model": MODEL, "messages": user("[tokens=6] [fault=drop_after=3] cut"), "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.http_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer alice"},
        ) as got,
    ):
        assert got.status == 200
        assert got.headers["Content-Type"].startswith("text/event-stream")
        events = (await got.text()).strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    error = orjson.loads(events[-2].removeprefix("data: "))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "server_error"


# -- the embedded model ----------------------------------------------------------------------


async def test_the_embedded_model_streams_through_the_sdk(
    make_settings: SettingsFactory,
) -> None:
    """With no provider configured, the local model streams a real answer (temperature 0)."""
    settings = make_settings(
        local_enabled=True, dashscope_api_key=None, openai_base_url=None, default_model=None
    )
    async with run_server(settings) as server, sdk(server, "solo") as client:
        model = (await client.models.list()).data[0].id  # the default first
        stream = await client.chat.completions.create(
            model=model,
            messages=user("Say hello."),
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens >= 1
