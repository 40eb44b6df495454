"""account owners keyed by the user's id

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00

Accounts owned ``user:{name}``, which an open-mode client could also name itself, and which a
user created again under a removed user's name inherited. An account now owns
``user/{users.id}``: client ids cannot contain ``/``, and user ids are never reused
(AUTOINCREMENT on SQLite; PostgreSQL's sequence never reuses).

Existing rows under ``user:{name}`` are ambiguous (the account, an open-mode client that
called itself that, or a removed user of that name). The account gets only the
conversations created since it exists; older ones, and those of names with no account,
stay with the open-mode client id ``user:{name}``: no account is handed what it did not
write (docs/decisions.md, 31).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_owners = sa.table(
    "owners", sa.column("id", sa.String), sa.column("created_at", sa.DateTime(timezone=True))
)
_conversations = sa.table(
    "conversations",
    sa.column("pk", sa.BigInteger),
    sa.column("owner_id", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_users = sa.table(
    "users",
    sa.column("id", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Without AUTOINCREMENT, SQLite gives a new row the largest id + 1: removing the
        # newest user and adding one would reuse its id, hence its conversations.
        with op.batch_alter_table(
            "users", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    connection = op.get_bind()
    for user_id, name, user_created in connection.execute(
        sa.select(_users.c.id, _users.c.name, _users.c.created_at)
    ).all():
        old, new = f"user:{name}", f"user/{user_id}"
        since = _aware(user_created)
        rows = connection.execute(
            sa.select(_conversations.c.pk, _conversations.c.created_at).where(
                _conversations.c.owner_id == old
            )
        ).all()
        moved = [pk for pk, created in rows if _aware(created) >= since]
        if not moved:
            continue
        connection.execute(_owners.insert().values(id=new, created_at=user_created))
        for start in range(0, len(moved), 500):
            connection.execute(
                _conversations.update()
                .where(_conversations.c.pk.in_(moved[start : start + 500]))
                .values(owner_id=new)
            )
        if len(moved) == len(rows):
            connection.execute(_owners.delete().where(_owners.c.id == old))


def downgrade() -> None:
    """Give accounts their ``user:{name}`` owners back (merged with any such client's)."""
    connection = op.get_bind()
    for user_id, name, user_created in connection.execute(
        sa.select(_users.c.id, _users.c.name, _users.c.created_at)
    ).all():
        old, new = f"user:{name}", f"user/{user_id}"
        if connection.scalar(sa.select(_owners.c.id).where(_owners.c.id == new)) is None:
            continue
        if connection.scalar(sa.select(_owners.c.id).where(_owners.c.id == old)) is None:
            connection.execute(_owners.insert().values(id=old, created_at=user_created))
        connection.execute(
            _conversations.update().where(_conversations.c.owner_id == new).values(owner_id=old)
        )
        connection.execute(_owners.delete().where(_owners.c.id == new))


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (written in UTC), PostgreSQL aware ones."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
