"""The provider interface: what every model backend implements.

A provider serves some models. :meth:`Provider.stream` is an async iterator of typed reply
parts: ``str`` answer-text deltas, :class:`Reasoning` deltas (the model's thinking, before or
between the text), at most one :class:`Sources` (web search results), and it ends with
exactly one :class:`Finish` (usage and finish reason). A provider that cannot produce a part
never yields it and says so in its models' :class:`Capabilities`. Tool calls and their
results will be further item types of the same stream (the engine ignores unknown items).
It raises only :class:`~liaotian.errors.ProviderError` subclasses. Cancelling the task that
iterates it (or closing the iterator) stops the upstream work: an HTTP provider closes its
response, the local model stops between tokens.

How providers are built, registered and chosen per model is
:mod:`liaotian.providers.registry`'s business; this module imports nothing of it.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image sent to the model: already validated and re-encoded by the server."""

    media_type: str
    """``image/png``, ``image/jpeg``, ``image/webp`` or ``image/gif``."""
    data: bytes

    def data_url(self) -> str:
        """``data:<media type>;base64,<data>``: what both DashScope and OpenAI accept."""
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str
    images: tuple[ImagePart, ...] = ()
    """Images of a user message, in order, shown to the model before its text."""
    reasoning: str | None = None
    """An earlier answer's reasoning: set only for models whose ``reasoning_in_history``
    capability is on (by default reasoning is not sent back)."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One generation request, already resolved to the provider's own model name.

    ``thinking`` None means the model's default; ``search`` asks for web search (DashScope).
    The engine only sets what the model's capabilities allow.
    """

    model: str
    messages: list[ChatMessage]
    stream: bool = True
    temperature: float | None = None
    max_tokens: int | None = None
    thinking: bool | None = None
    thinking_budget: int | None = None
    search: bool = False


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A delta of the model's thinking (``reasoning_content``, ``reasoning``, ``<think>``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Source:
    """One web search result the answer may cite as ``[index]``."""

    index: int
    url: str
    title: str = ""
    site: str = ""
    icon: str = ""

    def to_wire(self) -> dict[str, object]:
        return {
            "index": self.index,
            "url": self.url,
            "title": self.title,
            "site": self.site,
            "icon": self.icon,
        }


@dataclass(frozen=True, slots=True)
class Sources:
    """The search results of a reply, once (DashScope sends them before the answer)."""

    items: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    """Of ``output_tokens``, those spent thinking (when the provider reports it)."""
    cached_tokens: int | None = None
    """Of ``input_tokens``, those served from the provider's prompt cache."""

    def to_wire(self) -> dict[str, int]:
        wire = {}
        for name in ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens"):
            value = getattr(self, name)
            if value is not None:
                wire[name] = value
        return wire


@dataclass(frozen=True, slots=True)
class Finish:
    """The last item of a stream."""

    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)


StreamItem = str | Reasoning | Sources | Finish


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a model can do, as clients see it (``models.list``) and as the engine checks it
    before calling the provider. Defaults come from the provider; the ``models`` setting
    overrides them per model id."""

    vision: bool = False
    """Takes images."""
    thinking: bool = False
    """Can think before answering (reasoning parts)."""
    thinking_default: bool = False
    """Thinks unless told not to (for a model that always thinks: ``thinking_fixed``)."""
    thinking_fixed: bool = False
    """Thinking cannot be switched (always on, or always off when ``thinking`` is False)."""
    search: bool = False
    """Can search the web (DashScope ``enable_search``)."""
    reasoning_in_history: bool = False
    """Earlier answers' reasoning goes back to the model with the history."""

    def to_wire(self) -> dict[str, bool]:
        return {
            "vision": self.vision,
            "thinking": self.thinking,
            "thinking_default": self.thinking_default,
            "thinking_fixed": self.thinking_fixed,
            "search": self.search,
        }


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model as clients see it. ``upstream`` is the name sent to the provider."""

    id: str
    provider: str
    upstream: str
    available: bool = True
    reason: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "provider": self.provider,
            "available": self.available,
            "reason": self.reason,
            "capabilities": self.capabilities.to_wire(),
        }


class Provider(ABC):
    """A model backend. Created once at start-up, shared by all replies."""

    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare (discover models, load weights). Raising here disables the provider."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once at shutdown."""

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """The models this provider serves (or would serve, once configured)."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Generate: text and reasoning deltas and at most one Sources, then one Finish.
        Raises ProviderError subclasses only."""

    def status(self) -> dict[str, object]:
        """Readiness details for ``/readyz``."""
        return {"kind": self.kind, "models": len(self.models())}
