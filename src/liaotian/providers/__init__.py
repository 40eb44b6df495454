"""Model providers: the interface (:mod:`~liaotian.providers.base`), the registry
(:mod:`~liaotian.providers.registry`) and the built-in backends."""

from liaotian.providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    StreamItem,
    Usage,
)
from liaotian.providers.registry import (
    ProviderContext,
    ProviderFactory,
    ProviderRegistry,
    provider_factories,
    register_provider,
)

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Finish",
    "ModelInfo",
    "Provider",
    "ProviderContext",
    "ProviderFactory",
    "ProviderRegistry",
    "StreamItem",
    "Usage",
    "provider_factories",
    "register_provider",
]
