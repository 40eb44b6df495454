"""Model providers: the interface, the registry and the built-in backends."""

from liaotian.providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    ProviderContext,
    ProviderRegistry,
    StreamItem,
    Usage,
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
    "ProviderRegistry",
    "StreamItem",
    "Usage",
    "provider_factories",
    "register_provider",
]
