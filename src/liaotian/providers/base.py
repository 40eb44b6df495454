"""The provider interface: what every model backend implements, and the registry.

A provider serves some models. :meth:`Provider.stream` is an async iterator that yields
``str`` text deltas and ends with exactly one :class:`Finish` (usage and finish reason).
It raises only :class:`~liaotian.errors.ProviderError` subclasses. Cancelling the task that
iterates it (or closing the iterator) stops the upstream work: an HTTP provider closes its
response, the local model stops between tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from liaotian.errors import ModelNotFound, ProviderNotConfigured
from liaotian.providers.resilience import CircuitBreaker, ResiliencePolicy, resilient_stream

if TYPE_CHECKING:
    import aiohttp

    from liaotian.settings import Settings


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


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What provider factories get: the settings and the shared HTTP session."""

    settings: Settings
    http: aiohttp.ClientSession


ProviderFactory = Callable[[ProviderContext], list[Provider]]
_FACTORIES: dict[str, ProviderFactory] = {}


def register_provider(kind: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Register a factory that builds the providers of ``kind`` from the settings."""

    def decorator(factory: ProviderFactory) -> ProviderFactory:
        _FACTORIES[kind] = factory
        return factory

    return decorator


def provider_factories() -> dict[str, ProviderFactory]:
    import liaotian.providers.builtin  # noqa: F401 - registers the built-in providers

    return dict(_FACTORIES)


class ProviderRegistry:
    """Every provider of this process, which one serves which model id, and how each is
    called: through :meth:`stream`, with retries and one circuit breaker per provider.

    Providers are asked in registration order; the first that lists a model serves it.
    ``settings`` gives the resilience policy (the defaults without).
    """

    def __init__(self, providers: list[Provider], settings: Settings | None = None) -> None:
        self.providers = providers
        self._failed: dict[str, str] = {}
        self.policy = (
            ResiliencePolicy() if settings is None else ResiliencePolicy.from_settings(settings)
        )
        self.breakers = {provider.name: self._breaker(provider.name) for provider in providers}

    def _breaker(self, name: str) -> CircuitBreaker:
        policy = self.policy
        return CircuitBreaker(
            name,
            failures=policy.breaker_failures,
            cooldown=policy.breaker_cooldown,
            clock=policy.clock,
        )

    def stream(self, provider: Provider, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """``provider.stream(request)`` made resilient: retried before the first token,
        failing fast while the provider's breaker is open, stopped when it loops. See
        :func:`~liaotian.providers.resilience.resilient_stream` for what it raises."""
        breaker = self.breakers.get(provider.name)
        if breaker is None:
            breaker = self.breakers[provider.name] = self._breaker(provider.name)
        return resilient_stream(provider, request, breaker, self.policy)

    async def start(self) -> None:
        for provider in self.providers:
            try:
                await provider.start()
            except Exception as exc:  # a broken provider must not stop the others
                self._failed[provider.name] = f"{type(exc).__name__}: {exc}"

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()

    def models(self) -> list[ModelInfo]:
        seen: set[str] = set()
        listed = []
        for provider in self.providers:
            for model in provider.models():
                if model.id not in seen:
                    seen.add(model.id)
                    listed.append(model)
        return listed

    def resolve(self, model_id: str) -> tuple[Provider, ModelInfo]:
        """The provider and model for ``model_id``.

        Raises ModelNotFound (no provider lists it) or ProviderNotConfigured (listed, but
        its provider lacks a key or URL; the message says which setting to set).
        """
        for provider in self.providers:
            for model in provider.models():
                if model.id == model_id:
                    if not model.available:
                        raise ProviderNotConfigured(f"{model_id} needs {model.reason}")
                    return provider, model
        raise ModelNotFound(
            f"no provider serves the model {model_id!r}; list models with models.list, or "
            "configure DASHSCOPE_API_KEY (Qwen models) or OPENAI_BASE_URL (an OpenAI-compatible "
            "server)"
        )

    def status(self) -> dict[str, object]:
        report: dict[str, object] = {}
        for provider in self.providers:
            entry = provider.status()
            if provider.name in self._failed:
                entry = {**entry, "error": self._failed[provider.name]}
            breaker = self.breakers.get(provider.name)
            if breaker is not None:
                entry = {**entry, "breaker": breaker.status()}
            report[provider.name] = entry
        return report
