"""The store: every read and write of conversations and messages.

Every method that takes an ``owner`` filters by it: a conversation or message of another
owner is reported exactly like one that does not exist (``None`` / NotFound). Partial reply
text is written by :meth:`Store.checkpoint` in batches, never per token.

Each method is one transaction: a synchronous function of a Core ``Connection`` run by the
store's :class:`~liaotian.store.database.Database` (one thread hop on SQLite). Starting a
reply (:meth:`Store.begin_reply`) is one transaction whatever it involves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Row,
    Table,
    bindparam,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from liaotian.errors import NotFound
from liaotian.replies.status import ReplyStatus
from liaotian.store import search
from liaotian.store.attachments import claim_attachments, load_images
from liaotian.store.database import (
    DATABASE_ERRORS,
    Database,
    apply_sqlite_pragmas,
    domain_error,
    open_database,
)
from liaotian.store.models import Conversation, Message, Owner, utcnow

INTERRUPTED_MESSAGE = "the server stopped while this answer was streaming"

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
owners = cast(Table, Owner.__table__)

# The statements of a reply's start and end, built once: building a Core statement and its
# cache key costs more CPU than SQLite takes to run it.
_CONVERSATION = select(conversations).where(
    conversations.c.owner_id == bindparam("b_owner"), conversations.c.id == bindparam("b_id")
)
_INSERT_IGNORING_CONFLICTS = {
    dialect.__name__.rsplit(".", 1)[-1]: {
        table.name: dialect.insert(table).on_conflict_do_nothing()
        for table in (owners, conversations)
    }
    for dialect in (postgresql, sqlite)
}
_CONTEXT = (
    select(messages.c.role, messages.c.content, messages.c.reasoning, messages.c.attachments)
    .where(
        messages.c.conversation_pk == bindparam("b_pk"),
        (messages.c.content != "") | messages.c.attachments.is_not(None),
    )
    .order_by(messages.c.pk.desc())
    .limit(bindparam("b_limit"))
)
_CONTEXT_BEFORE = _CONTEXT.where(
    messages.c.pk
    < select(messages.c.pk).where(messages.c.id == bindparam("b_before")).scalar_subquery()
)
_CLIENT_MESSAGE = select(messages.c.pk).where(
    messages.c.conversation_pk == bindparam("b_pk"),
    messages.c.client_message_id == bindparam("b_client_id"),
)
_EXCHANGE_FROM = (
    select(messages.c.id)
    .where(messages.c.conversation_pk == bindparam("b_pk"), messages.c.pk >= bindparam("b_from"))
    .order_by(messages.c.pk)
    .limit(2)
)
_INSERT_MESSAGE = insert(messages)
_CONVERSATION_ANSWERED = (
    update(conversations)
    .where(conversations.c.pk == bindparam("b_pk"))
    .values(updated_at=bindparam("b_now"), model=bindparam("b_model"))
)
_STILL_STREAMING = (messages.c.id == bindparam("b_id")) & (
    messages.c.status == ReplyStatus.STREAMING.value
)
_CHECKPOINT = (
    update(messages)
    .where(_STILL_STREAMING)
    .values(
        content=bindparam("b_content"),
        reasoning=bindparam("b_reasoning"),
        sources=bindparam("b_sources", type_=messages.c.sources.type),
        updated_at=bindparam("b_now"),
    )
)
_TOUCH = (
    update(messages)
    .where(
        messages.c.id.in_(bindparam("b_ids", expanding=True)),
        messages.c.status == ReplyStatus.STREAMING.value,
    )
    .values(updated_at=bindparam("b_now"))
)
_FINISH = (
    update(messages)
    .where(_STILL_STREAMING)
    .values(
        {
            column: bindparam(f"b_{column}", type_=messages.c[column].type)
            for column in (
                "content",
                "reasoning",
                "sources",
                "status",
                "finish_reason",
                "input_tokens",
                "output_tokens",
                "reasoning_tokens",
                "cached_tokens",
                "thinking_ms",
                "ttft_ms",
                "duration_ms",
                "error_code",
                "error_message",
                "updated_at",
            )
        }
    )
)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    id: str
    pk: int
    title: str
    system_prompt: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime
    pinned: bool = False
    archived: bool = False
    title_source: str = "message"
    active_message_id: str | None = None
    """The leaf of the active path (None while there is no message)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "system_prompt": self.system_prompt,
            "model": self.model,
            "created_at": self.created_at.timestamp(),
            "updated_at": self.updated_at.timestamp(),
            "active_message_id": self.active_message_id,
            "pinned": self.pinned,
            "archived": self.archived,
            "title_source": self.title_source,
        }


