"""Background tasks that must not die quietly: run, and restart after a failure.

A loop such as the backplane's notice listener or its reaper is meant to run for the
process's whole life. If an unexpected exception escaped it, the task would end, nobody
would await it, and notices or cancels would stop for good without a word. :func:`supervise`
logs such a failure with its traceback, counts it, waits a little (backing off while it
keeps failing) and starts the loop again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

RESTART_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Seconds before each restart in a row; a loop that ran a minute starts over from the first."""
HEALTHY_AFTER = 60.0


async def supervise(
    name: str,
    loop: Callable[[], Awaitable[None]],
    *,
    on_failure: Callable[[str], None] | None = None,
    delays: tuple[float, ...] = RESTART_DELAYS,
) -> None:
    """Run ``loop()`` until it returns or this task is cancelled; restart it when it raises.

    Cancellation propagates (that is how the owner stops it). Any other exception is logged
    once with its traceback, reported to ``on_failure(name)``, and followed by a restart
    after ``delays[n]`` seconds (n: failures in a row).
    """
    clock = asyncio.get_running_loop()
    failures = 0
    while True:
        began = clock.time()
        try:
            await loop()
            return
        except Exception:
            log.exception("background task %s failed; restarting it", name)
            if on_failure is not None:
                on_failure(name)
        if clock.time() - began > HEALTHY_AFTER:
            failures = 0
        await asyncio.sleep(delays[min(failures, len(delays) - 1)])
        failures += 1
