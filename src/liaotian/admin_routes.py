"""Administration, admins only: accounts, tokens, audit log (docs/administration.md).

Every route takes :func:`~liaotian.route_access.admin` (401 without a credential, 403 for an
account that is not an admin or a cross-site write). Every change writes an audit entry
(actor: the admin's name); no secret or password is ever written into one. Disabling an
account, resetting its password or revoking a token closes the sockets those credentials
opened: at once in this process, within ``credential_check_interval`` in the others (their
sweep asks :meth:`~liaotian.store.accounts.Accounts.dead`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from liaotian.route_access import RouteRefused, admin
from liaotian.route_json import read_body, refusing
from liaotian.services import Services, services_of
from liaotian.store.accounts import (
    ACTIVE,
    ADMIN,
    PENDING,
    USER,
    CredentialInfo,
    Identity,
    account_owner,
)
from liaotian.store.live_replies import streaming_replies
from liaotian.store.models import wire_time

router = APIRouter(prefix="/admin")

Admin = Annotated[Identity, Depends(admin)]
AUDIT_PAGE = 100
AUDIT_PAGE_MAX = 1000


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    role: str = USER
    limits: dict[str, object] | None = None


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = None
    status: str | None = None
    limits: dict[str, object] | None = None


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(max_length=1024)


def token_wire(token: CredentialInfo) -> dict[str, object]:
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "created_at": wire_time(token.created_at),
        "revoked": token.revoked,
    }


async def close_sockets_of(services: Services, name: str) -> None:
    """Close the sockets of every credential of ``name`` in this process."""
    with refusing():
        ids = await services.auth.accounts.credential_ids(name)
    await services.auth.close_sockets(ids)


async def cancel_replies_of(services: Services, owner: str) -> None:
    """Cancel the owner's replies streaming now, in whichever process runs them (a disabled
    account spends nothing more)."""
    with refusing():
        live = await streaming_replies(services.store.database)
    for reply in live:
        if reply.owner == owner:
            await services.engine.cancel(owner, message_id=reply.message_id)


@router.get("/users")
async def list_users(request: Request, _admin: Admin) -> JSONResponse:
    """``{users: [{name, role, status, created_at, limits, effective, today}]}`` by name:
    ``effective`` the limits after the role's, ``today`` ``{tokens, replies, cost}``."""
    services = services_of(request)
    with refusing():
        users = await services.auth.accounts.users()
        summaries = await services.engine.quotas.summaries(
            (user.id, user.role, user.limits) for user in users
        )
    return JSONResponse({"users": [user.to_wire() | summaries[user.id] for user in users]})


@router.post("/users")
async def create_user(request: Request, identity: Admin) -> JSONResponse:
    """Create an active account; 201 with it, 409 ``name_taken``, 400 for bad input."""
    body = await read_body(
        request, NewUser, '{"name": …, "password": …, "role"?: "admin"|"user", "limits"?: {…}}'
    )
    services = services_of(request)
    accounts = services.auth.accounts
    with refusing():
        await accounts.add_user(body.name, body.password, role=body.role, limits=body.limits)
        created = await accounts.user(body.name)
        await services.audit.record(
            identity.user,
            "user.create",
            created.name,
            {"role": created.role, "limits": created.limits},
        )
    return JSONResponse(created.to_wire(), status_code=201)


