"""The WebSocket gate: who may open a connection, and the bookkeeping around it.

Before a session runs, the gate checks the handshake — its ``Host`` and ``Origin``, then
the owner's identity (a credential when accounts are required, else the client id) — and
the connection caps. Refusals before ``accept`` close with 1008 (policy; the client sees
HTTP 403), refusals after it send the protocol's error frame and close with 1013 (try again
later). An admitted connection is counted in the metrics and registered under its
credential (so a sign-out closes it), and released whatever way the session ends.

The gate is called with the raw ASGI scope and callables (see ``app.py``): the WebSocket
routes do not go through the framework's router and middleware.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Literal, Protocol

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from liaotian import logs, protocol
from liaotian.auth import Authenticator
from liaotian.errors import TooManyConnections
from liaotian.seed import seed_frame
from liaotian.services import Services
from liaotian.store.accounts import Identity
from liaotian.store.repository import new_id
from liaotian.transport import ClientSocket

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
POLICY_VIOLATION = 1008
# An open-mode owner is its client id as given. Never allow "/" here: account owners are
# "user/{id}" (liaotian.store.accounts), and the alphabets keep the two kinds apart.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# The owner that protocol-v1 clients share in open mode with ``open_owner = "shared"``: on
# one machine, the page, the CLI and the Python client see the same conversations.
OPEN_OWNER = "local"
Kind = Literal["v1", "seed"]


class Session(Protocol):
    """One protocol's session on an admitted connection."""

    async def run(self) -> None:
        """Serve until the client leaves or the connection is closed."""


HOST_NOT_ALLOWED = "host not allowed"
ORIGIN_NOT_ALLOWED = "origin not allowed"
AUTHENTICATION_REQUIRED = "authentication required"
CLIENT_ID_REQUIRED = "client_id is required"


async def check_handshake(
    handshake: HTTPConnection, auth: Authenticator, client_id: str, kind: Kind
) -> tuple[str, Identity | None] | str:
    """The owner (and identity, with accounts) of a handshake, or why it is refused: one of
    :data:`HOST_NOT_ALLOWED`, :data:`ORIGIN_NOT_ALLOWED`, :data:`AUTHENTICATION_REQUIRED`,
    :data:`CLIENT_ID_REQUIRED`.

    Without accounts, a protocol-v1 client is :data:`OPEN_OWNER` when owners are shared
    (then its client id is not needed), else its client id; a seed client is its client id.
    The HTTP routes that act for an owner (``liaotian.attachment_routes``) decide it here
    too, as a protocol-v1 client, so a request is the same owner as its page's socket.

    ``handshake`` is a throwaway view of the scope: the headers and cookies it parses are
    not kept for the connection's lifetime.
    """
    if not auth.host_allowed(handshake):
        return HOST_NOT_ALLOWED
    if not auth.origin_allowed(handshake):
        return ORIGIN_NOT_ALLOWED
    if await auth.required():
        identity = await auth.identify(handshake)
        if identity is None:
            return AUTHENTICATION_REQUIRED
        return identity.owner, identity
    if kind == "v1" and auth.settings.open_owner == "shared":
        return OPEN_OWNER, None
    if CLIENT_ID.fullmatch(client_id):
        return client_id, None
    return CLIENT_ID_REQUIRED


SessionFactory = Callable[[ClientSocket, Services, str], Session]
"""Builds the session of ``owner`` on a socket: ``factory(socket, services, owner)``."""


async def run_session(
    scope: Scope,
    receive: Receive,
    send: Send,
    services: Services,
    client_id: str,
    kind: Kind,
    session: SessionFactory,
) -> None:
    """Check the handshake, accept, admit the owner, run ``session(...).run()``, release."""
    auth = services.auth
    websocket: WebSocket = WebSocket(scope, receive, send)
    checked = await check_handshake(HTTPConnection(scope), auth, client_id, kind)
    if isinstance(checked, str):
        await websocket.close(code=POLICY_VIOLATION, reason=checked)
        return
    owner, identity = checked
    await websocket.accept()
    try:
        services.guards.admit(owner)
    except TooManyConnections as error:
        frame = (
            protocol.build_error(error).decode()
            if kind == "v1"
            else seed_frame(None, new_id(), error.message, "error")
        )
        await websocket.send_text(frame)
        await websocket.close(code=TRY_AGAIN_LATER, reason=error.code)
        return
    logs.connection_id.set(new_id()[:12])
    log.info("connection opened", extra=logs.fields(protocol=kind, owner=owner))
    gauge = services.metrics.connections.labels(kind)
    gauge.inc()
    if identity is not None:
        auth.register(identity.credential_id, websocket)
    socket = ClientSocket(websocket, receive, send)
    try:
        await session(socket, services, owner).run()
    finally:
        await socket.stop()
        log.info("connection closed")
        gauge.dec()
        services.guards.release(owner)
        if identity is not None:
            auth.unregister(identity.credential_id, websocket)
