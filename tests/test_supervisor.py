"""Supervised background loops: a failure is logged and the loop runs again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from liaotian.supervisor import supervise


async def test_a_loop_that_fails_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    """An unexpected exception ends one run of the loop, not the loop: it runs again."""
    runs: list[int] = []
    failures: list[str] = []
    second_run = asyncio.Event()

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise KeyError("a malformed message")
        second_run.set()
        await asyncio.Event().wait()  # a healthy loop runs until cancelled

    task = asyncio.create_task(
        supervise("test loop", loop, on_failure=failures.append, delays=(0.0,))
    )
    async with asyncio.timeout(10):
        await second_run.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert failures == ["test loop"]
    assert any(
        record.levelno == logging.ERROR and "test loop failed" in record.getMessage()
        for record in caplog.records
    )


async def test_a_loop_that_returns_is_not_restarted() -> None:
    """Returning is how a loop says it is finished."""
    runs: list[int] = []

    async def loop() -> None:
        runs.append(1)

    await asyncio.wait_for(supervise("once", loop, delays=(0.0,)), 10)
    assert runs == [1]
