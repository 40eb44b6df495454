"""What the OpenAI-compatible routes share: the caller, the body, errors, event streams.

* :func:`api_owner` decides who calls: ``Authorization: Bearer <API token>`` when accounts
  are required (session cookies are not taken: a page's cookie must not reach the API
  from another site); without accounts, the shared owner (``open_owner = "shared"``) or
  the bearer value as the client id (``per-client``). A browser request from another
  origin is refused unless ``api_cors_origins`` lists it.
* :func:`read_json` reads a request body capped at ``max_api_body_bytes`` (413 before
  reading when its length says so) and validates it with a pydantic model.
* Errors are OpenAI's: ``{"error": {"message", "type", "param", "code"}}`` with the HTTP
  status of the fault (:func:`error_from` maps liaotian's error tree), ``Retry-After`` on
  429 and 503. Raise :class:`ApiError` (or let a :class:`~liaotian.errors.LiaotianError`
  through) in a route of :class:`ApiRoute`: it becomes the response.
* :class:`EventStream` sends server-sent events and notices the client leaving at once
  (not at the next write), so a reply can be cancelled when nobody waits for it; nginx is
  told not to buffer it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from liaotian import protocol
from liaotian.attachment_routes import check_length, read_body
from liaotian.errors import (
    ConversationBusy,
    LiaotianError,
    LimitExceeded,
    ModelNotAllowed,
    ModelNotFound,
    NotFound,
    ProtocolError,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ShareLinksDisabled,
    ShuttingDown,
    StoreError,
    UnsupportedCapability,
)
from liaotian.gate import CLIENT_ID, OPEN_OWNER
from liaotian.services import Services, services_of
from liaotian.store.accounts import TOKEN

ModelT = TypeVar("ModelT", bound=BaseModel)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx: pass each event on at once (deploy/nginx.conf also turns buffering off).
    "X-Accel-Buffering": "no",
}


class ApiError(Exception):
    """A refusal in OpenAI's error format: raise it in a route of :class:`ApiRoute`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        quota: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.quota = quota

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` object (also what a stream sends when a reply fails);
        a quota refusal adds liaotian's ``quota`` member."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if self.quota is not None:
            error["quota"] = self.quota
        return {"error": error}

    def response(self) -> JSONResponse:
        response = JSONResponse(self.body(), status_code=self.status)
        if self.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(self.retry_after)))
        return response


# (error class, HTTP status, OpenAI error type), the first that matches: subclasses first.
_MAPPING: tuple[tuple[type[LiaotianError], int, str], ...] = (
    (ModelNotFound, 404, INVALID_REQUEST),
    (NotFound, 404, INVALID_REQUEST),
    (ConversationBusy, 409, INVALID_REQUEST),
    (ShuttingDown, 503, SERVER),
    (LimitExceeded, 429, RATE_LIMIT),
    (UnsupportedCapability, 400, INVALID_REQUEST),
    (ShareLinksDisabled, 403, PERMISSION),
    (ModelNotAllowed, 403, PERMISSION),
    (ProtocolError, 400, INVALID_REQUEST),
    (StoreError, 503, SERVER),
    (ProviderRateLimited, 429, RATE_LIMIT),
    (ProviderBadRequest, 400, INVALID_REQUEST),
    (ProviderAuthError, 502, SERVER),
    (ProviderTimeout, 504, SERVER),
    (ProviderUnavailable, 503, SERVER),
    (ProviderError, 502, SERVER),
)


def error_from(error: LiaotianError) -> ApiError:
    """liaotian's error as OpenAI's, with its HTTP status (400 for what is not listed)."""
    status, type_ = 400, INVALID_REQUEST
    for cls, mapped_status, mapped_type in _MAPPING:
        if isinstance(error, cls):
            status, type_ = mapped_status, mapped_type
            break
    retry_after = getattr(error, "retry_after", None)
    if retry_after is None and status == 503:
        retry_after = 1
    param = "model" if isinstance(error, ModelNotFound | ModelNotAllowed) else None
    return ApiError(
        status,
        error.message,
        type_=type_,
        code=error.code,
        param=param,
        retry_after=retry_after,
        quota=getattr(error, "quota", None),
    )


def _error_classes(root: type[LiaotianError]) -> dict[str, type[LiaotianError]]:
    """Every error class below ``root`` by its code (the most general class per code)."""
    found: dict[str, type[LiaotianError]] = {}
    pending = [root]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def error_from_reply(error: Mapping[str, Any] | None) -> ApiError:
    """A failed reply's ``{code, message}`` (its ``done`` event) as OpenAI's error, with
    the status its code's error class has (502 for a code liaotian does not know, such as
    ``interrupted`` or ``not_saved``)."""
    error = error or {}
    code = str(error.get("code") or "provider_error")
    message = str(error.get("message") or "the answer failed")
    cls = _error_classes(LiaotianError).get(code)
    if cls is None or cls is LiaotianError:
        return ApiError(502, message, type_=SERVER, code=code)
    instance = cls.__new__(cls)  # not cls(...): some take more than a message
    LiaotianError.__init__(instance, message)
    mapped = error_from(instance)
    mapped.code = code
    return mapped


class ApiRoute(APIRoute):
    """A route whose refusals (:class:`ApiError`, liaotian's errors, invalid parameters)
    are answered in OpenAI's error format (every router under /v1 uses it: an
    included router keeps its own route class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                return error.response()
            except LiaotianError as error:
                return error_from(error).response()
            except RequestValidationError as error:
                return _invalid(error.errors()).response()
            except ClientDisconnect:
                return Response(status_code=499)

        return guarded


# -- the caller ------------------------------------------------------------------------------

NO_TOKEN = (
    "give your API token as 'Authorization: Bearer <token>' "
    "(create one with `liaotian token create NAME`)"
)
BAD_TOKEN = "this API token is not valid: it is unknown, revoked or expired"
CLIENT_ID_AS_KEY = (
    "without accounts (open_owner = per-client) the API key is your client id: "
    "letters, digits and _.:- (1-128)"
)


async def api_owner(request: Request) -> str:
    """The owner the request acts for; raises :class:`ApiError` (400 host, 403 origin,
    401 credential)."""
    services = services_of(request)
    auth = services.auth
    if not auth.host_allowed(request):
        raise ApiError(400, "this server does not answer to that host", code="host_not_allowed")
    origin = request.headers.get("origin")
    if (
        origin is not None
        and origin not in services.settings.api_cors_origins
        and not auth.origin_allowed(request)
    ):
        raise ApiError(
            403,
            "this origin may not call the API (api_cors_origins lists those that may)",
            type_=PERMISSION,
            code="origin_not_allowed",
        )
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" else ""
    if await auth.required():
        if not bearer:
            raise ApiError(401, NO_TOKEN, type_=AUTHENTICATION, code="missing_api_key")
        identity = await auth.accounts.identify(bearer, TOKEN)
        if identity is None:
            raise ApiError(401, BAD_TOKEN, type_=AUTHENTICATION, code="invalid_api_key")
        return identity.owner
    if services.settings.open_owner == "shared":
        return OPEN_OWNER
    if CLIENT_ID.fullmatch(bearer):
        return bearer
    raise ApiError(401, CLIENT_ID_AS_KEY, type_=AUTHENTICATION, code="invalid_api_key")


# -- the body --------------------------------------------------------------------------------


async def read_json(request: Request, model: type[ModelT]) -> ModelT:
    """The request's JSON body as ``model``; raises :class:`ApiError`: 413 (over
    ``max_api_body_bytes``, refused before reading when the length says so), 415 (not
    JSON), 400 (malformed JSON, or a field missing or of the wrong type: ``param`` names
    it)."""
    settings = services_of(request).settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(
            415,
            "send the body as JSON, with 'Content-Type: application/json'",
            code="unsupported_media_type",
        )
    limit = settings.max_api_body_bytes
    check_length(request.headers.get("content-length"), limit, _too_large, _bad_length)
    body = await read_body(request, limit, _too_large)
    try:
        data = protocol.load_json(bytes(body))
    except LiaotianError as error:
        raise ApiError(
            400, f"the body is not valid JSON: {error.message}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_request")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _invalid(error.errors()) from None


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is too large: at most {limit / (1 << 20):g} MiB (max_api_body_bytes)",
        code="request_too_large",
    )


def _bad_length(why: str) -> ApiError:
    return ApiError(400, why, code="invalid_request")


def param_path(parts: Iterable[str | int]) -> str | None:
    """A field's path as OpenAI writes it in ``param``: ``messages[0].content``."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def _invalid(errors: Any) -> ApiError:
    """400 naming the first invalid field (as a dotted path) and what is wrong with it."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    param = param_path(part for part in first.get("loc", ()) if part not in ("body", "query"))
    why = str(first.get("msg", "invalid request"))
    message = f"{param}: {why}" if param else why
    return ApiError(400, message, code="invalid_value", param=param)


# -- waiting while the client is there --------------------------------------------------------

T = TypeVar("T")


async def unless_gone(
    request: Request, work: Awaitable[T], on_gone: Callable[[], Awaitable[None]]
) -> T:
    """Await ``work`` (a non-streaming answer); if the client leaves first, await
    ``on_gone()`` (cancel the reply, or nothing for a kept one) and raise ClientDisconnect.
    The body must have been read."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_gone(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    await on_gone()
    raise ClientDisconnect()


async def _gone(receive: Receive) -> None:
    """Return when the client has disconnected (the body was read: nothing else comes)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# -- server-sent events ------------------------------------------------------------------------

DONE = b"data: [DONE]\n\n"


def sse_data(payload: Mapping[str, Any]) -> bytes:
    """One ``data:`` event (Chat Completions)."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_event(name: str, payload: Mapping[str, Any]) -> bytes:
    """One named event (Responses: ``event: response.created``)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class EventStream(Response):
    """A ``text/event-stream`` response of ``events``; when the client leaves, the
    iterator is closed at once and ``on_gone()`` awaited (cancel the reply, or nothing for
    one that runs in the background).

    Unlike Starlette's StreamingResponse (which, on ASGI 2.4 servers, notices a departed
    client only when the next write fails), the client's leaving is watched for the whole
    time, so a long silence (the model thinking) does not hide it.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        on_gone: Callable[[], Awaitable[None]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Not Response.__init__: its empty body would be announced as Content-Length: 0
        # (StreamingResponse sets itself up the same way).
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})
        self._events = events
        self._on_gone = on_gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.ensure_future(self._pump(send))
        watcher = asyncio.ensure_future(_gone(receive))
        try:
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not pump.done():
                pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            closing = getattr(self._events, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()
        finished = pump.done() and not pump.cancelled() and pump.exception() is None
        if not finished and self._on_gone is not None:
            await self._on_gone()

    async def _pump(self, send: Send) -> None:
        async for chunk in self._events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


__all__ = [
    "DONE",
    "ApiError",
    "ApiRoute",
    "EventStream",
    "Services",
    "api_owner",
    "error_from",
    "read_json",
    "sse_data",
    "sse_event",
    "unless_gone",
]


class ApiCors:
    """CORS for ``/v1`` only, for the origins in ``api_cors_origins`` (none: no CORS
    headers at all, and browsers keep other sites out). The page's own routes never get
    CORS headers."""

    def __init__(self, app: Any, origins: list[str]) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            # The SDKs send several of their own headers (x-stainless-…): any is allowed;
            # credentials are the Authorization header, never cookies.
            allow_headers=["*"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v1" or path.startswith("/v1/")):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
