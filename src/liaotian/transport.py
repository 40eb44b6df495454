"""Reading client frames off a WebSocket, with the idle timeout: shared by both protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.websockets import WebSocket

BINARY = b""
"""Returned for a binary frame (neither protocol accepts them)."""

IDLE_CLOSE = 1000


async def next_frame(
    websocket: WebSocket, idle_timeout: float, busy: Callable[[], bool]
) -> str | bytes | None:
    """The next client frame: its text, ``BINARY`` for a binary frame, or None when the
    client has left or stayed silent for ``idle_timeout`` seconds (0: no limit) while
    ``busy()`` was false (a connection that streams a reply is not idle). An idle
    connection is closed with code 1000, reason "idle timeout"."""
    while True:
        try:
            async with asyncio.timeout(idle_timeout or None):
                message = await websocket.receive()
        except TimeoutError:
            if busy():
                continue
            await websocket.close(code=IDLE_CLOSE, reason="idle timeout")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return BINARY if text is None else text
