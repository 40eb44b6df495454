"""DashScope's native API (Qwen and the other models Alibaba Cloud hosts).

Speaks the HTTP API that the ``dashscope`` SDK's ``AioGeneration`` and
``AioMultiModalConversation`` use, over the app's shared aiohttp session:
``POST {base}/services/aigc/text-generation/generation`` (``result_format: message``) or,
for vision models and Qwen3.5+, ``…/multimodal-generation/generation`` (content as a list
of ``{"image": data URL}`` and ``{"text": …}`` parts). Streaming is SSE with
``incremental_output`` so each event carries only the new text and reasoning.

Thinking is ``parameters.enable_thinking`` (sent only when the request says, and never to
a model that always thinks) and ``thinking_budget``; the reasoning comes in
``message.reasoning_content``. Web search is ``enable_search`` with ``search_options``
asking for the sources (``output.search_info.search_results``) and ``[n]`` citations.
Without ``DASHSCOPE_API_KEY`` the models are still listed, as unavailable, so a client
learns which setting is missing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from liaotian.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderUnavailable,
)
from liaotian.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    Reasoning,
    Source,
    Sources,
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
MULTIMODAL_PATH = "/services/aigc/multimodal-generation/generation"
NO_KEY_REASON = "DASHSCOPE_API_KEY on the server"
# What the answer cites search results as: "[1]", the index of Source.
SEARCH_OPTIONS = {
    "enable_source": True,
    "enable_citation": True,
    "citation_format": "[<number>]",
    "forced_search": False,
    "search_strategy": "turbo",
}

_QWEN_VERSION = re.compile(r"^qwen(\d+)(?:\.(\d+))?(?=[-.]|$)")
_HYBRID_PREFIXES = ("qwen-plus", "qwen-flash", "qwen-turbo", "qwen3-vl-plus", "qwen3-vl-flash")
_SEARCH_PREFIXES = ("qwen-max", "qwen-plus", "qwen-flash", "qwen-turbo", "qwen3-max")


def _qwen_version(model: str) -> tuple[int, int] | None:
    match = _QWEN_VERSION.match(model)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def _always_thinks(model: str) -> bool:
    return model.startswith(("qwq", "qvq")) or "deepseek-r1" in model or "-thinking" in model


def _newer_than_qwen3(model: str) -> bool:
    """Qwen3.5 and later: natively multimodal, served by the multimodal endpoint only."""
    version = _qwen_version(model)
    return version is not None and version >= (3, 5)


def default_capabilities(model: str) -> Capabilities:
    """What a DashScope model can do, worked out from its name (docs/configuration.md has
    the table; the ``models`` setting overrides it)."""
    name = model.lower()
    newer = _newer_than_qwen3(name)
    vision = newer or _vision_model(name)
    search = newer or name.startswith(_SEARCH_PREFIXES)
    if _always_thinks(name):
        return Capabilities(
            vision=vision, thinking=True, thinking_default=True, thinking_fixed=True, search=search
        )
    if newer:
        # Qwen3.5+ think unless told not to (the recorded API answers carry reasoning
        # without enable_thinking).
        return Capabilities(vision=True, thinking=True, thinking_default=True, search=True)
    open_qwen3 = _qwen_version(name) == (3, 0) and not name.startswith(("qwen3-max", "qwen3-vl"))
    if open_qwen3 and not any(word in name for word in ("-instruct", "coder", "omni")):
        # The open-weight Qwen3 models (qwen3-32b, qwen3-235b-a22b…) think by default.
        return Capabilities(vision=vision, thinking=True, thinking_default=True, search=search)
    hybrid = (
        name.startswith(_HYBRID_PREFIXES)
        or name.startswith("qwen3-max-preview")
        or name.startswith(("deepseek-v3.1", "deepseek-v3.2"))
    )
    return Capabilities(vision=vision, thinking=hybrid, search=search)


def default_endpoint(model: str) -> str:
    """``multimodal`` for vision models and Qwen3.5+, ``text`` otherwise."""
    name = model.lower()
    return "multimodal" if _vision_model(name) or _newer_than_qwen3(name) else "text"


def _vision_model(name: str) -> bool:
    """A vision (VL, QVQ) or omni model, by its lower-case name."""
    return "-vl" in name or name.startswith("qvq") or "omni" in name


class DashScopeProvider(Provider):
    """The DashScope models of ``settings.dashscope_models``, served with one API key.

    Each model is called on the text-generation or the multimodal-generation endpoint: by
    its name (:func:`default_endpoint`) unless ``models.<id>.endpoint`` says otherwise.
    """

    kind = "dashscope"

    def __init__(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        super().__init__("dashscope")
        key = settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else ""
        self._http = http
        self._base = settings.dashscope_base_url
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
        self._endpoints: dict[str, str] = {}
        for model in settings.dashscope_models:
            configured = settings.models.get(model)
            endpoint = configured.endpoint if configured is not None else None
            self._endpoints[model] = endpoint or default_endpoint(model)
        self._models = [
            ModelInfo(
                id=model,
                provider=self.name,
                upstream=model,
                available=bool(key),
                reason=None if key else NO_KEY_REASON,
                capabilities=default_capabilities(model),
            )
            for model in settings.dashscope_models
        ]

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    def status(self) -> dict[str, object]:
        return {**super().status(), "configured": self._headers is not None}

    def endpoint(self, model: str) -> str:
        """``text`` or ``multimodal``: where ``model`` is called."""
        return self._endpoints.get(model) or default_endpoint(model)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Generate with DashScope; see :func:`~liaotian.providers.http.relay_sse` for the
        errors raised and what cancelling does. Without a key it raises ProviderAuthError;
        images for a model on the text endpoint raise ProviderBadRequest."""
        if self._headers is None or self._sse_headers is None:
            return _raise(ProviderAuthError("DASHSCOPE_API_KEY is not set on the server"))
        multimodal = self.endpoint(request.model) == "multimodal"
        if not multimodal and any(message.images for message in request.messages):
            return _raise(
                ProviderBadRequest(
                    f"{request.model} is called on DashScope's text endpoint, which takes no "
                    f'images; set models.{request.model}.endpoint = "multimodal" if it sees'
                )
            )
        url = self._base + (MULTIMODAL_PATH if multimodal else GENERATION_PATH)
        # Thinking needs incremental output, so a non-streamed request that may think is
        # streamed here and collected.
        streamed = request.stream or _may_think(request)
        body = _request_body(request, multimodal=multimodal, streamed=streamed)
        if streamed:
            relay = relay_sse(
                self._http,
                url,
                body=body,
                headers=self._sse_headers,
                timeouts=self._timeouts,
                parser=_DashScopeParser(self.name),
                upstream=self.name,
                max_event_bytes=self._max_event_bytes,
            )
            # Returned as is (not re-yielded) so each token crosses one generator, not two.
            return relay if request.stream else collect(relay)
        return self._complete(url, body, self._headers)

    async def _complete(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> AsyncIterator[StreamItem]:
        # The first byte of a non-streamed answer is its last, so only the total timeout
        # applies.
        payload = await request_json(
            self._http,
            "POST",
            url,
            body=body,
            headers=headers,
            timeouts=self._timeouts,
            within=self._timeouts.total,
            upstream=self.name,
        )
        parser = _DashScopeParser(self.name)
        for item in parser.feed_payload(payload):
            yield item
        yield Finish(parser.finish_reason, parser.usage())


def _may_think(request: ChatRequest) -> bool:
    if request.thinking is not None:
        return request.thinking or _always_thinks(request.model.lower())
    return default_capabilities(request.model).thinking_default


async def collect(stream: AsyncIterator[StreamItem]) -> AsyncIterator[StreamItem]:
    """A non-streamed answer from a stream: its sources, reasoning and text, each whole
    (in the order a stream gives them)."""
    reasoning: list[str] = []
    text: list[str] = []
    sources: Sources | None = None
    async for item in stream:
        if isinstance(item, str):
            text.append(item)
        elif isinstance(item, Reasoning):
            reasoning.append(item.text)
        elif isinstance(item, Sources):
            sources = item
        elif isinstance(item, Finish):
            if sources is not None:
                yield sources
            if reasoning:
                yield Reasoning("".join(reasoning))
            if text:
                yield "".join(text)
            yield item


def _request_body(request: ChatRequest, *, multimodal: bool, streamed: bool) -> bytes:
    parameters: dict[str, Any] = {} if multimodal else {"result_format": "message"}
    if streamed:
        parameters["incremental_output"] = True
    if request.temperature is not None:
        parameters["temperature"] = request.temperature
    if request.max_tokens is not None:
        parameters["max_tokens"] = request.max_tokens
    always = _always_thinks(request.model.lower())
    if request.thinking is not None and not always:
        # Only what the request says: a model's own default stays its own.
        parameters["enable_thinking"] = request.thinking
    if request.thinking_budget is not None and (request.thinking is not False or always):
        parameters["thinking_budget"] = request.thinking_budget
    if request.search:
        parameters["enable_search"] = True
        parameters["search_options"] = SEARCH_OPTIONS
    messages = [_wire_message(message, multimodal) for message in request.messages]
    return orjson.dumps(
        {"model": request.model, "input": {"messages": messages}, "parameters": parameters}
    )


def _wire_message(message: ChatMessage, multimodal: bool) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role}
    if multimodal:
        parts: list[dict[str, str]] = [{"image": image.data_url()} for image in message.images]
        parts.append({"text": message.content})
        wire["content"] = parts
    else:
        wire["content"] = message.content
    if message.reasoning is not None and message.role == "assistant":
        wire["reasoning_content"] = message.reasoning
    return wire


