"""uvicorn, wired for liaotian: :func:`build_server` is what ``liaotian serve`` runs.

Besides the leaner WebSocket protocol (:class:`~liaotian.transport.LeanWebSocketProtocol`),
it guards the server's file descriptors against connections that hold one for nothing:

* **A request must arrive in time.** uvicorn times out a keep-alive connection *between*
  requests only: a connection that never sends a whole request (nothing at all, or half
  a request head, a WebSocket handshake included) was held forever, and about a thousand
  of them exhausted the default limit of 1,024 open files. :class:`GuardedHttpProtocol`
  closes a connection whose request (line, headers and body) is not complete within
  ``request_read_timeout`` seconds of the connection opening (on a kept-alive
  connection, of the previous response's end).
* **Connections per peer address are capped** (``max_connections_per_address``), counted
  at the TCP level from accept to close, so half-open ones count too; one over the cap is
  closed at once. Behind a proxy every connection comes from the proxy's address: see
  :func:`per_address_cap`.

:class:`LiaotianServer` begins the :class:`~liaotian.transport.Drain` when uvicorn's
shutdown starts. :func:`raise_open_file_limit` raises the soft open-file limit.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import socket
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from liaotian.settings import Settings
from liaotian.transport import Drain, LeanWebSocketProtocol, check_uvicorn_version

log = logging.getLogger(__name__)

TRANSPORT_MAX_FRAME_BYTES = 16 << 20
"""uvicorn closes connections whose frames exceed this with 1009; the application's own,
smaller limit (max_frame_bytes) answers with an error frame and keeps the connection."""
DEFAULT_PER_ADDRESS = 256
"""The cap per remote address when ``max_connections_per_address`` is unset."""
RESERVED_FILES = 256
"""Open files a process needs besides its client connections (database, Redis, upstream
connections, the model, logs): the open-file limit should exceed max_connections by this."""
REFUSAL_LOG_INTERVAL = 60.0


def per_address_cap(settings: Settings) -> tuple[int, bool]:
    """The cap per peer address (0: none) and whether loopback peers are exempt.

    Unset, remote addresses get :data:`DEFAULT_PER_ADDRESS` and loopback ones no cap (on
    the same host the peer is a proxy or a local tool); a number set applies to every
    peer. Behind a proxy on another host every connection is the proxy's: raise the cap
    there, or set 0.
    """
    if settings.max_connections_per_address is None:
        return DEFAULT_PER_ADDRESS, True
    return settings.max_connections_per_address, False


class PeerCounter:
    """Open TCP connections per peer address, up to ``cap`` each (0: no cap).

    IPv6 peers are counted per /64, the block one host or home is usually given (an
    IPv4-mapped address counts as its IPv4 address).
    """

    __slots__ = ("_last_warning", "_open", "_refused", "cap", "exempt_loopback")

    def __init__(self, cap: int, *, exempt_loopback: bool) -> None:
        self.cap = cap
        self.exempt_loopback = exempt_loopback
        self._open: dict[str, int] = {}
        self._refused = 0
        self._last_warning = -math.inf

    def key_of(self, peer: tuple[str, int] | None) -> str | None:
        """What ``peer`` is counted under; None when it is not counted."""
        if not self.cap or peer is None:
            return None
        try:
            address = ipaddress.ip_address(peer[0])
        except ValueError:  # not an IP peer (a Unix socket)
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if self.exempt_loopback and address.is_loopback:
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def acquire(self, key: str) -> bool:
        """Count one more connection under ``key``; False (nothing counted) at the cap."""
        count = self._open.get(key, 0)
        if count >= self.cap:
            self._refused += 1
            now = time.monotonic()
            # Logged once a minute at most: a flood must not become a flood of log lines.
            if now - self._last_warning >= REFUSAL_LOG_INTERVAL:
                self._last_warning = now
                log.warning(
                    "refused %d connection(s) over max_connections_per_address (%d); last "
                    "from %s (behind a proxy, every connection comes from the proxy: raise "
                    "the cap or set it to 0)",
                    self._refused,
                    self.cap,
                    key,
                )
                self._refused = 0
            return False
        self._open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)


class GuardedServerState(ServerState):
    """uvicorn's state shared by a server's connections, plus liaotian's guards."""

    def __init__(self, request_read_timeout: float, peers: PeerCounter, drain: Drain) -> None:
        super().__init__()
        self.request_read_timeout = request_read_timeout
        self.peers = peers
        self.drain = drain


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the two guards of this module.

    The request timer runs while the server waits for the client to send a request: from
    the connection's opening, and from the end of each response, until a request has
    arrived whole (for a WebSocket, its handshake: the connection then passes to
    :class:`~liaotian.transport.LeanWebSocketProtocol`, with its place in the count).
    Without a :class:`GuardedServerState` (another server) it is uvicorn's protocol.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._guards = server_state if isinstance(server_state, GuardedServerState) else None
        self._peer: str | None = None
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guards = self._guards
        if guards is None:
            return
        key = guards.peers.key_of(self.client)
        if key is not None:
            if not guards.peers.acquire(key):
                transport.close()
                return
            self._peer = key
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        if self._peer is not None and self._guards is not None:
            self._guards.peers.release(self._peer)
            self._peer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_request()

    def on_message_complete(self) -> None:
        self._stop_request_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle between requests (uvicorn armed its keep-alive timer, which stops at the
        # first byte received, even a stray one): the next request must arrive in time.
        if self.timeout_keep_alive_task is not None:
            self._await_request()

    def handle_websocket_upgrade(self) -> None:
        self._stop_request_timer()
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, LeanWebSocketProtocol) and self._guards is not None:
            protocol.drain = self._guards.drain
            peer, self._peer = self._peer, None
            if peer is not None:
                peers = self._guards.peers
                protocol.on_lost = functools.partial(peers.release, peer)

    def _await_request(self) -> None:
        guards = self._guards
        if guards is None or self._request_timer is not None:
            return
        if guards.request_read_timeout > 0 and not self.transport.is_closing():
            self._request_timer = self.loop.call_later(
                guards.request_read_timeout, self._request_timed_out
            )

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            log.debug("closed a connection that sent no whole request in time: %s", self.client)
            self.transport.close()


