"""DashScope's native text-generation API (Qwen and the other models Alibaba Cloud hosts).

Speaks the HTTP API that the ``dashscope`` SDK's ``AioGeneration`` uses, over the app's
shared aiohttp session: ``POST {base}/services/aigc/text-generation/generation`` with
``result_format: message``; streaming is SSE with ``incremental_output`` so each event
carries only the new text. Without ``DASHSCOPE_API_KEY`` the models are still listed, as
unavailable, so a client learns which setting is missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from liaotian.errors import ProviderAuthError, ProviderError, ProviderUnavailable
from liaotian.providers.base import (
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    StreamItem,
    Usage,
)
from liaotian.providers.http import (
    Timeouts,
    error_fields,
    relay_sse,
    request_json,
    upstream_error,
)
from liaotian.providers.registry import ProviderContext, register_provider
from liaotian.providers.sse import SseEvent

if TYPE_CHECKING:
    import aiohttp

    from liaotian.settings import Settings

GENERATION_PATH = "/services/aigc/text-generation/generation"
NO_KEY_REASON = "DASHSCOPE_API_KEY on the server"


class DashScopeProvider(Provider):
    """The DashScope models of ``settings.dashscope_models``, served with one API key."""

    kind = "dashscope"

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        super().__init__("dashscope")
        key = settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else ""
        self._http = http
        self._url = settings.dashscope_base_url + GENERATION_PATH
        self._timeouts = Timeouts.from_settings(settings)
        self._max_event_bytes = settings.provider_max_event_bytes
        self._headers: dict[str, str] | None = None
        self._sse_headers: dict[str, str] | None = None
        if key:
            self._headers = {
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
            self._sse_headers = {
                **self._headers,
                "Accept": "text/event-stream",
                "X-DashScope-SSE": "enable",
            }
        self._models = [
            ModelInfo(
                id=model,
                provider=self.name,
                upstream=model,
                available=bool(key),
                reason=None if key else NO_KEY_REASON,
            )
            for model in settings.dashscope_models
        ]

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    def status(self) -> dict[str, object]:
        return {**super().status(), "configured": self._headers is not None}

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Generate with DashScope; see :func:`~liaotian.providers.http.relay_sse` for the
        errors raised and what cancelling does. Without a key it raises ProviderAuthError."""
        if self._headers is None or self._sse_headers is None:
            return _raise(ProviderAuthError("DASHSCOPE_API_KEY is not set on the server"))
        body = _request_body(request)
        if request.stream:
            # Returned as is (not re-yielded) so each token crosses one generator, not two.
            return relay_sse(
                self._http,
                self._url,
                body=body,
                headers=self._sse_headers,
                timeouts=self._timeouts,
                parser=_DashScopeParser(self.name),
                upstream=self.name,
                max_event_bytes=self._max_event_bytes,
            )
        return self._complete(body, self._headers)

    async def _complete(self, body: bytes, headers: dict[str, str]) -> AsyncIterator[StreamItem]:
        # The first byte of a non-streamed answer is its last, so only the total timeout
        # applies.
        payload = await request_json(
            self._http,
            "POST",
            self._url,
            body=body,
            headers=headers,
            timeouts=self._timeouts,
            within=self._timeouts.total,
            upstream=self.name,
        )
        parser = _DashScopeParser(self.name)
        text = parser.feed_payload(payload)
        if text:
            yield text
        yield Finish(parser.finish_reason, parser.usage())


def _request_body(request: ChatRequest) -> bytes:
    parameters: dict[str, Any] = {"result_format": "message"}
    if request.stream:
        parameters["incremental_output"] = True
    if request.temperature is not None:
        parameters["temperature"] = request.temperature
    if request.max_tokens is not None:
        parameters["max_tokens"] = request.max_tokens
    messages = [{"role": message.role, "content": message.content} for message in request.messages]
    return orjson.dumps(
        {"model": request.model, "input": {"messages": messages}, "parameters": parameters}
    )


class _DashScopeParser:
    """Reads DashScope results: ``output.choices[0]`` with ``message.content`` and a
    ``finish_reason`` that is the *string* ``"null"`` until the last event."""

    __slots__ = ("_upstream", "_usage", "complete", "done", "finish_reason")

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._usage: Any = None
        self.finish_reason: str | None = None
        self.complete = False
        self.done = False

    def feed(self, event: SseEvent) -> str:
        if event.event == "error":
            raise self._stream_error(event)
        return self.feed_payload(orjson.loads(event.data))

    def feed_payload(self, payload: Any) -> str:
        try:
            choice = payload["output"]["choices"][0]
            text = choice["message"].get("content")
            finish = choice.get("finish_reason")
            usage = payload.get("usage")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._payload_error(payload) from None
        if usage:
            self._usage = usage  # cumulative: the last one counts
        if finish and finish != "null":
            self.finish_reason = finish
            self.complete = self.done = True
        return text if isinstance(text, str) else ""

    def usage(self) -> Usage:
        usage = self._usage
        if not isinstance(usage, dict):
            return Usage()
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))

    def _stream_error(self, event: SseEvent) -> ProviderError:
        # ":HTTP_STATUS/400" carries the status the error would have had as a reply.
        status = None
        for comment in event.comments:
            if comment.startswith("HTTP_STATUS/"):
                status = _int(comment[len("HTTP_STATUS/") :])
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            payload = None
        code, message, _ = error_fields(payload)
        return upstream_error(self._upstream, status=status, code=code, message=message)

    def _payload_error(self, payload: Any) -> ProviderError:
        code, message, _ = error_fields(payload)
        if code or message:
            return upstream_error(self._upstream, status=None, code=code, message=message)
        return ProviderUnavailable(f"{self._upstream} sent an unexpected result")


def _int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


async def _raise(error: ProviderError) -> AsyncIterator[StreamItem]:
    """A stream that fails with ``error`` when iterated, as the Provider contract wants."""
    raise error
    yield ""  # makes this an async generator


@register_provider("dashscope")
def dashscope_providers(ctx: ProviderContext) -> list[Provider]:
    """One DashScope provider, configured or not (then its models are unavailable)."""
    return [DashScopeProvider(ctx.settings, ctx.http)]