@dataclass(frozen=True, slots=True)
class MessageInfo:
    id: str
    role: str
    content: str
    status: str
    model: str | None
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    ttft_ms: float | None
    duration_ms: float | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    reasoning: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    attachments: tuple[dict[str, Any], ...] = ()
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    thinking_ms: float | None = None

    def usage(self) -> dict[str, int] | None:
        """The token counts the provider reported (None when it reported none)."""
        usage = {
            name: value
            for name in ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens")
            if (value := getattr(self, name)) is not None
        }
        return usage or None

    def to_wire(self) -> dict[str, Any]:
        error = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message}
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "reasoning": self.reasoning,
            "sources": list(self.sources),
            "attachments": list(self.attachments),
            "thinking_ms": self.thinking_ms,
            "status": self.status,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": self.usage(),
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "error": error,
            "created_at": self.created_at.timestamp(),
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A conversation found by :meth:`Store.search`, with its newest matching message
    (``message_id`` None: only the title matched) and a snippet around the match."""

    conversation: ConversationInfo
    message_id: str | None
    role: str | None
    created_at: datetime | None
    on_active_path: bool
    snippet: list[dict[str, object]]

    def to_wire(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation.to_wire(),
            "message_id": self.message_id,
            "role": self.role,
            "created_at": None if self.created_at is None else self.created_at.timestamp(),
            "on_active_path": self.on_active_path,
            "snippet": self.snippet,
        }


@dataclass(frozen=True, slots=True)
class StaleReply:
    """A streaming reply whose process died, now marked interrupted."""

    owner: str
    conversation_id: str
    message_id: str
    content: str


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What is written once when a reply ends."""

    status: ReplyStatus
    content: str
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


def _conversation_info(row: Row[Any]) -> ConversationInfo:
    return ConversationInfo(
        id=row.id,
        pk=row.pk,
        title=row.title,
        system_prompt=row.system_prompt,
        model=row.model,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        pinned=bool(row.pinned),
        archived=bool(row.archived),
        title_source=row.title_source,
    )


def _message_info(row: Row[Any]) -> MessageInfo:
    return MessageInfo(
        id=row.id,
        role=row.role,
        content=row.content,
        status=row.status,
        model=row.model,
        finish_reason=row.finish_reason,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        ttft_ms=row.ttft_ms,
        duration_ms=row.duration_ms,
        error_code=row.error_code,
        error_message=row.error_message,
        created_at=_aware(row.created_at),
        reasoning=row.reasoning,
        sources=tuple(row.sources or ()),
        attachments=tuple(row.attachments or ()),
        reasoning_tokens=row.reasoning_tokens,
        cached_tokens=row.cached_tokens,
        thinking_ms=row.thinking_ms,
    )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NewReply:
    """A user's message to store with the empty reply that will answer it.

    ``conversation_id`` names the conversation; with ``create`` a missing one is created
    (title ``title``), otherwise it is NotFound. ``regenerate`` answers the conversation's
    last user message again (``message`` is ignored; the answers after it are deleted);
    ``truncate_from`` (edit) deletes that user message and everything after it first.
    """

    owner: str
    conversation_id: str
    message: str
    model: str
    history_messages: int
    history_chars: int
    """Budget of the whole prompt's characters: the message and the context kept."""
    create: bool = False
    title: str = ""
    client_message_id: str | None = None
    system_prompt: str | None = None
    truncate_from: str | None = None
    regenerate: bool = False
    attachments: tuple[str, ...] = ()
    """Ids of the owner's images the user message shows (claimed for the conversation)."""


