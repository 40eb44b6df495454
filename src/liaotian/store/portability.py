"""Export and import of whole conversations (docs/protocol.md, "Export and import format").

:meth:`PortabilityStore.export` reads one of the owner's conversations in liaotian's export
format: its active path (from ``conversations.active_message_pk`` up the ``parent_pk``
links), or every message of its tree. Another owner's conversation is NotFound, exactly
like an unknown one.

:meth:`PortabilityStore.import_conversations` stores conversations already parsed and
checked (:mod:`liaotian.importers`), all in one transaction, for one owner:

* idempotent: a conversation whose id the owner already has is skipped, so importing the
  same file twice adds nothing; message ids are derived from (owner, conversation id,
  original id), never random, so they are the same each time and unique across owners
  (message ids are unique in the whole database);
* each message and title is indexed for search in the same transaction
  (:mod:`liaotian.store.search`); titles are marked ``title_source = "import"``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from liaotian.errors import NotFound
from liaotian.replies.status import ReplyStatus
from liaotian.store import search
from liaotian.store.database import Database
from liaotian.store.models import Conversation, Message, Owner, aware, utcnow
from liaotian.store.repository import ConversationInfo, message_info

FORMAT = "liaotian.conversation"
VERSION = 1

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
owners = cast(Table, Owner.__table__)

_INSERT_IGNORING_CONFLICTS = {
    "postgresql": {
        "owners": postgresql.insert(owners).on_conflict_do_nothing(),
        "conversations": postgresql.insert(conversations)
        .on_conflict_do_nothing()
        .returning(conversations.c.pk),
    },
    "sqlite": {
        "owners": sqlite.insert(owners).on_conflict_do_nothing(),
        "conversations": sqlite.insert(conversations)
        .on_conflict_do_nothing()
        .returning(conversations.c.pk),
    },
}
_SET_PARENT = (
    update(messages)
    .where(messages.c.pk == bindparam("b_pk"))
    .values(parent_pk=bindparam("b_parent"))
)


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    """A message to import. ``key`` is its id in the file (unique within its
    conversation), ``parent_key`` the key of the message it follows (None: a first one)."""

    key: str
    parent_key: str | None
    role: str
    content: str
    created_at: datetime
    status: str = ReplyStatus.COMPLETED.value
    model: str | None = None
    reasoning: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    thinking_ms: float | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ImportedConversation:
    """A conversation to import, checked: ``messages`` come parents first, every
    ``parent_key`` names an earlier one, and ``active_key`` (the active path's last
    message, None when there is no message) names one of them."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: tuple[ImportedMessage, ...]
    active_key: str | None
    system_prompt: str | None = None
    model: str | None = None
    pinned: bool = False
    archived: bool = False


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import stored: the conversations added (in the file's order), and how many
    were skipped because the owner already had them."""

    imported: tuple[ConversationInfo, ...] = ()
    skipped: tuple[str, ...] = ()
    """The ids of the conversations skipped."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "imported": len(self.imported),
            "skipped": len(self.skipped),
            "conversations": [
                {"id": conversation.id, "title": conversation.title}
                for conversation in self.imported
            ],
        }


def imported_message_id(owner: str, conversation_id: str, key: str) -> str:
    """The id an imported message gets: the same for the same owner, conversation and
    original id (so importing again finds it), different for another owner."""
    digest = hashlib.sha256("\0".join((owner, conversation_id, key)).encode()).hexdigest()
    return f"imp{digest[:40]}"


class PortabilityStore:
    """Export and import of the owner's conversations, on the store's database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def export(
        self, owner: str, conversation_id: str, *, tree: bool = False
    ) -> dict[str, Any]:
        """The conversation in liaotian's export format: the active path, or with ``tree``
        every message. Raises NotFound for an unknown id or another owner's."""
        return await self._db.run(
            lambda c: _export(c, owner, conversation_id, tree=tree, now=utcnow())
        )

    async def import_conversations(
        self, owner: str, imported: Sequence[ImportedConversation]
    ) -> ImportResult:
        """Store ``imported`` for ``owner`` in one transaction, skipping the conversations
        the owner already has (by id). Raises StoreError; nothing is stored then."""
        return await self._db.run(lambda c: _import(c, owner, imported, utcnow()))


# -- export ------------------------------------------------------------------------------


def _export(
    c: Connection, owner: str, conversation_id: str, *, tree: bool, now: datetime
) -> dict[str, Any]:
    row = c.execute(
        select(conversations).where(
            conversations.c.owner_id == owner, conversations.c.id == conversation_id
        )
    ).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    if tree:
        rows = c.execute(
            select(messages).where(messages.c.conversation_pk == row.pk).order_by(messages.c.pk)
        ).all()
    else:
        rows = _active_path(c, row.pk, row.active_message_pk)
    ids = {message.pk: message.id for message in rows}
    active_id = None if row.active_message_pk is None else ids.get(row.active_message_pk)
    if active_id is None and row.active_message_pk is not None:
        active_id = c.scalar(select(messages.c.id).where(messages.c.pk == row.active_message_pk))
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now.timestamp(),
        "conversation": {
            "id": row.id,
            "title": row.title,
            "system_prompt": row.system_prompt,
            "model": row.model,
            "created_at": aware(row.created_at).timestamp(),
            "updated_at": aware(row.updated_at).timestamp(),
            "pinned": bool(row.pinned),
            "archived": bool(row.archived),
            "active_message_id": active_id,
        },
        "messages": [
            {**_message_wire(message), "parent_id": ids.get(message.parent_pk)} for message in rows
        ],
    }


