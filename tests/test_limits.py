"""Limits: each refusal is a clear error or close code, and the rest keeps working."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from liaotian.logs import StructuredFormatter
from tests.conftest import SettingsFactory
from tests.server_harness import run_server
from tests.wsclient import RawClient, of_type


async def connect(url: str, owner: str = "alice") -> RawClient:
    return await RawClient.open(f"{url}?client_id={owner}")


async def test_connections_per_owner_are_capped(make_settings: SettingsFactory) -> None:
    """The owner's connection over the cap gets too_many_connections and close 1013."""
    async with run_server(make_settings(max_connections_per_owner=2)) as server:
        first, second = [await connect(server.ws_url) for _ in range(2)]
        for client in (first, second):
            assert (await client.recv())["type"] == "hello"
        third = await connect(server.ws_url)
        error = await third.recv()
        assert (error["type"], error["code"]) == ("error", "too_many_connections")
        with pytest.raises(ConnectionClosed) as closed:
            await third.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        other = await connect(server.ws_url, owner="bob")  # other owners are not affected
        assert (await other.recv())["type"] == "hello"
        await first.close()
        fourth = await connect(server.ws_url)  # a slot freed up
        assert (await fourth.recv())["type"] == "hello"
        for client in (second, other, fourth):
            await client.close()


async def test_total_connections_are_capped(make_settings: SettingsFactory) -> None:
    """Past max_connections, any new connection is refused with too_many_connections."""
    async with run_server(make_settings(max_connections=2)) as server:
        clients = [await connect(server.ws_url, owner=f"o{n}") for n in range(2)]
        for client in clients:
            await client.recv()
        refused = await connect(server.ws_url, owner="o3")
        assert (await refused.recv())["code"] == "too_many_connections"
        for client in clients:
            await client.close()


async def test_messages_per_minute_are_limited(make_settings: SettingsFactory) -> None:
    """The message over the per-minute rate gets rate_limited with retry_after; nothing stored."""
    async with run_server(make_settings(messages_per_minute=2)) as server:
        client = await connect(server.ws_url)
        await client.recv()
        for n in range(2):
            await client.send({"type": "chat.send", "message": f"m{n}"})
            await client.until(of_type("reply.done"))
        await client.send({"type": "chat.send", "id": "3", "message": "one too many"})
        error = (await client.until(of_type("error")))[-1]
        assert (error["id"], error["code"], error["retryable"]) == ("3", "rate_limited", True)
        assert error["retry_after"] > 0
        await client.send({"type": "conversations.list"})
        listed = (await client.until(of_type("conversations")))[-1]["conversations"]
        assert len(listed) == 2
        await client.close()


async def test_concurrent_replies_per_owner_are_limited(make_settings: SettingsFactory) -> None:
    """A reply over max_replies_per_owner gets too_many_replies until one ends."""
    async with run_server(make_settings(max_replies_per_owner=1)) as server:
        client = await connect(server.ws_url)
        await client.recv()
        await client.send({"type": "chat.send", "message": "[tokens=100] [delay=10]"})
        started = (await client.until(of_type("reply.started")))[-1]
        await client.send({"type": "chat.send", "id": "x", "message": "another"})
        error = (await client.until(of_type("error")))[-1]
        assert error["code"] == "too_many_replies"
        await client.send({"type": "chat.cancel", "message_id": started["message_id"]})
        await client.until(of_type("reply.done"))
        await client.send({"type": "chat.send", "message": "now it fits"})
        done = (await client.until(of_type("reply.done")))[-1]
        assert done["status"] == "completed"
        await client.close()


async def test_idle_connections_are_closed(make_settings: SettingsFactory) -> None:
    """A connection silent for idle_timeout (no reply streaming) is closed with 1000."""
    async with run_server(make_settings(idle_timeout=0.3)) as server:
        client = await connect(server.ws_url)
        await client.recv()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.connection.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle timeout")


