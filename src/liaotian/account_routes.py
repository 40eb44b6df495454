"""The signed-in account's own: API tokens, password (docs/administration.md).

(Its usage and remaining quota, ``/account/usage``, are in :mod:`liaotian.usage_routes`.)

Every route takes :func:`~liaotian.route_access.signed_in` (401 without a credential, 403
for a cross-site write) and reaches only the caller's own tokens: another account's token
id answers 404, as an unknown one does. Token and password changes write audit entries
(actor: the account itself), never with a secret in them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from liaotian.admin_routes import token_id_of, token_wire
from liaotian.route_access import RouteRefused, signed_in
from liaotian.route_json import read_body, refusing
from liaotian.services import services_of
from liaotian.store.accounts import ACTIVE, TOKEN, Identity

router = APIRouter(prefix="/account")

SignedIn = Annotated[Identity, Depends(signed_in)]


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=100)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current: str = Field(max_length=1024)
    new: str = Field(max_length=1024)


@router.get("/tokens")
async def list_tokens(request: Request, identity: SignedIn) -> JSONResponse:
    """``{tokens: [{id, name, created_at, revoked}]}``: the caller's, oldest first."""
    with refusing():
        tokens = await services_of(request).auth.accounts.list_tokens(identity.user)
    return JSONResponse(
        {"tokens": [{k: v for k, v in token_wire(t).items() if k != "user"} for t in tokens]}
    )


@router.post("/tokens")
async def create_token(request: Request, identity: SignedIn) -> JSONResponse:
    """``201 {id, name, token}``: a new API token of the caller, its secret shown once.

    Only a signed-in session may: an API token cannot mint another (a leaked token would
    otherwise leave a copy behind after it is revoked). 403 ``forbidden`` with a token."""
    if identity.kind == TOKEN:
        raise RouteRefused(
            403,
            "forbidden",
            "create API tokens from the page (signed in) or with 'liaotian token create', "
            "not with another token",
        )
    body = await read_body(request, NewToken, '{"name": …}')
    services = services_of(request)
    with refusing():
        token_id, secret = await services.auth.accounts.create_token(identity.user, body.name)
        await services.audit.record(
            identity.user, "token.create", identity.user, {"id": token_id, "name": body.name}
        )
    return JSONResponse({"id": token_id, "name": body.name, "token": secret}, status_code=201)


@router.delete("/tokens/{token_id}")
async def revoke_token(request: Request, token_id: str, identity: SignedIn) -> JSONResponse:
    """Revoke one of the caller's live tokens (404 for any other id); its sockets close."""
    services = services_of(request)
    with refusing():
        token = await services.auth.accounts.revoke_token(token_id_of(token_id), user=identity.user)
    await services.auth.close_sockets({token.id})
    with refusing():
        await services.audit.record(
            identity.user, "token.revoke", identity.user, {"id": token.id, "name": token.name}
        )
    return JSONResponse({k: v for k, v in token_wire(token).items() if k != "user"})


@router.post("/password")
async def change_password(request: Request, identity: SignedIn) -> JSONResponse:
    """Change the caller's password after checking ``current`` (403 ``invalid_credentials``
    when wrong, rate limited like sign-in). Every other session ends and its sockets close;
    the session calling stays signed in (API tokens stay)."""
    body = await read_body(request, PasswordChange, '{"current": …, "new": …}')
    services = services_of(request)
    accounts = services.auth.accounts
    guards = services.guards
    address = request.client.host if request.client else ""
    with refusing():
        await guards.check_login(identity.user, address)
        async with guards.password_check():
            status = await accounts.sign_in_status(identity.user, body.current)
    if status != ACTIVE:
        raise RouteRefused(403, "invalid_credentials", "the current password is wrong")
    with refusing():
        ended = await accounts.set_password(identity.user, body.new, keep=identity.credential_id)
        await services.audit.record(identity.user, "password.change", identity.user)
    await services.auth.close_sockets(ended)
    return JSONResponse({"user": identity.user, "sessions_ended": len(ended)})
