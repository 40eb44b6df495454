"""The store: every read and write of conversations and messages.

Every method that takes an ``owner`` filters by it: a conversation or message of another
owner is reported exactly like one that does not exist (``None`` / NotFound). Partial reply
text is written by :meth:`Store.checkpoint` in batches, never per token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from liaotian.errors import NotFound
from liaotian.events import ReplyStatus
from liaotian.store.models import Conversation, Message, Owner, utcnow

INTERRUPTED_MESSAGE = "the server stopped while this answer was streaming"


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

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "system_prompt": self.system_prompt,
            "model": self.model,
            "created_at": self.created_at.timestamp(),
            "updated_at": self.updated_at.timestamp(),
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

    def to_wire(self) -> dict[str, Any]:
        usage = None
        if self.input_tokens is not None or self.output_tokens is not None:
            usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        error = None
        if self.error_code is not None:
            error = {"code": self.error_code, "message": self.error_message}
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "usage": usage,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "error": error,
            "created_at": self.created_at.timestamp(),
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
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None


def _conversation_info(row: Conversation) -> ConversationInfo:
    return ConversationInfo(
        id=row.id,
        pk=row.pk,
        title=row.title,
        system_prompt=row.system_prompt,
        model=row.model,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _message_info(row: Message) -> MessageInfo:
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
    )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(database_url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Store:
    """Owner-scoped persistence of conversations and messages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    # -- conversations -------------------------------------------------------------------

    async def get_conversation(self, owner: str, conversation_id: str) -> ConversationInfo:
        """The owner's conversation; raises NotFound otherwise."""
        async with self._sessions() as session:
            row = await self._conversation_row(session, owner, conversation_id)
            return _conversation_info(row)

    async def create_conversation(
        self,
        owner: str,
        *,
        title: str,
        conversation_id: str | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
    ) -> ConversationInfo:
        """Create a conversation (and the owner on first use).

        With an explicit ``conversation_id`` already taken by this owner, returns that one.
        """
        try:
            return await self._create_conversation(
                owner, title, conversation_id, system_prompt, model
            )
        except IntegrityError:
            if conversation_id is None:
                raise
            # Created at the same moment by another request: that one is ours too.
            return await self.get_conversation(owner, conversation_id)

    async def _create_conversation(
        self,
        owner: str,
        title: str,
        conversation_id: str | None,
        system_prompt: str | None,
        model: str | None,
    ) -> ConversationInfo:
        async with self._sessions() as session, session.begin():
            await self._ensure_owner(session, owner)
            if conversation_id is not None:
                existing = await session.scalar(
                    select(Conversation).where(
                        Conversation.owner_id == owner, Conversation.id == conversation_id
                    )
                )
                if existing is not None:
                    return _conversation_info(existing)
            row = Conversation(
                id=conversation_id or new_id(),
                owner_id=owner,
                title=title,
                system_prompt=system_prompt,
                model=model,
            )
            session.add(row)
            await session.flush()
            return _conversation_info(row)

    async def list_conversations(
        self, owner: str, *, limit: int, before: str | None = None, title_query: str | None = None
    ) -> tuple[list[ConversationInfo], bool]:
        """Newest first; ``before`` is the id of the last conversation of the previous page;
        ``title_query`` keeps the titles that contain it, in any case."""
        async with self._sessions() as session:
            query = select(Conversation).where(Conversation.owner_id == owner)
            if title_query:
                escaped = title_query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(Conversation.title.ilike(f"%{escaped}%", escape="\\"))
            if before is not None:
                anchor = await self._conversation_row(session, owner, before)
                query = query.where(
                    (Conversation.updated_at < anchor.updated_at)
                    | (
                        (Conversation.updated_at == anchor.updated_at)
                        & (Conversation.pk < anchor.pk)
                    )
                )
            query = query.order_by(Conversation.updated_at.desc(), Conversation.pk.desc())
            rows = (await session.scalars(query.limit(limit + 1))).all()
            return [_conversation_info(row) for row in rows[:limit]], len(rows) > limit

    async def rename_conversation(
        self, owner: str, conversation_id: str, title: str
    ) -> ConversationInfo:
        async with self._sessions() as session, session.begin():
            row = await self._conversation_row(session, owner, conversation_id)
            row.title = title
            row.updated_at = utcnow()
            await session.flush()
            return _conversation_info(row)

    async def delete_conversation(self, owner: str, conversation_id: str) -> None:
        async with self._sessions() as session, session.begin():
            row = await self._conversation_row(session, owner, conversation_id)
            await session.execute(delete(Message).where(Message.conversation_pk == row.pk))
            await session.delete(row)

    async def set_system_prompt(self, conversation: ConversationInfo, system_prompt: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Conversation)
                .where(Conversation.pk == conversation.pk)
                .values(system_prompt=system_prompt)
            )

    # -- messages ------------------------------------------------------------------------

    async def history(
        self, owner: str, conversation_id: str, *, limit: int, before: str | None = None
    ) -> tuple[list[MessageInfo], bool]:
        """A page of messages in chronological order, the newest page first.

        ``before`` is the id of the oldest message of the previous page. Returns the page and
        whether older messages remain.
        """
        async with self._sessions() as session:
            conversation = await self._conversation_row(session, owner, conversation_id)
            query = select(Message).where(Message.conversation_pk == conversation.pk)
            if before is not None:
                anchor = await session.scalar(
                    select(Message.pk).where(
                        Message.conversation_pk == conversation.pk, Message.id == before
                    )
                )
                if anchor is None:
                    raise NotFound(f"message {before} not found")
                query = query.where(Message.pk < anchor)
            rows = (await session.scalars(query.order_by(Message.pk.desc()).limit(limit + 1))).all()
            page = [_message_info(row) for row in reversed(rows[:limit])]
            return page, len(rows) > limit

    async def context_messages(
        self,
        conversation: ConversationInfo,
        *,
        limit: int,
        max_chars: int,
        before: str | None = None,
    ) -> list[tuple[str, str]]:
        """(role, content) of the last ``limit`` messages that fit in ``max_chars``, oldest first.

        Only messages older than message ``before`` count, when given. Assistant messages
        with no text (failed before the first token) are skipped; a cancelled, interrupted
        or failed answer counts with the text the user saw.
        """
        async with self._sessions() as session:
            query = select(Message.role, Message.content).where(
                Message.conversation_pk == conversation.pk, Message.content != ""
            )
            if before is not None:
                anchor = select(Message.pk).where(Message.id == before).scalar_subquery()
                query = query.where(Message.pk < anchor)
            rows = (await session.execute(query.order_by(Message.pk.desc()).limit(limit))).all()
        kept: list[tuple[str, str]] = []
        budget = max_chars
        for role, content in rows:
            if len(content) > budget:
                break
            budget -= len(content)
            kept.append((role, content))
        kept.reverse()
        return kept

    async def find_reply_by_client_id(
        self, conversation: ConversationInfo, client_message_id: str
    ) -> tuple[str, str] | None:
        """(user message id, assistant message id) of an earlier send with this client id."""
        async with self._sessions() as session:
            user_pk = await session.scalar(
                select(Message.pk).where(
                    Message.conversation_pk == conversation.pk,
                    Message.client_message_id == client_message_id,
                )
            )
            if user_pk is None:
                return None
            rows = (
                await session.execute(
                    select(Message.id)
                    .where(Message.conversation_pk == conversation.pk, Message.pk >= user_pk)
                    .order_by(Message.pk)
                    .limit(2)
                )
            ).all()
        if len(rows) < 2:
            return None
        return rows[0][0], rows[1][0]

    async def last_user_message(self, conversation: ConversationInfo) -> tuple[str, str] | None:
        """(id, text) of the conversation's last user message, or None."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Message.id, Message.content)
                    .where(Message.conversation_pk == conversation.pk, Message.role == "user")
                    .order_by(Message.pk.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else (row[0], row[1])

    async def truncate_from(
        self, conversation: ConversationInfo, message_id: str, *, keep: bool = False
    ) -> list[str]:
        """Delete user message ``message_id`` (unless ``keep``) and every later message.

        Returns the deleted ids. Raises NotFound unless ``message_id`` is a user message of
        this conversation.
        """
        async with self._sessions() as session, session.begin():
            anchor = await session.scalar(
                select(Message.pk).where(
                    Message.conversation_pk == conversation.pk,
                    Message.id == message_id,
                    Message.role == "user",
                )
            )
            if anchor is None:
                raise NotFound(f"message {message_id} not found")
            first = anchor + 1 if keep else anchor
            doomed = (
                await session.scalars(
                    select(Message.id)
                    .where(Message.conversation_pk == conversation.pk, Message.pk >= first)
                    .order_by(Message.pk)
                )
            ).all()
            await session.execute(
                delete(Message).where(
                    Message.conversation_pk == conversation.pk, Message.pk >= first
                )
            )
            return list(doomed)

    async def add_exchange(
        self,
        conversation: ConversationInfo,
        *,
        user_text: str,
        model: str,
        client_message_id: str | None = None,
        existing_user_message: str | None = None,
    ) -> tuple[str, str, datetime]:
        """Store the user's message and an empty streaming reply in one transaction.

        With ``existing_user_message`` (regenerate) only the reply is added, after it.
        Returns (user message id, reply message id, reply created_at). Raises IntegrityError
        when ``client_message_id`` was already used in this conversation.
        """
        now = utcnow()
        user_id, reply_id = existing_user_message or new_id(), new_id()
        async with self._sessions() as session, session.begin():
            if existing_user_message is None:
                session.add(
                    Message(
                        id=user_id,
                        conversation_pk=conversation.pk,
                        role="user",
                        content=user_text,
                        status=ReplyStatus.COMPLETED.value,
                        client_message_id=client_message_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await session.flush()
            session.add(
                Message(
                    id=reply_id,
                    conversation_pk=conversation.pk,
                    role="assistant",
                    content="",
                    status=ReplyStatus.STREAMING.value,
                    model=model,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.pk == conversation.pk)
                .values(updated_at=now, model=model)
            )
        return user_id, reply_id, now

    async def checkpoint(self, partials: Sequence[tuple[str, str]]) -> None:
        """Save the partial text of streaming replies: ``(message_id, text)`` pairs, one batch."""
        if not partials:
            return
        now = utcnow()
        statement = (
            update(Message.__table__)  # type: ignore[arg-type]
            .where(
                Message.__table__.c.id == bindparam("b_id"),
                Message.__table__.c.status == ReplyStatus.STREAMING.value,
            )
            .values(content=bindparam("b_content"), updated_at=now)
        )
        async with self.engine.begin() as connection:
            await connection.execute(
                statement, [{"b_id": mid, "b_content": content} for mid, content in partials]
            )

    async def touch(self, message_ids: Sequence[str]) -> None:
        """Renew the lease of streaming replies this process runs (their ``updated_at``)."""
        if not message_ids:
            return
        async with self.engine.begin() as connection:
            await connection.execute(
                update(Message.__table__)  # type: ignore[arg-type]
                .where(
                    Message.__table__.c.id.in_(list(message_ids)),
                    Message.__table__.c.status == ReplyStatus.STREAMING.value,
                )
                .values(updated_at=utcnow())
            )

    async def reap_stale(self, older_than: float) -> list[StaleReply]:
        """Mark interrupted the streaming replies whose lease is older than ``older_than`` s.

        Their process died (a live process renews every lease each checkpoint interval).
        Returns what was reaped, with the text saved at the last checkpoint.
        """
        cutoff = utcnow() - timedelta(seconds=older_than)
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(Message.id, Message.content, Conversation.owner_id, Conversation.id)
                    .join(Conversation, Conversation.pk == Message.conversation_pk)
                    .where(
                        Message.status == ReplyStatus.STREAMING.value,
                        Message.updated_at < cutoff,
                    )
                    .with_for_update(of=Message, skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            await session.execute(
                update(Message)
                .where(
                    Message.id.in_([row[0] for row in rows]),
                    Message.status == ReplyStatus.STREAMING.value,
                )
                .values(
                    status=ReplyStatus.INTERRUPTED.value,
                    error_code="interrupted",
                    error_message=INTERRUPTED_MESSAGE,
                    updated_at=utcnow(),
                )
            )
        return [
            StaleReply(owner, conversation_id, message_id, content)
            for message_id, content, owner, conversation_id in rows
        ]

    async def finish_reply(self, message_id: str, outcome: ReplyOutcome) -> bool:
        """Write a reply's final text, status, usage and timings (once, at the end).

        Returns False if the reply was no longer streaming (another process reaped it).
        """
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == ReplyStatus.STREAMING.value)
                .values(
                    content=outcome.content,
                    status=outcome.status.value,
                    finish_reason=outcome.finish_reason,
                    input_tokens=outcome.input_tokens,
                    output_tokens=outcome.output_tokens,
                    ttft_ms=outcome.ttft_ms,
                    duration_ms=outcome.duration_ms,
                    error_code=outcome.error_code,
                    error_message=outcome.error_message,
                    updated_at=utcnow(),
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def reply_status(self, owner: str, message_id: str) -> MessageInfo | None:
        """The owner's message ``message_id``, or None."""
        found = await self.find_message(owner, message_id)
        return None if found is None else found[0]

    async def find_message(self, owner: str, message_id: str) -> tuple[MessageInfo, str] | None:
        """The owner's message ``message_id`` and its conversation's id, or None."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Message, Conversation.id)
                    .join(Conversation, Conversation.pk == Message.conversation_pk)
                    .where(Message.id == message_id, Conversation.owner_id == owner)
                )
            ).first()
        return None if row is None else (_message_info(row[0]), row[1])

    async def streaming_replies(
        self, owner: str, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        """Ids of the owner's streaming replies, by message and/or conversation id."""
        query = (
            select(Message.id)
            .join(Conversation, Conversation.pk == Message.conversation_pk)
            .where(Conversation.owner_id == owner, Message.status == ReplyStatus.STREAMING.value)
        )
        if message_id is not None:
            query = query.where(Message.id == message_id)
        if conversation_id is not None:
            query = query.where(Conversation.id == conversation_id)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def interrupt_streaming(self, message_ids: Iterable[str] | None = None) -> int:
        """Mark streaming replies interrupted (all of them when ``message_ids`` is None).

        Used at start-up after a crash: the saved partial text stays. Returns the count.
        """
        statement = (
            update(Message)
            .where(Message.status == ReplyStatus.STREAMING.value)
            .values(
                status=ReplyStatus.INTERRUPTED.value,
                error_code="interrupted",
                error_message=INTERRUPTED_MESSAGE,
                updated_at=utcnow(),
            )
        )
        if message_ids is not None:
            statement = statement.where(Message.id.in_(list(message_ids)))
        async with self._sessions() as session, session.begin():
            result = await session.execute(statement)
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    async def _ensure_owner(session: AsyncSession, owner: str) -> None:
        if await session.get(Owner, owner) is None:
            try:
                async with session.begin_nested():
                    session.add(Owner(id=owner))
            except IntegrityError:
                pass  # created concurrently by another connection

    @staticmethod
    async def _conversation_row(
        session: AsyncSession, owner: str, conversation_id: str
    ) -> Conversation:
        row = await session.scalar(
            select(Conversation).where(
                Conversation.owner_id == owner, Conversation.id == conversation_id
            )
        )
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return row
