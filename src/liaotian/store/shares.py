"""Share links: read-only snapshots of a conversation's active path at unguessable ids.

A share freezes, when it is made, the active path from the first message up to a message of
it (:func:`liaotian.store.tree.path_page` from ``conversations.active_message_pk``) as a list
of the messages' wire form without anything that names their owner or other messages
(:func:`snapshot_message`). Later edits, other branches and the owner's other conversations
are never in it. Its id (:func:`new_share_id`) is 192 random bits: the only secret.

The owner's methods (:meth:`ShareStore.create`, :meth:`~ShareStore.list`,
:meth:`~ShareStore.revoke`) answer another owner's conversation or share exactly like an
unknown one (NotFound). The public ones (:meth:`~ShareStore.read`,
:meth:`~ShareStore.image`, :meth:`~ShareStore.copy`) find a share only while it is neither
revoked nor expired: the database decides, so every process agrees at once. Deleting the
conversation deletes its shares (``ON DELETE CASCADE``). Each method is one transaction of
the store's :class:`~liaotian.store.database.Database`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from liaotian.errors import ConversationBusy, NotFound
from liaotian.replies.status import ReplyStatus
from liaotian.store import search
from liaotian.store.attachments import new_attachment_id
from liaotian.store.database import Database
from liaotian.store.models import Attachment, Conversation, Message, Owner, Share, aware, utcnow
from liaotian.store.repository import ConversationInfo, new_id
from liaotian.store.tree import UNBOUNDED, path_page

shares = cast(Table, Share.__table__)
_SHARED_TITLE_CHARS = 60
"""As long as a title made from a first message (liaotian.titles.TITLE_CHARS)."""

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
attachments = cast(Table, Attachment.__table__)
owners = cast(Table, Owner.__table__)

LIST_LIMIT = 200
"""Most shares :meth:`ShareStore.list` answers (the newest)."""
_INSERT_OWNER = {
    "postgresql": postgresql.insert(owners).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(owners).on_conflict_do_nothing(),
}
_SHARE_COLUMNS = (
    shares.c.pk,
    shares.c.id,
    conversations.c.id.label("conversation_id"),
    shares.c.message_id,
    shares.c.title,
    shares.c.created_at,
    shares.c.expires_at,
    shares.c.revoked_at,
)
_COPIED_STATUSES = frozenset(
    status.value for status in ReplyStatus if status is not ReplyStatus.STREAMING
)


def new_share_id() -> str:
    """A share's public id: 192 random bits, URL-safe (32 characters)."""
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class ShareInfo:
    """A share as its owner sees it."""

    id: str
    conversation_id: str
    message_id: str
    title: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool

    def to_wire(self) -> dict[str, Any]:
        """The ``share`` of docs/protocol.md ("Share links"); ``url`` is the page's path."""
        return {
            "id": self.id,
            "url": f"/s/{self.id}",
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "title": self.title,
            "created_at": self.created_at.timestamp(),
            "expires_at": None if self.expires_at is None else self.expires_at.timestamp(),
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class SharedSnapshot:
    """What anyone with the link sees: a title and the frozen messages."""

    title: str
    created_at: datetime
    messages: list[dict[str, Any]]

    def to_wire(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "created_at": self.created_at.timestamp(),
            "messages": self.messages,
        }


def _share_info(row: Any) -> ShareInfo:
    return ShareInfo(
        id=row.id,
        conversation_id=row.conversation_id,
        message_id=row.message_id,
        title=row.title,
        created_at=aware(row.created_at),
        expires_at=None if row.expires_at is None else aware(row.expires_at),
        revoked=row.revoked_at is not None,
    )


def snapshot_message(row: Row[Any]) -> dict[str, Any]:
    """A message as a share keeps it: its role, text, reasoning, sources and images (their
    id, type and size: not their file name), model and time. No message id, usage or
    error details."""
    images = [
        {
            "id": image["id"],
            "media_type": image.get("media_type"),
            "width": image.get("width"),
            "height": image.get("height"),
        }
        for image in row.attachments or ()
        if isinstance(image, dict) and isinstance(image.get("id"), str)
    ]
    return {
        "role": row.role,
        "content": row.content,
        "reasoning": row.reasoning,
        "sources": list(row.sources or ()),
        "attachments": images,
        "thinking_ms": row.thinking_ms,
        "status": row.status,
        "model": row.model,
        "created_at": aware(row.created_at).timestamp(),
    }


def _live_share(c: Connection, share_id: str) -> Row[Any]:
    """The share's row while it is neither revoked nor expired; NotFound otherwise."""
    row = c.execute(select(shares).where(shares.c.id == share_id)).first()
    if row is None or row.revoked_at is not None:
        raise NotFound("share not found")
    if row.expires_at is not None and aware(row.expires_at) <= utcnow():
        raise NotFound("share not found")
    return row


class ShareStore:
    """Share links, in the transactions of ``database`` (the Store's)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(
        self,
        owner: str,
        conversation_id: str,
        *,
        message_id: str | None = None,
        expires_in: float | None = None,
    ) -> ShareInfo:
        """Freeze the owner's conversation's active path up to ``message_id`` (default: its
        last message). NotFound for another owner's or an unknown conversation, for a
        conversation with no message, and for a message not on the active path;
        ConversationBusy when that message is a reply still streaming."""
        now = utcnow()
        expires_at = None if expires_in is None else now + timedelta(seconds=expires_in)

        def work(c: Connection) -> ShareInfo:
            conversation = c.execute(
                select(
                    conversations.c.pk,
                    conversations.c.title,
                    conversations.c.title_source,
                    conversations.c.active_message_pk,
                ).where(conversations.c.owner_id == owner, conversations.c.id == conversation_id)
            ).first()
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found")
            path, _ = path_page(c, conversation.active_message_pk, UNBOUNDED)
            if message_id is not None:
                ends = [index for index, row in enumerate(path) if row.id == message_id]
                if not ends:
                    raise NotFound(f"message {message_id} not found on the active path")
                path = path[: ends[0] + 1]
            if not path:
                raise NotFound(f"conversation {conversation_id} has no message to share")
            if path[-1].status == ReplyStatus.STREAMING.value:
                raise ConversationBusy("the answer is still being written: share it once done")
            info = ShareInfo(
                id=new_share_id(),
                conversation_id=conversation_id,
                message_id=path[-1].id,
                title=_shared_title(c, conversation, path[0]),
                created_at=now,
                expires_at=expires_at,
                revoked=False,
            )
            c.execute(
                insert(shares).values(
                    id=info.id,
                    owner_id=owner,
                    conversation_pk=conversation.pk,
                    message_id=info.message_id,
                    title=info.title,
                    snapshot={"messages": [snapshot_message(row) for row in path]},
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            return info

        return await self._db.run(work)

    async def list(self, owner: str, conversation_id: str | None = None) -> list[ShareInfo]:
        """The owner's shares not revoked (expired ones included), newest first, at most
        :data:`LIST_LIMIT`; only the conversation's with ``conversation_id`` (NotFound when
        it is not the owner's)."""
        query = (
            select(*_SHARE_COLUMNS)
            .join(conversations, conversations.c.pk == shares.c.conversation_pk)
            .where(shares.c.owner_id == owner, shares.c.revoked_at.is_(None))
            .order_by(shares.c.created_at.desc(), shares.c.pk.desc())
            .limit(LIST_LIMIT)
        )
        if conversation_id is not None:
            query = query.where(conversations.c.id == conversation_id)

        def work(c: Connection) -> list[ShareInfo]:
            if conversation_id is not None and (
                c.scalar(
                    select(conversations.c.pk).where(
                        conversations.c.owner_id == owner, conversations.c.id == conversation_id
                    )
                )
                is None
            ):
                raise NotFound(f"conversation {conversation_id} not found")
            return [_share_info(row) for row in c.execute(query)]

        return await self._db.run(work)

    async def revoke(self, owner: str, share_id: str) -> ShareInfo:
        """Revoke the owner's share (again: no change) and return it; NotFound for another
        owner's or an unknown id. From then on every process answers 404 for it."""
        now = utcnow()

        def work(c: Connection) -> ShareInfo:
            row = c.execute(
                select(*_SHARE_COLUMNS)
                .join(conversations, conversations.c.pk == shares.c.conversation_pk)
                .where(shares.c.owner_id == owner, shares.c.id == share_id)
            ).first()
            if row is None:
                raise NotFound("share not found")
            if row.revoked_at is None:
                c.execute(update(shares).where(shares.c.pk == row.pk).values(revoked_at=now))
            return ShareInfo(
                id=row.id,
                conversation_id=row.conversation_id,
                message_id=row.message_id,
                title=row.title,
                created_at=aware(row.created_at),
                expires_at=None if row.expires_at is None else aware(row.expires_at),
                revoked=True,
            )

        return await self._db.run(work)

    async def read(self, share_id: str) -> SharedSnapshot:
        """The snapshot of a live share (anyone may read it); NotFound otherwise."""

        def work(c: Connection) -> SharedSnapshot:
            row = _live_share(c, share_id)
            return SharedSnapshot(
                row.title, aware(row.created_at), list(row.snapshot.get("messages", []))
            )

        return await self._db.run(work)

    async def image(self, share_id: str, attachment_id: str) -> tuple[str, bytes]:
        """``(media type, bytes)`` of an image the live share's snapshot shows; NotFound for
        any other attachment (even one of the same conversation)."""

        def work(c: Connection) -> tuple[str, bytes]:
            row = _live_share(c, share_id)
            if attachment_id not in _image_ids(row.snapshot):
                raise NotFound(f"attachment {attachment_id} not found")
            image = c.execute(
                select(attachments.c.media_type, attachments.c.data).where(
                    attachments.c.id == attachment_id, attachments.c.owner_id == row.owner_id
                )
            ).first()
            if image is None:
                raise NotFound(f"attachment {attachment_id} not found")
            return image.media_type, bytes(image.data)

        return await self._db.run(work)

    async def copy(self, owner: str, share_id: str, *, conversation_id: str) -> ConversationInfo:
        """Make a live share's snapshot the new conversation ``conversation_id`` of
        ``owner``: its messages as one path (the last one active), its images copied as the
        owner's (without their file names), its title and messages indexed for search.
        NotFound when the share is not live."""
        now = utcnow()

        def work(c: Connection) -> ConversationInfo:
            share = _live_share(c, share_id)
            snapshot = list(share.snapshot.get("messages", []))
            model = next((m["model"] for m in reversed(snapshot) if m.get("model")), None)
            c.execute(_INSERT_OWNER[c.dialect.name], {"id": owner, "created_at": now})
            conversation_pk = _inserted_pk(
                c,
                insert(conversations).values(
                    id=conversation_id,
                    owner_id=owner,
                    title=share.title,
                    title_source="import",
                    model=model,
                    created_at=now,
                    updated_at=now,
                ),
            )
            if share.title:
                search.index_title(c, conversation_pk, share.title)
            images = _copy_images(c, share.owner_id, owner, conversation_pk, snapshot, now)
            parent_pk: int | None = None
            last_id: str | None = None
            for message in snapshot:
                last_id = new_id()
                status = message.get("status")
                parent_pk = _inserted_pk(
                    c,
                    insert(messages).values(
                        id=last_id,
                        conversation_pk=conversation_pk,
                        parent_pk=parent_pk,
                        role=message.get("role", "user"),
                        content=message.get("content") or "",
                        reasoning=message.get("reasoning"),
                        sources=message.get("sources") or None,
                        attachments=[
                            images[image["id"]]
                            for image in message.get("attachments") or ()
                            if image.get("id") in images
                        ]
                        or None,
                        status=status
                        if status in _COPIED_STATUSES
                        else ReplyStatus.COMPLETED.value,
                        model=message.get("model"),
                        thinking_ms=message.get("thinking_ms"),
                        created_at=now,
                        updated_at=now,
                    ),
                )
                if message.get("content"):
                    search.index_message(c, last_id, message["content"])
            c.execute(
                update(conversations)
                .where(conversations.c.pk == conversation_pk)
                .values(active_message_pk=parent_pk)
            )
            return ConversationInfo(
                id=conversation_id,
                pk=conversation_pk,
                title=share.title,
                system_prompt=None,
                model=model,
                created_at=now,
                updated_at=now,
                title_source="import",
                active_message_id=last_id,
            )

        return await self._db.run(work)


def _inserted_pk(c: Connection, statement: Any) -> int:
    key = c.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def _image_ids(snapshot: dict[str, Any]) -> set[str]:
    return {
        image["id"]
        for message in snapshot.get("messages", [])
        for image in message.get("attachments") or ()
        if isinstance(image, dict) and isinstance(image.get("id"), str)
    }


def _copy_images(
    c: Connection,
    from_owner: str,
    to_owner: str,
    conversation_pk: int,
    snapshot: list[dict[str, Any]],
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Copy the snapshot's images as ``to_owner``'s, linked to the new conversation;
    ``{old id: the new image's wire form}``."""
    wanted = _image_ids({"messages": snapshot})
    if not wanted:
        return {}
    rows = c.execute(
        select(attachments).where(
            attachments.c.id.in_(sorted(wanted)), attachments.c.owner_id == from_owner
        )
    ).all()
    copied: dict[str, dict[str, Any]] = {}
    for row in rows:
        new_id = new_attachment_id()
        c.execute(
            insert(attachments).values(
                id=new_id,
                owner_id=to_owner,
                conversation_pk=conversation_pk,
                media_type=row.media_type,
                name="",
                width=row.width,
                height=row.height,
                size=row.size,
                data=row.data,
                created_at=now,
            )
        )
        copied[row.id] = {
            "id": new_id,
            "media_type": row.media_type,
            "name": "",
            "width": row.width,
            "height": row.height,
            "bytes": row.size,
        }
    return copied


def _shared_title(c: Connection, conversation: Any, first: Any) -> str:
    """The conversation's title, unless it may come from another branch: a title made from
    the first message (or generated from the first exchange) when the shared path starts
    with an edited first message. Then the shared path's own first line."""
    if conversation.title_source == "user":
        return str(conversation.title)
    other_first = c.scalar(
        select(messages.c.pk)
        .where(
            messages.c.conversation_pk == conversation.pk,
            messages.c.parent_pk.is_(None),
            messages.c.pk != first.pk,
        )
        .limit(1)
    )
    if other_first is None:
        return str(conversation.title)
    return " ".join(first.content.split())[:_SHARED_TITLE_CHARS] or "Image"
