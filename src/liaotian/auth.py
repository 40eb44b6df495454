"""Authentication: who is connecting, from where, and closing what a sign-out revokes.

Modes (setting ``auth``):

* ``auto`` (default): accounts are required as soon as one user exists. With no user, a
  single server on a loopback address runs open — owners are the clients' ids, as in the
  seed — and a server on any other address, or one of several processes (a Redis
  backplane: they are served through a proxy), refuses to start
  (:class:`~liaotian.errors.ConfigError` saying how to create a user).
* ``required``: accounts are always required.

Browsers sign in with a password and carry an HttpOnly, SameSite=Strict session cookie;
scripts and the CLI send ``Authorization: Bearer <token>``. Every WebSocket handshake is
checked *before* it is accepted: its ``Origin`` (when sent, as browsers do) must be the
server's own or one of ``allowed_origins`` (cross-site WebSocket hijacking), and in
required mode it must carry a live credential. Revoked, expired or deleted credentials have
their sockets closed: at once for a sign-out in this process, and within
``credential_check_interval`` seconds otherwise (a token revoked from the CLI, a sign-out
on another process).

Every request, HTTP or WebSocket, must name a host this server answers to in its ``Host``
header (:class:`HostPolicy`): a page served from an attacker's name that resolves to this
server (DNS rebinding) is refused before anything else, since its ``Origin`` matches the
``Host`` it sends. ``/metrics`` and ``/readyz`` answer loopback clients, or any client with
``metrics_access = "any"`` or the bearer ``metrics_token`` (:meth:`Authenticator.may_observe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
from collections import defaultdict
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from liaotian.errors import ConfigError
from liaotian.settings import Settings
from liaotian.store.accounts import SESSION, TOKEN, Accounts, Identity

log = logging.getLogger(__name__)

SESSION_COOKIE = "liaotian_session"
USERS_CACHE_SECONDS = 5.0
SIGNED_OUT = 1008


class Authenticator:
    """The authentication policy of one process, and the sockets opened with credentials."""

    def __init__(self, settings: Settings, accounts: Accounts) -> None:
        self.settings = settings
        self.accounts = accounts
        self._has_users = False
        self._checked_at = 0.0
        self._sockets: dict[int, set[WebSocket]] = defaultdict(set)
        self._sweeper: asyncio.Task[None] | None = None
        self.hosts = HostPolicy(settings)
        # Only one process on a loopback address may run without accounts.
        self.open_possible = settings.loopback and not settings.multiprocess

    async def start(self) -> None:
        """Check the mode can be served; raises ConfigError when it cannot."""
        self._has_users = await self.accounts.has_users()
        self._checked_at = time.monotonic()
        if not self.settings.loopback and not self._has_users:
            raise ConfigError(
                f"liaotian listens on {self.settings.host}, beyond this machine, and no "
                "user exists: create one first with `liaotian user add NAME` (then sign "
                "in on the page, or use `liaotian token create NAME` for scripts), or "
                "listen on 127.0.0.1"
            )
        if self.settings.multiprocess and not self._has_users:
            raise ConfigError(
                "liaotian runs as one of several processes (redis_url or backplane_url is "
                "set), which are served through a proxy, so accounts are required, and no "
                "user exists: create one first with `liaotian user add NAME --config FILE` "
                "(the same settings as the servers'; then sign in on the page, or use "
                "`liaotian token create NAME` for scripts), or run one process without them"
            )
        if self.settings.auth == "required" and not self._has_users:
            log.warning("auth is required but no user exists: `liaotian user add NAME`")
        self._sweeper = asyncio.create_task(self._sweep(), name="liaotian-auth-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def required(self) -> bool:
        """Whether requests must carry a credential (re-read every few seconds)."""
        if self.settings.auth == "required" or not self.open_possible:
            return True
        if time.monotonic() - self._checked_at > USERS_CACHE_SECONDS:
            self._has_users = await self.accounts.has_users()
            self._checked_at = time.monotonic()
        return self._has_users

    async def identify(self, connection: HTTPConnection) -> Identity | None:
        """The identity of a bearer token or session cookie; None without a live one."""
        header = connection.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return await self.accounts.identify(value.strip(), TOKEN)
        cookie = connection.cookies.get(SESSION_COOKIE)
        if cookie:
            return await self.accounts.identify(cookie, SESSION)
        return None

    def host_allowed(self, connection: HTTPConnection) -> bool:
        """Whether the request's ``Host`` is one this server answers to (:class:`HostPolicy`)."""
        return self.hosts.allows(connection.headers.get("host"))

    def may_observe(self, connection: HTTPConnection) -> bool:
        """Whether the request may read ``/metrics`` and ``/readyz``.

        True with ``metrics_access = "any"``, for a loopback client (behind a proxy on this
        machine, the client is the one named in ``X-Forwarded-For``: uvicorn trusts it from
        127.0.0.1), or with ``Authorization: Bearer <metrics_token>``.
        """
        if self.settings.metrics_access == "any":
            return True
        token = self.settings.metrics_token
        if token is not None:
            scheme, _, value = connection.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode(), token.get_secret_value().encode()
            ):
                return True
        client = connection.client
        return client is not None and _is_loopback_address(client.host)

    def origin_allowed(self, connection: HTTPConnection) -> bool:
        """No Origin (not a browser), the server's own origin, or an allowed one.

        The server's own origin is the one whose host and port are the request's ``Host``,
        so this holds only together with :meth:`host_allowed`.
        """
        origin = connection.headers.get("origin")
        if origin is None:
            return True
        if origin in self.settings.allowed_origins:
            return True
        parts = urlsplit(origin)
        host = connection.headers.get("host", "")
        return parts.scheme in ("http", "https") and parts.netloc == host and bool(host)

    # -- open sockets --------------------------------------------------------------------

    def register(self, credential_id: int, websocket: WebSocket) -> None:
        self._sockets[credential_id].add(websocket)

    def unregister(self, credential_id: int, websocket: WebSocket) -> None:
        sockets = self._sockets.get(credential_id)
        if sockets is not None:
            sockets.discard(websocket)
            if not sockets:
                del self._sockets[credential_id]

    async def close_sockets(self, credential_ids: set[int]) -> None:
        """Close every socket opened with these credentials (1008, "signed out")."""
        for credential_id in credential_ids:
            for websocket in list(self._sockets.pop(credential_id, ())):
                with contextlib.suppress(Exception):
                    await websocket.close(code=SIGNED_OUT, reason="signed out")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.credential_check_interval)
            try:
                dead = await self.accounts.dead(list(self._sockets))
            except Exception:
                log.exception("could not check the credentials of open sockets")
                continue
            if dead:
                await self.close_sockets(dead)


