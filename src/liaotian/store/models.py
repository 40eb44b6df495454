"""Database tables: owners, conversations, messages, attachments, shares, users, credentials,
the usage ledger and the audit log.

Alembic migrations mirror this file. The full-text index (``message_search`` and
``conversation_search``: SQLite FTS5 virtual tables, PostgreSQL tables with a ``tsvector``
and a GIN index) differs by database, so only the migrations and ``liaotian.store.search``
know it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigIntPk = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A datetime read back from the database, in UTC: SQLite returns naive ones, and
    everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def wire_time(value: datetime) -> str:
    """A UTC datetime as the routes write it: ISO 8601 ending in ``Z``."""
    return aware(value).isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    pass


class Owner(Base):
    """Whoever owns conversations: a client id (open mode) or ``user/{users.id}`` (an account).

    Client ids cannot contain ``/``, so the two kinds never collide (see
    ``liaotian.store.accounts``).
    """

    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Conversation(Base):
    """A conversation. ``id`` is public and unique per owner; ``pk`` is internal."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("owner_id", "id", name="uq_conversations_owner_id"),
        Index("ix_conversations_owner_updated", "owner_id", "updated_at"),
        Index("ix_conversations_owner_list", "owner_id", "archived", "pinned", "updated_at", "pk"),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128))
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="")
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    active_message_pk: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The leaf of the active path (the branch every device shows and the model sees);
    None while the conversation has no message."""
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    title_source: Mapped[str] = mapped_column(
        String(16), default="message", server_default="message"
    )
    """Where the title came from: ``message`` (the first message cut short), ``generated``
    (by the title model), ``user`` (a rename: never overwritten), ``import``."""


class Message(Base):
    """One user or assistant message. An assistant message is a reply with an outcome.

    Messages form a tree: ``parent_pk`` is the message this one follows (None for the first
    message). Siblings (same parent) are alternatives: an edit adds a user message beside
    the one edited, a regenerate an answer beside the one answered again.

    A reply's parts: ``content`` is the answer text, ``reasoning`` the model's thinking,
    ``sources`` its web search results (a JSON list of ``{index, url, title, site, icon}``);
    a user message's ``attachments`` is a JSON list of ``{id, media_type, width, height,
    name, bytes}`` naming rows of :class:`Attachment`.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_pk", "conversation_pk", "pk"),
        Index("ix_messages_parent", "conversation_pk", "parent_pk"),
        Index("ix_messages_status", "status"),
        # One streaming reply per conversation, enforced by the database so that it holds
        # across server processes.
        Index(
            "uq_messages_one_streaming",
            "conversation_pk",
            unique=True,
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
        UniqueConstraint(
            "conversation_pk", "client_message_id", name="uq_messages_client_message_id"
        ),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    conversation_pk: Mapped[int] = mapped_column(ForeignKey("conversations.pk", ondelete="CASCADE"))
    parent_pk: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    reasoning: Mapped[str | None] = mapped_column(Text, nullable=True)
    sources: Mapped[list[dict[str, object]] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    attachments: Mapped[list[dict[str, object]] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    client_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thinking_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attachment(Base):
    """An image uploaded by its owner: validated, re-encoded without metadata, kept here so
    every process can serve it. ``conversation_pk`` is set when a message first uses it
    (deleting the conversation deletes it); one never used is removed after a while."""

    __tablename__ = "attachments"
    __table_args__ = (
        Index("ix_attachments_owner_created", "owner_id", "created_at"),
        Index("ix_attachments_conversation", "conversation_pk"),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    conversation_pk: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.pk", ondelete="CASCADE"), nullable=True
    )
    media_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Share(Base):
    """A read-only snapshot of a conversation's active path up to a message, readable by
    anyone with its unguessable ``id`` until it expires or is revoked. Deleting the
    conversation deletes its shares."""

    __tablename__ = "shares"
    __table_args__ = (Index("ix_shares_owner_created", "owner_id", "created_at"),)

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    conversation_pk: Mapped[int] = mapped_column(ForeignKey("conversations.pk", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))
    """The last message shown (the snapshot ends there)."""
    title: Mapped[str] = mapped_column(String(200), default="")
    snapshot: Mapped[dict[str, object]] = mapped_column(JSON)
    """``{"messages": [...]}``: the messages' wire form without ids of anything else."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class User(Base):
    """An account. Its conversations belong to the owner ``user/{id}``.

    Ids are never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL): a user created
    again under a removed user's name gets a new id, hence none of the old conversations.
    """

    __tablename__ = "users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    """``admin`` or ``user`` (see docs/administration.md)."""
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    """``active``; ``disabled`` (no credential of it works); ``pending`` (signed itself up,
    waits for an admin's approval)."""
    limits: Mapped[dict[str, float | None] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
    """This user's own quota limits, over its role's: a limit name (``tokens_per_day``,
    ``messages_per_day``, ``cost_per_month``, ``concurrent_replies``) to a number, or to
    None for no limit (lifted). A name absent takes the role's limit."""


class Credential(Base):
    """A sign-in session (kind ``session``) or an API token (kind ``token``).

    Only the SHA-256 of the secret is stored; revoking sets ``revoked_at``.
    """

    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_user", "user_id"),)

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100), default="")
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsageRecord(Base):
    """One reply's usage: the ledger. Written once, when the reply ends, in the same
    transaction as its outcome; never updated. Not tied by foreign keys to the owner, the
    user or the message, so it outlives them (totals stay true after a deletion).

    Tokens are the provider's counts when it reported them; otherwise (a cancelled or
    failed reply, a provider that reports nothing) an estimate, and ``estimated`` is set.
    ``cost`` is from the price table at the time of the reply (None: the model has no
    price). ``day`` is the UTC day of ``created_at``: totals by day are an index range.
    """

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_owner_day", "owner_id", "day"),
        Index("ix_usage_day_model", "day", "model"),
        Index("ix_usage_user_day", "user_id", "day"),
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The account behind ``owner_id`` (None for an open-mode owner)."""
    day: Mapped[date] = mapped_column(Date)
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    """The reply's outcome: completed, cancelled, error, interrupted."""
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    """An administrative action: who (a user name, or ``cli`` from the server's shell),
    what (``action`` such as ``user.create``, and ``details``), to whom, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"),)

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, object] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )
