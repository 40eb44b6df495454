"""The plumbing the HTTP providers share: timeouts, requests, error mapping.

- :class:`StreamDeadline` enforces the first-token, idle and total timeouts of a stream,
  cheaply enough to run per event.
- :func:`relay_sse` and :func:`request_json` run one upstream request on the shared aiohttp
  session and translate every failure into a :class:`~liaotian.errors.ProviderError`.
- :func:`upstream_error` and :func:`parse_retry_after` map upstream error replies.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError

from liaotian.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderInterrupted,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from liaotian.providers.base import Finish, StreamItem, Usage
from liaotian.providers.sse import MAX_EVENT_BYTES, SseDecodeError, SseDecoder, SseEvent

if TYPE_CHECKING:
    from liaotian.settings import Settings


# ---------------------------------------------------------------------------------------------
# Timeouts


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The provider timeouts of the settings, in seconds."""

    connect: float
    first_token: float
    idle: float
    total: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            connect=settings.provider_connect_timeout,
            first_token=settings.provider_first_token_timeout,
            idle=settings.provider_idle_timeout,
            total=settings.provider_total_timeout,
        )

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """aiohttp's part: connecting only. Passing it replaces the session's default total
        timeout, which would otherwise cut long answers; :class:`StreamDeadline` does the rest."""
        return aiohttp.ClientTimeout(
            total=None, connect=self.connect, sock_connect=self.connect, sock_read=None
        )


class StreamDeadline:
    """The deadlines of one upstream stream: first token, idle gap and total.

    Until the first text the first-token deadline applies, afterwards the idle deadline
    (from the moment the consumer hands control back), both capped by the total deadline
    (wall-clock since creation). The owner calls :meth:`yielding` just before it yields
    text to its consumer and :meth:`waiting` when the consumer resumes it: time spent in
    the consumer never counts as upstream silence, and events without text do not move
    the idle deadline.

    How a passing deadline strikes depends on the phase. Until :meth:`attach` (connecting,
    waiting for the response head) it cancels the task that created this object, like
    :func:`asyncio.timeout`: the owner catches :class:`asyncio.CancelledError` and asks
    :meth:`expired` whether it was ours. Once the body's reader is attached it fails the
    reader instead: the pending read raises :class:`~liaotian.errors.ProviderTimeout`, with
    no cancellation and no task lookup per event. Call :meth:`close` when done.

    Why not ``asyncio.timeout``: one per event costs 5-9 µs (measured, Python 3.11), and
    one kept open across a ``yield`` would fire while the consumer runs and cancel the
    consumer's code instead. Here a single timer handle is re-armed lazily (only when the
    deadline moves earlier, or when it fires early because the deadline moved on): per
    text the cost is one clock read and a few attribute writes.
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_expired",
        "_handle",
        "_idle",
        "_loop",
        "_reader",
        "_task",
        "_timeouts",
        "_total_at",
        "_upstream",
        "_when",
        "_yielded",
    )

    def __init__(self, timeouts: Timeouts, upstream: str) -> None:
        """Start the clocks; the first-token deadline is armed at once, for the current
        task (which must be the one that awaits the request)."""
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(self._loop)
        assert task is not None, "StreamDeadline must be used inside a task"
        self._task = task
        self._cancelling = task.cancelling()
        self._upstream = upstream
        self._timeouts = timeouts
        self._idle = timeouts.idle
        now = self._loop.time()
        self._total_at = now + timeouts.total
        self._deadline: float | None = min(now + timeouts.first_token, self._total_at)
        self._handle: asyncio.TimerHandle | None = None
        self._when = math.inf
        self._reader: aiohttp.StreamReader | None = None
        self._expired: str | None = None
        self._yielded = False
        self._arm(self._deadline)

    def attach(self, reader: aiohttp.StreamReader) -> None:
        """From now on a passing deadline fails ``reader`` instead of cancelling the task."""
        self._reader = reader

    def yielding(self) -> None:
        """Stop the clock while the consumer has control; the next wait is an idle wait."""
        self._deadline = None
        self._yielded = True

    def waiting(self) -> None:
        """The consumer handed control back: the idle deadline runs from now."""
        deadline = self._loop.time() + self._idle
        if deadline > self._total_at:
            deadline = self._total_at
        self._deadline = deadline
        if deadline < self._when:
            self._arm(deadline)

    def expired(self) -> ProviderTimeout | None:
        """After a CancelledError: the timeout it stands for, or None if it is a real cancel
        (which must propagate). Consumes our cancellation, as ``asyncio.timeout`` does."""
        message = self._expired
        if message is None:
            return None
        self._expired = None
        if self._task.uncancel() > self._cancelling:
            return None  # someone else cancelled the task as well
        return ProviderTimeout(message)

    def close(self) -> None:
        """Disarm; the stream is over."""
        self._deadline = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._when = math.inf

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._when = math.inf
        deadline = self._deadline
        if deadline is None:
            return  # the consumer has control; waiting() re-arms
        if self._loop.time() < deadline:
            self._arm(deadline)  # the deadline moved on since this timer was set
            return
        if deadline >= self._total_at:
            why = f"the reply took longer than {self._timeouts.total:g}s in total"
        elif self._yielded:
            why = f"the model sent nothing for {self._timeouts.idle:g}s"
        else:
            why = f"no first token within {self._timeouts.first_token:g}s"
        message = f"{self._upstream}: {why}"
        self._deadline = None
        if self._reader is not None:
            self._reader.set_exception(ProviderTimeout(message))
        else:
            self._expired = message
            self._task.cancel()


# ---------------------------------------------------------------------------------------------
# Errors

_AUTH_CODES = frozenset(
    {"InvalidApiKey", "invalid_api_key", "authentication_error", "permission_error"}
)
_RATE_CODES = frozenset({"rate_limit_exceeded", "rate_limit_error", "insufficient_quota"})
_BAD_REQUEST_CODES = frozenset(
    {"invalid_request_error", "InvalidParameter", "DataInspectionFailed", "ModelNotFound"}
)
_MAX_DETAIL = 300


def upstream_error(
    upstream: str,
    *,
    status: int | None,
    code: str | None = None,
    message: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The ProviderError for an upstream error reply (HTTP status and/or error code).

    401/403 or an auth code → ProviderAuthError; 429 or a throttling code →
    ProviderRateLimited; other 4xx or a request-error code → ProviderBadRequest; 5xx, and
    errors with neither a status nor a known code → ProviderUnavailable.
    """
    detail = " ".join(part for part in (code, message) if part)[:_MAX_DETAIL] or "no details"
    where = f"{upstream} (HTTP {status})" if status is not None else upstream
    if status in (401, 403) or code in _AUTH_CODES:
        return ProviderAuthError(f"{where} rejected the API key: {detail}")
    if status == 429 or code in _RATE_CODES or (code is not None and code.startswith("Throttling")):
        return ProviderRateLimited(f"{where} is rate limiting: {detail}", retry_after=retry_after)
    if status is not None and 400 <= status < 500:
        return ProviderBadRequest(f"{where} rejected the request: {detail}")
    if status is None and code in _BAD_REQUEST_CODES:
        return ProviderBadRequest(f"{where} rejected the request: {detail}")
    return ProviderUnavailable(f"{where} failed: {detail}")


