"""The WebSocket transport, shared by both protocols.

:class:`ClientSocket` is one accepted WebSocket, spoken to through the server's own ASGI
callables: frames go straight to the server's ``send`` as prebuilt messages, with no
framework layer in between, and the idle timeout is one timer per connection, re-armed
only when it fires, instead of a timeout context around every read.

:class:`LeanWebSocketProtocol` is the server side: uvicorn's ``websockets-sansio``
protocol keeping less per connection and writing text frames directly (pass it as
uvicorn's ``ws``), that drains on shutdown: a socket with a reply streaming to it stays
open until the reply ends (see :class:`Drain`). It relies on uvicorn's internals, so
:func:`check_uvicorn_version` refuses to start on any uvicorn but the one it was written
for. ``liaotian.server`` wires it into uvicorn.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import uvicorn
from starlette.types import Message, Receive, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import State

from liaotian.errors import ConfigError

BINARY = b""
"""Returned for a binary frame (neither protocol accepts them)."""

IDLE_CLOSE = 1000
GONE = 1006
SERVICE_RESTART = 1012

SERVER_EXTENSION = "liaotian.server"
"""The scope extension through which :class:`ClientSocket` finds its
:class:`LeanWebSocketProtocol`: a weak reference to it (absent under other servers)."""


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
        "_server",
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
        self._server: LeanWebSocketProtocol | None = None

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
        ends with None.

        ``busy()`` also tells the server, on shutdown, to keep the connection open while it
        is true (:meth:`LeanWebSocketProtocol.shutdown`), so it must turn false once the
        replies streaming to the connection have been sent whole."""
        ref = (self.websocket.scope.get("extensions") or {}).get(SERVER_EXTENSION)
        server = ref() if ref is not None else None
        if isinstance(server, LeanWebSocketProtocol):
            server.watch_busy(busy)
            self._server = server
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
        if self._server is not None:
            self._server.watch_busy(None)  # no reference cycle through the session
            self._server = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)


# -- the server side ------------------------------------------------------------------------

UVICORN_VERSION = "0.54.0"
"""The uvicorn :class:`LeanWebSocketProtocol` and ``liaotian.server`` were written for
(and pinned in pyproject.toml): they override and read its protocols' internals."""


def check_uvicorn_version(installed: str | None = None) -> None:
    """Raise ConfigError unless ``installed`` (by default, the uvicorn imported) is
    :data:`UVICORN_VERSION`.

    Any other version may rename or reorder what the protocols rely on, and fail only
    later, on some connection; refusing to start says so at once.
    """
    if installed is None:
        installed = uvicorn.__version__
    if installed != UVICORN_VERSION:
        raise ConfigError(
            f"liaotian's server transport (liaotian.transport.LeanWebSocketProtocol) relies "
            f"on the internals of uvicorn {UVICORN_VERSION}, but uvicorn {installed} is "
            f"installed; install the pinned version: pip install 'uvicorn[standard]=="
            f"{UVICORN_VERSION}'"
        )


class Drain:
    """A server's shutdown, as a deadline: :meth:`begin` starts ``grace`` seconds.

    Until then sockets with a reply streaming to them stay open
    (:meth:`LeanWebSocketProtocol.shutdown`); what is left of it (:meth:`time_left`) is
    the replies' own grace afterwards (the app's lifespan), so the whole shutdown takes
    ``grace`` seconds, not twice that.
    """

    __slots__ = ("_deadline", "_on_begin", "grace")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._deadline: float | None = None
        self._on_begin: list[Callable[[], None]] = []

    def on_begin(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the drain begins (such as: start no new reply)."""
        self._on_begin.append(callback)

    def begin(self) -> None:
        """Start the grace and call the :meth:`on_begin` callbacks (once; later calls
        change nothing)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.grace
            for callback in self._on_begin:
                callback()

    def time_left(self) -> float:
        """Seconds left of the grace: all of it before :meth:`begin`, never below 0."""
        if self._deadline is None:
            return self.grace
        return max(0.0, self._deadline - time.monotonic())


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

    On shutdown it drains instead of closing every socket at once (:meth:`shutdown`).
    Relies on uvicorn's internals: :func:`check_uvicorn_version` guards them at start-up.
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
        self.drain: Drain | None = None
        """Set by the HTTP protocol that upgraded to this one (``liaotian.server``)."""
        self.on_lost: Callable[[], None] | None = None
        """Called once when the connection is lost (set like :attr:`drain`: it frees the
        connection's place in the count per address)."""
        self._busy: Callable[[], bool] | None = None
        self._drain_timer: asyncio.TimerHandle | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when websockets refused the handshake
        if scope is not None:
            # Weak: the scope lives as long as the connection, so no cycle through it.
            scope["extensions"][SERVER_EXTENSION] = weakref.ref(self)

    def watch_busy(self, busy: Callable[[], bool] | None) -> None:
        """``busy()`` is true while a reply streams to this connection (None: the session
        is over); :meth:`shutdown` keeps the connection open while it is."""
        self._busy = busy

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._busy = None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()

    def shutdown(self) -> None:
        """The server is shutting down (uvicorn calls this on every connection, right after
        it stops listening).

        A connection with a reply streaming to it (its session's ``busy()``) stays open
        until the reply has been sent whole, or the :class:`Drain`'s grace has passed, and
        then closes with 1012 and waits for the client's close frame, so nothing sent
        before it is lost. Any other connection closes at once, with 1012 once accepted
        (uvicorn's own shutdown). The replies go on meanwhile: the engine stops them only
        in the app's lifespan shutdown, which uvicorn runs after these connections close.
        """
        if self._draining():
            self._drain_timer = self.loop.call_later(DRAIN_POLL, self._drain_check)
            return
        super().shutdown()

    def _draining(self) -> bool:
        """Accepted, still open, busy, and the drain has time left."""
        busy = self._busy
        return (
            self.drain is not None
            and busy is not None
            and self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and not self.transport.is_closing()
            and self.conn.state is State.OPEN
            and self.drain.time_left() > 0
            and busy()
        )

    def _drain_check(self) -> None:
        self._drain_timer = None
        if self.disconnected or self.close_sent or self.transport.is_closing():
            return
        if self._draining():
            assert self.drain is not None
            delay = min(DRAIN_POLL, self.drain.time_left())
            self._drain_timer = self.loop.call_later(delay, self._drain_check)
            return
        if self.conn.state is not State.OPEN:
            super().shutdown()
            return
        # uvicorn's own close (an ASGI "websocket.close"), not shutdown()'s: that one closes
        # the transport at once, which can reset the connection and lose the reply's last
        # frames on their way.
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": SERVICE_RESTART})
        self.conn.send_close(SERVICE_RESTART)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        left = self.drain.time_left() if self.drain is not None else 0.0
        wait = min(self.close_timeout, max(CLOSE_WAIT_MIN, left))
        self.close_timer = self.loop.call_later(wait, self.transport.close)

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


DRAIN_POLL = 0.05
"""Seconds between looks at a draining connection's ``busy()``: it closes this long after
its reply has been sent, at most."""
CLOSE_WAIT_MIN = 1.0
"""Seconds a drained connection waits at least for the client's close frame."""


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 section 5.2: a server's frames are not
    masked) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload
