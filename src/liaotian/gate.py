"""The WebSocket gate: who may open a connection, and the bookkeeping around it.

Before a session runs, the gate checks the handshake — its ``Origin``, then the owner's
identity (a credential when accounts are required, else the client id) — and the
connection caps. Refusals before ``accept`` close with 1008 (policy; the client sees HTTP
403), refusals after it send the protocol's error frame and close with 1013 (try again
later). An admitted connection is counted in the metrics and registered under its
credential (so a sign-out closes it), and released whatever way the session ends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Literal

from starlette.websockets import WebSocket

from liaotian import logs, protocol
from liaotian.errors import TooManyConnections
from liaotian.seed import seed_frame
from liaotian.services import services_of
from liaotian.store.repository import new_id

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
POLICY_VIOLATION = 1008
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
Protocol = Literal["v1", "seed"]


async def run_session(
    websocket: WebSocket,
    client_id: str,
    kind: Protocol,
    session: Callable[[str], Awaitable[None]],
) -> None:
    """Check the handshake, accept, admit the owner, run ``session(owner)``, release."""
    services = services_of(websocket)
    auth = services.auth
    if not auth.origin_allowed(websocket):
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    identity = None
    if await auth.required():
        identity = await auth.identify(websocket)
        if identity is None:
            await websocket.close(code=POLICY_VIOLATION, reason="authentication required")
            return
        owner = identity.owner
    elif CLIENT_ID.match(client_id):
        owner = client_id
    else:
        await websocket.close(code=POLICY_VIOLATION, reason="client_id is required")
        return
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
    try:
        await session(owner)
    finally:
        log.info("connection closed")
        gauge.dec()
        services.guards.release(owner)
        if identity is not None:
            auth.unregister(identity.credential_id, websocket)
