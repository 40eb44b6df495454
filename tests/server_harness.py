"""Run a real liaotian server (uvicorn, real sockets) inside the test's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn

from liaotian.app import create_app
from liaotian.server import build_server
from liaotian.services import Services
from liaotian.settings import Settings
from liaotian.transport import Drain


@dataclass
class RunningServer:
    """A server listening on 127.0.0.1:``port``."""

    port: int
    settings: Settings
    server: uvicorn.Server
    services: Services

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def seed_url(self, client_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/{client_id}"


@asynccontextmanager
async def run_server(
    settings: Settings, *, start_timeout: float = 60.0
) -> AsyncIterator[RunningServer]:
    """Start the app on a free port, wired as `liaotian serve` wires it; stop it (lifespan
    shutdown included) on exit."""
    drain = Drain(settings.shutdown_grace)
    app = create_app(settings, drain)
    server = build_server(app, settings, drain, log_level="warning")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(start_timeout):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start-up")
                await asyncio.sleep(0.01)
        yield RunningServer(port, settings, server, app.state.services)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def reply_finished(running: RunningServer, owner: str, message_id: str) -> None:
    """Wait (10 s at most) until the reply has ended; its outcome is then in the database."""
    reply_log = running.services.engine.live_log(owner, message_id)
    assert reply_log is not None, "the reply is not known to this server"
    async with asyncio.timeout(10):
        async for _ in reply_log.follow():
            pass
