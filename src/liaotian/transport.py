"""The WebSocket transport, shared by both protocols.

:class:`ClientSocket` is one accepted WebSocket, spoken to through the server's own ASGI
callables: frames go straight to the server's ``send`` as prebuilt messages, with no
framework layer in between, and the idle timeout is one timer per connection, re-armed
only when it fires, instead of a timeout context around every read.

:class:`LeanWebSocketProtocol` is the server side: uvicorn's ``websockets-sansio``
protocol keeping less per connection and writing text frames directly (pass it as
uvicorn's ``ws``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from starlette.types import Message, Receive, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import State

BINARY = b""
"""Returned for a binary frame (neither protocol accepts them)."""

IDLE_CLOSE = 1000
GONE = 1006


class ClientSocket:
    """An accepted WebSocket: read frames, send text frames, close when idle.

    ``websocket`` is the Starlette view of the same connection, used to close it (so its
    state stays consistent for whoever else closes it, such as a sign-out); ``receive`` and
    ``send`` are the server's ASGI callables of the connection.

    Sends from several tasks may overlap: an ASGI server writes each message whole (uvicorn
    writes the frame at once, after waiting for the transport to take more), so frames never
    interleave and no lock is taken.
    """

    __slots__ = (
        "_busy",
        "_closer",
        "_idle_timeout",
        "_receive",
        "_send",
        "_timer",
        "_waiting_since",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, receive: Receive, send: Send) -> None:
        self.websocket = websocket
        self._receive = receive
        self._send = send
        self._idle_timeout = 0.0
        self._busy: Callable[[], bool] | None = None
        self._waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None

    async def send(self, frame: bytes) -> None:
        """Send ``frame`` (UTF-8 JSON) as a text frame.

        Raises WebSocketDisconnect when the client has gone, RuntimeError after a close.
        """
        try:
            await self._send({"type": "websocket.send", "text": frame.decode()})
        except OSError:  # the ASGI server's "client disconnected"
            raise WebSocketDisconnect(GONE) from None

    async def send_text(self, text: str) -> None:
        """Send ``text`` as a text frame; raises like :meth:`send`."""
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError:
            raise WebSocketDisconnect(GONE) from None

    def watch_idle(self, idle_timeout: float, busy: Callable[[], bool]) -> None:
        """Close the connection (1000, "idle timeout") once it has waited ``idle_timeout``
        seconds (0: never) in :meth:`next_frame` for a frame while ``busy()`` was false
        (a connection that streams a reply is not idle). The wait for the next frame then
        ends with None."""
        if idle_timeout <= 0:
            return
        self._idle_timeout = idle_timeout
        self._busy = busy
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        since = self._waiting_since
        busy = self._busy
        if since is None or (busy is not None and busy()):
            deadline = now + self._idle_timeout
        elif now - since < self._idle_timeout:
            deadline = since + self._idle_timeout
        else:
            self._timer = None
            self._closer = asyncio.create_task(
                self.websocket.close(code=IDLE_CLOSE, reason="idle timeout")
            )
            return
        self._timer = loop.call_at(deadline, self._check_idle)

    async def next_frame(self) -> str | bytes | None:
        """The next client frame: its text, ``BINARY`` for a binary frame, or None when the
        client has left or the connection was closed (as idle, or by the server)."""
        self._waiting_since = asyncio.get_running_loop().time()
        try:
            message: Message = await self._receive()
        finally:
            self._waiting_since = None
        if message["type"] != "websocket.receive":
            return None
        text = message.get("text")
        return BINARY if text is None else text

    async def stop(self) -> None:
        """Stop watching for idleness (the session is over); waits for an idle close."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)


# -- the server side ------------------------------------------------------------------------

T = TypeVar("T")


class Mailbox(Generic[T]):
    """The part of ``asyncio.Queue`` uvicorn uses (``put_nowait``, ``get``, ``empty``),
    unbounded, in two small objects instead of a queue's three deques and their locks."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none. Cancelling loses nothing."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class Flag:
    """The part of ``asyncio.Event`` uvicorn uses (``set``, ``clear``, ``wait``), without
    the deque an Event keeps even when nobody waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        """Return True once set (at once if it is)."""
        while not self._value:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, lighter per connection and per frame.

    Kept per connection: a :class:`Mailbox` and a :class:`Flag` instead of an
    ``asyncio.Queue`` and an ``asyncio.Event``, and not the handshake's request and
    response once the connection is accepted (uvicorn never reads them again). An idle
    connection costs about a fifth less memory.

    A text message while the connection is open is written as one unmasked frame straight
    to the transport, the way the websockets library frames it, without building its frame
    objects. Everything else — the handshake, reading, pings, closing, the frame size limit,
    per-message deflate (where the fast path steps aside) — is uvicorn's and websockets'.
    Relies on uvicorn's internals, so uvicorn's version is pinned; the tests run on it.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue: Mailbox[ASGIReceiveEvent] = Mailbox()  # type: ignore[assignment]
        self.writable: Flag = Flag(True)  # type: ignore[assignment]

    async def send(self, message: ASGISendEvent) -> None:
        text = None
        if message["type"] == "websocket.send" and message.get("bytes") is None:
            text = message.get("text")  # uvicorn sends "bytes" when a message has both
        if (
            text is not None
            and self._open()
            # A slow reader: waiting for the transport may find the connection closed after.
            and (self.writable.is_set() or (await self.writable.wait() and self._open()))
        ):
            self.transport.write(text_frame(text.encode()))
            return
        # Anything else, and a send that finds the connection no longer open after the
        # wait, goes uvicorn's way (with its errors).
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            del self.request, self.response

    def _open(self) -> bool:
        """Accepted, not closing or closed, frames sent as they are (no extension)."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and self.conn.state is State.OPEN
            and not self.conn.extensions
        )


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 section 5.2: a server's frames are not
    masked) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload
