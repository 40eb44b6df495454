"""Conversations written straight into the store, as trees, for the share-link tests.

Written with Core statements in one transaction of the server's database, so a test
decides exactly which messages form the active path and which are another branch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select, update

from liaotian.store.database import Database
from liaotian.store.models import Conversation, Message, Owner, utcnow

Turn = tuple[str, str] | dict[str, Any]
"""A message to seed: ``(role, content)``, or a dict of its columns."""

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
owners = cast(Table, Owner.__table__)


@dataclass
class Seeded:
    """A conversation's id and the ids of its active path's messages, oldest first."""

    conversation_id: str
    message_ids: list[str] = field(default_factory=list)


async def seed_conversation(
    database: Database,
    owner: str,
    turns: Sequence[Turn],
    *,
    title: str = "A shared chat",
) -> Seeded:
    """A conversation of ``owner`` whose messages (``(role, content)`` pairs, or dicts of
    message columns) form one path, the last one active."""
    conversation_id = uuid.uuid4().hex

    def work(c: Connection) -> Seeded:
        now = utcnow()
        if c.scalar(select(owners.c.id).where(owners.c.id == owner)) is None:
            c.execute(insert(owners).values(id=owner, created_at=now))
        key = c.execute(
            insert(conversations).values(
                id=conversation_id, owner_id=owner, title=title, created_at=now, updated_at=now
            )
        ).inserted_primary_key
        assert key is not None
        pk = key[0]
        seeded = Seeded(conversation_id)
        parent: int | None = None
        for turn in turns:
            values = {"role": turn[0], "content": turn[1]} if isinstance(turn, tuple) else turn
            parent = _insert(c, pk, parent, values)
            seeded.message_ids.append(_id_of(c, parent))
        c.execute(
            update(conversations).where(conversations.c.pk == pk).values(active_message_pk=parent)
        )
        return seeded

    return await database.run(work)


async def add_sibling(database: Database, message_id: str, role: str, content: str) -> str:
    """A message beside ``message_id`` (same parent): another branch, not the active one."""

    def work(c: Connection) -> str:
        row = c.execute(select(messages).where(messages.c.id == message_id)).one()
        return _id_of(
            c, _insert(c, row.conversation_pk, row.parent_pk, {"role": role, "content": content})
        )

    return await database.run(work)


def _insert(c: Connection, conversation_pk: int, parent: int | None, values: dict[str, Any]) -> int:
    now = utcnow()
    key = c.execute(
        insert(messages).values(
            id=uuid.uuid4().hex,
            conversation_pk=conversation_pk,
            parent_pk=parent,
            created_at=now,
            updated_at=now,
            **{"status": "completed", **values},
        )
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def _id_of(c: Connection, pk: int) -> str:
    return str(c.scalar(select(messages.c.id).where(messages.c.pk == pk)))
