"""full-text search over messages and titles (SQLite FTS5; PostgreSQL tsvector + GIN)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:10:00

Filled in by the search work (see liaotian.store.search).
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
