"""The Python client (liaotian.client) against a real server and a fake DashScope upstream."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from liaotian.client import Client, ClientConnectionError, Reply, SignInRequired, error_from_frame
from liaotian.errors import (
    ConversationBusy,
    ModelNotFound,
    NotFound,
    ProviderError,
    ProviderRateLimited,
)
from tests.cluster import accounts_of, create_user, free_port
from tests.conftest import SettingsFactory
from tests.fake_upstream import count_input_tokens, expected_reply, reply_chunks
from tests.server_harness import RunningServer, run_server
from tests.tcp_proxy import TcpProxy
from tests.waiting import eventually

TIMEOUT = 20.0
SLOW = "[tokens=400][delay=20]"  # long enough to act on while it streams


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[Client]:
    async with Client(server.http_url, client_id="alice", request_timeout=TIMEOUT) as connected:
        yield connected


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections (bound, never listening) for the test's duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def first_delta(reply: Reply) -> str:
    async with asyncio.timeout(TIMEOUT):
        async for text in reply:
            return text
    raise AssertionError("the reply ended without a delta")


async def collect(reply: Reply) -> str:
    async with asyncio.timeout(TIMEOUT):
        return "".join([text async for text in reply])


# -- replies ---------------------------------------------------------------------------------


async def test_send_streams_the_exact_text(client: Client) -> None:
    """The deltas of a reply join into exactly the upstream's answer."""
    prompt = "Tell me about WebSocket, in a few words please"
    reply = await client.send(prompt)
    assert await collect(reply) == expected_reply(prompt)


async def test_result_reports_status_and_usage(client: Client) -> None:
    """A completed reply's result has its text, status, finish reason, usage and timings."""
    prompt = "count my words"
    reply = await client.send(prompt)
    async with asyncio.timeout(TIMEOUT):
        result = await reply.result()
    assert result.ok
    assert (result.status, result.finish_reason, result.error) == ("completed", "stop", None)
    assert result.text == expected_reply(prompt)
    assert result.usage == {
        "input_tokens": count_input_tokens([{"content": prompt}]),
        "output_tokens": len(reply_chunks(prompt)),
    }
    assert (result.conversation_id, result.message_id) == (reply.conversation_id, reply.message_id)
    assert result.model == "qwen-plus"
    assert result.duration_ms is not None
    assert result.ttft_ms is not None


async def test_cancel_mid_reply_ends_cancelled(client: Client) -> None:
    """Cancelling a streaming reply ends it with status cancelled and the text so far."""
    reply = await client.send(SLOW)
    await first_delta(reply)
    assert await reply.cancel() is True
    async with asyncio.timeout(TIMEOUT):
        result = await reply.result()
    assert result.status == "cancelled"
    assert result.text
    assert expected_reply(SLOW).startswith(result.text)
    assert result.text != expected_reply(SLOW)


async def test_failed_reply_is_a_result_not_an_exception(client: Client) -> None:
    """An upstream failure ends the reply with status error and a provider error."""
    reply = await client.send("[fault=503]")
    async with asyncio.timeout(TIMEOUT):
        result = await reply.result()
    assert result.status == "error"
    assert isinstance(result.error, ProviderError)


async def test_subscribe_after_a_seq_gets_exactly_the_rest(
    server: RunningServer, client: Client
) -> None:
    """A second connection subscribing after the last seen seq gets the rest, no gap, no dup."""
    reply = await client.send("[tokens=40][delay=10]")
    async with asyncio.timeout(TIMEOUT):
        async for _ in reply:
            if reply.last_seq >= 5:
                break
    seen, last_seq = reply.text, reply.last_seq
    async with Client(server.http_url, client_id="alice", request_timeout=TIMEOUT) as other:
        rest = await other.subscribe(reply.message_id, after_seq=last_seq)
        async with asyncio.timeout(TIMEOUT):
            result = await rest.result()
    assert result.status == "completed"
    assert seen + result.text == expected_reply("[tokens=40][delay=10]")
    assert not rest.replaced


