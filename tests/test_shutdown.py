"""SIGTERM and SIGKILL of a real `liaotian serve` process: nothing said is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from liaotian.store import Store, create_engine
from tests.cluster import ServerProcess, free_port
from tests.fake_upstream import FakeUpstream
from tests.wsclient import RawClient, of_type

LIAOTIAN = Path(sys.executable).with_name("liaotian")


def server_process(tmp_path: Path, fake: FakeUpstream, **settings: str) -> ServerProcess:
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/shutdown.db",
        "LIAOTIAN_LOCAL_ENABLED": "false",
        "LIAOTIAN_DEFAULT_MODEL": "qwen-plus",
        "LIAOTIAN_CHECKPOINT_INTERVAL": "0.1",
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


async def test_sigterm_finishes_short_replies_and_interrupts_long_ones(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """SIGTERM: sockets close with 1012 at once; replies that end within the grace period
    complete, the others are saved interrupted; the process exits within the grace."""
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
    await asyncio.wait_for(server.process.wait(), 15)
    assert time.monotonic() - began < 3 + 3  # the grace, and a margin for start-up of exit
    assert await stored(tmp_path, short) == ("completed", "".join(f"t{n} " for n in range(15)))
    status, text = await stored(tmp_path, long)
    assert status == "interrupted"
    assert text.startswith("t0 t1 ")


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
