"""conversations as trees (messages.parent_pk, the active leaf), pinned, archived, title source

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:10:00

Existing conversations become single-path trees: each message's parent is the message
before it, and the active leaf is the last message.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_pk", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_messages_parent", ["conversation_pk", "parent_pk"])
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active_message_pk", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("title_source", sa.String(16), nullable=False, server_default="message")
        )
        batch_op.create_index(
            "ix_conversations_owner_list",
            ["owner_id", "archived", "pinned", "updated_at", "pk"],
        )
    op.execute(
        "UPDATE messages SET parent_pk = (SELECT max(earlier.pk) FROM messages AS earlier"
        " WHERE earlier.conversation_pk = messages.conversation_pk AND earlier.pk < messages.pk)"
    )
    op.execute(
        "UPDATE conversations SET active_message_pk = (SELECT max(messages.pk) FROM messages"
        " WHERE messages.conversation_pk = conversations.pk)"
    )


def downgrade() -> None:
    # Back to single lines: only the active path of each conversation is kept.
    op.execute(
        "WITH RECURSIVE path(pk, parent_pk) AS ("
        " SELECT m.pk, m.parent_pk FROM messages AS m"
        " JOIN conversations AS c ON m.pk = c.active_message_pk"
        " UNION ALL SELECT m.pk, m.parent_pk FROM messages AS m JOIN path ON m.pk = path.parent_pk)"
        " DELETE FROM messages WHERE pk NOT IN (SELECT pk FROM path)"
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_owner_list")
        for column in ("title_source", "archived", "pinned", "active_message_pk"):
            batch_op.drop_column(column)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_parent")
        batch_op.drop_column("parent_pk")
