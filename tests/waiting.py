"""Waiting in tests on state that has no event to wait on: poll, with a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Return once ``condition()`` holds (checked every millisecond or so); raise
    TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.001)
