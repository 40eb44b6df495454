"""Conversations as trees: the queries that walk a conversation's messages.

Every message has a parent (``messages.parent_pk``; None for a first message), and
siblings (same parent) are alternatives: an edit's user message beside the one edited, a
regenerated answer beside the earlier ones. A conversation's ``active_message_pk`` is the
leaf of its **active path**, the branch every device shows and the only one the model
sees. The active leaf has no children (a send appends below it; a switch follows the newest
child down to a leaf).

Paths are walked with recursive CTEs (one statement each, an index lookup per step, on
SQLite and PostgreSQL alike). Every function takes ``c``, a connection inside the caller's
transaction; none checks the owner (callers resolve the conversation first).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import (
    CTE,
    BigInteger,
    Connection,
    Integer,
    Select,
    Table,
    bindparam,
    func,
    literal,
    or_,
    select,
)

from liaotian.store.models import Message

messages = cast(Table, Message.__table__)

UNBOUNDED = 1_000_000
"""A depth no path reaches: walk to the first message."""


def _path_up(name: str, start: str, cap: str) -> CTE:
    """``(pk, parent_pk, depth)`` from message ``:start`` (depth 0) up through its parents,
    at most ``:cap`` steps up (an empty CTE when ``:start`` is NULL)."""
    table = messages.c
    first = (
        select(
            table.pk,
            table.parent_pk,
            literal(0, type_=Integer).label("depth"),
        )
        .where(table.pk == bindparam(start, type_=BigInteger))
        .cte(name, recursive=True)
    )
    parent = messages.alias(f"{name}_parent")
    return first.union_all(
        select(parent.c.pk, parent.c.parent_pk, first.c.depth + 1).where(
            parent.c.pk == first.c.parent_pk,
            first.c.depth < bindparam(cap, type_=Integer),
        )
    )


_CONTEXT_PATH = _path_up("context_path", "b_start", "b_cap")
CONTEXT = (
    select(messages.c.role, messages.c.content, messages.c.reasoning, messages.c.attachments)
    .join_from(_CONTEXT_PATH, messages, messages.c.pk == _CONTEXT_PATH.c.pk)
    .where((messages.c.content != "") | messages.c.attachments.is_not(None))
    .order_by(_CONTEXT_PATH.c.depth)
    .limit(bindparam("b_limit", type_=Integer))
)
"""The model's context, newest first: the path up from ``b_start`` (``b_cap`` steps at
most), without empty failed answers, ``b_limit`` messages at most."""

_PAGE_PATH = _path_up("page_path", "b_start", "b_cap")
_PARENT = messages.alias("parent")
_PAGE = (
    select(messages, _PARENT.c.id.label("parent_id"))
    .select_from(
        _PAGE_PATH.join(messages, messages.c.pk == _PAGE_PATH.c.pk).outerjoin(
            _PARENT, _PARENT.c.pk == messages.c.parent_pk
        )
    )
    .order_by(_PAGE_PATH.c.depth)
)

_OLD_PATH = _path_up("old_path", "b_old", "b_cap")
_NEW_PATH = _path_up("new_path", "b_new", "b_cap")
_LEFT = (
    select(messages.c.id)
    .join_from(_OLD_PATH, messages, messages.c.pk == _OLD_PATH.c.pk)
    .where(_OLD_PATH.c.pk.not_in(select(_NEW_PATH.c.pk)))
    .order_by(_OLD_PATH.c.depth.desc())
)


def _leaf_below() -> Select[Any]:
    child = messages.alias("child")
    first = select(
        bindparam("b_start", type_=BigInteger).label("pk"),
        literal(0, type_=Integer).label("depth"),
    ).cte("down", recursive=True)
    newest_child = (
        select(func.max(child.c.pk))
        .where(
            child.c.conversation_pk == bindparam("b_conversation", type_=BigInteger),
            child.c.parent_pk == first.c.pk,
        )
        .scalar_subquery()
    )
    down = first.union_all(select(newest_child, first.c.depth + 1).where(first.c.pk.is_not(None)))
    return select(down.c.pk).where(down.c.pk.is_not(None)).order_by(down.c.depth.desc()).limit(1)


_LEAF_BELOW = _leaf_below()


def context_rows(c: Connection, start_pk: int | None, limit: int) -> list[Any]:
    """``(role, content, reasoning, attachments)`` of the last ``limit`` messages worth
    sending on the path ending at ``start_pk``, newest first.

    On a path user messages and answers alternate, and only answers can be left out (an
    empty failed answer): ``2 * limit`` steps always hold ``limit`` messages worth sending.
    """
    if start_pk is None or limit <= 0:
        return []
    params = {"b_start": start_pk, "b_cap": 2 * limit, "b_limit": limit}
    return list(c.execute(CONTEXT, params).all())


def path_page(c: Connection, start_pk: int | None, limit: int) -> tuple[list[Any], bool]:
    """The last ``limit`` messages of the path ending at ``start_pk``, oldest first (full
    rows plus ``parent_id``), and whether older ones remain."""
    if start_pk is None:
        return [], False
    rows = c.execute(_PAGE, {"b_start": start_pk, "b_cap": limit}).all()
    page = list(reversed(rows[:limit]))
    return page, len(rows) > limit


def left_path(c: Connection, old_leaf: int | None, new_parent: int | None) -> list[str]:
    """Ids of the messages on the path to ``old_leaf`` that are not on the path to
    ``new_parent`` (what leaves the active path when a new message goes below
    ``new_parent``), oldest first."""
    if old_leaf is None:
        return []
    params = {"b_old": old_leaf, "b_new": new_parent, "b_cap": UNBOUNDED}
    return list(c.scalars(_LEFT, params).all())


def leaf_below(c: Connection, conversation_pk: int, message_pk: int) -> int:
    """The leaf reached from ``message_pk`` by following the newest child at each step."""
    leaf = c.scalar(_LEAF_BELOW, {"b_start": message_pk, "b_conversation": conversation_pk})
    return message_pk if leaf is None else int(leaf)


def siblings(
    c: Connection, conversation_pk: int, parent_pks: Iterable[int | None]
) -> dict[int | None, tuple[str, ...]]:
    """The ids of the children of each of ``parent_pks`` (None: the first messages), oldest
    first."""
    wanted = set(parent_pks)
    if not wanted:
        return {}
    table = messages.c
    pks = [pk for pk in wanted if pk is not None]
    conditions = []
    if pks:
        conditions.append(table.parent_pk.in_(pks))
    if None in wanted:
        conditions.append(table.parent_pk.is_(None))
    rows = c.execute(
        select(table.parent_pk, table.id)
        .where(table.conversation_pk == conversation_pk, or_(*conditions))
        .order_by(table.pk)
    ).all()
    found: dict[int | None, list[str]] = {pk: [] for pk in wanted}
    for parent_pk, message_id in rows:
        found[parent_pk].append(message_id)
    return {pk: tuple(ids) for pk, ids in found.items()}
