"""The usage ledger (``usage_records``): one row per ended reply, and totals from it.

Writing: :class:`LedgerPolicy` turns a reply's end into a :class:`UsageEntry` (provider
counts, or an estimate from characters; cost from the price table) and
:func:`insert_entry` adds it inside the caller's transaction, at most once per message
(``message_id`` is unique; a second insert is ignored, not an error).

Reading: :class:`UsageBook` answers every total from an index range (``(owner_id, day)``,
``(user_id, day)``, ``(day, model)``), never a scan of messages. Days are UTC dates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from liaotian.settings import Price
from liaotian.store.accounts import user_id_of
from liaotian.store.database import Database
from liaotian.store.models import UsageRecord, User

Grouping = Literal["day", "user", "model"]

# CJK ideographs (with extensions and compatibility forms), kana, hangul, CJK punctuation
# and full-width forms: each is about one token; any other four characters are one.
_CJK = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    "\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]"
)

_table = cast(Table, UsageRecord.__table__)
_INSERT = {
    "sqlite": sqlite.insert(_table).on_conflict_do_nothing(index_elements=["message_id"]),
    "postgresql": postgresql.insert(_table).on_conflict_do_nothing(index_elements=["message_id"]),
}


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is: a CJK character one, any other four characters one."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def cost_of(
    price: Price | None, input_tokens: int, output_tokens: int, cached_tokens: int
) -> float | None:
    """What the tokens cost at ``price`` (per million tokens); None without a price.
    Cached tokens are part of the input and cost ``cached_input`` (default ``input``)."""
    if price is None:
        return None
    cached = min(cached_tokens, input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = (
        (input_tokens - cached) * price.input + cached * cached_price + output_tokens * price.output
    )
    return total / 1_000_000


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One ``usage_records`` row."""

    message_id: str
    owner_id: str
    user_id: int | None
    day: date
    model: str
    provider: str
    status: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    estimated: bool
    cost: float | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerPolicy:
    """How ended replies become ledger rows: the price table and which provider serves a
    model id (for the rows the store writes itself, when a restart interrupts replies)."""

    prices: Mapping[str, Price]
    provider_of: Callable[[str], str]

    def entry(
        self,
        *,
        message_id: str,
        owner: str,
        model: str,
        provider: str,
        status: str,
        counted: tuple[int | None, int | None, int | None, int | None],
        sent: str | Callable[[], str],
        streamed: str,
        reasoning: str | None,
        now: datetime | None = None,
    ) -> UsageEntry:
        """The row of a reply that ended ``status``. ``counted`` is the provider's
        (input, output, reasoning, cached) tokens; when input or output is missing, they
        are estimated from ``sent`` (a callable is called only then) and from ``streamed``
        and ``reasoning``."""
        input_tokens, output_tokens, reasoning_tokens, cached_tokens = counted
        estimated = input_tokens is None or output_tokens is None
        if input_tokens is None:
            input_tokens = estimate_tokens(sent if isinstance(sent, str) else sent())
        if reasoning_tokens is None:
            reasoning_tokens = estimate_tokens(reasoning) if reasoning and estimated else 0
        if output_tokens is None:
            output_tokens = estimate_tokens(streamed) + reasoning_tokens
        cached = cached_tokens or 0
        at = now or datetime.now(UTC)
        return UsageEntry(
            message_id=message_id,
            owner_id=owner,
            user_id=user_id_of(owner),
            day=at.date(),
            model=model,
            provider=provider,
            status=status,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            reasoning_tokens=reasoning_tokens,
            cached_tokens=cached,
            estimated=estimated,
            cost=cost_of(self.prices.get(model), input_tokens, output_tokens, cached),
            created_at=at,
        )


def insert_entry(c: Connection, entry: UsageEntry) -> None:
    """Add ``entry`` in the caller's transaction; nothing if its message has a row already."""
    c.execute(_INSERT[c.dialect.name], asdict(entry))


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spend:
    """An owner's usage that quotas count."""

    tokens_today: int
    replies_today: int
    cost_month: float


def month_start(day: date) -> date:
    return day.replace(day=1)


_u = _table.c
_TOKENS = _u.input_tokens + _u.output_tokens


