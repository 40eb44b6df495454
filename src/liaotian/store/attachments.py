"""Attachments: images an owner uploaded, kept in the database so every process serves them.

An attachment belongs to its owner: every read filters by owner, and another owner's id is
answered exactly like an unknown one (NotFound / absent). It is *unlinked* until a message
first uses it; :func:`claim_attachments` then links it to that message's conversation,
whose deletion deletes it (``ON DELETE CASCADE``). One never linked is removed by
:meth:`AttachmentStore.reap_unused` once older than ``attachment_unused_ttl``
(:func:`reap_periodically` runs it).

:func:`claim_attachments` and :func:`load_images` are synchronous functions of a
``Connection``, for use inside another transaction (the one that stores a message); the
:class:`AttachmentStore` methods are one transaction each, run by the store's
:class:`~liaotian.store.database.Database`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from liaotian.errors import NotFound
from liaotian.store.database import Database
from liaotian.store.models import Attachment, Owner, utcnow

log = logging.getLogger(__name__)

attachments = cast(Table, Attachment.__table__)
owners = cast(Table, Owner.__table__)

_INFO_COLUMNS = (
    attachments.c.id,
    attachments.c.media_type,
    attachments.c.name,
    attachments.c.width,
    attachments.c.height,
    attachments.c.size,
    attachments.c.created_at,
)
_INSERT_OWNER = {
    "postgresql": postgresql.insert(owners).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(owners).on_conflict_do_nothing(),
}


def new_attachment_id() -> str:
    """A public id: 128 random bits, URL-safe (unguessable, unlike a row number)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What is known of an attachment besides its bytes."""

    id: str
    media_type: str
    name: str
    width: int
    height: int
    size: int
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        """``{id, media_type, name, width, height, bytes}``: the upload's answer, and the
        entry a user message's ``attachments`` keeps."""
        return {
            "id": self.id,
            "media_type": self.media_type,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "bytes": self.size,
        }


def _info(row: Row[*tuple[Any, ...]]) -> AttachmentInfo:
    created = row.created_at
    return AttachmentInfo(
        id=row.id,
        media_type=row.media_type,
        name=row.name,
        width=row.width,
        height=row.height,
        size=row.size,
        # SQLite returns naive datetimes; everything stored is UTC.
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
    )


class AttachmentStore:
    """Owner-scoped attachments, in the transactions of ``database`` (the Store's)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(
        self, owner: str, *, name: str, media_type: str, width: int, height: int, data: bytes
    ) -> AttachmentInfo:
        """Store an (already checked and re-encoded) image of ``owner``, unlinked.

        Creates the owner if it has nothing yet. ``name`` is kept as given (the caller
        cleans it; at most 200 characters).
        """
        now = utcnow()
        info = AttachmentInfo(new_attachment_id(), media_type, name, width, height, len(data), now)

        def work(c: Connection) -> None:
            # ON CONFLICT DO NOTHING: an owner created at the same moment elsewhere wins.
            c.execute(_INSERT_OWNER[c.dialect.name], {"id": owner, "created_at": now})
            c.execute(
                insert(attachments).values(
                    id=info.id,
                    owner_id=owner,
                    conversation_pk=None,
                    media_type=media_type,
                    name=name,
                    width=width,
                    height=height,
                    size=info.size,
                    data=data,
                    created_at=now,
                )
            )

        await self._db.run(work)
        return info

    async def get(self, owner: str, attachment_id: str) -> tuple[AttachmentInfo, bytes]:
        """The owner's attachment and its bytes; NotFound for an unknown or another's id."""
        query = select(*_INFO_COLUMNS, attachments.c.data).where(
            attachments.c.id == attachment_id, attachments.c.owner_id == owner
        )

        def work(c: Connection) -> tuple[AttachmentInfo, bytes]:
            row = c.execute(query).first()
            if row is None:
                raise NotFound(f"attachment {attachment_id} not found")
            return _info(row), bytes(row.data)

        return await self._db.run(work)

    async def reap_unused(self, older_than_seconds: float) -> int:
        """Delete the attachments no message ever used, created over ``older_than_seconds``
        ago; returns how many. One being linked at that moment is kept (it is locked)."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        statement = delete(attachments).where(
            attachments.c.conversation_pk.is_(None), attachments.c.created_at < cutoff
        )
        return await self._db.run(lambda c: int(c.execute(statement).rowcount or 0))


def claim_attachments(
    c: Connection, owner: str, ids: Sequence[str], conversation_pk: int
) -> list[AttachmentInfo]:
    """Link the owner's attachments ``ids`` to the conversation ``conversation_pk``, inside
    the caller's transaction; returns their infos in the order of ``ids``.

    Each must be the owner's and either unlinked or already in that conversation (a message
    edited or sent again reuses it); otherwise NotFound names the first that is not, and the
    caller's transaction should roll back. The rows are locked until it ends, so a
    concurrent claim in another conversation, or the reaper, waits and then sees the link.
    """
    if not ids:
        return []
    wanted = list(dict.fromkeys(ids))
    rows = c.execute(
        select(*_INFO_COLUMNS, attachments.c.conversation_pk)
        .where(attachments.c.id.in_(wanted), attachments.c.owner_id == owner)
        .with_for_update()
    ).all()
    found = {row.id: row for row in rows}
    for attachment_id in wanted:
        row = found.get(attachment_id)
        if row is None or row.conversation_pk not in (None, conversation_pk):
            raise NotFound(f"attachment {attachment_id} not found")
    unlinked = [row.id for row in rows if row.conversation_pk is None]
    if unlinked:
        c.execute(
            update(attachments)
            .where(attachments.c.id.in_(unlinked))
            .values(conversation_pk=conversation_pk)
        )
    infos = {attachment_id: _info(row) for attachment_id, row in found.items()}
    return [infos[attachment_id] for attachment_id in ids]


def load_images(c: Connection, owner: str, ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """``{id: (media_type, bytes)}`` of the owner's attachments among ``ids``, inside the
    caller's transaction; an unknown id, or another owner's, is simply absent."""
    if not ids:
        return {}
    rows = c.execute(
        select(attachments.c.id, attachments.c.media_type, attachments.c.data).where(
            attachments.c.id.in_(list(set(ids))), attachments.c.owner_id == owner
        )
    ).all()
    return {row.id: (row.media_type, bytes(row.data)) for row in rows}


def reap_interval(ttl: float) -> float:
    """Seconds between two reaps for ``ttl``: a quarter of it, between 1 s and an hour."""
    return min(3600.0, max(1.0, ttl / 4))


async def reap_periodically(store: AttachmentStore, ttl: float) -> None:
    """Remove the attachments unused for ``ttl`` seconds now and every
    :func:`reap_interval` after; runs until cancelled. A failure is logged, not fatal."""
    while True:
        try:
            reaped = await store.reap_unused(ttl)
        except Exception:
            log.exception("could not remove unused attachments")
        else:
            if reaped:
                log.info("removed %d unused attachments", reaped)
        await asyncio.sleep(reap_interval(ttl))