async def test_subscribe_from_the_start_gets_the_whole_reply(client: Client) -> None:
    """Subscribing with after_seq -1 to a finished reply replays all of it."""
    prompt = "replay me"
    reply = await client.send(prompt)
    async with asyncio.timeout(TIMEOUT):
        await reply.result()
        again = await client.subscribe(reply.message_id)
        assert (await again.result()).text == expected_reply(prompt)


async def test_subscribe_to_an_unknown_reply_raises_not_found(client: Client) -> None:
    """Subscribing to a message id the owner does not have raises NotFound."""
    with pytest.raises(NotFound):
        await client.subscribe("no-such-message")


async def test_replies_of_other_connections_can_be_followed(
    server: RunningServer, client: Client
) -> None:
    """With follow_other_replies, a reply started by another connection shows up whole."""
    async with Client(server.http_url, client_id="alice", follow_other_replies=True) as watcher:
        others = watcher.other_replies()
        reply = await client.send("shared answer")
        async with asyncio.timeout(TIMEOUT):
            seen = await anext(others)
            assert seen.message_id == reply.message_id
            assert (await seen.result()).text == expected_reply("shared answer")


# -- requests --------------------------------------------------------------------------------


async def test_unknown_model_raises_model_not_found(client: Client) -> None:
    """A send naming an unknown model raises ModelNotFound with the server's message."""
    with pytest.raises(ModelNotFound, match="no-such-model"):
        await client.send("hi", model="no-such-model")


async def test_second_send_in_a_streaming_conversation_raises_busy(client: Client) -> None:
    """Sending into a conversation whose reply still streams raises a retryable busy error."""
    reply = await client.send(SLOW)
    with pytest.raises(ConversationBusy) as caught:
        await client.send("and another thing", conversation_id=reply.conversation_id)
    assert caught.value.retryable
    await reply.cancel()


async def test_history_holds_the_question_and_the_answer(client: Client) -> None:
    """history() returns the conversation with the user's message and the stored answer."""
    reply = await client.send("remember this")
    async with asyncio.timeout(TIMEOUT):
        await reply.result()
    page = await client.history(reply.conversation_id)
    assert page["conversation"]["id"] == reply.conversation_id
    assert [(m["role"], m["content"], m["status"]) for m in page["messages"]] == [
        ("user", "remember this", "completed"),
        ("assistant", expected_reply("remember this"), "completed"),
    ]


async def test_conversations_lists_newest_first(client: Client) -> None:
    """conversations() lists the owner's conversations, most recently updated first."""
    first = await client.send("first")
    await first.result()
    second = await client.send("second")
    await second.result()
    page = await client.conversations()
    assert [c["id"] for c in page["conversations"]] == [
        second.conversation_id,
        first.conversation_id,
    ]
    assert page["has_more"] is False


async def test_rename_changes_the_title(client: Client) -> None:
    """rename() returns the conversation with its new title, and listing shows it."""
    reply = await client.send("untitled")
    await reply.result()
    renamed = await client.rename(reply.conversation_id, "My notes")
    assert renamed["title"] == "My notes"
    page = await client.conversations()
    assert page["conversations"][0]["title"] == "My notes"


async def test_delete_then_history_raises_not_found(client: Client) -> None:
    """After delete(), the conversation's history is NotFound."""
    reply = await client.send("forget me")
    await reply.result()
    await client.delete(reply.conversation_id)
    with pytest.raises(NotFound):
        await client.history(reply.conversation_id)


async def test_models_lists_the_default_model(client: Client) -> None:
    """models() lists the configured DashScope models and names the default."""
    listing = await client.models()
    assert listing["default"] == "qwen-plus"
    [qwen] = [model for model in listing["models"] if model["id"] == "qwen-plus"]
    assert (qwen["provider"], qwen["available"], qwen["reason"]) == ("dashscope", True, None)