def _active_path(c: Connection, conversation_pk: int, leaf_pk: int | None) -> list[Row[Any]]:
    """The messages from the first one to ``leaf_pk``, in that order."""
    if leaf_pk is None:
        return []
    path = (
        select(messages.c.pk, messages.c.parent_pk)
        .where(messages.c.pk == leaf_pk, messages.c.conversation_pk == conversation_pk)
        .cte("path", recursive=True)
    )
    up = messages.alias("up")
    path = path.union_all(
        select(up.c.pk, up.c.parent_pk)
        .join(path, up.c.pk == path.c.parent_pk)
        .where(up.c.conversation_pk == conversation_pk)
    )
    rows = c.execute(
        select(messages).where(messages.c.pk.in_(select(path.c.pk))).order_by(messages.c.pk)
    ).all()
    by_pk = {row.pk: row for row in rows}
    ordered: list[Row[Any]] = []
    pk: int | None = leaf_pk
    while pk is not None and pk in by_pk and len(ordered) < len(by_pk):
        ordered.append(by_pk[pk])
        pk = by_pk[pk].parent_pk
    ordered.reverse()
    return ordered


def _message_wire(row: Row[Any]) -> dict[str, Any]:
    return message_info(row).to_wire()


# -- import ------------------------------------------------------------------------------


def _import(
    c: Connection, owner: str, imported: Sequence[ImportedConversation], now: datetime
) -> ImportResult:
    statements = _INSERT_IGNORING_CONFLICTS[c.dialect.name]
    c.execute(statements["owners"], {"id": owner, "created_at": now})
    added: list[ConversationInfo] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for conversation in imported:
        if conversation.id in seen:
            skipped.append(conversation.id)
            continue
        seen.add(conversation.id)
        pk = c.scalar(
            statements["conversations"],
            {
                "id": conversation.id,
                "owner_id": owner,
                "title": conversation.title,
                "title_source": "import",
                "system_prompt": conversation.system_prompt,
                "model": conversation.model,
                "pinned": conversation.pinned,
                "archived": conversation.archived,
                "created_at": conversation.created_at,
                "updated_at": conversation.updated_at,
            },
        )
        if pk is None:  # the owner has it already (imported before, or its own)
            skipped.append(conversation.id)
            continue
        active_id = _insert_messages(c, owner, pk, conversation)
        if conversation.title:
            search.index_title(c, pk, conversation.title)
        added.append(
            ConversationInfo(
                id=conversation.id,
                pk=pk,
                title=conversation.title,
                system_prompt=conversation.system_prompt,
                model=conversation.model,
                created_at=conversation.created_at,
                updated_at=conversation.updated_at,
                pinned=conversation.pinned,
                archived=conversation.archived,
                title_source="import",
                active_message_id=active_id,
            )
        )
    return ImportResult(tuple(added), tuple(skipped))


def _insert_messages(
    c: Connection, owner: str, conversation_pk: int, conversation: ImportedConversation
) -> str | None:
    """Insert the conversation's messages and link them; the active leaf's id."""
    if not conversation.messages:
        return None
    ids = {
        message.key: imported_message_id(owner, conversation.id, message.key)
        for message in conversation.messages
    }
    rows = [
        {
            "id": ids[message.key],
            "conversation_pk": conversation_pk,
            "role": message.role,
            "content": message.content,
            "reasoning": message.reasoning,
            "sources": list(message.sources) or None,
            "status": message.status,
            "model": message.model,
            "finish_reason": message.finish_reason,
            "input_tokens": message.input_tokens,
            "output_tokens": message.output_tokens,
            "reasoning_tokens": message.reasoning_tokens,
            "cached_tokens": message.cached_tokens,
            "thinking_ms": message.thinking_ms,
            "ttft_ms": message.ttft_ms,
            "duration_ms": message.duration_ms,
            "error_code": message.error_code,
            "error_message": message.error_message,
            "created_at": message.created_at,
            "updated_at": message.created_at,
        }
        for message in conversation.messages
    ]
    inserted = c.execute(
        messages.insert().returning(messages.c.id, messages.c.pk, sort_by_parameter_order=True),
        rows,
    ).all()
    pks = {row[0]: row[1] for row in inserted}
    links = [
        {"b_pk": pks[ids[message.key]], "b_parent": pks[ids[message.parent_key]]}
        for message in conversation.messages
        if message.parent_key is not None
    ]
    if links:
        c.execute(_SET_PARENT, links)
    active_id = None if conversation.active_key is None else ids[conversation.active_key]
    if active_id is not None:
        c.execute(
            update(conversations)
            .where(conversations.c.pk == conversation_pk)
            .values(active_message_pk=pks[active_id])
        )
    for message in conversation.messages:
        if message.content:
            search.index_message(c, ids[message.key], message.content)
    return active_id
