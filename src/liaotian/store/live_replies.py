"""The replies streaming now, in every process, as the shared database records them.

A reply is streaming while its message's ``status`` is ``streaming`` (set when it starts,
cleared by its final write, or by the reaper when its process died), so this is the truth
across processes. Each function is one query, found through ``ix_messages_status`` and
primary keys: the conversation by ``conversation_pk``, the account by the id its owner
names (``user/{id}``); an open-mode owner has no account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Connection, Row, Select, Table, case, func, select
from sqlalchemy import cast as sql_cast

from liaotian.replies.status import ReplyStatus
from liaotian.store.accounts import ACCOUNT_OWNER_PREFIX
from liaotian.store.database import Database
from liaotian.store.models import Conversation, Message, User, aware

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
users = cast(Table, User.__table__)

_ACCOUNT_ID = case(
    (
        conversations.c.owner_id.startswith(ACCOUNT_OWNER_PREFIX),
        sql_cast(func.substr(conversations.c.owner_id, len(ACCOUNT_OWNER_PREFIX) + 1), BigInteger),
    ),
    else_=None,
)
"""The account id an owner id names (None for an open-mode owner): a primary-key lookup.
The CASE keeps PostgreSQL from casting an open-mode owner id."""

_STREAMING: Select[Any] = (
    select(
        messages.c.id,
        conversations.c.id.label("conversation_id"),
        conversations.c.owner_id,
        users.c.name.label("user"),
        messages.c.model,
        messages.c.created_at,
    )
    .join(conversations, conversations.c.pk == messages.c.conversation_pk)
    .outerjoin(users, users.c.id == _ACCOUNT_ID)
    .where(messages.c.status == ReplyStatus.STREAMING.value)
)


@dataclass(frozen=True, slots=True)
class LiveReply:
    """A reply streaming now, in some process."""

    message_id: str
    conversation_id: str
    owner: str
    """The owner id its conversation belongs to (what :meth:`ChatEngine.cancel` takes)."""
    user: str
    """The account's name; for an open-mode owner, the owner id."""
    model: str | None
    started_at: datetime


def _live(row: Row[Any]) -> LiveReply:
    return LiveReply(
        message_id=row.id,
        conversation_id=row.conversation_id,
        owner=row.owner_id,
        user=row.user if row.user is not None else row.owner_id,
        model=row.model,
        started_at=aware(row.created_at),
    )


async def streaming_replies(database: Database) -> list[LiveReply]:
    """Every reply streaming now, in any process, oldest first."""
    query = _STREAMING.order_by(messages.c.created_at, messages.c.pk)
    return await database.run(lambda c: [_live(row) for row in c.execute(query)])


async def streaming_reply(database: Database, message_id: str) -> LiveReply | None:
    """The reply ``message_id`` if it is streaming now (in any process), else None."""
    query = _STREAMING.where(messages.c.id == message_id)

    def work(c: Connection) -> LiveReply | None:
        row = c.execute(query).first()
        return None if row is None else _live(row)

    return await database.run(work)
