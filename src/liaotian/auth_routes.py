"""HTTP routes of accounts: sign in, sign out, who am I. Used by the page.

Sign-in takes JSON (so a cross-site form cannot post it), checks the ``Origin`` like the
WebSocket handshake, and answers every wrong name or password the same way (no user
enumeration). It is rate limited per client address and per user name from that address
(429), and its password checks are bounded (503 when they are all taken), both with
``Retry-After`` (see ``liaotian.guards``). The client address is the peer's, or, behind a
proxy uvicorn trusts (``FORWARDED_ALLOW_IPS``, 127.0.0.1 by default), the one the proxy
put in ``X-Forwarded-For``. The session cookie is HttpOnly, SameSite=Strict, and Secure
unless the server runs on a loopback address over plain HTTP.

A right password of an account that is not active is told apart, since only its owner can
learn it: 403 ``account_pending`` (it waits for an admin's approval) or
``account_disabled``. Sign-up (``self_signup = "approval"``) takes the same JSON, checks,
limits and password-check slots as sign-in, and creates a ``pending`` account.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from liaotian.auth import SESSION_COOKIE
from liaotian.errors import InvalidFrame, LimitExceeded, NameTaken, SignInBusy, StoreError
from liaotian.services import services_of
from liaotian.store.accounts import ACTIVE, DISABLED, PENDING, SESSION, USER

router = APIRouter(prefix="/auth")


class SignIn(BaseModel):
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _limited(limited: LimitExceeded) -> JSONResponse:
    """429 for a rate, 503 when the password checks are all taken; with ``Retry-After``."""
    response = _error(
        503 if isinstance(limited, SignInBusy) else 429, limited.code, limited.message
    )
    if limited.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(limited.retry_after)))
    return response


async def _read_form(request: Request) -> SignIn | JSONResponse:
    """The ``{"user", "password"}`` of a JSON body, or the answer refusing it (415, 400)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "invalid_frame", "send JSON")
    try:
        return SignIn.model_validate_json(await request.body())
    except ValidationError:
        return _error(400, "invalid_frame", 'send {"user": …, "password": …}')


@router.get("/me")
async def me(request: Request) -> JSONResponse:
    """``{"user": name | null, "owner": owner id | null, "role": "admin" | "user" | null,
    "required": bool, "signup": "off" | "approval"}``: who is signed in (and the owner id
    the WebSocket ``hello`` will name), whether one must, and whether one may sign up."""
    services = services_of(request)
    auth = services.auth
    required = await auth.required()
    identity = await auth.identify(request)
    return JSONResponse(
        {
            "user": identity.user if identity else None,
            "owner": identity.owner if identity else None,
            "role": identity.role if identity else None,
            "required": required,
            "signup": services.settings.self_signup,
        }
    )


@router.post("/login")
async def login(request: Request) -> JSONResponse:
    """Sign in with ``{"user", "password"}``; sets the session cookie."""
    services = services_of(request)
    auth = services.auth
    if not auth.origin_allowed(request):
        return _error(403, "origin_not_allowed", "sign in from the server's own page")
    form = await _read_form(request)
    if isinstance(form, JSONResponse):
        return form
    guards = services.guards
    try:
        await guards.check_login(form.user, request.client.host if request.client else "")
        async with guards.password_check():
            status = await auth.accounts.sign_in_status(form.user, form.password)
    except LimitExceeded as limited:
        return _limited(limited)
    if status == PENDING:
        return _error(403, "account_pending", "this account waits for an admin's approval")
    if status == DISABLED:
        return _error(403, "account_disabled", "this account is disabled; ask an admin")
    if status != ACTIVE:
        return _error(401, "invalid_credentials", "wrong user name or password")
    secret = await auth.accounts.create_session(form.user, services.settings.session_lifetime)
    identity = await auth.accounts.identify(secret, SESSION)
    owner = identity.owner if identity is not None else None
    response = JSONResponse({"user": form.user, "owner": owner})
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


@router.post("/signup")
async def signup(request: Request) -> JSONResponse:
    """Sign up with ``{"user", "password"}``: ``201 {user, status: "pending"}``, an account
    an admin must approve. 403 ``signup_disabled`` when ``self_signup = "off"`` or before
    the first account exists (``liaotian user add`` makes it), 409 ``name_taken``."""
    services = services_of(request)
    auth = services.auth
    if not auth.origin_allowed(request):
        return _error(403, "origin_not_allowed", "sign up from the server's own page")
    if services.settings.self_signup == "off":
        return _error(403, "signup_disabled", "this server takes no sign-ups; ask an admin")
    form = await _read_form(request)
    if isinstance(form, JSONResponse):
        return form
    guards = services.guards
    try:
        if not await auth.accounts.has_users():
            return _error(
                403, "signup_disabled", "no account exists yet: create the first with the CLI"
            )
        await guards.check_login(form.user, request.client.host if request.client else "")
        async with guards.password_check():
            await auth.accounts.add_user(form.user, form.password, role=USER, status=PENDING)
        await services.audit.record(form.user, "user.signup", form.user)
    except LimitExceeded as limited:
        return _limited(limited)
    except NameTaken as taken:
        return _error(409, taken.code, taken.message)
    except InvalidFrame as invalid:
        return _error(400, invalid.code, invalid.message)
    except StoreError as failed:
        return _error(503, failed.code, "the database failed; try again")
    return JSONResponse({"user": form.user, "status": PENDING}, status_code=201)


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
