"""Usage totals from the ledger: an account's own (/account/usage) and everybody's (/admin/usage).

``GET /account/usage?days=N`` (any signed-in account): ``{user, role, currency, limits,
days, models}``. ``GET /admin/usage?days=N&by=day|user|model`` (admins): ``{currency, by,
rows}``. ``days`` is 1-366 (default 30) and counts today; a bad parameter is 400
``bad_request``. Shapes: docs/administration.md.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from liaotian import route_access
from liaotian.route_access import RouteRefused
from liaotian.services import services_of
from liaotian.store.accounts import Identity
from liaotian.store.usage import Grouping

router = APIRouter()

DEFAULT_DAYS = 30
MAX_DAYS = 366


def period_start(request: Request, today: date) -> date:
    """The first day of the ``days`` query parameter's period; RouteRefused 400 if bad."""
    raw = request.query_params.get("days", str(DEFAULT_DAYS))
    # ASCII digits only, and few: int() refuses "²" (a digit to isdigit) and 5,000 digits.
    if (
        not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_DAYS)))
        or not 1 <= int(raw) <= MAX_DAYS
    ):
        raise RouteRefused(400, "bad_request", f"days must be a whole number from 1 to {MAX_DAYS}")
    return today - timedelta(days=int(raw) - 1)


@router.get("/account/usage")
async def account_usage(
    request: Request, identity: Annotated[Identity, Depends(route_access.signed_in)]
) -> JSONResponse:
    """The caller's own usage and limits."""
    services = services_of(request)
    engine = services.engine
    quotas = engine.quotas
    since = period_start(request, quotas.now().date())
    owner = identity.owner
    policy = await quotas.policy(owner)
    limits = await quotas.status(owner, policy, await engine.streaming_count(owner))
    days, models = await quotas.book.owner_totals(owner, since)
    return JSONResponse(
        {
            "user": identity.user,
            "role": policy.role,
            "currency": services.settings.currency,
            "limits": limits,
            "days": days,
            "models": models,
        }
    )


@router.get("/admin/usage")
async def admin_usage(
    request: Request, _admin: Annotated[Identity, Depends(route_access.admin)]
) -> JSONResponse:
    """Everybody's totals per day, per (day, account) or per (day, model)."""
    services = services_of(request)
    quotas = services.engine.quotas
    since = period_start(request, quotas.now().date())
    by = request.query_params.get("by", "day")
    choices = get_args(Grouping)
    if by not in choices:
        raise RouteRefused(400, "bad_request", "by must be one of: " + ", ".join(choices))
    rows = await quotas.book.totals(since, by)  # type: ignore[arg-type]
    return JSONResponse({"currency": services.settings.currency, "by": by, "rows": rows})