@dataclass(frozen=True, slots=True)
class ContextMessage:
    """An earlier message the model sees again."""

    role: str
    content: str
    reasoning: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Partial:
    """What a checkpoint saves of a streaming reply."""

    message_id: str
    content: str
    reasoning: str | None = None
    sources: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class BegunReply:
    """What :meth:`Store.begin_reply` stored, and what the model needs to answer.

    With ``earlier`` set, the ``client_message_id`` was already used: nothing was stored and
    the ids are those of that earlier exchange.
    """

    conversation: ConversationInfo
    user_message_id: str
    reply_id: str
    user_text: str
    created_at: datetime
    context: list[ContextMessage]
    replaces: tuple[str, ...] = ()
    earlier: bool = False
    user_attachments: tuple[dict[str, Any], ...] = ()
    """The images of the user message (``{id, media_type, name, width, height, bytes}``)."""


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            apply_sqlite_pragmas(dbapi_connection)

        return engine
    return create_async_engine(database_url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Store:
    """Owner-scoped persistence of conversations and messages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._db = open_database(engine)

    @property
    def database(self) -> Database:
        """The transaction runner, shared with the other stores of this database."""
        return self._db

    async def ping(self) -> None:
        """Raise StoreUnavailable if the database cannot be reached."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except DATABASE_ERRORS as error:
            raise domain_error(error) from error

    async def close(self) -> None:
        await self._db.close()
        await self.engine.dispose()

    # -- conversations -------------------------------------------------------------------

    async def get_conversation(self, owner: str, conversation_id: str) -> ConversationInfo:
        """The owner's conversation; raises NotFound otherwise."""
        return await self._db.run(lambda c: _conversation(c, owner, conversation_id))

    async def list_conversations(
        self, owner: str, *, limit: int, before: str | None = None, title_query: str | None = None
    ) -> tuple[list[ConversationInfo], bool]:
        """Newest first; ``before`` is the id of the last conversation of the previous page;
        ``title_query`` keeps the titles that contain it, in any case."""
        table = conversations.c

        def work(c: Connection) -> tuple[list[ConversationInfo], bool]:
            query = select(conversations).where(table.owner_id == owner)
            if title_query:
                escaped = title_query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(table.title.ilike(f"%{escaped}%", escape="\\"))
            if before is not None:
                anchor = _conversation(c, owner, before)
                query = query.where(
                    (table.updated_at < anchor.updated_at)
                    | ((table.updated_at == anchor.updated_at) & (table.pk < anchor.pk))
                )
            query = query.order_by(table.updated_at.desc(), table.pk.desc()).limit(limit + 1)
            rows = c.execute(query).all()
            return [_conversation_info(row) for row in rows[:limit]], len(rows) > limit

        return await self._db.run(work)

    async def rename_conversation(
        self, owner: str, conversation_id: str, title: str
    ) -> ConversationInfo:
        def work(c: Connection) -> ConversationInfo:
            conversation = _conversation(c, owner, conversation_id)
            now = utcnow()
            c.execute(
                update(conversations)
                .where(conversations.c.pk == conversation.pk)
                .values(title=title, title_source="user", updated_at=now)
            )
            search.index_title(c, conversation.pk, title)
            return replace(conversation, title=title, updated_at=now)

        return await self._db.run(work)

    async def delete_conversation(self, owner: str, conversation_id: str) -> None:
        def work(c: Connection) -> None:
            conversation = _conversation(c, owner, conversation_id)
            search.unindex_conversation(c, conversation.pk)
            c.execute(delete(messages).where(messages.c.conversation_pk == conversation.pk))
            c.execute(delete(conversations).where(conversations.c.pk == conversation.pk))

        await self._db.run(work)

    # -- messages ------------------------------------------------------------------------

    async def history(
        self, owner: str, conversation_id: str, *, limit: int, before: str | None = None
    ) -> tuple[list[MessageInfo], bool]:
        """A page of messages in chronological order, the newest page first.

        ``before`` is the id of the oldest message of the previous page. Returns the page and
        whether older messages remain.
        """
        table = messages.c

        def work(c: Connection) -> tuple[list[MessageInfo], bool]:
            conversation = _conversation(c, owner, conversation_id)
            query = select(messages).where(table.conversation_pk == conversation.pk)
            if before is not None:
                anchor = c.scalar(
                    select(table.pk).where(
                        table.conversation_pk == conversation.pk, table.id == before
                    )
                )
                if anchor is None:
                    raise NotFound(f"message {before} not found")
                query = query.where(table.pk < anchor)
            rows = c.execute(query.order_by(table.pk.desc()).limit(limit + 1)).all()
            page = [_message_info(row) for row in reversed(rows[:limit])]
            return page, len(rows) > limit

        return await self._db.run(work)

    async def find_reply_by_client_id(
        self, owner: str, conversation_id: str, client_message_id: str
    ) -> tuple[str, str] | None:
        """(user message id, reply id) of an earlier send with this client id, or None."""

        def work(c: Connection) -> tuple[str, str] | None:
            pk = c.scalar(
                select(conversations.c.pk).where(
                    conversations.c.owner_id == owner, conversations.c.id == conversation_id
                )
            )
            return None if pk is None else _earlier_exchange(c, pk, client_message_id)

        return await self._db.run(work)

    async def begin_reply(self, new: NewReply) -> BegunReply:
        """Store the user's message and an empty ``streaming`` reply, in one transaction.

        Also, as the request says: creates the conversation, updates its system prompt,
        deletes the messages an edit or regenerate replaces, and reads the context for the
        model. Raises NotFound (conversation, or the message to edit or regenerate) and
        StoreConflict when a reply already streams in the conversation, or when the
        ``client_message_id`` was used by a send that is being stored at this moment.
        """
        return await self._db.run(lambda c: _begin_reply(c, new, utcnow()))

    async def checkpoint(self, partials: Sequence[Partial]) -> None:
        """Save the parts of streaming replies so far, in one batch."""
        if not partials:
            return
        now = utcnow()
        batch = [
            {
                "b_id": partial.message_id,
                "b_content": partial.content,
                "b_reasoning": partial.reasoning,
                "b_sources": list(partial.sources) or None,
                "b_now": now,
            }
            for partial in partials
        ]
        await self._db.run(lambda c: c.execute(_CHECKPOINT, batch))

    async def touch(self, message_ids: Sequence[str]) -> None:
        """Renew the lease of streaming replies this process runs (their ``updated_at``)."""
        if not message_ids:
            return
        params = {"b_ids": list(message_ids), "b_now": utcnow()}
        await self._db.run(lambda c: c.execute(_TOUCH, params))

    async def reap_stale(self, older_than: float) -> list[StaleReply]:
        """Mark interrupted the streaming replies whose lease is older than ``older_than`` s.

        Their process died (a live process renews every lease each checkpoint interval).
        Returns what was reaped, with the text saved at the last checkpoint.
        """
        cutoff = utcnow() - timedelta(seconds=older_than)
        table = messages.c

        def work(c: Connection) -> list[StaleReply]:
            rows = c.execute(
                select(table.id, table.content, conversations.c.owner_id, conversations.c.id)
                .join(conversations, conversations.c.pk == table.conversation_pk)
                .where(table.status == ReplyStatus.STREAMING.value, table.updated_at < cutoff)
                .with_for_update(of=messages, skip_locked=True)
            ).all()
            if not rows:
                return []
            c.execute(_interrupt().where(table.id.in_([row[0] for row in rows])))
            for row in rows:
                if row[1]:
                    search.index_message(c, row[0], row[1])
            return [
                StaleReply(owner, conversation_id, message_id, content)
                for message_id, content, owner, conversation_id in rows
            ]

        return await self._db.run(work)

    async def finish_reply(self, message_id: str, outcome: ReplyOutcome) -> bool:
        """Write a reply's final text, status, usage and timings (once, at the end).

        Returns False if the reply was no longer streaming (another process reaped it).
        """
        params = {
            "b_id": message_id,
            "b_content": outcome.content,
            "b_reasoning": outcome.reasoning,
            "b_sources": list(outcome.sources) or None,
            "b_status": outcome.status.value,
            "b_finish_reason": outcome.finish_reason,
            "b_input_tokens": outcome.input_tokens,
            "b_output_tokens": outcome.output_tokens,
            "b_reasoning_tokens": outcome.reasoning_tokens,
            "b_cached_tokens": outcome.cached_tokens,
            "b_thinking_ms": outcome.thinking_ms,
            "b_ttft_ms": outcome.ttft_ms,
            "b_duration_ms": outcome.duration_ms,
            "b_error_code": outcome.error_code,
            "b_error_message": outcome.error_message,
            "b_updated_at": utcnow(),
        }

        def work(c: Connection) -> bool:
            if not c.execute(_FINISH, params).rowcount:
                return False
            if outcome.content:
                search.index_message(c, message_id, outcome.content)
            return True

        return await self._db.run(work)

    async def reply_status(self, owner: str, message_id: str) -> MessageInfo | None:
        """The owner's message ``message_id``, or None."""
        found = await self.find_message(owner, message_id)
        return None if found is None else found[0]

    async def find_message(self, owner: str, message_id: str) -> tuple[MessageInfo, str] | None:
        """The owner's message ``message_id`` and its conversation's id, or None."""
        query = (
            select(messages, conversations.c.id.label("conversation_id"))
            .join(conversations, conversations.c.pk == messages.c.conversation_pk)
            .where(messages.c.id == message_id, conversations.c.owner_id == owner)
        )

        def work(c: Connection) -> tuple[MessageInfo, str] | None:
            row = c.execute(query).first()
            return None if row is None else (_message_info(row), row.conversation_id)

        return await self._db.run(work)

    async def streaming_replies(
        self, owner: str, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        """Ids of the owner's streaming replies, by message and/or conversation id."""
        query = (
            select(messages.c.id)
            .join(conversations, conversations.c.pk == messages.c.conversation_pk)
            .where(
                conversations.c.owner_id == owner,
                messages.c.status == ReplyStatus.STREAMING.value,
            )
        )
        if message_id is not None:
            query = query.where(messages.c.id == message_id)
        if conversation_id is not None:
            query = query.where(conversations.c.id == conversation_id)
        return await self._db.run(lambda c: list(c.scalars(query).all()))

    async def load_images(self, owner: str, ids: list[str]) -> dict[str, tuple[str, bytes]]:
        """``{id: (media type, bytes)}`` of the owner's attachments among ``ids``."""
        if not ids:
            return {}
        return await self._db.run(lambda c: load_images(c, owner, ids))

    async def interrupt_streaming(self, message_ids: Iterable[str] | None = None) -> int:
        """Mark streaming replies interrupted (all of them when ``message_ids`` is None).

        Used at start-up after a crash: the saved partial text stays. Returns the count.
        """
        statement = _interrupt()
        streaming = select(messages.c.id, messages.c.content).where(
            messages.c.status == ReplyStatus.STREAMING.value
        )
        if message_ids is not None:
            wanted = list(message_ids)
            statement = statement.where(messages.c.id.in_(wanted))
            streaming = streaming.where(messages.c.id.in_(wanted))

        def work(c: Connection) -> int:
            saved = c.execute(streaming).all()
            count = int(c.execute(statement).rowcount or 0)
            for message_id, content in saved:
                if content:
                    search.index_message(c, message_id, content)
            return count

        return await self._db.run(work)

    async def search(self, owner: str, query: str, *, limit: int) -> list[SearchResult]:
        """The owner's conversations whose title or any message (every branch, archived
        ones too) matches every word of ``query``, best first (see
        :func:`liaotian.store.search.find`), each with its newest matching message."""

        def work(c: Connection) -> list[SearchResult]:
            return [
                SearchResult(
                    _conversation_info(hit.conversation),
                    hit.message_id,
                    hit.role,
                    None if hit.created_at is None else _aware(hit.created_at),
                    hit.on_active_path,
                    hit.snippet,
                )
                for hit in search.find(c, owner, query, limit)
            ]

        return await self._db.run(work)


# -- the transactions' parts (synchronous; ``c`` is inside a transaction) ------------------


def _conversation(c: Connection, owner: str, conversation_id: str) -> ConversationInfo:
    row = c.execute(_CONVERSATION, {"b_owner": owner, "b_id": conversation_id}).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return _conversation_info(row)


def _insert_ignoring_conflicts(c: Connection, table: Table, values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT DO NOTHING (a row created at the same moment elsewhere wins)."""
    c.execute(_INSERT_IGNORING_CONFLICTS[c.dialect.name][table.name], values)


def _create_conversation(
    c: Connection,
    owner: str,
    conversation_id: str,
    title: str,
    system_prompt: str | None,
    model: str | None,
    now: datetime,
) -> ConversationInfo:
    _insert_ignoring_conflicts(c, owners, {"id": owner, "created_at": now})
    _insert_ignoring_conflicts(
        c,
        conversations,
        {
            "id": conversation_id,
            "owner_id": owner,
            "title": title,
            "system_prompt": system_prompt,
            "model": model,
            "created_at": now,
            "updated_at": now,
        },
    )
    conversation = _conversation(c, owner, conversation_id)
    if conversation.created_at == now and title:
        search.index_title(c, conversation.pk, title)
    return conversation


def _context(
    c: Connection, conversation_pk: int, *, limit: int, max_chars: int, before: str | None
) -> list[ContextMessage]:
    params: dict[str, Any] = {"b_pk": conversation_pk, "b_limit": limit}
    if before is not None:
        params["b_before"] = before
    kept: list[ContextMessage] = []
    budget = max_chars
    for role, content, reasoning, attachments in c.execute(
        _CONTEXT if before is None else _CONTEXT_BEFORE, params
    ):
        if len(content) > budget:
            break
        budget -= len(content)
        kept.append(ContextMessage(role, content, reasoning, tuple(attachments or ())))
    kept.reverse()
    return kept


def _earlier_exchange(
    c: Connection, conversation_pk: int, client_message_id: str
) -> tuple[str, str] | None:
    """(user message id, reply id) stored by a send with ``client_message_id``, or None."""
    user_pk = c.scalar(_CLIENT_MESSAGE, {"b_pk": conversation_pk, "b_client_id": client_message_id})
    if user_pk is None:
        return None
    rows = c.execute(_EXCHANGE_FROM, {"b_pk": conversation_pk, "b_from": user_pk}).all()
    return (rows[0][0], rows[1][0]) if len(rows) == 2 else None


def _last_user_message(
    c: Connection, conversation_pk: int
) -> tuple[str, str, tuple[dict[str, Any], ...]]:
    """(id, text, attachments) of the conversation's last user message."""
    row = c.execute(
        select(messages.c.id, messages.c.content, messages.c.attachments)
        .where(messages.c.conversation_pk == conversation_pk, messages.c.role == "user")
        .order_by(messages.c.pk.desc())
        .limit(1)
    ).first()
    if row is None:
        raise NotFound("the conversation has no message to answer again")
    return row[0], row[1], tuple(row[2] or ())


def _truncate(c: Connection, conversation_pk: int, message_id: str, *, keep: bool) -> list[str]:
    table = messages.c
    anchor = c.scalar(
        select(table.pk).where(
            table.conversation_pk == conversation_pk,
            table.id == message_id,
            table.role == "user",
        )
    )
    if anchor is None:
        raise NotFound(f"message {message_id} not found")
    first = anchor + 1 if keep else anchor
    doomed = c.scalars(
        select(table.id)
        .where(table.conversation_pk == conversation_pk, table.pk >= first)
        .order_by(table.pk)
    ).all()
    if doomed:
        c.execute(
            delete(messages).where(table.conversation_pk == conversation_pk, table.pk >= first)
        )
    return list(doomed)


def _insert_user_message(
    c: Connection,
    conversation_pk: int,
    text_: str,
    client_message_id: str | None,
    now: datetime,
    attachments: tuple[dict[str, Any], ...],
) -> str:
    message_id = new_id()
    c.execute(
        _INSERT_MESSAGE,
        {
            "id": message_id,
            "conversation_pk": conversation_pk,
            "role": "user",
            "content": text_,
            "attachments": list(attachments) or None,
            "status": ReplyStatus.COMPLETED.value,
            "client_message_id": client_message_id,
            "created_at": now,
            "updated_at": now,
        },
    )
    if text_:
        search.index_message(c, message_id, text_)
    return message_id


def _insert_reply(c: Connection, conversation_pk: int, model: str, now: datetime) -> str:
    reply_id = new_id()
    c.execute(
        _INSERT_MESSAGE,
        {
            "id": reply_id,
            "conversation_pk": conversation_pk,
            "role": "assistant",
            "content": "",
            "status": ReplyStatus.STREAMING.value,
            "model": model,
            "created_at": now,
            "updated_at": now,
        },
    )
    c.execute(_CONVERSATION_ANSWERED, {"b_pk": conversation_pk, "b_now": now, "b_model": model})
    return reply_id


def _begin_reply(c: Connection, new: NewReply, now: datetime) -> BegunReply:
    if new.create:
        conversation = _create_conversation(
            c, new.owner, new.conversation_id, new.title, new.system_prompt, new.model, now
        )
    else:
        conversation = _conversation(c, new.owner, new.conversation_id)
    if new.client_message_id is not None and not new.regenerate:
        earlier = _earlier_exchange(c, conversation.pk, new.client_message_id)
        if earlier is not None:
            return BegunReply(conversation, *earlier, new.message, now, [], earlier=True)
    if new.system_prompt is not None and new.system_prompt != conversation.system_prompt:
        c.execute(
            update(conversations)
            .where(conversations.c.pk == conversation.pk)
            .values(system_prompt=new.system_prompt)
        )
        conversation = replace(conversation, system_prompt=new.system_prompt)
    user_text, before = new.message, None
    replaces: tuple[str, ...] = ()
    attachments: tuple[dict[str, Any], ...] = ()
    if new.regenerate:
        user_id, user_text, attachments = _last_user_message(c, conversation.pk)
        replaces = tuple(_truncate(c, conversation.pk, user_id, keep=True))
        before = user_id
    else:
        if new.attachments:
            attachments = tuple(
                info.to_wire()
                for info in claim_attachments(c, new.owner, new.attachments, conversation.pk)
            )
        if new.truncate_from is not None:
            replaces = tuple(_truncate(c, conversation.pk, new.truncate_from, keep=False))
    context = _context(
        c,
        conversation.pk,
        limit=new.history_messages,
        max_chars=new.history_chars - len(user_text),
        before=before,
    )
    if not new.regenerate:
        user_id = _insert_user_message(
            c, conversation.pk, user_text, new.client_message_id, now, attachments
        )
    reply_id = _insert_reply(c, conversation.pk, new.model, now)
    return BegunReply(
        conversation,
        user_id,
        reply_id,
        user_text,
        now,
        context,
        replaces,
        user_attachments=attachments,
    )


def _interrupt() -> Any:
    """UPDATE marking streaming replies interrupted (add a WHERE to narrow it)."""
    return (
        update(messages)
        .where(messages.c.status == ReplyStatus.STREAMING.value)
        .values(
            status=ReplyStatus.INTERRUPTED.value,
            error_code="interrupted",
            error_message=INTERRUPTED_MESSAGE,
            updated_at=utcnow(),
        )
    )
