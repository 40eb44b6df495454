"""``POST /conversations/import``: import liaotian's export or a ChatGPT ``conversations.json``.

The body is the JSON file itself, with ``Content-Type: application/json`` (anything else
is 415: a cross-site form cannot send that type without the browser asking this server
first, and the ``Origin`` is checked as well). The owner is decided exactly as for the
WebSocket handshake and the attachment routes
(:func:`liaotian.attachment_routes.request_owner`).

Refused before the body is read: a ``Content-Length`` over ``max_import_bytes`` (413),
an owner over ``imports_per_minute`` (429), a process already reading
:data:`~liaotian.guards.IMPORTS_AT_ONCE` files with :data:`~liaotian.guards.IMPORT_QUEUE`
more waiting (503). A body without a length is read only up to the limit (413 beyond it).
The file is parsed in a thread (:mod:`liaotian.importers`: 400 ``invalid_import`` naming
what is wrong, and nothing stored), stored in one transaction
(:class:`~liaotian.store.portability.PortabilityStore`), and each conversation added is
announced to the owner's connections as ``conversation.updated``.

Answer: 200 ``{"imported": n, "skipped": n, "conversations": [{id, title}]}``.
"""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from liaotian.attachment_routes import check_length, json_error, read_body, request_owner
from liaotian.errors import (
    ImportRefused,
    ImportsBusy,
    ImportTooLarge,
    InvalidImport,
    LiaotianError,
    LimitExceeded,
    StoreError,
)
from liaotian.importers import parse_import
from liaotian.services import services_of
from liaotian.store.models import utcnow
from liaotian.store.portability import PortabilityStore

router = APIRouter(prefix="/conversations")

# HTTP status by error class, the first that matches (subclasses first).
_STATUS: dict[type[LiaotianError], int] = {
    ImportTooLarge: 413,
    ImportRefused: 400,
    ImportsBusy: 503,
    LimitExceeded: 429,
    StoreError: 503,
}
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"


def _refused(error: LiaotianError) -> JSONResponse:
    """The response of a typed error; the connection is closed after it (the body may be
    unread)."""
    status = next((code for cls, code in _STATUS.items() if isinstance(error, cls)), 500)
    if error.code == UNSUPPORTED_MEDIA_TYPE:
        status = 415
    response = json_error(status, error.code, error.message)
    if isinstance(error, LimitExceeded) and error.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    response.headers["Connection"] = "close"
    return response


@router.post("/import")
async def import_conversations(request: Request) -> Response:
    """Import the file in the body for the request's owner (docs/api.md)."""
    services = services_of(request)
    settings = services.settings
    owner = await request_owner(request, services)
    if isinstance(owner, Response):
        owner.headers["Connection"] = "close"
        return owner
    limit = settings.max_import_bytes
    try:
        _check_content_type(request.headers.get("content-type", ""))
        check_length(request.headers.get("content-length"), limit, _too_large, InvalidImport)
        await services.guards.check_import(owner)
        async with services.guards.import_slot():
            body = await read_body(request, limit, _too_large)
            parsed = await asyncio.to_thread(
                partial(
                    parse_import,
                    bytes(body),
                    max_title_chars=settings.max_title_chars,
                    now=utcnow(),
                )
            )
            del body
            result = await PortabilityStore(services.store.database).import_conversations(
                owner, parsed
            )
    except ClientDisconnect:
        return Response(status_code=400, headers={"Connection": "close"})
    except (ImportRefused, LimitExceeded, StoreError) as error:
        return _refused(error)
    for conversation in result.imported:
        services.engine.announce_conversation(owner, conversation)
    return JSONResponse(result.to_wire())


def _check_content_type(content_type: str) -> None:
    """JSON only: never a form or plain text (which a cross-site page could send)."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ImportRefused(
            "send the file itself as the request body, with Content-Type: application/json",
            code=UNSUPPORTED_MEDIA_TYPE,
        )


def _too_large(limit: int) -> ImportTooLarge:
    return ImportTooLarge(f"the file is too large: at most {limit / (1 << 20):g} MiB")
