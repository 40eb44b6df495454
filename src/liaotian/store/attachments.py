"""Images uploaded by their owner (placeholder: the attachments branch replaces this)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select, update

from liaotian.errors import NotFound
from liaotian.store.models import Attachment

attachments = cast(Table, Attachment.__table__)


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: str
    media_type: str
    name: str
    width: int
    height: int
    size: int
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "media_type": self.media_type,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "bytes": self.size,
        }


def claim_attachments(
    c: Connection, owner: str, ids: tuple[str, ...] | list[str], conversation_pk: int
) -> list[AttachmentInfo]:
    """Link the owner's attachments ``ids`` to the conversation; in the given order.

    Raises NotFound naming an id that is not the owner's or belongs to another conversation.
    """
    table = attachments.c
    rows = {
        row.id: row
        for row in c.execute(
            select(
                table.id,
                table.media_type,
                table.name,
                table.width,
                table.height,
                table.size,
                table.created_at,
                table.conversation_pk,
            ).where(table.owner_id == owner, table.id.in_(list(ids)))
        )
    }
    infos = []
    for attachment_id in ids:
        row = rows.get(attachment_id)
        if row is None or row.conversation_pk not in (None, conversation_pk):
            raise NotFound(f"attachment {attachment_id} not found")
        infos.append(
            AttachmentInfo(
                row.id, row.media_type, row.name, row.width, row.height, row.size, row.created_at
            )
        )
    c.execute(
        update(attachments)
        .where(table.owner_id == owner, table.id.in_(list(ids)), table.conversation_pk.is_(None))
        .values(conversation_pk=conversation_pk)
    )
    return infos


def load_images(c: Connection, owner: str, ids: list[str]) -> dict[str, tuple[str, bytes]]:
    """``{id: (media type, bytes)}`` of the owner's attachments among ``ids``."""
    table = attachments.c
    return {
        row.id: (row.media_type, row.data)
        for row in c.execute(
            select(table.id, table.media_type, table.data).where(
                table.owner_id == owner, table.id.in_(ids)
            )
        )
    }
