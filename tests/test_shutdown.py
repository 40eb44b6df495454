"""SIGTERM and SIGKILL of a real `liaotian serve` process: nothing said is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage

from liaotian.store import Store, create_engine
from tests.cluster import ServerProcess, free_port
from tests.fake_upstream import FakeUpstream
from tests.wsclient import Frame, RawClient, of_type, reply_text

LIAOTIAN = Path(sys.executable).with_name("liaotian")


def server_process(tmp_path: Path, fake: FakeUpstream, **settings: str) -> ServerProcess:
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/shutdown.db",
        "LIAOTIAN_LOCAL_ENABLED": "false",
        "LIAOTIAN_DEFAULT_MODEL": "qwen-plus",
        "LIAOTIAN_CHECKPOINT_INTERVAL": "0.1",
        # The clients below are owners of their own (the default shares one in open mode).
        "LIAOTIAN_OPEN_OWNER": "per-client",
        "DASHSCOPE_API_KEY": "test-key",
        "DASHSCOPE_HTTP_BASE_URL": fake.dashscope_base_url,
        **{f"LIAOTIAN_{name.upper()}": value for name, value in settings.items()},
    }
    return ServerProcess(free_port(), env, tmp_path / "server.log")


async def stored(tmp_path: Path, message_id: str) -> tuple[str, str]:
    store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path}/shutdown.db"))
    try:
        info = await store.reply_status("alice", message_id)
        assert info is not None
        return info.status, info.content
    finally:
        await store.close()


async def start(client: RawClient, message: str) -> str:
    await client.send({"type": "chat.send", "id": message, "message": message})
    frames = await client.until(lambda f: f.get("id") == message)
    assert frames[-1]["type"] == "reply.started"
    message_id: str = frames[-1]["message_id"]
    return message_id


async def read_until_closed(client: RawClient) -> None:
    while True:
        await asyncio.wait_for(client.connection.recv(), 5)


async def frames_until_closed(client: RawClient, within: float = 30) -> tuple[list[Frame], int]:
    """Every frame the client receives until the server closes, and the close code."""
    frames: list[Frame] = []

    async def collect() -> None:
        while True:
            frames.append(await client.recv(within))

    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(collect(), within)
    assert closed.value.rcvd is not None, "the server closed without a close frame"
    return frames, closed.value.rcvd.code


async def test_sigterm_finishes_short_replies_and_interrupts_long_ones(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """SIGTERM: replies that end within the grace period complete, the others are saved
    interrupted and their socket closes with 1012; the process exits within the grace."""
    server = server_process(tmp_path, fake, shutdown_grace="3")
    await server.start()
    client = await RawClient.open(f"{server.ws_url}?client_id=alice")
    await client.recv()
    short = await start(client, "[tokens=15] [delay=50] short")
    long = await start(client, "[tokens=2000] [delay=20] long")
    await client.until(lambda f: f.get("message_id") == long and f["type"] == "reply.delta")
    assert server.process is not None
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        await read_until_closed(client)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012
    await asyncio.wait_for(server.process.wait(), 30)
    # The 3 s grace and room for a loaded machine to close up; waiting for the long
    # reply instead would take 40 s.
    assert time.monotonic() - began < 3 + 12
    assert await stored(tmp_path, short) == ("completed", "".join(f"t{n} " for n in range(15)))
    status, text = await stored(tmp_path, long)
    assert status == "interrupted"
    assert text.startswith("t0 t1 ")


async def test_sigterm_keeps_sockets_open_until_their_replies_end(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """SIGTERM: an idle socket closes with 1012 at once; a v1 and a seed socket with a
    reply streaming to them get the whole answer and its end, then 1012; the process then
    exits without waiting out the grace."""
    server = server_process(tmp_path, fake, shutdown_grace="60")
    await server.start()
    idle = await RawClient.open(f"{server.ws_url}?client_id=carol")
    await idle.recv()
    v1 = await RawClient.open(f"{server.ws_url}?client_id=alice")
    await v1.recv()
    seed = await RawClient.open(f"ws://127.0.0.1:{server.port}/ws/chat/bob")
    v1_reply = await start(v1, "[tokens=100] [delay=50] v1")
    await seed.send({"message": "[tokens=100] [delay=50] seed", "stream": True})
    first_seed = await seed.recv()
    assert first_seed["status"] == "running"
    await v1.until(of_type("reply.delta"))
    assert server.process is not None
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    idle_frames, idle_code = await frames_until_closed(idle)
    assert (idle_frames, idle_code) == ([], 1012)
    assert fake.stats.streams_open == 2, "the idle socket waited for the replies"

    v1_frames, v1_code = await frames_until_closed(v1)
    assert [(f["type"], f.get("status")) for f in v1_frames[-1:]] == [("reply.done", "completed")]
    assert v1_code == 1012
    seed_frames, seed_code = await frames_until_closed(seed)
    seed_frames.insert(0, first_seed)
    assert seed_frames[-1]["status"] == "completed", "the seed client lost its answer's end"
    assert seed_code == 1012
    whole = "".join(f"t{n} " for n in range(100))
    assert "".join(f["message"] for f in seed_frames if f["status"] == "running") == whole
    assert reply_text(v1_frames, v1_reply).endswith("t99 ")
    assert await stored(tmp_path, v1_reply) == ("completed", whole)

    await asyncio.wait_for(server.process.wait(), 30)
    assert time.monotonic() - began < 60, "the process waited out the grace"


async def test_a_draining_socket_takes_no_new_reply(tmp_path: Path, fake: FakeUpstream) -> None:
    """After SIGTERM a socket kept open for its reply refuses a new send (``shutting_down``,
    retryable) instead of starting a reply that would keep it open: it closes once the
    reply it has ends."""
    server = server_process(tmp_path, fake, shutdown_grace="60")
    await server.start()
    client = await RawClient.open(f"{server.ws_url}?client_id=alice")
    await client.recv()
    reply = await start(client, "[tokens=60] [delay=50] draining")
    await client.until(of_type("reply.delta"))
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    # The drain has begun once the server stops accepting connections: refused, or (one
    # accepted from the backlog as the listener closed) closed without an HTTP response.
    async with asyncio.timeout(20):
        while True:
            try:
                probe = await RawClient.open(f"{server.ws_url}?client_id=probe")
            except (OSError, InvalidMessage):
                break
            await probe.close()
            await asyncio.sleep(0.02)
    await client.send({"type": "chat.send", "id": "late", "message": "one more"})
    frames, code = await frames_until_closed(client)
    late = [frame for frame in frames if frame.get("id") == "late"]
    assert [(frame["type"], frame["code"], frame["retryable"]) for frame in late] == [
        ("error", "shutting_down", True)
    ]
    assert [(f["type"], f.get("status")) for f in frames[-1:]] == [("reply.done", "completed")]
    assert reply_text(frames, reply).endswith("t59 ")
    assert code == 1012
    await asyncio.wait_for(server.process.wait(), 30)


async def test_sigkill_then_restart_marks_replies_interrupted(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """SIGKILL mid-reply: after a restart the database is intact and the reply is
    interrupted with the text of its last checkpoint."""
    server = server_process(tmp_path, fake)
    await server.start()
    client = await RawClient.open(f"{server.ws_url}?client_id=alice")
    await client.recv()
    message_id = await start(client, "[tokens=2000] [delay=10]")
    await client.until(lambda f: f["type"] == "reply.delta" and f["seq"] >= 30)
    server.kill()
    assert server.process is not None
    await server.process.wait()
    restarted = server_process(tmp_path, fake)
    await restarted.start()
    try:
        status, text = await stored(tmp_path, message_id)
        assert status == "interrupted"
        assert text.startswith("t0 t1 t2 ")
        client = await RawClient.open(f"{restarted.ws_url}?client_id=alice")
        await client.recv()
        await client.send({"type": "chat.send", "message": "still works"})
        done = (await client.until(of_type("reply.done")))[-1]
        assert done["status"] == "completed"
        await client.close()
    finally:
        await restarted.stop()
