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
    false,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from liaotian.errors import ConversationBusy, NotFound
from liaotian.replies.status import ReplyStatus
from liaotian.store import search, tree
from liaotian.store.attachments import claim_attachments, load_images
from liaotian.store.database import (
    DATABASE_ERRORS,
    Database,
    apply_sqlite_pragmas,
    domain_error,
    open_database,
)
from liaotian.store.models import Conversation, Message, Owner, aware, utcnow
from liaotian.store.usage import LedgerPolicy, UsageEntry, insert_entry

INTERRUPTED_MESSAGE = "the server stopped while this answer was streaming"

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
owners = cast(Table, Owner.__table__)

# The statements of a reply's start and end, built once: building a Core statement and its
# cache key costs more CPU than SQLite takes to run it.
_ACTIVE_MESSAGE_ID = (
    select(messages.c.id)
    .where(messages.c.pk == conversations.c.active_message_pk)
    .scalar_subquery()
    .label("active_message_id")
)
_CONVERSATION = select(conversations, _ACTIVE_MESSAGE_ID).where(
    conversations.c.owner_id == bindparam("b_owner"), conversations.c.id == bindparam("b_id")
)
_CONVERSATION_LOCKED = _CONVERSATION.with_for_update(of=conversations)
_INSERT_IGNORING_CONFLICTS = {
    dialect.__name__.rsplit(".", 1)[-1]: {
        table.name: dialect.insert(table).on_conflict_do_nothing()
        for table in (owners, conversations)
    }
    for dialect in (postgresql, sqlite)
}
_ASKED = messages.alias("asked")
_ANSWER = messages.alias("answer")
_ASKED_PARENT = messages.alias("asked_parent")
_EXCHANGE = (
    select(_ASKED.c.id, _ANSWER.c.id)
    .join_from(
        _ASKED,
        _ANSWER,
        (_ANSWER.c.conversation_pk == _ASKED.c.conversation_pk)
        & (_ANSWER.c.parent_pk == _ASKED.c.pk),
    )
    .where(
        _ASKED.c.conversation_pk == bindparam("b_pk"),
        _ASKED.c.client_message_id == bindparam("b_client_id"),
    )
    .order_by(_ANSWER.c.pk)
    .limit(1)
)
"""(user message id, first reply id) of the send with a client message id."""
_ASKED_COLUMNS = (
    _ASKED.c.pk,
    _ASKED.c.id,
    _ASKED.c.content,
    _ASKED.c.attachments,
    _ASKED.c.parent_pk,
    _ASKED_PARENT.c.id.label("parent_id"),
)
_ANSWERED_AGAIN = (
    select(*_ASKED_COLUMNS)
    .select_from(
        _ANSWER.join(_ASKED, _ASKED.c.pk == _ANSWER.c.parent_pk).outerjoin(
            _ASKED_PARENT, _ASKED_PARENT.c.pk == _ASKED.c.parent_pk
        )
    )
    .where(
        _ANSWER.c.conversation_pk == bindparam("b_pk"),
        _ANSWER.c.id == bindparam("b_id"),
        _ANSWER.c.role == "assistant",
        _ASKED.c.role == "user",
    )
)
"""The user message that answer ``b_id`` answers, and its parent's id."""
_LAST_ASKED = (
    select(*_ASKED_COLUMNS)
    .select_from(
        _ANSWER.join(
            _ASKED,
            ((_ASKED.c.pk == _ANSWER.c.pk) & (_ANSWER.c.role == "user"))
            | (_ASKED.c.pk == _ANSWER.c.parent_pk),
        ).outerjoin(_ASKED_PARENT, _ASKED_PARENT.c.pk == _ASKED.c.parent_pk)
    )
    .where(_ANSWER.c.pk == bindparam("b_leaf"), _ASKED.c.role == "user")
    .order_by(_ASKED.c.pk.desc())
    .limit(1)
)
"""The active path's last user message (the leaf, or the leaf's parent), and its parent's id."""
_EDITED = (
    select(_ASKED.c.parent_pk, _ASKED_PARENT.c.id.label("parent_id"))
    .select_from(_ASKED.outerjoin(_ASKED_PARENT, _ASKED_PARENT.c.pk == _ASKED.c.parent_pk))
    .where(
        _ASKED.c.conversation_pk == bindparam("b_pk"),
        _ASKED.c.id == bindparam("b_id"),
        _ASKED.c.role == "user",
    )
)
"""Where user message ``b_id`` hangs: its parent's pk and id."""
_PLACED_AFTER = select(messages.c.pk, messages.c.id).where(
    messages.c.conversation_pk == bindparam("b_pk"), messages.c.id == bindparam("b_id")
)
"""Message ``b_id`` of the conversation, below which a new user message goes."""
_STREAMING_IN = (
    select(messages.c.id)
    .where(
        messages.c.conversation_pk == bindparam("b_pk"),
        messages.c.status == ReplyStatus.STREAMING.value,
    )
    .limit(1)
)
_INSERT_MESSAGE = insert(messages)
_CONVERSATION_ANSWERED = (
    update(conversations)
    .where(conversations.c.pk == bindparam("b_pk"))
    .values(
        updated_at=bindparam("b_now"),
        model=bindparam("b_model"),
        active_message_pk=bindparam("b_leaf"),
    )
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
    active_message_pk: int | None = None
    """The same leaf's internal key."""

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
    parent_id: str | None = None
    """The message this one follows (None for a first message)."""
    siblings: tuple[str, ...] = ()
    """The ids of the messages with the same parent, oldest first, itself included (filled
    by :meth:`Store.history`; empty where not read)."""

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
            "parent_id": self.parent_id,
            "siblings": list(self.siblings),
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
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        pinned=bool(row.pinned),
        archived=bool(row.archived),
        title_source=row.title_source,
        active_message_id=row._mapping.get("active_message_id"),
        active_message_pk=row.active_message_pk,
    )


def message_info(row: Row[Any], siblings: tuple[str, ...] = ()) -> MessageInfo:
    """A message row (with ``parent_id`` when the query labels it) as a MessageInfo."""
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
        created_at=aware(row.created_at),
        reasoning=row.reasoning,
        sources=tuple(row.sources or ()),
        attachments=tuple(row.attachments or ()),
        reasoning_tokens=row.reasoning_tokens,
        cached_tokens=row.cached_tokens,
        thinking_ms=row.thinking_ms,
        parent_id=row._mapping.get("parent_id"),
        siblings=siblings,
    )


@dataclass(frozen=True, slots=True)
class NewReply:
    """A user's message to store with the empty reply that will answer it.

    ``conversation_id`` names the conversation; with ``create`` a missing one is created
    (title ``title``), otherwise it is NotFound. The user message follows the active path's
    leaf, except that ``edit_message_id`` (edit) puts it beside that user message, and
    ``regenerate`` stores none: it answers again the user message that answer
    ``regenerate_message_id`` (default: the active path's last) answers, beside the earlier
    answers (``message`` is ignored). Nothing is deleted; the new reply becomes the leaf.
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
    edit_message_id: str | None = None
    regenerate: bool = False
    regenerate_message_id: str | None = None
    attachments: tuple[str, ...] = ()
    """Ids of the owner's images the user message shows (claimed for the conversation)."""
    after_message_id: str | None = None
    """The user message goes below this message of the conversation (a new branch when it
    is not the leaf) instead of below the active path's leaf."""
    prior: tuple[tuple[str, str], ...] = ()
    """``(role, text)`` messages (``user`` or ``assistant``, completed) stored first, in
    order, between where the user message would go and the user message: the earlier turns
    of a conversation that a client gives whole (the OpenAI-compatible API)."""
    archived: bool = False
    """A conversation created by this request starts archived (out of the main list)."""


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
    user_parent_id: str | None = None
    """The message the user message follows (None for a first message)."""
    user_siblings: tuple[str, ...] = ()
    reply_siblings: tuple[str, ...] = ()
    """The ids of the user message's and the reply's siblings, oldest first, each included."""


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
        self.ledger: LedgerPolicy | None = None
        """Set by the chat engine: replies this store marks interrupted itself (a restart,
        a dead process's lease) then get their ledger rows, estimated."""

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
        self,
        owner: str,
        *,
        limit: int,
        before: str | None = None,
        title_query: str | None = None,
        archived: bool = False,
    ) -> tuple[list[ConversationInfo], bool]:
        """Pinned first, then newest first; the archived ones only with ``archived`` (the
        others only without). ``before`` is the id of the last conversation of the previous
        page (any of the owner's: the page starts right after its place in this order);
        ``title_query`` keeps the titles that contain it, in any case."""
        table = conversations.c

        def work(c: Connection) -> tuple[list[ConversationInfo], bool]:
            query = select(conversations, _ACTIVE_MESSAGE_ID).where(
                table.owner_id == owner, table.archived == archived
            )
            if title_query:
                escaped = title_query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(table.title.ilike(f"%{escaped}%", escape="\\"))
            if before is not None:
                anchor = _conversation(c, owner, before)
                later = (table.updated_at < anchor.updated_at) | (
                    (table.updated_at == anchor.updated_at) & (table.pk < anchor.pk)
                )
                # After the anchor in (pinned, updated_at, pk), all descending: later among
                # its own kind, then (after a pinned anchor) every unpinned one.
                after = (table.pinned == anchor.pinned) & later
                if anchor.pinned:
                    after = after | (table.pinned == false())
                query = query.where(after)
            query = query.order_by(
                table.pinned.desc(), table.updated_at.desc(), table.pk.desc()
            ).limit(limit + 1)
            rows = c.execute(query).all()
            return [_conversation_info(row) for row in rows[:limit]], len(rows) > limit

        return await self._db.run(work)

    async def update_conversation(
        self,
        owner: str,
        conversation_id: str,
        *,
        pinned: bool | None = None,
        archived: bool | None = None,
    ) -> ConversationInfo:
        """Pin or unpin, archive or restore (what is None stays). Its ``updated_at`` stays:
        neither is activity, and a restored conversation goes back to its place. Raises
        NotFound."""
        values = _flags(pinned=pinned, archived=archived)

        def work(c: Connection) -> ConversationInfo:
            conversation = _conversation(c, owner, conversation_id)
            if values:
                c.execute(
                    update(conversations)
                    .where(conversations.c.pk == conversation.pk)
                    .values(values)
                )
            return _flagged(conversation, pinned=pinned, archived=archived)

        return await self._db.run(work)

    async def bulk_update(
        self,
        owner: str,
        conversation_ids: Sequence[str],
        *,
        pinned: bool | None = None,
        archived: bool | None = None,
    ) -> tuple[list[ConversationInfo], list[str]]:
        """:meth:`update_conversation` on many, in one transaction: returns the owner's
        conversations among ``conversation_ids`` as they are now, in the order asked, and
        the ids that are not the owner's (unknown or another owner's alike)."""
        values = _flags(pinned=pinned, archived=archived)
        wanted = list(dict.fromkeys(conversation_ids))

        def work(c: Connection) -> tuple[list[ConversationInfo], list[str]]:
            found = _owned(c, owner, wanted)
            if found and values:
                c.execute(
                    update(conversations)
                    .where(conversations.c.pk.in_([info.pk for info in found.values()]))
                    .values(values)
                )
            done = [
                _flagged(found[id_], pinned=pinned, archived=archived)
                for id_ in wanted
                if id_ in found
            ]
            return done, [id_ for id_ in wanted if id_ not in found]

        return await self._db.run(work)

    async def bulk_delete(
        self, owner: str, conversation_ids: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """Delete the owner's conversations among ``conversation_ids`` with their messages,
        attachments and shares, in one transaction (as :meth:`delete_conversation` does
        one). Returns the ids deleted, in the order asked, and those that are not the
        owner's."""
        wanted = list(dict.fromkeys(conversation_ids))

        def work(c: Connection) -> tuple[list[str], list[str]]:
            found = _owned(c, owner, wanted)
            pks = [info.pk for info in found.values()]
            for pk in pks:
                search.unindex_conversation(c, pk)
            if pks:
                c.execute(delete(messages).where(messages.c.conversation_pk.in_(pks)))
                c.execute(delete(conversations).where(conversations.c.pk.in_(pks)))
            done = [id_ for id_ in wanted if id_ in found]
            return done, [id_ for id_ in wanted if id_ not in found]

        return await self._db.run(work)

    async def set_generated_title(
        self, owner: str, conversation_id: str, title: str
    ) -> ConversationInfo | None:
        """Give the conversation a generated title, unless its title is no longer the one
        made from its first message (a rename, ``title_source`` ``user``, always wins, even
        one that lands while the title was being generated). Returns the conversation as
        now titled, or None when nothing was written (renamed, deleted, or not the
        owner's). The search index gets the new title in the same transaction."""

        def work(c: Connection) -> ConversationInfo | None:
            row = c.execute(_CONVERSATION, {"b_owner": owner, "b_id": conversation_id}).first()
            if row is None:
                return None
            written = c.execute(
                update(conversations)
                .where(conversations.c.pk == row.pk, conversations.c.title_source == "message")
                .values(title=title, title_source="generated")
            ).rowcount
            if not written:
                return None
            search.index_title(c, row.pk, title)
            return replace(_conversation_info(row), title=title, title_source="generated")

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
            return replace(conversation, title=title, title_source="user", updated_at=now)

        return await self._db.run(work)

    async def delete_conversation(self, owner: str, conversation_id: str) -> None:
        def work(c: Connection) -> None:
            _delete_conversation(c, _conversation(c, owner, conversation_id).pk)

        await self._db.run(work)

    async def delete_idle_with_prefix(self, prefix: str) -> int:
        """Delete every conversation whose id begins with ``prefix`` and where no reply
        streams (what ephemeral turns left behind when their process died before deleting
        them); returns how many."""
        streaming = select(messages.c.pk).where(
            messages.c.conversation_pk == conversations.c.pk,
            messages.c.status == ReplyStatus.STREAMING.value,
        )
        query = select(conversations.c.pk).where(
            conversations.c.id.startswith(prefix, autoescape=True), ~streaming.exists()
        )

        def work(c: Connection) -> int:
            found = list(c.scalars(query))
            for pk in found:
                _delete_conversation(c, pk)
            return len(found)

        return await self._db.run(work)

    # -- messages ------------------------------------------------------------------------

    async def history(
        self, owner: str, conversation_id: str, *, limit: int, before: str | None = None
    ) -> tuple[list[MessageInfo], bool]:
        """A page of the active path in chronological order, the newest page first; each
        message with its ``parent_id`` and ``siblings``.

        ``before`` is the id of the oldest message of the previous page: the page holds the
        messages before it on its path. Returns the page and whether older messages remain.
        """
        table = messages.c

        def work(c: Connection) -> tuple[list[MessageInfo], bool]:
            conversation = _conversation(c, owner, conversation_id)
            start = conversation.active_message_pk
            if before is not None:
                anchor = c.execute(
                    select(table.parent_pk).where(
                        table.conversation_pk == conversation.pk, table.id == before
                    )
                ).first()
                if anchor is None:
                    raise NotFound(f"message {before} not found")
                start = anchor.parent_pk
            rows, has_more = tree.path_page(c, start, limit)
            found = tree.siblings(c, conversation.pk, {row.parent_pk for row in rows})
            return [message_info(row, found[row.parent_pk]) for row in rows], has_more

        return await self._db.run(work)

    async def switch_branch(
        self, owner: str, conversation_id: str, message_id: str
    ) -> ConversationInfo:
        """Make the branch through ``message_id`` active: its leaf is reached by following
        the newest child at each step down. Returns the conversation as updated.

        Raises NotFound (another owner's or unknown conversation, or a message not in it)
        and ConversationBusy while a reply streams in the conversation.
        """
        table = messages.c

        def work(c: Connection) -> ConversationInfo:
            # Locked: a send's transaction updates the conversation row after storing its
            # streaming reply, so once the lock is held, that reply is visible below.
            conversation = _conversation(c, owner, conversation_id, lock=True)
            pk = c.scalar(
                select(table.pk).where(
                    table.conversation_pk == conversation.pk, table.id == message_id
                )
            )
            if pk is None:
                raise NotFound(f"message {message_id} not found")
            if c.scalar(_STREAMING_IN, {"b_pk": conversation.pk}) is not None:
                raise ConversationBusy(
                    f"a reply is streaming in conversation {conversation_id}; "
                    "switch branches when it has finished, or cancel it"
                )
            leaf = tree.leaf_below(c, conversation.pk, pk)
            if leaf != conversation.active_message_pk:
                c.execute(
                    update(conversations)
                    .where(conversations.c.pk == conversation.pk)
                    .values(active_message_pk=leaf)
                )
            leaf_id: str | None = message_id
            if leaf != pk:
                leaf_id = c.scalar(select(table.id).where(table.pk == leaf))
            return replace(conversation, active_message_pk=leaf, active_message_id=leaf_id)

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
        reads the context for the model (the path the new message follows) and makes the
        new reply the active leaf. Raises NotFound (conversation, or the message to edit or
        regenerate) and
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
            reaped = [row[0] for row in rows]
            c.execute(_interrupt().where(table.id.in_(reaped)))
            self._ledger_interrupted(c, reaped)
            for row in rows:
                if row[1]:
                    search.index_message(c, row[0], row[1])
            return [
                StaleReply(owner, conversation_id, message_id, content)
                for message_id, content, owner, conversation_id in rows
            ]

        return await self._db.run(work)

    async def finish_reply(
        self, message_id: str, outcome: ReplyOutcome, usage: UsageEntry | None = None
    ) -> bool:
        """Write a reply's final text, status, usage and timings (once, at the end), and
        its ledger row ``usage`` in the same transaction.

        Returns False if the reply was no longer streaming (another process reaped it, or
        an earlier attempt of this write was saved): then nothing is written, the ledger
        row included, so a replayed final write never counts twice.
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
            if usage is not None:
                insert_entry(c, usage)
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
            return None if row is None else (message_info(row), row.conversation_id)

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
            self._ledger_interrupted(c, [message_id for message_id, _ in saved])
            for message_id, content in saved:
                if content:
                    search.index_message(c, message_id, content)
            return count

        return await self._db.run(work)

    def _ledger_interrupted(self, c: Connection, message_ids: list[str]) -> None:
        """Ledger rows for replies just marked interrupted here: estimated, the output from
        the text saved at the last checkpoint, the input from the user message alone (the
        context the model was sent is not stored)."""
        if self.ledger is None or not message_ids:
            return
        parent = messages.alias("parent")
        rows = c.execute(
            select(
                messages.c.id,
                messages.c.model,
                messages.c.content,
                messages.c.reasoning,
                conversations.c.owner_id,
                parent.c.content.label("sent"),
            )
            .join(conversations, conversations.c.pk == messages.c.conversation_pk)
            .outerjoin(parent, parent.c.pk == messages.c.parent_pk)
            .where(messages.c.id.in_(message_ids))
        ).all()
        now = utcnow()
        for row in rows:
            model = row.model or ""
            insert_entry(
                c,
                self.ledger.entry(
                    message_id=row.id,
                    owner=row.owner_id,
                    model=model,
                    provider=self.ledger.provider_of(model),
                    status=ReplyStatus.INTERRUPTED.value,
                    counted=(None, None, None, None),
                    sent=row.sent or "",
                    streamed=row.content or "",
                    reasoning=row.reasoning,
                    now=now,
                ),
            )

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
                    None if hit.created_at is None else aware(hit.created_at),
                    hit.on_active_path,
                    hit.snippet,
                )
                for hit in search.find(c, owner, query, limit)
            ]

        return await self._db.run(work)


# -- the transactions' parts (synchronous; ``c`` is inside a transaction) ------------------


def _conversation(
    c: Connection, owner: str, conversation_id: str, *, lock: bool = False
) -> ConversationInfo:
    statement = _CONVERSATION_LOCKED if lock else _CONVERSATION
    row = c.execute(statement, {"b_owner": owner, "b_id": conversation_id}).first()
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return _conversation_info(row)


def _flags(*, pinned: bool | None, archived: bool | None) -> dict[str, bool]:
    """The columns ``conversation.update`` sets (those given)."""
    values = {}
    if pinned is not None:
        values["pinned"] = pinned
    if archived is not None:
        values["archived"] = archived
    return values


def _flagged(
    conversation: ConversationInfo, *, pinned: bool | None, archived: bool | None
) -> ConversationInfo:
    """``conversation`` as :func:`_flags` leaves it."""
    return replace(
        conversation,
        pinned=conversation.pinned if pinned is None else pinned,
        archived=conversation.archived if archived is None else archived,
    )


def _owned(c: Connection, owner: str, conversation_ids: list[str]) -> dict[str, ConversationInfo]:
    """The owner's conversations among ``conversation_ids``, by id."""
    if not conversation_ids:
        return {}
    rows = c.execute(
        select(conversations).where(
            conversations.c.owner_id == owner, conversations.c.id.in_(conversation_ids)
        )
    ).all()
    return {row.id: _conversation_info(row) for row in rows}


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
    *,
    archived: bool = False,
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
            "archived": archived,
            "created_at": now,
            "updated_at": now,
        },
    )
    conversation = _conversation(c, owner, conversation_id)
    if conversation.created_at == now and title:
        search.index_title(c, conversation.pk, title)
    return conversation


def _context(
    c: Connection, start_pk: int | None, *, limit: int, max_chars: int
) -> list[ContextMessage]:
    """The model's context: the path ending at ``start_pk``, newest messages first while
    they fit in ``max_chars``, returned oldest first."""
    kept: list[ContextMessage] = []
    budget = max_chars
    for role, content, reasoning, attachments in tree.context_rows(c, start_pk, limit):
        if len(content) > budget:
            break
        budget -= len(content)
        kept.append(ContextMessage(role, content, reasoning, tuple(attachments or ())))
    kept.reverse()
    return kept


def _earlier_exchange(
    c: Connection, conversation_pk: int, client_message_id: str
) -> tuple[str, str] | None:
    """(user message id, first reply id) stored by a send with ``client_message_id``, or
    None."""
    row = c.execute(_EXCHANGE, {"b_pk": conversation_pk, "b_client_id": client_message_id}).first()
    return None if row is None else (row[0], row[1])


def _asked_again(c: Connection, conversation: ConversationInfo, answer_id: str | None) -> Any:
    """The user message to answer again (``pk, id, content, attachments, parent_pk,
    parent_id``): the one answer ``answer_id`` answers, or the active path's last."""
    if answer_id is not None:
        row = c.execute(_ANSWERED_AGAIN, {"b_pk": conversation.pk, "b_id": answer_id}).first()
        if row is None:
            raise NotFound(f"message {answer_id} not found")
        return row
    row = None
    if conversation.active_message_pk is not None:
        row = c.execute(_LAST_ASKED, {"b_leaf": conversation.active_message_pk}).first()
    if row is None:
        raise NotFound("the conversation has no message to answer again")
    return row


