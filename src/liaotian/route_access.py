"""Who may call the JSON routes of accounts and administration (``/account``, ``/admin``).

A route takes :func:`signed_in` or :func:`admin` as a dependency; a caller who may not is
answered ``{"error": {"code", "message"}}`` with 401 (no live credential), 403
(``forbidden``: not an admin; ``origin_not_allowed``: a write from another site's page). The
credential is the page's session cookie or ``Authorization: Bearer <API token>``; a write
(any method but GET and HEAD) with a cookie must come from the server's own origin.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from liaotian.services import services_of
from liaotian.store.accounts import Identity

SAFE_METHODS = frozenset({"GET", "HEAD"})


class RouteRefused(Exception):
    """Answered as ``{"error": {"code", "message"}}`` with ``status`` (see :func:`install`)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def signed_in(request: Request) -> Identity:
    """The account calling; RouteRefused 401 without one, 403 for a cross-site write."""
    auth = services_of(request).auth
    if request.method not in SAFE_METHODS and not auth.origin_allowed(request):
        raise RouteRefused(403, "origin_not_allowed", "use the server's own page")
    identity = await auth.identify(request)
    if identity is None:
        raise RouteRefused(401, "unauthorized", "sign in, or send an API token")
    return identity


async def admin(request: Request) -> Identity:
    """The admin calling; RouteRefused 403 ``forbidden`` for an account that is not one,
    and for everyone in open mode (no account exists: nobody is an admin)."""
    if not await services_of(request).auth.required():
        raise RouteRefused(403, "forbidden", "this server runs without accounts: no admin")
    identity = await signed_in(request)
    if not identity.is_admin:
        raise RouteRefused(403, "forbidden", "only an admin may do this")
    return identity


def install(app: FastAPI) -> None:
    """Answer RouteRefused in the routes' error format."""

    async def refused(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RouteRefused)
        response = error_response(error.status, error.code, error.message)
        response.headers.update(error.headers)
        return response

    app.add_exception_handler(RouteRefused, refused)