_NOTHING: tuple[StreamItem, ...] = ()


class _DashScopeParser:
    """Reads DashScope results: ``output.choices[0]`` with ``message.content`` (a string on
    the text endpoint, a list of ``{"text": …}`` on the multimodal one), its
    ``reasoning_content``, ``output.search_info.search_results`` and a ``finish_reason``
    that is the *string* ``"null"`` until the last event."""

    __slots__ = ("_sources_seen", "_upstream", "_usage", "complete", "done", "finish_reason")

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._usage: Any = None
        self._sources_seen = False
        self.finish_reason: str | None = None
        self.complete = False
        self.done = False

    def feed(self, event: SseEvent) -> Sequence[StreamItem]:
        if event.event == "error":
            raise self._stream_error(event)
        return self.feed_payload(orjson.loads(event.data))

    def flush(self) -> Sequence[StreamItem]:
        return _NOTHING

    def feed_payload(self, payload: Any) -> Sequence[StreamItem]:
        try:
            output = payload["output"]
            choice = output["choices"][0]
            message = choice["message"]
            content = message.get("content")
            reasoning = message.get("reasoning_content")
            finish = choice.get("finish_reason")
            usage = payload.get("usage")
            search = output.get("search_info")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._payload_error(payload) from None
        if usage:
            self._usage = usage  # cumulative: the last one counts
        if finish and finish != "null":
            self.finish_reason = finish
            self.complete = self.done = True
        text = content if isinstance(content, str) else _list_text(content)
        if not (search or reasoning) and text:
            return (text,)  # the usual event: a piece of the answer
        items: list[StreamItem] = []
        if search and not self._sources_seen:
            sources = _sources(search)
            if sources is not None:
                self._sources_seen = True
                items.append(sources)
        if isinstance(reasoning, str) and reasoning:
            items.append(Reasoning(reasoning))
        if text:
            items.append(text)
        return items

    def usage(self) -> Usage:
        usage = self._usage
        if not isinstance(usage, dict):
            return Usage()
        output_details = usage.get("output_tokens_details")
        cached = _detail(usage.get("prompt_tokens_details"), "cached_tokens")
        if cached is None:
            cached = _detail(usage.get("input_tokens_details"), "cached_tokens")
        return Usage(
            _int(usage.get("input_tokens")),
            _int(usage.get("output_tokens")),
            _detail(output_details, "reasoning_tokens"),
            cached,
        )

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


def _list_text(content: object) -> str:
    """The text of a multimodal ``content`` list (``[{"text": …}, …]``)."""
    if not isinstance(content, list):
        return ""
    return "".join(
        part["text"]
        for part in content
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    )


def _sources(search: object) -> Sources | None:
    results = search.get("search_results") if isinstance(search, dict) else None
    if not isinstance(results, list) or not results:
        return None
    items = []
    for position, result in enumerate(results, 1):
        if not isinstance(result, dict) or not isinstance(result.get("url"), str):
            continue
        index = result.get("index")
        items.append(
            Source(
                index=index if isinstance(index, int) else position,
                url=result["url"],
                title=_str(result.get("title")),
                site=_str(result.get("site_name")),
                icon=_str(result.get("icon")),
            )
        )
    return Sources(tuple(items)) if items else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _detail(details: object, name: str) -> int | None:
    return _int(details.get(name)) if isinstance(details, dict) else None


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
