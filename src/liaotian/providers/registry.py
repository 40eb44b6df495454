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

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from liaotian.errors import ModelNotFound, ProviderNotConfigured
from liaotian.providers.base import Capabilities, ChatRequest, ModelInfo, Provider, StreamItem
from liaotian.providers.resilience import (
    CallObserver,
    CircuitBreaker,
    ResiliencePolicy,
    resilient_stream,
)

if TYPE_CHECKING:
    import aiohttp

    from liaotian.metrics import Metrics
    from liaotian.settings import ModelSettings, Settings


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What provider factories get: the settings and the shared HTTP session."""

    settings: Settings
    http: aiohttp.ClientSession


# Providers whose models are never the default while a configured one has an available model.
_DEMO_KINDS = frozenset({"local", "fake"})
# The default when no provider lists any model: a name that resolves to ModelNotFound.
_NO_MODEL = "none"

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
    ``settings`` gives the resilience policy (the defaults without). With ``metrics``, each
    call is counted per provider, once, when it ends (``liaotian_provider_calls``,
    ``liaotian_provider_first_item_seconds``).
    """

    def __init__(
        self,
        providers: list[Provider],
        settings: Settings | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.providers = providers
        self._metrics = metrics
        self._failed: dict[str, str] = {}
        self._configured_default = None if settings is None else settings.default_model
        self._model_settings: Mapping[str, ModelSettings] = (
            {} if settings is None else settings.models
        )
        self._default: str | None = None
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
        return resilient_stream(
            provider, request, breaker, self.policy, self._observer(provider.name)
        )

    def _observer(self, name: str) -> CallObserver | None:
        metrics = self._metrics
        if metrics is None:
            return None

        def observe(outcome: str, latency: float | None) -> None:
            metrics.provider_call_ended(name, outcome, latency)

        return observe

    async def start(self) -> None:
        for provider in self.providers:
            try:
                await provider.start()
            except Exception as exc:  # a broken provider must not stop the others
                self._failed[provider.name] = f"{type(exc).__name__}: {exc}"
        self._default = self._choose_default()

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()

    def models(self) -> list[ModelInfo]:
        """Every model, first provider wins, with the ``models`` setting's capabilities."""
        seen: set[str] = set()
        listed = []
        for provider in self.providers:
            for model in provider.models():
                if model.id not in seen:
                    seen.add(model.id)
                    listed.append(self._configured(model))
        return listed

    def _configured(self, model: ModelInfo) -> ModelInfo:
        """``model`` with the capabilities the ``models`` setting overrides."""
        overrides = self._model_settings.get(model.id)
        if overrides is None:
            return model
        changed = {
            name: value
            for name in Capabilities.__slots__
            if (value := getattr(overrides, name)) is not None
        }
        if not changed:
            return model
        return replace(model, capabilities=replace(model.capabilities, **changed))

    @property
    def default_model(self) -> str:
        """The model a request that names none gets (worked out once, after :meth:`start`)."""
        if self._default is None:
            self._default = self._choose_default()
        return self._default

    def _choose_default(self) -> str:
        """The ``default_model`` setting when given; else the first available
        model of a configured provider (DashScope, then the OpenAI-compatible endpoints, in
        registration order) over the embedded model, which is a tiny demo; else the first
        available model of any kind; else the first listed one (its use then fails with what
        to configure), so the default is always a model that exists when any is listed.
        """
        if self._configured_default:
            return self._configured_default
        models = self.models()
        kinds = {provider.name: provider.kind for provider in self.providers}
        available = [model for model in models if model.available]
        for model in available:
            if kinds.get(model.provider) not in _DEMO_KINDS:
                return model.id
        if available:
            return available[0].id
        return models[0].id if models else _NO_MODEL

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
                    return provider, self._configured(model)
        offered = ", ".join(model.id for model in self.models() if model.available)
        raise ModelNotFound(
            f"no provider serves the model {model_id!r}; "
            + (f"the models here are: {offered}" if offered else "no model is available")
            + "; configure DASHSCOPE_API_KEY (Qwen models) or OPENAI_BASE_URL "
            "(an OpenAI-compatible server) for more"
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
