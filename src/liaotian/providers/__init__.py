"""Model providers: the interface (:mod:`~liaotian.providers.base`), the registry
(:mod:`~liaotian.providers.registry`) and the built-in backends."""

from liaotian.providers.base import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ImagePart,
    ModelInfo,
    Provider,
    Reasoning,
    Source,
    Sources,
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
    "Capabilities",
    "ChatMessage",
    "ChatRequest",
    "Finish",
    "ImagePart",
    "ModelInfo",
    "Provider",
    "ProviderContext",
    "ProviderFactory",
    "ProviderRegistry",
    "Reasoning",
    "Source",
    "Sources",
    "StreamItem",
    "Usage",
    "provider_factories",
    "register_provider",
]