async def test_ping_measures_a_round_trip(client: Client) -> None:
    """ping() answers with the round-trip time in seconds."""
    assert 0 <= await client.ping() < TIMEOUT


async def test_hello_names_the_owner(client: Client) -> None:
    """The hello frame read on connect names the owner and the protocol version."""
    assert client.hello["owner"] == "alice"
    assert client.hello["protocol"] == 1


# -- connection failures ---------------------------------------------------------------------


async def test_unreachable_server_raises_a_clear_error(refused_port: int) -> None:
    """Connecting to a port nobody listens on raises ClientConnectionError naming the URL."""
    url = f"ws://127.0.0.1:{refused_port}"
    with pytest.raises(ClientConnectionError, match="cannot reach liaotian at") as caught:
        async with Client(url, client_id="alice"):
            pass
    assert caught.value.message == f"cannot reach liaotian at {url}: connection refused"


Handler = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


async def fake_server(handle: Handler) -> Callable[[ServerConnection], Awaitable[None]]:
    """A WebSocket handler: send hello, pass each frame received to ``handle``."""

    async def handler(connection: ServerConnection) -> None:
        await connection.send(orjson.dumps({"type": "hello", "protocol": 1}).decode())
        async for data in connection:
            await handle(connection, orjson.loads(data))

    return handler


async def test_connection_drop_fails_a_pending_request() -> None:
    """Without reconnecting, a pending request raises ClientConnectionError at the drop."""

    async def drop(connection: ServerConnection, frame: dict[str, Any]) -> None:
        connection.transport.abort()

    async with (
        serve(await fake_server(drop), "127.0.0.1", 0) as ws_server,
        Client(
            f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}",
            client_id="a",
            reconnect_for=0,
        ) as client,
    ):
        with pytest.raises(ClientConnectionError, match="connection was lost"):
            async with asyncio.timeout(5):
                await client.ping()
        with pytest.raises(ClientConnectionError):
            await client.models()  # and later calls fail at once


async def test_connection_drop_fails_an_unfinished_reply() -> None:
    """Without reconnecting, a streaming reply raises ClientConnectionError, not hangs."""

    async def start_then_drop(connection: ServerConnection, frame: dict[str, Any]) -> None:
        event = {"conversation_id": "c1", "message_id": "m1"}
        started = {**event, "type": "reply.started", "id": frame["id"], "seq": 0, "model": "x"}
        await connection.send(orjson.dumps(started).decode())
        delta = {**event, "type": "reply.delta", "seq": 1, "text": "partial"}
        await connection.send(orjson.dumps(delta).decode())
        connection.transport.abort()

    async with (
        serve(await fake_server(start_then_drop), "127.0.0.1", 0) as ws_server,
        Client(
            f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}",
            client_id="a",
            reconnect_for=0,
        ) as client,
    ):
        reply = await client.send("hi")
        texts: list[str] = []

        async def read_all() -> None:
            async with asyncio.timeout(5):
                async for text in reply:
                    texts.append(text)

        with pytest.raises(ClientConnectionError):
            await read_all()
        assert texts == ["partial"]
        with pytest.raises(ClientConnectionError):
            await reply.result()


# -- errors ----------------------------------------------------------------------------------


def test_error_frames_become_the_matching_error_class() -> None:
    """An error frame's code picks the liaotian.errors class; extra fields are kept."""
    error = error_from_frame(
        {
            "type": "error",
            "code": "provider_rate_limited",
            "message": "slow down",
            "retryable": True,
            "retry_after": 3,
        }
    )
    assert isinstance(error, ProviderRateLimited)
    assert (error.message, error.retryable, error.retry_after) == ("slow down", True, 3.0)
    unknown = error_from_frame({"code": "something_new", "message": "?", "retryable": False})
    assert (type(unknown).__name__, unknown.code) == ("LiaotianError", "something_new")


