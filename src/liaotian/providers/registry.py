"""The provider registry: how providers are built, registered and chosen per model.

- :func:`register_provider` registers a factory under a kind; :func:`provider_factories`
  returns them all, the built-in ones (``liaotian.providers.builtin``) registered first, in
  resolution order. A plug-in registers the same way.
- :class:`ProviderRegistry` holds the providers of one process: it starts and closes them,
  resolves a model id to its provider and streams through
  :func:`~liaotian.providers.resilience.resilient_stream` (retries, one circuit breaker
  per provider, the repetition guard).

The interface the providers implement is :mod:`liaotian.providers.base`, which does not
import this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from liaotian.errors import ModelNotFound, ProviderNotConfigured
from liaotian.providers.base import ChatRequest, ModelInfo, Provider, StreamItem
from liaotian.providers.resilience import CircuitBreaker, ResiliencePolicy, resilient_stream

if TYPE_CHECKING:
    import aiohttp

    from liaotian.settings import Settings


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
    """Every registered factory by kind, the built-in ones included, in registration order."""
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
