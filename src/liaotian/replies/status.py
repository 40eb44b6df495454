"""The outcome of a reply, as the store keeps it and the protocol reports it."""

from __future__ import annotations

from enum import StrEnum


class ReplyStatus(StrEnum):
    """Outcome of a reply. STREAMING is the only non-terminal state."""

    STREAMING = "streaming"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self is not ReplyStatus.STREAMING
