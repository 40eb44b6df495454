"""HTTP routes of share links, readable by anyone with the link (no sign-in).

* ``GET /s/{share_id}``: the shared page (``share.html`` of the built page), which fetches
* ``GET /api/shares/{share_id}``: the snapshot, ``{title, created_at, messages: [...]}``;
* ``GET /api/shares/{share_id}/attachments/{attachment_id}``: an image the snapshot shows
  (no other attachment, not even one of the same conversation).

Each asks the database (:class:`~liaotian.store.shares.ShareStore`), so a share revoked or
expired in any process answers 404 in every one; with ``share_links = false`` they all
answer 404 too. Unknown, revoked, expired and disabled look exactly alike (the same status
and body). Every answer carries :data:`SHARED_HEADERS`: not indexed, not cached, no
referrer; the Content-Security-Policy is the chat page's (``liaotian.app.SecurityHeaders``).
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from liaotian.errors import NotFound, StoreError
from liaotian.images import MEDIA_TYPES
from liaotian.services import services_of

router = APIRouter()

# The built page (web/share.html, by `npm run build`), beside the chat page's index.html.
SHARE_PAGE = Path(__file__).parent / "web" / "dist" / "share.html"
SHARE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHARED_HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>liaotian: no such shared conversation</title></head>
<body><h1>Not found</h1>
<p>This shared conversation does not exist, or it was revoked or has expired.</p>
<p>此共享对话不存在，或已被撤销、已过期。</p>
</body></html>
"""
NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>liaotian: page not built</title></head>
<body><p>The page's assets are not built: run <code>scripts/setup</code>.</p></body></html>
"""
_NOT_FOUND = {"error": {"code": "not_found", "message": "share not found"}}
_UNAVAILABLE = {"error": {"code": "store_unavailable", "message": "the database failed"}}


def _live(request: Request, share_id: str) -> bool:
    """Whether the id could name a share at all (the setting on, the id well formed)."""
    return services_of(request).settings.share_links and bool(SHARE_ID.fullmatch(share_id))


@router.get("/s/{share_id}", include_in_schema=False)
async def shared_page(request: Request, share_id: str) -> Response:
    """The shared page for a live share; the same 404 page otherwise."""
    try:
        if not _live(request, share_id):
            raise NotFound("share not found")
        await services_of(request).shares.read(share_id)
    except NotFound:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=SHARED_HEADERS)
    except StoreError:
        return HTMLResponse(NOT_BUILT_PAGE, status_code=503, headers=SHARED_HEADERS)
    if not SHARE_PAGE.is_file():
        return HTMLResponse(NOT_BUILT_PAGE, status_code=503, headers=SHARED_HEADERS)
    return HTMLResponse(SHARE_PAGE.read_bytes(), headers=SHARED_HEADERS)


@router.get("/api/shares/{share_id}")
async def shared_snapshot(request: Request, share_id: str) -> Response:
    """``{title, created_at, messages}`` of a live share; 404 otherwise."""
    try:
        if not _live(request, share_id):
            raise NotFound("share not found")
        snapshot = await services_of(request).shares.read(share_id)
    except NotFound:
        return JSONResponse(_NOT_FOUND, status_code=404, headers=SHARED_HEADERS)
    except StoreError:
        return JSONResponse(_UNAVAILABLE, status_code=503, headers=SHARED_HEADERS)
    return JSONResponse(snapshot.to_wire(), headers=SHARED_HEADERS)


@router.get("/api/shares/{share_id}/attachments/{attachment_id}")
async def shared_image(request: Request, share_id: str, attachment_id: str) -> Response:
    """An image the live share's snapshot shows; 404 for anything else."""
    try:
        if not _live(request, share_id) or not SHARE_ID.fullmatch(attachment_id):
            raise NotFound("share not found")
        media_type, data = await services_of(request).shares.image(share_id, attachment_id)
    except NotFound:
        return JSONResponse(_NOT_FOUND, status_code=404, headers=SHARED_HEADERS)
    except StoreError:
        return JSONResponse(_UNAVAILABLE, status_code=503, headers=SHARED_HEADERS)
    # Only what this server encoded is stored; anything else would be served as a download.
    inline = media_type in MEDIA_TYPES
    return Response(
        data,
        media_type=media_type if inline else "application/octet-stream",
        headers={
            **SHARED_HEADERS,
            "Content-Disposition": "inline" if inline else "attachment",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )
