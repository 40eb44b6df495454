"""The audit log: administrative actions, who did them, to whom, when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from liaotian.store.database import DATABASE_ERRORS, domain_error
from liaotian.store.models import AuditEntry, aware, wire_time

CLI_ACTOR = "cli"
"""The actor of actions taken from the server's shell."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, object] | None

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": wire_time(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }


class AuditLog:
    """Appends and lists audit entries. Database failures leave as StoreError."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    async def record(
        self, actor: str, action: str, target: str = "", details: dict[str, object] | None = None
    ) -> None:
        """Append one entry (``action`` such as ``user.create``, ``token.revoke``)."""
        try:
            async with self._sessionmaker() as session, session.begin():
                session.add(AuditEntry(actor=actor, action=action, target=target, details=details))
        except DATABASE_ERRORS as error:
            raise domain_error(error) from error

    async def entries(self, *, limit: int = 100, before: int | None = None) -> list[AuditRecord]:
        """The newest ``limit`` entries (older than the entry ``before``), newest first."""
        query = select(AuditEntry).order_by(AuditEntry.pk.desc()).limit(limit)
        if before is not None:
            query = query.where(AuditEntry.pk < before)
        try:
            async with self._sessionmaker() as session:
                rows = (await session.scalars(query)).all()
        except DATABASE_ERRORS as error:
            raise domain_error(error) from error
        return [
            AuditRecord(
                id=row.pk,
                at=aware(row.at),
                actor=row.actor,
                action=row.action,
                target=row.target,
                details=row.details,
            )
            for row in rows
        ]
