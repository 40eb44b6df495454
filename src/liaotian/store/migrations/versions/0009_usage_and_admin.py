"""usage ledger, audit log, user roles, statuses and quota limits

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 14:20:00

The first account (the lowest id) becomes an admin: the first account is the admin.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BIG_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="user"))
        batch_op.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="active")
        )
        batch_op.add_column(sa.Column("limits", sa.JSON(none_as_null=True), nullable=True))
    op.execute("UPDATE users SET role = 'admin' WHERE id = (SELECT min(id) FROM users)")
    op.create_table(
        "usage_records",
        sa.Column("pk", _BIG_PK, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_usage_owner_day", "usage_records", ["owner_id", "day"])
    op.create_index("ix_usage_day_model", "usage_records", ["day", "model"])
    op.create_index("ix_usage_user_day", "usage_records", ["user_id", "day"])
    op.create_table(
        "audit_log",
        sa.Column("pk", _BIG_PK, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON(none_as_null=True), nullable=True),
    )
    op.create_index("ix_audit_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_usage_user_day", table_name="usage_records")
    op.drop_index("ix_usage_day_model", table_name="usage_records")
    op.drop_index("ix_usage_owner_day", table_name="usage_records")
    op.drop_table("usage_records")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("limits")
        batch_op.drop_column("status")
        batch_op.drop_column("role")
