"""reply parts (reasoning, sources), attachments, reasoning and cached token counts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:00:00

Existing messages keep their text as ``content`` and get no reasoning, sources or attachments.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BIG_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reasoning", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sources", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("attachments", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reasoning_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cached_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("thinking_ms", sa.Float(), nullable=True))
    op.create_table(
        "attachments",
        sa.Column("pk", _BIG_PK, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "owner_id",
            sa.String(128),
            sa.ForeignKey("owners.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "conversation_pk",
            _BIG_PK,
            sa.ForeignKey("conversations.pk", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("media_type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_attachments_owner_created", "attachments", ["owner_id", "created_at"])
    op.create_index("ix_attachments_conversation", "attachments", ["conversation_pk"])


def downgrade() -> None:
    op.drop_index("ix_attachments_conversation", table_name="attachments")
    op.drop_index("ix_attachments_owner_created", table_name="attachments")
    op.drop_table("attachments")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for column in (
            "thinking_ms",
            "cached_tokens",
            "reasoning_tokens",
            "attachments",
            "sources",
            "reasoning",
        ):
            batch_op.drop_column(column)