async def test_a_connection_that_keeps_talking_is_not_idle(
    make_settings: SettingsFactory,
) -> None:
    """Frames more often than idle_timeout keep a connection open; silence then closes it."""
    idle = 2.0  # ten times the 0.2 s between pings: a loaded machine may stall a while
    async with run_server(make_settings(idle_timeout=idle)) as server:
        client = await connect(server.ws_url)
        await client.recv()
        loop = asyncio.get_running_loop()
        began = loop.time()
        while loop.time() - began < 1.5 * idle:  # past idle_timeout, talking every 0.2 s
            last_sent = loop.time()
            await client.send({"type": "ping", "id": "p"})
            assert (await client.recv())["type"] == "pong"
            await asyncio.sleep(0.2)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.connection.recv(), 3 * idle)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle timeout")
        # The server starts counting once it has handled our last frame, which we sent at
        # last_sent, so load can only make this longer: it is a lower bound that holds.
        assert loop.time() - last_sent >= idle - 0.01


async def test_a_streaming_connection_is_not_idle(make_settings: SettingsFactory) -> None:
    """While a reply streams to it, a connection that sends nothing stays open."""
    # idle_timeout leaves room for a loaded machine between hello and chat.send; the
    # 2 s reply outlasts it four times over.
    async with run_server(make_settings(idle_timeout=0.5)) as server:
        client = await connect(server.ws_url)
        await client.recv()
        await client.send({"type": "chat.send", "message": "[tokens=40] [delay=50]"})
        done = (await client.until(of_type("reply.done")))[-1]
        assert done["status"] == "completed"
        await client.close()


async def test_transport_frame_limit_closes_with_1009(make_settings: SettingsFactory) -> None:
    """A frame over the transport limit (16 MiB) closes the connection with 1009."""
    async with run_server(make_settings()) as server:
        client = await connect(server.ws_url)
        await client.recv()
        huge = '{"type":"ping","pad":"' + "x" * (17 << 20) + '"}'

        async def send_then_read() -> None:
            await client.send(huge)  # the server may close while it is still arriving
            await asyncio.wait_for(client.connection.recv(), 10)

        with pytest.raises(ConnectionClosed) as closed:
            await send_then_read()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009


async def test_metrics_count_connections_replies_and_rejections(
    make_settings: SettingsFactory,
) -> None:
    """/metrics exposes connections, replies by outcome, latency histograms and rejections."""
    async with run_server(make_settings(messages_per_minute=1)) as server:
        client = await connect(server.ws_url)
        await client.recv()
        await client.send({"type": "chat.send", "message": "count me"})
        await client.until(of_type("reply.done"))
        await client.send({"type": "chat.send", "message": "too many"})
        await client.until(of_type("error"))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.http_url}/metrics") as response,
        ):
            text = await response.text()
        assert 'liaotian_connections{protocol="v1"} 1.0' in text
        assert 'liaotian_replies_total{outcome="completed"} 1.0' in text
        assert "liaotian_time_to_first_token_seconds_count 1.0" in text
        assert "liaotian_tokens_relayed_total" in text
        assert 'liaotian_rate_limit_rejections_total{limit="messages_per_minute"} 1.0' in text
        await client.close()


async def test_logs_trace_connection_and_reply_without_content(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Log lines carry the connection and reply ids, never the message text."""
    formatter = StructuredFormatter()
    caplog.set_level(logging.INFO, logger="liaotian")
    async with run_server(make_settings()) as server:
        client = await connect(server.ws_url)
        await client.recv()
        await client.send({"type": "chat.send", "message": "my very private question"})
        done = (await client.until(of_type("reply.done")))[-1]
        await client.close()
    lines = [formatter.format(record) for record in caplog.records]
    ended = [line for line in lines if "reply ended" in line]
    assert ended
    assert f"reply={done['message_id']}" in ended[0]
    assert "conn=" in ended[0]
    assert "status=completed" in ended[0]
    assert not any("private question" in line for line in lines)
