"""The provider interface: what every model backend implements.

A provider serves some models. :meth:`Provider.stream` is an async iterator that yields
``str`` text deltas and ends with exactly one :class:`Finish` (usage and finish reason).
It raises only :class:`~liaotian.errors.ProviderError` subclasses. Cancelling the task that
iterates it (or closing the iterator) stops the upstream work: an HTTP provider closes its
response, the local model stops between tokens.

How providers are built, registered and chosen per model is
:mod:`liaotian.providers.registry`'s business; this module imports nothing of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One generation request, already resolved to the provider's own model name."""

    model: str
    messages: list[ChatMessage]
    stream: bool = True
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None

    def to_wire(self) -> dict[str, int]:
        wire = {}
        if self.input_tokens is not None:
            wire["input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            wire["output_tokens"] = self.output_tokens
        return wire


@dataclass(frozen=True, slots=True)
class Finish:
    """The last item of a stream."""

    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)


StreamItem = str | Finish


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model as clients see it. ``upstream`` is the name sent to the provider."""

    id: str
    provider: str
    upstream: str
    available: bool = True
    reason: str | None = None

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "provider": self.provider,
            "available": self.available,
            "reason": self.reason,
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
        """Generate: text deltas, then one Finish. Raises ProviderError subclasses only."""

    def status(self) -> dict[str, object]:
        """Readiness details for ``/readyz``."""
        return {"kind": self.kind, "models": len(self.models())}
