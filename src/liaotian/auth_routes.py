"""HTTP routes of accounts: sign in, sign out, who am I. Used by the page.

Sign-in takes JSON (so a cross-site form cannot post it), checks the ``Origin`` like the
WebSocket handshake, is rate limited per user name, and answers every failure the same
way (no user enumeration). The session cookie is HttpOnly, SameSite=Strict, and Secure
unless the server runs on a loopback address over plain HTTP.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from liaotian.auth import SESSION_COOKIE
from liaotian.errors import RateLimited
from liaotian.services import services_of
from liaotian.store.accounts import SESSION

router = APIRouter(prefix="/auth")


class SignIn(BaseModel):
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@router.get("/me")
async def me(request: Request) -> JSONResponse:
    """``{"user": name | null, "required": bool}``: who is signed in, and whether one must."""
    auth = services_of(request).auth
    required = await auth.required()
    identity = await auth.identify(request)
    return JSONResponse({"user": identity.user if identity else None, "required": required})


@router.post("/login")
async def login(request: Request) -> JSONResponse:
    """Sign in with ``{"user", "password"}``; sets the session cookie."""
    services = services_of(request)
    auth = services.auth
    if not auth.origin_allowed(request):
        return _error(403, "origin_not_allowed", "sign in from the server's own page")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "invalid_frame", "send JSON")
    try:
        form = SignIn.model_validate_json(await request.body())
    except ValidationError:
        return _error(400, "invalid_frame", 'send {"user": …, "password": …}')
    try:
        await services.guards.check_login(form.user)
    except RateLimited as limited:
        response = _error(429, limited.code, limited.message)
        if limited.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(limited.retry_after)))
        return response
    if not await auth.accounts.verify_password(form.user, form.password):
        return _error(401, "invalid_credentials", "wrong user name or password")
    secret = await auth.accounts.create_session(form.user, services.settings.session_lifetime)
    response = JSONResponse({"user": form.user})
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(services.settings.session_lifetime),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or not services.settings.loopback,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> JSONResponse:
    """End this session and close the sockets it opened."""
    auth = services_of(request).auth
    if not auth.origin_allowed(request):
        return _error(403, "origin_not_allowed", "sign out from the server's own page")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        identity = await auth.accounts.identify(cookie, SESSION)
        if identity is not None:
            await auth.accounts.revoke(identity.credential_id)
            await auth.close_sockets({identity.credential_id})
    response = JSONResponse({"user": None})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
