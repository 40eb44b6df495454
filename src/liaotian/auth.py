"""Authentication: who is connecting, from where, and closing what a sign-out revokes.

Modes (setting ``auth``):

* ``auto`` (default): accounts are required as soon as one user exists. With no user, a
  server on a loopback address runs open — owners are the clients' ids, as in the seed —
  and a server on any other address refuses to start (:class:`~liaotian.errors.ConfigError`
  saying how to create a user).
* ``required``: accounts are always required.

Browsers sign in with a password and carry an HttpOnly, SameSite=Strict session cookie;
scripts and the CLI send ``Authorization: Bearer <token>``. Every WebSocket handshake is
checked *before* it is accepted: its ``Origin`` (when sent, as browsers do) must be the
server's own or one of ``allowed_origins`` (cross-site WebSocket hijacking), and in
required mode it must carry a live credential. Revoked, expired or deleted credentials have
their sockets closed: at once for a sign-out in this process, and within
``credential_check_interval`` seconds otherwise (a token revoked from the CLI, a sign-out
on another process).
"""

from __future__ import annotations

import asyncio
import contextlib
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
        if self.settings.auth == "required" or not self.settings.loopback:
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

    def origin_allowed(self, connection: HTTPConnection) -> bool:
        """No Origin (not a browser), the server's own origin, or an allowed one."""
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
