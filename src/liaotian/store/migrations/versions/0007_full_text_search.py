"""full-text search over messages and titles (SQLite FTS5; PostgreSQL tsvector + GIN)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:10:00

The tables are described in :mod:`liaotian.store.search`. Existing messages (final ones:
not streaming) and titles are indexed here, in batches.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from liaotian.store.search import index_many

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 1000

_SQLITE = (
    "CREATE VIRTUAL TABLE message_search USING fts5(body, tokenize='ascii')",
    "CREATE VIRTUAL TABLE conversation_search USING fts5(body, tokenize='ascii')",
    "CREATE TRIGGER message_search_forget AFTER DELETE ON messages"
    " BEGIN DELETE FROM message_search WHERE rowid = old.pk; END",
    "CREATE TRIGGER conversation_search_forget AFTER DELETE ON conversations"
    " BEGIN DELETE FROM conversation_search WHERE rowid = old.pk; END",
)
_POSTGRESQL = (
    "CREATE TABLE message_search (message_pk BIGINT PRIMARY KEY"
    " REFERENCES messages (pk) ON DELETE CASCADE, vector tsvector NOT NULL)",
    "CREATE INDEX ix_message_search_vector ON message_search USING gin (vector)",
    "CREATE TABLE conversation_search (conversation_pk BIGINT PRIMARY KEY"
    " REFERENCES conversations (pk) ON DELETE CASCADE, vector tsvector NOT NULL)",
    "CREATE INDEX ix_conversation_search_vector ON conversation_search USING gin (vector)",
)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    for statement in _POSTGRESQL if dialect == "postgresql" else _SQLITE:
        op.execute(statement)
    _backfill(
        bind,
        "messages",
        "SELECT pk, content FROM messages WHERE status != 'streaming' AND pk > :after"
        " ORDER BY pk LIMIT :batch",
    )
    _backfill(
        bind,
        "conversations",
        "SELECT pk, title FROM conversations WHERE pk > :after ORDER BY pk LIMIT :batch",
    )


def _backfill(bind: sa.Connection, table: str, select: str) -> None:
    """Index every row ``select`` reads, a batch at a time."""
    after = 0
    while True:
        rows = bind.execute(sa.text(select), {"after": after, "batch": BATCH}).all()
        if not rows:
            return
        index_many(bind, table, ((pk, value or "") for pk, value in rows))
        after = rows[-1][0]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE conversation_search")
        op.execute("DROP TABLE message_search")
    else:
        op.execute("DROP TRIGGER conversation_search_forget")
        op.execute("DROP TRIGGER message_search_forget")
        op.execute("DROP TABLE conversation_search")
        op.execute("DROP TABLE message_search")
