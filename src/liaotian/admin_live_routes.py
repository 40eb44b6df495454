"""Administration, admins only: provider health and the replies streaming now
(docs/administration.md).

* ``GET /admin/providers``: each provider's kind, circuit breaker state and call figures.
  The figures are **this process's, since it started** (its Prometheus metrics): behind a
  load balancer each process answers for itself. ``latency_ms`` is the time from calling
  the provider to its first streamed item (retries included), its percentiles estimated
  from the histogram's buckets (:func:`liaotian.metrics.histogram_quantile`).
* ``GET /admin/replies``: the replies streaming now in *every* process (the shared
  database, :mod:`liaotian.store.live_replies`).
* ``POST /admin/replies/{message_id}/cancel``: cancels one wherever it runs, as its owner's
  cancel does (:meth:`ChatEngine.cancel <liaotian.engine.ChatEngine.cancel>`: the provider's
  stream is closed, the reply ends ``cancelled``), after writing the audit entry
  ``reply.cancel``. 404 ``not_found`` (and no entry) for a reply unknown or no longer
  streaming.

Every route takes :func:`liaotian.route_access.admin`: 401 without a credential, 403 for
an account that is not an admin, and for a cross-site write.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from liaotian import route_access
from liaotian.engine import ChatEngine
from liaotian.errors import NotFound, StoreError
from liaotian.metrics import ProviderFigures
from liaotian.route_access import RouteRefused
from liaotian.services import services_of
from liaotian.store.accounts import Identity
from liaotian.store.live_replies import LiveReply, streaming_replies, streaming_reply
from liaotian.store.models import wire_time

router = APIRouter(prefix="/admin")

Admin = Annotated[Identity, Depends(route_access.admin)]
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
_NO_CALLS = ProviderFigures(requests=0, errors=0, latency=((float("inf"), 0.0),))


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _provider(name: str, kind: str, breaker: object, figures: ProviderFigures) -> dict[str, object]:
    rate = figures.error_rate
    return {
        "name": name,
        "kind": kind,
        "breaker": breaker,
        "requests": figures.requests,
        "errors": figures.errors,
        "error_rate": None if rate is None else round(rate, 4),
        "latency_ms": {label: _milliseconds(figures.latency_quantile(q)) for label, q in QUANTILES},
    }


def _reply(reply: LiveReply) -> dict[str, object]:
    return {
        "message_id": reply.message_id,
        "conversation_id": reply.conversation_id,
        "user": reply.user,
        "model": reply.model,
        "started_at": wire_time(reply.started_at),
        "unkept": ChatEngine.unkept(reply.conversation_id),
    }


def _store_failed(error: StoreError) -> RouteRefused:
    return RouteRefused(503, error.code, error.message)


@router.get("/providers")
async def providers(request: Request, _admin: Admin) -> JSONResponse:
    """``{providers: [{name, kind, breaker, requests, errors, error_rate, latency_ms:
    {p50, p95, p99}}]}``, in registration order; this process's figures since it started
    (``error_rate`` and the percentiles are null before the first call)."""
    services = services_of(request)
    registry = services.providers
    figures = services.metrics.providers()
    listed = []
    for provider in registry.providers:
        breaker = registry.breakers.get(provider.name)
        state = "closed" if breaker is None else breaker.status()["state"]
        listed.append(
            _provider(provider.name, provider.kind, state, figures.get(provider.name, _NO_CALLS))
        )
    return JSONResponse({"providers": listed})


@router.get("/replies")
async def replies(request: Request, _admin: Admin) -> JSONResponse:
    """``{replies: [{message_id, conversation_id, user, model, started_at, unkept}]}``: the
    replies streaming now in every process, oldest first. ``user`` is the account's name
    (an open-mode owner's id without one); ``unkept`` marks an ephemeral reply's."""
    try:
        live = await streaming_replies(services_of(request).store.database)
    except StoreError as error:
        raise _store_failed(error) from error
    return JSONResponse({"replies": [_reply(reply) for reply in live]})


@router.post("/replies/{message_id}/cancel")
async def cancel_reply(request: Request, message_id: str, admin: Admin) -> JSONResponse:
    """Cancel a streaming reply of any owner, in whichever process runs it; ``{message_id,
    cancelled: true}``. The reply ends ``cancelled`` (its owner's connections see it) and
    its provider stream is closed; 404 ``not_found`` if it is unknown or has ended."""
    services = services_of(request)
    try:
        reply = await streaming_reply(services.store.database, message_id)
        if reply is None:
            raise NotFound("no streaming reply has this id")
        # Recorded first: no cancel goes unaudited (a reply ending meanwhile leaves an
        # entry for a cancel that found nothing left to stop).
        await services.audit.record(
            actor=admin.user,
            action="reply.cancel",
            target=message_id,
            details={"user": reply.user, "model": reply.model},
        )
        await services.engine.cancel(reply.owner, message_id=message_id)
    except NotFound as error:
        raise RouteRefused(404, "not_found", error.message) from error
    except StoreError as error:
        raise _store_failed(error) from error
    return JSONResponse({"message_id": message_id, "cancelled": True})
