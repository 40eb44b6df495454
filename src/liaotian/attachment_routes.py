"""HTTP routes of attachments: upload an image, fetch one back. Used by the page and clients.

``POST /attachments`` takes the image itself as the request body (not a form), with its
``Content-Type`` (``image/png``, ``image/jpeg``, ``image/webp``, ``image/gif``, or
``application/octet-stream``) and its file name in the ``name`` query parameter. A browser
sends a ``File`` so with ``fetch(url, {method: "POST", body: file})``. No cross-site form can
send such a body without the browser asking this server first (a CORS preflight, which it
does not answer), and the ``Origin`` is checked as well.

Both routes decide the owner exactly as the WebSocket handshake does
(:func:`liaotian.gate.check_handshake`, as a protocol-v1 client): a session cookie or
``Authorization: Bearer`` token when accounts are required, else ``local`` (owners shared)
or the ``client_id`` query parameter (``open_owner = "per-client"``), the one the page's
socket gives. ``GET /attachments/{id}`` answers another owner's id exactly like an unknown
one: 404.

An upload is refused before its body is read when its ``Content-Length`` is over
``max_attachment_bytes`` (413), when its owner is over ``attachments_per_minute`` (429), or
when ``attachment_decodes_at_once`` images are being checked and ``attachment_decode_queue``
more wait (503); a body without a length is read only up to the limit (413 beyond it).
The image is then checked and re-encoded in a thread (:mod:`liaotian.images`) and stored
(:class:`~liaotian.store.attachments.AttachmentStore`). Errors are
``{"error": {"code", "message"}}`` as in ``liaotian.auth_routes``.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from liaotian.errors import (
    AttachmentError,
    AttachmentsBusy,
    AttachmentTooLarge,
    InvalidImage,
    LiaotianError,
    LimitExceeded,
    NotFound,
    StoreError,
    UnsupportedMediaType,
)
from liaotian.gate import (
    AUTHENTICATION_REQUIRED,
    CLIENT_ID_REQUIRED,
    HOST_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    check_handshake,
)
from liaotian.images import MEDIA_TYPES, normalize_image
from liaotian.services import Services, services_of

router = APIRouter(prefix="/attachments")

MAX_NAME = 200
"""Longest stored file name (the column's size), extension included."""
CACHE_SECONDS = 7 * 24 * 3600
# An attachment id as new_attachment_id makes them; anything else is unknown at once.
ATTACHMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
UPLOAD_TYPES = ("image/", "application/octet-stream")

_REFUSALS = {
    HOST_NOT_ALLOWED: (400, "host_not_allowed", "this server does not answer to that host"),
    ORIGIN_NOT_ALLOWED: (403, "origin_not_allowed", "use the server's own page"),
    AUTHENTICATION_REQUIRED: (
        401,
        "authentication_required",
        "sign in on the page, or send 'Authorization: Bearer <token>' (liaotian token create)",
    ),
    CLIENT_ID_REQUIRED: (
        400,
        "client_id_required",
        "give the client_id query parameter (the one the page's socket gives)",
    ),
}
# HTTP status by error class, the first that matches (subclasses first).
_STATUS: dict[type[LiaotianError], int] = {
    AttachmentTooLarge: 413,
    UnsupportedMediaType: 415,
    AttachmentError: 400,
    AttachmentsBusy: 503,
    LimitExceeded: 429,
    NotFound: 404,
    StoreError: 503,
}


def json_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _refused(error: LiaotianError, *, close: bool = False) -> JSONResponse:
    """The response of a typed error; ``close`` ends the connection after it (for an upload
    whose body may be unread: nothing reads the rest of it)."""
    status = next((code for cls, code in _STATUS.items() if isinstance(error, cls)), 500)
    response = json_error(status, error.code, error.message)
    if isinstance(error, LimitExceeded) and error.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if close:
        response.headers["Connection"] = "close"
    return response


async def request_owner(request: Request, services: Services) -> str | JSONResponse:
    """The request's owner, as its page's socket would be; or the refusal to send."""
    checked = await check_handshake(
        request, services.auth, request.query_params.get("client_id", ""), "v1"
    )
    if isinstance(checked, str):
        return json_error(*_REFUSALS[checked])
    return checked[0]


@router.post("")
async def upload(request: Request) -> Response:
    """Store the image in the body; 201 with ``{id, media_type, name, width, height,
    bytes}`` (``Location``: its URL)."""
    services = services_of(request)
    settings = services.settings
    owner = await request_owner(request, services)
    if isinstance(owner, Response):
        owner.headers["Connection"] = "close"
        return owner
    limit = settings.max_attachment_bytes
    try:
        _check_content_type(request.headers.get("content-type", ""))
        check_length(request.headers.get("content-length"), limit, _too_large, InvalidImage)
        await services.guards.check_upload(owner)
        async with services.guards.image_room() as room:
            body = await read_body(request, limit, _too_large)
            async with room.slot():
                image = await asyncio.to_thread(
                    normalize_image,
                    body,
                    max_pixels=settings.max_attachment_pixels,
                    max_side=settings.attachment_max_side,
                )
    except ClientDisconnect:
        return Response(status_code=400, headers={"Connection": "close"})
    except (AttachmentError, LimitExceeded) as error:
        return _refused(error, close=True)
    name = clean_name(request.query_params.get("name", ""), image.extension)
    try:
        info = await services.attachments.add(
            owner,
            name=name,
            media_type=image.media_type,
            width=image.width,
            height=image.height,
            data=image.data,
        )
    except StoreError as error:
        return _refused(error)
    return JSONResponse(
        info.to_wire(),
        status_code=201,
        headers={"Location": f"{request.scope.get('root_path', '')}/attachments/{info.id}"},
    )


@router.get("/{attachment_id}")
async def download(request: Request, attachment_id: str) -> Response:
    """The owner's image, to show inline; 404 for an unknown id or another owner's."""
    services = services_of(request)
    owner = await request_owner(request, services)
    if isinstance(owner, Response):
        return owner
    try:
        if not ATTACHMENT_ID.fullmatch(attachment_id):
            raise NotFound(f"attachment {attachment_id[:64]} not found")
        info, data = await services.attachments.get(owner, attachment_id)
    except (NotFound, StoreError) as error:
        return _refused(error)
    # Only what this server encoded is stored; anything else would be served as a download.
    media_type = info.media_type if info.media_type in MEDIA_TYPES else "application/octet-stream"
    disposition = "inline" if media_type in MEDIA_TYPES else "attachment"
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": content_disposition(disposition, info.name),
            "Cache-Control": f"private, max-age={CACHE_SECONDS}, immutable",
            "X-Content-Type-Options": "nosniff",
            # Another site's page cannot even embed it (its <img> would carry no cookie
            # anyway, but an open server has none to carry).
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


def _check_content_type(content_type: str) -> None:
    """An image type or octet-stream; never a form (which a cross-site page could send)."""
    media_type = content_type.split(";")[0].strip().lower()
    if not media_type.startswith(UPLOAD_TYPES):
        raise UnsupportedMediaType(
            "send the image itself as the request body, with its Content-Type "
            "(image/png, image/jpeg, image/webp or image/gif)"
        )


def check_length(
    content_length: str | None,
    limit: int,
    too_large: Callable[[int], Exception],
    invalid: Callable[[str], Exception],
) -> None:
    """Refuse a declared body over ``limit`` bytes (``too_large(limit)``) before reading it,
    and a Content-Length that is not a number (``invalid(why)``)."""
    if content_length is None:
        return  # chunked: read_body stops at the limit
    try:
        length = int(content_length)
    except ValueError:
        raise invalid("the Content-Length header is not a number") from None
    if length > limit:
        raise too_large(limit)


async def read_body(
    request: Request, limit: int, too_large: Callable[[int], Exception]
) -> bytearray:
    """The body, read as it arrives and never beyond ``limit`` bytes (``too_large(limit)``)."""
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise too_large(limit)
        body += chunk
    return body


def _too_large(limit: int) -> AttachmentTooLarge:
    return AttachmentTooLarge(f"the file is too large: at most {limit / (1 << 20):g} MiB")


def clean_name(raw: str, extension: str) -> str:
    """A file name to keep and show: the last path part of ``raw``, without control or
    formatting characters (bidirectional overrides included), its extension replaced by
    ``extension`` (what the image is now), at most :data:`MAX_NAME` characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    # Control characters (line breaks, tabs) become spaces; formatting, private and
    # unassigned ones go.
    name = "".join(_kept_character(ch) for ch in name)
    name = " ".join(name.split()).strip(" .")
    stem = name.rsplit(".", 1)[0].rstrip(" .") if "." in name else name
    return (stem[: MAX_NAME - len(extension)] or "image") + extension


def _kept_character(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cc":
        return " "
    return "" if category.startswith("C") else ch


def content_disposition(disposition: str, name: str) -> str:
    """``inline; filename="…"; filename*=UTF-8''…``: an ASCII fallback and the exact name."""
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", name) or "image"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
