"""JSON bodies and domain errors of the ``/account`` and ``/admin`` routes.

:func:`read_body` parses a request's JSON body into a pydantic model; :func:`refusing` turns
the store's errors into :class:`~liaotian.route_access.RouteRefused`. Both answer in the
routes' format, ``{"error": {"code", "message"}}`` (docs/administration.md, "HTTP routes").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from liaotian.errors import (
    InvalidFrame,
    LastAdmin,
    LiaotianError,
    LimitExceeded,
    NameTaken,
    NotFound,
    SignInBusy,
    StoreError,
)
from liaotian.route_access import RouteRefused

Model = TypeVar("Model", bound=BaseModel)


async def read_body(request: Request, model: type[Model], shape: str) -> Model:
    """The body as ``model``; RouteRefused 415 when it is not JSON, 400 (saying ``shape``,
    the expected body) when it does not fit."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RouteRefused(415, "invalid_frame", "send JSON")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError:
        raise RouteRefused(400, "invalid_frame", f"send {shape}") from None


def _status(error: LiaotianError) -> int:
    if isinstance(error, SignInBusy):
        return 503
    if isinstance(error, LimitExceeded):
        return 429
    if isinstance(error, NameTaken | LastAdmin):
        return 409
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InvalidFrame):
        return 400
    if isinstance(error, StoreError):
        return 503
    return 400


@contextmanager
def refusing() -> Iterator[None]:
    """Raise the store's errors in the body as RouteRefused: NotFound 404, NameTaken and
    LastAdmin 409, InvalidFrame 400, StoreError 503, a rate 429 (busy password checks
    503) with ``Retry-After``."""
    try:
        yield
    except LiaotianError as error:
        headers = {}
        if isinstance(error, LimitExceeded) and error.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(error.retry_after)))
        raise RouteRefused(_status(error), error.code, error.message, headers) from error
