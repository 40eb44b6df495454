"""The full-text index of messages and titles, written in the same transaction as they are.

Every function takes ``c``, a connection inside the caller's transaction, so the index can
never drift from what it indexes. (Contract; the search work fills it in.)
"""

from __future__ import annotations

from sqlalchemy import Connection


def index_message(c: Connection, message_id: str, text: str) -> None:
    """Index (or re-index) the final text of message ``message_id``."""


def index_title(c: Connection, conversation_pk: int, title: str) -> None:
    """Index (or re-index) a conversation's title."""


def unindex_conversation(c: Connection, conversation_pk: int) -> None:
    """Remove a conversation's title and messages from the index (before deleting them)."""
