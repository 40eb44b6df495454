"""Small values the unit tests build again and again."""

from __future__ import annotations

from datetime import UTC, datetime

from liaotian.store.repository import MessageInfo


def stored_reply(content: str) -> MessageInfo:
    """A completed assistant message ``m`` with ``content``, as the store returns it."""
    return MessageInfo(
        id="m", role="assistant", content=content, status="completed", model="m",
        finish_reason="stop", input_tokens=None, output_tokens=None, ttft_ms=None,
        duration_ms=None, error_code=None, error_message=None, created_at=datetime.now(UTC),
    )  # fmt: skip