@router.patch("/users/{name}")
async def change_user(request: Request, name: str, identity: Admin) -> JSONResponse:
    """Change role, status (``active``: also approves a pending account; ``disabled``) or
    own limits (replaced; ``{}`` or null clears them). An admin cannot demote or disable
    itself (409 ``own_account``), nor the last active admin (409 ``last_admin``)."""
    body = await read_body(
        request, UserChange, '{"role"?: …, "status"?: "active"|"disabled", "limits"?: {…}}'
    )
    if not body.model_fields_set:
        raise RouteRefused(400, "invalid_frame", "send at least one of role, status, limits")
    if name == identity.user and (
        body.role not in (None, ADMIN) or body.status not in (None, ACTIVE)
    ):
        raise RouteRefused(
            409, "own_account", "an admin cannot demote or disable itself; another admin can"
        )
    limits = body.limits
    if "limits" in body.model_fields_set and limits is None:
        limits = {}
    services = services_of(request)
    with refusing():
        before, after = await services.auth.accounts.update_user(
            name, role=body.role, status=body.status, limits=limits
        )
    if before.status == ACTIVE and after.status != ACTIVE:
        await close_sockets_of(services, name)
        await cancel_replies_of(services, account_owner(after.id))
    with refusing():
        for action, details in _changes(before.role, after.role, before.status, after.status):
            await services.audit.record(identity.user, action, name, details)
        if limits is not None:
            await services.audit.record(
                identity.user, "user.limits", name, {"from": before.limits, "to": after.limits}
            )
    return JSONResponse(after.to_wire())


def _changes(
    role_before: str, role_after: str, status_before: str, status_after: str
) -> list[tuple[str, dict[str, object] | None]]:
    """The audit actions of a change of role and status."""
    changes: list[tuple[str, dict[str, object] | None]] = []
    if role_before != role_after:
        changes.append(("user.role", {"from": role_before, "to": role_after}))
    if status_before != status_after:
        if status_after == ACTIVE:
            changes.append(("user.approve" if status_before == PENDING else "user.enable", None))
        else:
            changes.append(("user.disable", None))
    return changes


@router.post("/users/{name}/password")
async def reset_password(request: Request, name: str, identity: Admin) -> JSONResponse:
    """Set the account's password; its sessions end and their sockets close (an admin
    resetting its own keeps the session it calls with)."""
    body = await read_body(request, PasswordReset, '{"password": …}')
    services = services_of(request)
    keep = identity.credential_id if name == identity.user else None
    with refusing():
        ended = await services.auth.accounts.set_password(name, body.password, keep=keep)
        await services.audit.record(identity.user, "user.password", name)
    await services.auth.close_sockets(ended)
    return JSONResponse({"name": name, "sessions_ended": len(ended)})


@router.get("/tokens")
async def list_tokens(request: Request, _admin: Admin) -> JSONResponse:
    """``{tokens: [{id, user, name, created_at, revoked}]}``: every account's, oldest first."""
    with refusing():
        tokens = await services_of(request).auth.accounts.list_tokens()
    return JSONResponse({"tokens": [token_wire(token) for token in tokens]})


def token_id_of(text: str) -> int:
    """The id in a route's path; RouteRefused 404 for anything but a number."""
    if not text.isdecimal() or len(text) > 18:
        raise RouteRefused(404, "not_found", f"no live token {text}")
    return int(text)


@router.delete("/tokens/{token_id}")
async def revoke_token(request: Request, token_id: str, identity: Admin) -> JSONResponse:
    """Revoke any live token (404 otherwise); its sockets close."""
    services = services_of(request)
    with refusing():
        token = await services.auth.accounts.revoke_token(token_id_of(token_id))
    await services.auth.close_sockets({token.id})
    with refusing():
        await services.audit.record(
            identity.user, "token.revoke", token.user, {"id": token.id, "name": token.name}
        )
    return JSONResponse(token_wire(token))


def _whole(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    # Few digits: int() refuses strings of more than 4,300 digits.
    if not text.isdecimal() or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise RouteRefused(400, "invalid_frame", f"{name} is a whole number from {low} to {high}")
    return int(text)


@router.get("/audit")
async def audit_log(request: Request, _admin: Admin) -> JSONResponse:
    """``{entries: [{id, at, actor, action, target, details}]}`` newest first: ``limit``
    (default 100, at most 1000) entries older than the entry ``before``."""
    limit = _whole(request, "limit", AUDIT_PAGE, 1, AUDIT_PAGE_MAX)
    before = _whole(request, "before", None, 0, 2**62)
    assert limit is not None
    with refusing():
        entries = await services_of(request).audit.entries(limit=limit, before=before)
    return JSONResponse({"entries": [entry.to_wire() for entry in entries]})
