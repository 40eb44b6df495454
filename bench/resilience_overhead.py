"""Micro-benchmark: what the resilient wrapper adds per token.

Streams N text chunks from an in-memory provider, consumed directly and through
:func:`~liaotian.providers.resilience.resilient_stream` (with and without the repetition
guard), and prints the best-of-R cost per token of each and the difference.

    .venv/bin/python -m bench.resilience_overhead [--tokens 200000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

from liaotian.providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    ModelInfo,
    Provider,
    StreamItem,
)
from liaotian.providers.resilience import CircuitBreaker, ResiliencePolicy, resilient_stream


class MemoryProvider(Provider):
    """Yields ``chunks`` then a Finish, as fast as it is asked."""

    kind = "memory"

    def __init__(self, chunks: list[str]) -> None:
        super().__init__("memory")
        self.chunks = chunks

    def models(self) -> list[ModelInfo]:
        return []

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        for chunk in self.chunks:
            yield chunk
        yield Finish("stop")


async def consume(stream: AsyncIterator[StreamItem]) -> float:
    started = time.perf_counter()
    async for _ in stream:
        pass
    return time.perf_counter() - started


async def main(tokens: int, rounds: int) -> None:
    # Realistic, non-repeating chunks of 3-6 characters, like the fake's "t123 ".
    provider = MemoryProvider([f"t{n} " for n in range(tokens)])
    request = ChatRequest(model="m", messages=[ChatMessage("user", "hi")])
    variants = {
        "direct": lambda: provider.stream(request),
        "wrapped": lambda: resilient_stream(
            provider, request, CircuitBreaker("m", failures=5, cooldown=30), ResiliencePolicy()
        ),
        "wrapped, no guard": lambda: resilient_stream(
            provider,
            request,
            CircuitBreaker("m", failures=5, cooldown=30),
            ResiliencePolicy(repetition_limit=0),
        ),
    }
    best = {
        name: min([await consume(make()) for _ in range(rounds)]) for name, make in variants.items()
    }
    per_token = {name: seconds / tokens * 1e6 for name, seconds in best.items()}
    for name, micros in per_token.items():
        print(f"{name:>18}: {micros:.3f} µs/token")
    overhead = per_token["wrapped"] - per_token["direct"]
    guard = per_token["wrapped"] - per_token["wrapped, no guard"]
    print(f"{'overhead':>18}: {overhead:.3f} µs/token (the guard: {guard:.3f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rounds))