class LiaotianServer(uvicorn.Server):
    """uvicorn's server with liaotian's guards (:class:`GuardedServerState`); its shutdown
    begins the drain first."""

    def __init__(self, config: Config, state: GuardedServerState) -> None:
        super().__init__(config)
        self.server_state = state
        self.guards = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guards.drain.begin()
        await super().shutdown(sockets)


def build_server(app: ASGIApp, settings: Settings, drain: Drain, **config: Any) -> LiaotianServer:
    """The server that runs ``app`` as ``settings`` say, draining by ``drain`` on shutdown
    (pass the app's, see :func:`~liaotian.app.create_app`). ``config`` overrides uvicorn's
    settings (tests pass ``log_level``).

    Raises ConfigError when the installed uvicorn is not the one the protocols are for.
    """
    check_uvicorn_version()
    cap, exempt_loopback = per_address_cap(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": GuardedHttpProtocol,
        "ws": LeanWebSocketProtocol,  # uvicorn's websockets-sansio, leaner (transport.py)
        "ws_per_message_deflate": False,
        "ws_max_size": TRANSPORT_MAX_FRAME_BYTES,
        "ws_ping_interval": settings.ping_interval,
        "ws_ping_timeout": settings.ping_timeout,
        # A backstop: the drain closes every socket at the grace, then uvicorn waits this
        # long at most for them to be gone before the lifespan's shutdown.
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace) + 1,
        "log_level": settings.log_level,
        "lifespan": "on",
        "server_header": False,
        **config,
    }
    state = GuardedServerState(
        settings.request_read_timeout,
        PeerCounter(cap, exempt_loopback=exempt_loopback),
        drain,
    )
    return LiaotianServer(uvicorn.Config(app, **options), state)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit, where the platform allows.

    Every connection is a file: with the common soft limit of 1,024 a process serves
    fewer than a thousand clients. Returns the limit before and after (-1, -1 where the
    platform has none).
    """
    try:
        import resource
    except ImportError:  # Windows
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = 1 << 20  # an unlimited soft limit is refused; this is Linux's usual cap
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft
