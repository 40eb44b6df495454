"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, Ollama, LiteLLM…).

One provider per endpoint: the one of ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, named
``openai``, exposes the upstream model ids as they are; each ``[[openai_endpoints]]`` entry
named N exposes them as ``N/<id>``. Models are discovered with ``GET {base}/models`` at
start-up unless the endpoint lists them; a discovered model cannot say what it can do, so
all its capabilities are off until the ``models`` setting turns them on.

Reasoning comes as ``reasoning_content`` or ``reasoning`` next to the content, or inline as
a leading ``<think>…</think>`` (:mod:`liaotian.providers.think`). Thinking is switched
with ``chat_template_kwargs.enable_thinking`` (vLLM, SGLang) and ``enable_thinking``
(DashScope's compatible mode), sent only when the request sets it. Images go as
``image_url`` parts with data URLs, before the text part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from liaotian.errors import ProviderError, ProviderUnavailable
from liaotian.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    Reasoning,
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
from liaotian.providers.think import ThinkSplitter, split_complete

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr


NO_CAPABILITIES = Capabilities()
"""Text only: what an endpoint's model is taken to do until the ``models`` setting says."""


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
            ModelInfo(
                id=self._prefix + model_id,
                provider=self.name,
                upstream=model_id,
                capabilities=NO_CAPABILITIES,
            )
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
            items = _complete_items(choice["message"])
            finish = choice.get("finish_reason")
            usage = payload.get("usage")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _payload_error(self.name, payload) from None
        for item in items:
            yield item
        yield Finish(finish if isinstance(finish, str) else None, _usage(usage))


def _request_body(request: ChatRequest) -> bytes:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [_wire_message(message) for message in request.messages],
        "stream": request.stream,
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.thinking is not None:
        # No standard switch: vLLM and SGLang pass chat_template_kwargs to the chat template
        # (Qwen3's enable_thinking), DashScope's compatible mode reads enable_thinking.
        body["chat_template_kwargs"] = {"enable_thinking": request.thinking}
        body["enable_thinking"] = request.thinking
    if request.thinking_budget is not None and request.thinking is not False:
        body["thinking_budget"] = request.thinking_budget
    return orjson.dumps(body)


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role}
    if message.images:
        # Only with images: some servers stop thinking when content is a list.
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": image.data_url()}}
            for image in message.images
        ]
        parts.append({"type": "text", "text": message.content})
        wire["content"] = parts
    else:
        wire["content"] = message.content
    if message.reasoning is not None and message.role == "assistant":
        wire["reasoning_content"] = message.reasoning
    return wire


def _reasoning_of(fields: Any) -> str | None:
    """``reasoning_content`` (DeepSeek, DashScope, older vLLM) or ``reasoning`` (vLLM,
    OpenRouter, Ollama) of a delta or message, when it is text."""
    reasoning = fields.get("reasoning_content")
    if not isinstance(reasoning, str) or not reasoning:
        reasoning = fields.get("reasoning")
    return reasoning if isinstance(reasoning, str) and reasoning else None


def _complete_items(message: Any) -> list[StreamItem]:
    """The parts of a non-streamed ``message``: its reasoning, then its content."""
    items: list[StreamItem] = []
    reasoning = _reasoning_of(message)
    if reasoning is not None:
        items.append(Reasoning(reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        items.extend(split_complete(content))
    return items


_NOTHING: tuple[StreamItem, ...] = ()


class _ChunkParser:
    """Reads ``chat.completion.chunk`` events: text in ``choices[0].delta.content`` (inline
    ``<think>`` split off), reasoning in ``delta.reasoning_content`` or ``delta.reasoning``,
    the finish reason, then a usage chunk (``choices`` empty) and the ``[DONE]`` marker."""

    __slots__ = ("_splitter", "_upstream", "_usage", "complete", "done", "finish_reason")

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._usage: Any = None
        self._splitter = ThinkSplitter()
        self.finish_reason: str | None = None
        self.complete = False
        self.done = False

    def feed(self, event: SseEvent) -> Sequence[StreamItem]:
        data = event.data
        if data == "[DONE]":
            self.complete = self.done = True
            return _NOTHING
        chunk = orjson.loads(data)
        try:
            if chunk.get("error") or event.event == "error":
                raise _payload_error(self._upstream, chunk)
            usage = chunk.get("usage")
            if usage:
                self._usage = usage
            choices = chunk.get("choices")
            if not choices:
                return _NOTHING
            choice = choices[0]
            finish = choice.get("finish_reason")
            delta = choice.get("delta")
            text = delta.get("content") if delta else None
            reasoning = _reasoning_of(delta) if delta else None
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _payload_error(self._upstream, chunk) from None
        if finish:
            self.finish_reason = finish
            self.complete = True
        if reasoning is None:
            return self._splitter.feed(text) if isinstance(text, str) and text else _NOTHING
        items: list[StreamItem] = [Reasoning(reasoning)]
        if isinstance(text, str) and text:
            items.extend(self._splitter.feed(text))
        return items

    def flush(self) -> Sequence[StreamItem]:
        return self._splitter.flush()

    def usage(self) -> Usage:
        return _usage(self._usage)


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
        _detail(usage.get("completion_tokens_details"), "reasoning_tokens"),
        _detail(usage.get("prompt_tokens_details"), "cached_tokens"),
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _detail(details: object, name: str) -> int | None:
    return _int(details.get(name)) if isinstance(details, dict) else None


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