def error_fields(payload: object) -> tuple[str | None, str | None, int | None]:
    """``(code, message, status)`` from an error body in either dialect.

    DashScope: ``{"code", "message"}``; OpenAI: ``{"error": {"code", "type", "message"}}``,
    where some servers (vLLM) put the HTTP status in ``code``.
    """
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    if isinstance(error, str):
        return None, error, None
    source = error if isinstance(error, dict) else payload
    code = source.get("code")
    status = None
    if isinstance(code, int):
        status, code = code, None
    if not code:
        code = source.get("type")
    message = source.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        status,
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_from_response(
    upstream: str, status: int, headers: Mapping[str, str], body: bytes
) -> ProviderError:
    """The ProviderError for a non-200 reply whose body was read as ``body``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    code, message, _ = error_fields(payload)
    if message is None and code is None:
        message = body[:_MAX_DETAIL].decode("utf-8", "replace").strip() or None
    return upstream_error(
        upstream,
        status=status,
        code=code,
        message=message,
        retry_after=parse_retry_after(headers),
    )


def transport_error(upstream: str, exc: BaseException, *, streaming: bool = False) -> ProviderError:
    """The ProviderError for an exception raised while talking to the upstream.

    ``streaming``: the upstream had answered 200 and its body was being read. A connection
    cut or reset then is ProviderInterrupted (the stream ended without finishing); before
    that it is ProviderUnavailable (the upstream could not be reached).
    """
    if isinstance(exc, TimeoutError):  # aiohttp's connect timeout
        return ProviderTimeout(f"{upstream}: could not connect in time")
    if isinstance(exc, SseDecodeError):
        return ProviderUnavailable(f"{upstream}: {exc}; the reply was stopped")
    if isinstance(exc, orjson.JSONDecodeError):
        return ProviderUnavailable(f"{upstream} sent malformed data: {exc}")
    if streaming and isinstance(exc, _CUT_ERRORS):
        return ProviderInterrupted(f"{upstream} cut the connection before the answer was complete")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderUnavailable(f"{upstream} cut the response short")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ProviderUnavailable(f"{upstream}: cannot connect ({reason})")
    return ProviderUnavailable(f"{upstream}: connection failed ({type(exc).__name__})")


# aiohttp writes a bytes body in one piece and warns (ResourceWarning) over this size.
_LARGE_BODY = 1 << 20


def request_body(body: bytes) -> bytes | io.BytesIO:
    """``body`` as aiohttp should send it: a large one (a long history, as an API request
    brings whole) in chunks that let the loop breathe, a small one in one write."""
    return io.BytesIO(body) if len(body) > _LARGE_BODY else body


# A connection that ends mid-body: cut (payload incomplete), closed or reset by the peer.
_CUT_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError)

# Everything the network, aiohttp or a bad body can raise; mapped by transport_error().
TRANSPORT_ERRORS = (
    aiohttp.ClientError,
    HttpProcessingError,
    OSError,
    TimeoutError,
    ValueError,  # SseDecodeError, orjson.JSONDecodeError, UnicodeDecodeError
)


# ---------------------------------------------------------------------------------------------
# Requests


class StreamParser(Protocol):
    """Turns a provider's events into reply parts; one instance per stream.

    ``feed`` returns the parts of an event in order (text ``str``, Reasoning, Sources;
    usually none or one, never empty strings) and raises ProviderError for an error event.
    ``flush`` returns what it still holds back once the stream is over (a partial ``<think>``
    tag, say). ``complete`` becomes true once the answer is whole (a finish reason or the
    end marker); ``done`` once nothing more is expected (the reader stops then).
    """

    finish_reason: str | None
    complete: bool
    done: bool

    def feed(self, event: SseEvent) -> Sequence[StreamItem]: ...

    def flush(self) -> Sequence[StreamItem]: ...

    def usage(self) -> Usage: ...


# After the end marker the body should end at once; waiting a moment for that lets aiohttp
# put the connection back in the pool instead of closing it.
_DRAIN_GRACE = 0.5


async def relay_sse(
    http: aiohttp.ClientSession,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    parser: StreamParser,
    upstream: str,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> AsyncIterator[StreamItem]:
    """POST ``body`` to ``url`` and yield the parts ``parser`` finds, then one Finish.

    Raises only ProviderError: the reply's own error, ProviderTimeout (connect, first
    token, idle, total), ProviderUnavailable (connection refused or reset before the
    answer, malformed data, an event over ``max_event_bytes``) or ProviderInterrupted (the
    body ended, or the connection was cut, before the answer was complete).
    A failure after the answer is complete (while reading usage or the end marker) is
    ignored. Cancelling the consuming task or closing this iterator closes the upstream
    connection before the cancellation or close completes.
    """
    deadline = StreamDeadline(timeouts, upstream)
    streaming = False  # True once the upstream answered 200: its body is being read
    try:
        async with http.post(
            url, data=request_body(body), headers=headers, timeout=timeouts.client_timeout()
        ) as response:
            if response.status != 200:
                raise error_from_response(
                    upstream, response.status, response.headers, await response.read()
                )
            if response.content_type == "application/json":
                # Some servers answer a streaming request with a JSON error and status 200.
                code, message, status = error_fields(orjson.loads(await response.read()))
                raise upstream_error(
                    upstream,
                    status=status,
                    code=code,
                    message=message or "answered with JSON instead of an event stream",
                )
            streaming = True
            content = response.content
            deadline.attach(content)
            # One await per network read, then plain calls per event: at 50 tokens/s every
            # event arrives in a read of its own, so each layer here is paid per token.
            feed = SseDecoder(max_event_bytes=max_event_bytes).feed
            parse = parser.feed
            while not parser.done:
                chunk = await content.readany()
                if not chunk:
                    break
                for event in feed(chunk):
                    for item in parse(event):
                        deadline.yielding()
                        yield item
                        deadline.waiting()
                    if parser.done:
                        break
            if parser.done and not content.is_eof():
                deadline.close()
                async with asyncio.timeout(_DRAIN_GRACE):
                    while await content.readany():
                        pass
    except asyncio.CancelledError:
        error = deadline.expired()
        if error is None:
            raise
        if not parser.complete:
            raise error from None
    except ProviderTimeout:
        if not parser.complete:  # the deadline, through the body reader
            raise
    except ProviderError:
        raise
    except TRANSPORT_ERRORS as exc:
        if not parser.complete:
            raise transport_error(upstream, exc, streaming=streaming) from exc
    finally:
        deadline.close()
    if not parser.complete:
        raise ProviderInterrupted(f"{upstream} ended the stream before the answer was complete")
    for item in parser.flush():
        yield item
    yield Finish(parser.finish_reason, parser.usage())


async def request_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    within: float,
    upstream: str,
    body: bytes | None = None,
) -> Any:
    """Send one request and return its decoded JSON body; everything within ``within`` s.

    Raises only ProviderError: the mapped error reply (any status but 200), ProviderTimeout,
    ProviderUnavailable (connection failures, a body that is not JSON). Cancelling closes
    the connection.
    """
    try:
        async with (
            asyncio.timeout(within),
            http.request(
                method,
                url,
                data=None if body is None else request_body(body),
                headers=headers,
                timeout=timeouts.client_timeout(),
            ) as response,
        ):
            raw = await response.read()
            if response.status != 200:
                raise error_from_response(upstream, response.status, response.headers, raw)
            return orjson.loads(raw)
    except ProviderError:
        raise
    except TimeoutError as exc:
        if isinstance(exc, aiohttp.ClientError):
            raise transport_error(upstream, exc) from exc
        raise ProviderTimeout(f"{upstream} did not answer within {within:g}s") from None
    except TRANSPORT_ERRORS as exc:
        raise transport_error(upstream, exc) from exc