# -- hosts (DNS rebinding) ------------------------------------------------------------------

LOOPBACK_NAME = "localhost"
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})


class HostPolicy:
    """The host names a server answers to, from its settings.

    A request is served when its ``Host`` (port aside) is ``localhost`` or under
    ``.localhost``; any IP literal (a browser sends an address as ``Host`` only to that
    address, so it cannot come from DNS rebinding: load balancers' health checks use one);
    the configured ``host`` unless it is a wildcard address; the host of an
    ``allowed_origins`` entry; or an ``allowed_hosts`` entry (``*.example.com`` for its
    subdomains, ``*`` for any host, which turns the check off). A missing or malformed
    ``Host`` is refused.
    """

    def __init__(self, settings: Settings) -> None:
        names = {LOOPBACK_NAME}
        suffixes = {f".{LOOPBACK_NAME}"}
        if settings.host.lower() not in WILDCARD_ADDRESSES:
            names.add(settings.host.lower().strip("[]").removesuffix("."))
        for origin in settings.allowed_origins:
            hostname = urlsplit(origin).hostname
            if hostname:
                names.add(hostname.removesuffix("."))
        for entry in settings.allowed_hosts:
            if entry.startswith("*."):
                suffixes.add(entry[1:])
            else:
                names.add(entry)
        self.any_host = "*" in names
        self.names = frozenset(names)
        self.suffixes = tuple(suffixes)

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header value is served."""
        if self.any_host:
            return True
        name = host_name(host_header or "")
        if name is None:
            return False
        if name in self.names or name.endswith(self.suffixes):
            return True
        return _is_ip(name)


def host_name(host_header: str) -> str | None:
    """The host of a ``Host`` header value: lowercased, without port, brackets or trailing
    dot; None when empty or malformed."""
    value = host_header.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        return name or None
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None  # an unbracketed IPv6 address, or garbage
    return name.removesuffix(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # An IPv4 client of a dual-stack socket shows as ::ffff:127.0.0.1.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
