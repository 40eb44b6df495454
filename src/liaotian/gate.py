"""The WebSocket gate: who may open a connection, and the bookkeeping around it.

Before a session runs, the gate checks the handshake (the owner's identity) and the
connection caps; refusals before ``accept`` close with 1008 (policy), refusals after it
send the protocol's error frame and close with 1013 (try again later). Once a connection
is admitted, it is counted in the metrics and released whatever way the session ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from starlette.websockets import WebSocket

from liaotian import protocol
from liaotian.errors import TooManyConnections
from liaotian.seed import seed_frame
from liaotian.services import services_of
from liaotian.store.repository import new_id

TRY_AGAIN_LATER = 1013
Protocol = Literal["v1", "seed"]


async def run_session(
    websocket: WebSocket,
    owner: str,
    kind: Protocol,
    session: Callable[[], Awaitable[None]],
) -> None:
    """Accept, admit ``owner`` under the caps, run ``session``, then release the slot."""
    services = services_of(websocket)
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
    gauge = services.metrics.connections.labels(kind)
    gauge.inc()
    try:
        await session()
    finally:
        gauge.dec()
        services.guards.release(owner)
