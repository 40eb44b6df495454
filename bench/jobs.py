"""Job descriptions for :mod:`bench.workload` (plain dicts, sent as JSON)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

ANSWER_TOKENS = 200
TOKEN_DELAY_MS = 20.0
"""The issue's stream: 200 tokens, 20 ms apart (50 tokens/s)."""


def chat(
    urls: Sequence[str],
    conversations: int,
    *,
    turns: int,
    stagger: float,
    tokens: int = ANSWER_TOKENS,
    delay_ms: float = TOKEN_DELAY_MS,
    **extra: Any,
) -> dict[str, Any]:
    """Conversations through the server; every owner is new (a fresh client id prefix)."""
    return {
        "kind": "chat",
        "urls": list(urls),
        "conversations": conversations,
        "turns": turns,
        "tokens": tokens,
        "delay_ms": delay_ms,
        "stagger": stagger,
        "prefix": f"bench-{uuid.uuid4().hex[:8]}",
        **extra,
    }


def direct(
    upstream_url: str,
    conversations: int,
    *,
    turns: int,
    stagger: float,
    tokens: int = ANSWER_TOKENS,
    delay_ms: float = TOKEN_DELAY_MS,
) -> dict[str, Any]:
    """The same streams read straight from the fake upstream."""
    return {
        "kind": "direct",
        "upstream": upstream_url,
        "conversations": conversations,
        "turns": turns,
        "tokens": tokens,
        "delay_ms": delay_ms,
        "stagger": stagger,
    }


def idle(urls: Sequence[str], connections: int) -> dict[str, Any]:
    return {
        "kind": "idle",
        "urls": list(urls),
        "conversations": connections,
        "prefix": f"idle-{uuid.uuid4().hex[:8]}",
    }


def api(
    urls: Sequence[str],
    streams: int,
    *,
    turns: int,
    stagger: float,
    store: bool,
    tokens: int = ANSWER_TOKENS,
    delay_ms: float = TOKEN_DELAY_MS,
) -> dict[str, Any]:
    """The same streams through ``POST /v1/chat/completions`` (stream=true, usage asked
    for), each request a one-message chat; ``urls`` are the servers' HTTP base URLs. Every
    owner is new, as in :func:`chat`."""
    return {
        "kind": "api",
        "urls": list(urls),
        "conversations": streams,
        "turns": turns,
        "tokens": tokens,
        "delay_ms": delay_ms,
        "stagger": stagger,
        "store": store,
        "model": "qwen-plus",
        "prefix": f"api-{uuid.uuid4().hex[:8]}",
    }