async def test_subscribe_past_the_end_is_done_at_once(client: Client) -> None:
    """Subscribing after the done event returns a finished reply with status caught_up."""
    reply = await client.send("all seen")
    await reply.result()
    again = await client.subscribe(reply.message_id, after_seq=reply.last_seq)
    result = await asyncio.wait_for(again.result(), TIMEOUT)
    assert (result.status, result.text) == ("caught_up", "")


async def test_regenerate_and_edit_stream_new_answers(client: Client) -> None:
    """regenerate answers the last message again; edit branches off a message and answers
    it (the active path is the new branch)."""
    first = await client.send("original question")
    await first.result()
    again = await client.regenerate(first.conversation_id)
    assert (await again.result()).text == expected_reply("original question")
    assert first.user_message_id is not None
    edited = await client.edit(first.conversation_id, first.user_message_id, "better question")
    assert (await edited.result()).text == expected_reply("better question")
    page = await client.history(first.conversation_id)
    assert [m["content"] for m in page["messages"]] == [
        "better question",
        expected_reply("better question"),
    ]


async def test_reply_continues_exactly_across_a_dropped_connection(server: RunningServer) -> None:
    """Cut the network mid-reply: the client reconnects and the text goes on, exact."""
    async with (
        TcpProxy(server.port) as proxy,
        Client(f"ws://127.0.0.1:{proxy.port}", client_id="alice", request_timeout=TIMEOUT) as c,
    ):
        prompt = "[tokens=60][delay=10]"
        reply = await c.send(prompt)
        texts: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            async for text in reply:
                texts.append(text)
                if len(texts) == 5:
                    proxy.cut()
        result = await reply.result()
    assert result.status == "completed"
    assert "".join(texts) == result.text == expected_reply(prompt)
    assert c.reconnects >= 1
    assert proxy.connections >= 2


async def test_requests_work_again_after_a_reconnect(server: RunningServer) -> None:
    """After a drop, the next request waits for the new connection and succeeds."""
    async with (
        TcpProxy(server.port) as proxy,
        Client(f"ws://127.0.0.1:{proxy.port}", client_id="alice", request_timeout=TIMEOUT) as c,
    ):
        await c.ping()
        proxy.cut()
        async with asyncio.timeout(TIMEOUT):
            while c.reconnects == 0:
                with contextlib.suppress(ClientConnectionError):
                    await c.ping()
        assert (await c.models())["default"] == "qwen-plus"


async def test_reconnecting_gives_up_after_reconnect_for(server: RunningServer) -> None:
    """When the server stays unreachable, replies fail once reconnect_for has passed."""
    proxy = TcpProxy(server.port)
    async with (
        proxy,
        Client(f"ws://127.0.0.1:{proxy.port}", client_id="alice", reconnect_for=0.5) as c,
    ):
        reply = await c.send("[tokens=200][delay=20]")
        proxy.target_port = free_port()
        proxy.cut()
        with pytest.raises(ClientConnectionError):
            await asyncio.wait_for(reply.result(), TIMEOUT)


async def test_a_revoked_token_stops_reconnecting_at_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """The server closes the connection of a revoked token; the client's reconnect is then
    refused, and it gives up at once with SignInRequired instead of retrying for
    ``reconnect_for`` seconds."""
    token = await create_user(database_url, "alice")
    settings = make_settings(credential_check_interval=0.1)
    async with (
        run_server(settings) as running,
        Client(running.http_url, client_id="ignored", token=token, reconnect_for=60) as client,
    ):
        async with accounts_of(database_url) as accounts:
            (listed,) = await accounts.list_tokens("alice")
            await accounts.revoke(listed.id)
        await eventually(lambda: client.closed, within=10)
        with pytest.raises(SignInRequired) as refused:
            await client.ping()
    assert refused.value.token_given
    assert "invalid or revoked" in refused.value.message
