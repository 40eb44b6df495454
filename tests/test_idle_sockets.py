"""Connections that hold a file descriptor for nothing: a real `liaotian serve`, raw sockets.

Linux: connections from another address than the test's own come from 127.0.0.2 (all of
127.0.0.0/8 is loopback there), so the server tells them apart from 127.0.0.1, and the
open-file limits are read in /proc.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from tests.cluster import LIAOTIAN, ServerProcess, free_port, wait_http_ok
from tests.fake_upstream import FakeUpstream
from tests.test_shutdown import server_process

OTHER = "127.0.0.2"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def running(server: ServerProcess) -> AsyncIterator[ServerProcess]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def tcp(port: int, sent: bytes = b"", source: str = "127.0.0.1") -> Stream:
    """A raw connection to the server from ``source`` that has sent ``sent``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    if sent:
        writer.write(sent)
        await writer.drain()
    return reader, writer


async def closed_by_server(stream: Stream, within: float = 30.0) -> bytes:
    """What the server sent before it closed the connection (AssertionError if it did not
    within ``within`` seconds)."""
    reader, writer = stream
    try:
        async with asyncio.timeout(within):
            received = await reader.read()
    except ConnectionResetError:
        received = b""
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open {within}s") from None
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()
    return received


async def http_get(stream: Stream, port: int, path: str) -> bytes:
    """Send a GET on the open connection, read the whole response, return its status line."""
    reader, writer = stream
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(20):
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    return status


async def get_once(port: int, path: str, source: str = "127.0.0.1") -> bytes:
    """The status line of a GET on a new connection from ``source`` (closed after)."""
    stream = await tcp(port, source=source)
    try:
        return await http_get(stream, port, path)
    finally:
        stream[1].close()
        with suppress(ConnectionError):
            await stream[1].wait_closed()


def open_file_limits(pid: int) -> tuple[str, str]:
    """The soft and hard limit of open files of process ``pid``."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return soft, hard


def head(port: int, path: str, *extra: str) -> bytes:
    """A request head missing its final blank line: the request never completes."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *extra]
    return ("\r\n".join(lines) + "\r\n").encode()


async def test_connections_without_a_whole_request_are_closed_after_the_timeout(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """Silent connections, half request heads (a WebSocket handshake's too), a body that
    never comes and stray bytes after a first request are closed after
    request_read_timeout, while the server goes on answering."""
    server = server_process(tmp_path, fake, request_read_timeout="1")
    async with running(server):
        port = server.port
        opened = time.monotonic()
        slow = [
            await tcp(port),
            await tcp(port, head(port, "/healthz")),
            await tcp(
                port,
                head(port, "/ws?client_id=alice", "Upgrade: websocket", "Connection: Upgrade"),
            ),
            await tcp(
                port,
                b"POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{" % port,
            ),
        ]
        kept_alive = await tcp(port)
        assert (await http_get(kept_alive, port, "/healthz")).startswith(b"HTTP/1.1 200")
        kept_alive[1].write(b"\r\n")  # stops uvicorn's keep-alive timer, begins no request
        slow.append(kept_alive)
        assert (await get_once(port, "/healthz")).startswith(b"HTTP/1.1 200")

        for stream in slow:
            assert await closed_by_server(stream) == b""
        assert time.monotonic() - opened >= 1 - 0.05  # after the timeout, not before
        assert (await get_once(port, "/healthz")).startswith(b"HTTP/1.1 200")


async def test_connections_over_the_per_address_cap_are_closed_at_once(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """With max_connections_per_address=4, WebSockets and silent connections count alike:
    a fifth connection from that address is closed at once, another address is served,
    and a place freed by a closed WebSocket is taken again."""
    server = server_process(
        tmp_path, fake, max_connections_per_address="4", request_read_timeout="120"
    )
    async with running(server):
        port = server.port
        sockets: list[ClientConnection] = []
        for n in range(2):
            websocket = await connect(
                f"{server.ws_url}?client_id=user{n}", local_addr=(OTHER, 0), compression=None
            )
            await asyncio.wait_for(websocket.recv(), 20)  # hello: accepted
            sockets.append(websocket)
        silent = [await tcp(port, source=OTHER), await tcp(port, source=OTHER)]

        began = time.monotonic()
        assert await closed_by_server(await tcp(port, source=OTHER)) == b""
        assert time.monotonic() - began < 60, "closed by the request timeout, not the cap"
        assert (await get_once(port, "/healthz")).startswith(b"HTTP/1.1 200")
        assert (await http_get(silent[0], port, "/healthz")).startswith(b"HTTP/1.1 200")

        await sockets[0].close()
        async with asyncio.timeout(20):
            while True:  # the server frees the place when it sees the close
                with suppress(ConnectionResetError, asyncio.IncompleteReadError):
                    status = await get_once(port, "/healthz", OTHER)
                    if status.startswith(b"HTTP/1.1 200"):
                        break
                await asyncio.sleep(0.05)
        await sockets[1].close()
        for _, writer in silent:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


async def test_idle_connections_no_longer_exhaust_the_open_file_limit(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """A server limited to 200 open files, sent 300 silent connections from one address
    (loopback, so not capped), answers again once they have timed out."""
    port = free_port()
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/files.db",
        "LIAOTIAN_LOCAL_ENABLED": "false",
        "LIAOTIAN_DEFAULT_MODEL": "qwen-plus",
        "LIAOTIAN_REQUEST_READ_TIMEOUT": "2",
        "DASHSCOPE_API_KEY": "test-key",
        "DASHSCOPE_HTTP_BASE_URL": fake.dashscope_base_url,
    }

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    with (tmp_path / "server.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            str(LIAOTIAN), "serve", "--port", str(port),
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_files,
        )  # fmt: skip
    idle: list[Stream] = []
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        for _ in range(300):
            idle.append(await tcp(port, source=OTHER))  # the kernel accepts them all
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz", within=60)
    finally:
        for _, writer in idle:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in idle), return_exceptions=True)
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def test_serve_raises_the_soft_open_file_limit_to_the_hard_one(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """`liaotian serve` started with 100 open files allowed of a hard 400 runs with 400,
    and logs it."""
    server = server_process(tmp_path, fake)
    port = server.port

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 400))

    with server.log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            str(LIAOTIAN), "serve", "--port", str(port),
            env=server.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_files,
        )  # fmt: skip
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        assert open_file_limits(process.pid) == ("400", "400")
        assert "open-file limit: 400 (raised from 100)" in server.log_path.read_text()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