def _sums() -> list[Any]:
    return [
        func.coalesce(func.sum(_u.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(_u.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(_u.reasoning_tokens), 0).label("reasoning_tokens"),
        func.coalesce(func.sum(_u.cached_tokens), 0).label("cached_tokens"),
        func.count().label("replies"),
        func.sum(_u.cost).label("cost"),
        func.max(case((_u.estimated, 1), else_=0)).label("estimated"),
    ]


def _totals(row: Any) -> dict[str, Any]:
    return {
        "input_tokens": int(row.input_tokens),
        "output_tokens": int(row.output_tokens),
        "reasoning_tokens": int(row.reasoning_tokens),
        "cached_tokens": int(row.cached_tokens),
        "replies": int(row.replies),
        "cost": None if row.cost is None else float(row.cost),
        "estimated": bool(row.estimated),
    }


class UsageBook:
    """Totals from the ledger; each query is one index range."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def spend(self, owner: str, today: date) -> Spend:
        """The owner's tokens and replies today and its cost this month (one range of
        ``ix_usage_owner_day``)."""
        is_today = _u.day == today
        query = select(
            func.coalesce(func.sum(case((is_today, _TOKENS), else_=0)), 0),
            func.coalesce(func.sum(case((is_today, 1), else_=0)), 0),
            func.coalesce(func.sum(_u.cost), 0.0),
        ).where(_u.owner_id == owner, _u.day >= month_start(today), _u.day <= today)

        def work(c: Connection) -> Spend:
            tokens, replies, cost = c.execute(query).one()
            return Spend(int(tokens), int(replies), float(cost))

        return await self._db.run(work)

    async def account(self, user_id: int) -> tuple[str, dict[str, float | None] | None] | None:
        """An account's role and own limits, or None (deleted)."""
        query = select(User.role, User.limits).where(User.id == user_id)

        def work(c: Connection) -> tuple[str, dict[str, float | None] | None] | None:
            row = c.execute(query).first()
            return None if row is None else (row.role, row.limits)

        return await self._db.run(work)

    async def owner_totals(
        self, owner: str, since: date
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The owner's totals per day (oldest first) and per model, from ``since``."""
        where = (_u.owner_id == owner, _u.day >= since)
        by_day = select(_u.day, *_sums()).where(*where).group_by(_u.day).order_by(_u.day)
        by_model = select(_u.model, *_sums()).where(*where).group_by(_u.model).order_by(_u.model)

        def work(c: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            days = [{"day": row.day.isoformat(), **_totals(row)} for row in c.execute(by_day)]
            models = [{"model": row.model, **_totals(row)} for row in c.execute(by_model)]
            return days, models

        return await self._db.run(work)

    async def totals(self, since: date, by: Grouping) -> list[dict[str, Any]]:
        """Everybody's totals from ``since`` per day, per (day, account) or per (day, model):
        ``{day, [user | model], tokens, input_tokens, output_tokens, replies, cost}``,
        oldest first. An open-mode owner's rows have ``user`` None."""
        columns: list[Any] = [
            _u.day,
            func.coalesce(func.sum(_TOKENS), 0).label("tokens"),
            func.coalesce(func.sum(_u.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(_u.output_tokens), 0).label("output_tokens"),
            func.count().label("replies"),
            func.sum(_u.cost).label("cost"),
        ]
        keys: list[Any] = [_u.day]
        if by == "user":
            keys.append(_u.user_id)
        elif by == "model":
            keys.append(_u.model)
        query = select(*columns, *keys[1:]).where(_u.day >= since).group_by(*keys).order_by(*keys)

        def work(c: Connection) -> list[dict[str, Any]]:
            rows = c.execute(query).all()
            names: dict[int, str] = {}
            if by == "user":
                ids = {row.user_id for row in rows if row.user_id is not None}
                if ids:
                    names = dict(
                        c.execute(select(User.id, User.name).where(User.id.in_(ids))).all()
                    )
            result = []
            for row in rows:
                item: dict[str, Any] = {"day": row.day.isoformat()}
                if by == "user":
                    item["user"] = None if row.user_id is None else names.get(row.user_id)
                elif by == "model":
                    item["model"] = row.model
                item.update(
                    tokens=int(row.tokens),
                    input_tokens=int(row.input_tokens),
                    output_tokens=int(row.output_tokens),
                    replies=int(row.replies),
                    cost=None if row.cost is None else float(row.cost),
                )
                result.append(item)
            return result

        return await self._db.run(work)

    async def users_today(self, user_ids: Sequence[int], today: date) -> dict[int, dict[str, Any]]:
        """``{user id: {tokens, replies, cost}}`` today for each of ``user_ids`` (one range
        of ``ix_usage_user_day`` each; an account without usage gets zeros, cost None)."""
        wanted = list(user_ids)
        result: dict[int, dict[str, Any]] = {
            user_id: {"tokens": 0, "replies": 0, "cost": None} for user_id in wanted
        }
        if not wanted:
            return result
        query = (
            select(
                _u.user_id,
                func.coalesce(func.sum(_TOKENS), 0),
                func.count(),
                func.sum(_u.cost),
            )
            .where(_u.user_id.in_(wanted), _u.day == today)
            .group_by(_u.user_id)
        )

        def work(c: Connection) -> None:
            for user_id, tokens, replies, cost in c.execute(query):
                result[user_id] = {
                    "tokens": int(tokens),
                    "replies": int(replies),
                    "cost": None if cost is None else float(cost),
                }

        await self._db.run(work)
        return result