def _insert_user_message(
    c: Connection,
    conversation_pk: int,
    parent_pk: int | None,
    text_: str,
    client_message_id: str | None,
    now: datetime,
    attachments: tuple[dict[str, Any], ...],
) -> tuple[str, int]:
    """Insert a user message; returns its id and pk."""
    return _insert_completed(
        c,
        conversation_pk,
        parent_pk,
        "user",
        text_,
        now,
        client_message_id=client_message_id,
        attachments=attachments,
    )


def _insert_completed(
    c: Connection,
    conversation_pk: int,
    parent_pk: int | None,
    role: str,
    text_: str,
    now: datetime,
    *,
    client_message_id: str | None = None,
    attachments: tuple[dict[str, Any], ...] = (),
) -> tuple[str, int]:
    """Insert a completed message (a user's, or an earlier turn a client gives whole) and
    index its text; returns its id and pk."""
    message_id = new_id()
    result = c.execute(
        _INSERT_MESSAGE,
        {
            "id": message_id,
            "conversation_pk": conversation_pk,
            "parent_pk": parent_pk,
            "role": role,
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
    return message_id, _inserted_pk(result)


def _insert_reply(
    c: Connection, conversation_pk: int, parent_pk: int, model: str, now: datetime
) -> tuple[str, int]:
    """Insert an empty streaming reply below ``parent_pk`` and make it the active leaf;
    returns its id and pk."""
    reply_id = new_id()
    result = c.execute(
        _INSERT_MESSAGE,
        {
            "id": reply_id,
            "conversation_pk": conversation_pk,
            "parent_pk": parent_pk,
            "role": "assistant",
            "content": "",
            "status": ReplyStatus.STREAMING.value,
            "model": model,
            "created_at": now,
            "updated_at": now,
        },
    )
    reply_pk = _inserted_pk(result)
    c.execute(
        _CONVERSATION_ANSWERED,
        {"b_pk": conversation_pk, "b_now": now, "b_model": model, "b_leaf": reply_pk},
    )
    return reply_id, reply_pk


def _inserted_pk(result: Any) -> int:
    """The pk of the row an INSERT stored (RETURNING on PostgreSQL, lastrowid on SQLite)."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _begin_reply(c: Connection, new: NewReply, now: datetime) -> BegunReply:
    if new.create:
        conversation = _create_conversation(
            c,
            new.owner,
            new.conversation_id,
            new.title,
            new.system_prompt,
            new.model,
            now,
            archived=new.archived,
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
    leaf = conversation.active_message_pk
    user_text = new.message
    attachments: tuple[dict[str, Any], ...] = ()
    replaces: tuple[str, ...] = ()
    # Where the user message hangs (a regenerate's is already stored: ``asked``).
    parent_pk, parent_id = leaf, conversation.active_message_id
    asked: tuple[str, int] | None = None
    if new.regenerate:
        row = _asked_again(c, conversation, new.regenerate_message_id)
        asked = (row.id, row.pk)
        user_text, attachments = row.content, tuple(row.attachments or ())
        parent_pk, parent_id = row.parent_pk, row.parent_id
        replaces = tuple(tree.left_path(c, leaf, row.pk))
    else:
        if new.attachments:
            attachments = tuple(
                info.to_wire()
                for info in claim_attachments(c, new.owner, new.attachments, conversation.pk)
            )
        if new.edit_message_id is not None:
            edited = c.execute(
                _EDITED, {"b_pk": conversation.pk, "b_id": new.edit_message_id}
            ).first()
            if edited is None:
                raise NotFound(f"message {new.edit_message_id} not found")
            parent_pk, parent_id = edited.parent_pk, edited.parent_id
            replaces = tuple(tree.left_path(c, leaf, parent_pk))
        elif new.after_message_id is not None:
            placed = c.execute(
                _PLACED_AFTER, {"b_pk": conversation.pk, "b_id": new.after_message_id}
            ).first()
            if placed is None:
                raise NotFound(f"message {new.after_message_id} not found")
            parent_pk, parent_id = placed.pk, placed.id
            replaces = tuple(tree.left_path(c, leaf, parent_pk))
        for role, prior_text in new.prior:
            parent_id, parent_pk = _insert_completed(
                c, conversation.pk, parent_pk, role, prior_text, now
            )
    context = _context(
        c, parent_pk, limit=new.history_messages, max_chars=new.history_chars - len(user_text)
    )
    if asked is None:
        asked = _insert_user_message(
            c, conversation.pk, parent_pk, user_text, new.client_message_id, now, attachments
        )
    user_id, user_pk = asked
    reply_id, reply_pk = _insert_reply(c, conversation.pk, user_pk, new.model, now)
    if new.regenerate or new.edit_message_id is not None or replaces:
        found = tree.siblings(c, conversation.pk, (parent_pk, user_pk))
        user_siblings, reply_siblings = found[parent_pk], found[user_pk]
    else:
        # A send follows the leaf, which has no children: both are only children.
        user_siblings, reply_siblings = (user_id,), (reply_id,)
    conversation = replace(conversation, active_message_id=reply_id, active_message_pk=reply_pk)
    return BegunReply(
        conversation,
        user_id,
        reply_id,
        user_text,
        now,
        context,
        replaces,
        user_attachments=attachments,
        user_parent_id=parent_id,
        user_siblings=user_siblings,
        reply_siblings=reply_siblings,
    )


def _delete_conversation(c: Connection, conversation_pk: int) -> None:
    """Delete a conversation, its messages and their index rows (attachments cascade)."""
    search.unindex_conversation(c, conversation_pk)
    c.execute(delete(messages).where(messages.c.conversation_pk == conversation_pk))
    c.execute(delete(conversations).where(conversations.c.pk == conversation_pk))


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
