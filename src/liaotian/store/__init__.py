"""Persistence: SQLAlchemy models, the owner-scoped :class:`Store`, Alembic migrations."""

from liaotian.store.repository import (
    ConversationInfo,
    MessageInfo,
    ReplyOutcome,
    Store,
    create_engine,
)

__all__ = ["ConversationInfo", "MessageInfo", "ReplyOutcome", "Store", "create_engine"]
