"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, Ollama, LiteLLM…).

One provider per endpoint: the one of ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, named
``openai``, exposes the upstream model ids as they are; each ``[[openai_endpoints]]`` entry
named N exposes them as ``N/<id>``. Models are discovered with ``GET {base}/models`` at
start-up unless the endpoint lists them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from liaotian.errors import ProviderError, ProviderUnavailable
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
from liaotian.providers.sse import MAX_EVENT_BYTES, SseEvent

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr


class OpenAICompatProvider(Provider):
    """The models of one OpenAI-compatible endpoint, ids prefixed with ``prefix``."""

    kind = "openai"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        http: aiohttp.ClientSession,
        timeouts: Timeouts,
        prefix: str = "",
        models: list[str] | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        super().__init__(name)
        self._http = http
        self._timeouts = timeouts
        self._max_event_bytes = max_event_bytes
        self._models_url = base_url + "/models"
        self._chat_url = base_url + "/chat/completions"
        self._prefix = prefix
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._sse_headers = {**self._headers, "Accept": "text/event-stream"}
        self._listed = models
        self._models: list[ModelInfo] = []
        if models is not None:
            self._set_models(models)

    async def start(self) -> None:
        """Discover the models with ``GET /models``, unless they were listed.

        Raises ProviderError when the endpoint cannot be reached or answers oddly; the
        registry then reports the provider as failed and lists none of its models.
        """
        if self._listed is not None:
            return
        headers = {k: v for k, v in self._headers.items() if k != "Content-Type"}
        payload = await request_json(
            self._http,
            "GET",
            self._models_url,
            headers=headers,
            timeouts=self._timeouts,
            within=self._timeouts.first_token,
            upstream=self.name,
        )
        try:
            ids = [entry["id"] for entry in payload["data"]]
        except (KeyError, TypeError) as exc:
            raise ProviderUnavailable(
                f"{self.name}: /models did not answer in the OpenAI list format"
            ) from exc
        if not all(isinstance(model_id, str) and model_id for model_id in ids):
            raise ProviderUnavailable(f"{self.name}: /models listed a model without an id")
        self._set_models(ids)

    def _set_models(self, upstream_ids: list[str]) -> None:
        unique = dict.fromkeys(upstream_ids)  # dedupe, keep the endpoint's order
        self._models = [
            ModelInfo(id=self._prefix + model_id, provider=self.name, upstream=model_id)
            for model_id in unique
        ]

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Generate with the endpoint; see :func:`~liaotian.providers.http.relay_sse` for the
        errors raised and what cancelling does."""
        body = _request_body(request)
        if request.stream:
            # Returned as is (not re-yielded) so each token crosses one generator, not two.
            return relay_sse(
                self._http,
                self._chat_url,
                body=body,
                headers=self._sse_headers,
                timeouts=self._timeouts,
                parser=_ChunkParser(self.name),
                upstream=self.name,
                max_event_bytes=self._max_event_bytes,
            )
        return self._complete(body)

    async def _complete(self, body: bytes) -> AsyncIterator[StreamItem]:
        # The first byte of a non-streamed answer is its last, so only the total timeout
        # applies.
        payload = await request_json(
            self._http,
            "POST",
            self._chat_url,
            body=body,
            headers=self._headers,
            timeouts=self._timeouts,
            within=self._timeouts.total,
            upstream=self.name,
        )
        try:
            choice = payload["choices"][0]
            text = choice["message"].get("content")
            finish = choice.get("finish_reason")
            usage = payload.get("usage")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _payload_error(self.name, payload) from None
        if isinstance(text, str) and text:
            yield text
        yield Finish(finish if isinstance(finish, str) else None, _usage(usage))


def _request_body(request: ChatRequest) -> bytes:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [
            {"role": message.role, "content": message.content} for message in request.messages
        ],
        "stream": request.stream,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return orjson.dumps(body)


class _ChunkParser:
    """Reads ``chat.completion.chunk`` events: text in ``choices[0].delta.content``, the
    finish reason, then a usage chunk (``choices`` empty) and the ``[DONE]`` marker."""

    __slots__ = ("_upstream", "_usage", "complete", "done", "finish_reason")

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._usage: Any = None
        self.finish_reason: str | None = None
        self.complete = False
        self.done = False

    def feed(self, event: SseEvent) -> str:
        data = event.data
        if data == "[DONE]":
            self.complete = self.done = True
            return ""
        chunk = orjson.loads(data)
        try:
            if chunk.get("error") or event.event == "error":
                raise _payload_error(self._upstream, chunk)
            usage = chunk.get("usage")
            if usage:
                self._usage = usage
            choices = chunk.get("choices")
            if not choices:
                return ""
            choice = choices[0]
            finish = choice.get("finish_reason")
            delta = choice.get("delta")
            text = delta.get("content") if delta else None
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _payload_error(self._upstream, chunk) from None
        if finish:
            self.finish_reason = finish
            self.complete = True
        return text if isinstance(text, str) else ""

    def usage(self) -> Usage:
        return _usage(self._usage)


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def _payload_error(upstream: str, payload: Any) -> ProviderError:
    code, message, status = error_fields(payload)
    if code or message or status:
        return upstream_error(upstream, status=status, code=code, message=message)
    return ProviderUnavailable(f"{upstream} sent an unexpected chunk")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@register_provider("openai")
def openai_providers(ctx: ProviderContext) -> list[Provider]:
    """The ``OPENAI_BASE_URL`` endpoint (if set) and each configured named endpoint."""
    settings = ctx.settings
    timeouts = Timeouts.from_settings(settings)
    providers: list[Provider] = []
    if settings.openai_base_url:
        providers.append(
            OpenAICompatProvider(
                "openai",
                base_url=settings.openai_base_url,
                api_key=_secret(settings.openai_api_key),
                http=ctx.http,
                timeouts=timeouts,
                max_event_bytes=settings.provider_max_event_bytes,
            )
        )
    for endpoint in settings.openai_endpoints:
        providers.append(
            OpenAICompatProvider(
                endpoint.name,
                base_url=endpoint.base_url,
                api_key=_secret(endpoint.api_key),
                http=ctx.http,
                timeouts=timeouts,
                prefix=f"{endpoint.name}/",
                models=endpoint.models,
                max_event_bytes=settings.provider_max_event_bytes,
            )
        )
    return providers
