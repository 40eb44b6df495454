"""The full-text index of messages and titles, written in the same transaction as they are.

Every function takes ``c``, a connection inside the caller's transaction, so the index can
never drift from what it indexes: a transaction that fails leaves neither.

The tables (made by migration 0007) differ by database but hold the same terms, chosen in
Python by :mod:`liaotian.store.search_text`:

* SQLite: FTS5 tables ``message_search`` (rowid = ``messages.pk``) and
  ``conversation_search`` (rowid = ``conversations.pk``), ``tokenize='ascii'`` over the
  space-separated terms (the tokenizer only splits on the spaces), queried with ``MATCH``;
  triggers remove a row when its message or conversation is deleted.
* PostgreSQL: ``message_search(message_pk, vector)`` and ``conversation_search
  (conversation_pk, vector)``, a ``tsvector`` written as its input text (never
  ``to_tsvector``: the database's parser and locale decide nothing), a GIN index each,
  rows deleted with what they index (ON DELETE CASCADE), queried with ``@@`` a
  ``tsquery`` built the same way.

Only final text is indexed: a user message when stored, an answer when it ends (however it
ends), never streaming text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, select, text

from liaotian.store import search_text
from liaotian.store.models import Conversation, Message

_conversations = cast(Table, Conversation.__table__)
_messages = cast(Table, Message.__table__)

_SQLITE = {
    "index_message": text(
        "INSERT OR REPLACE INTO message_search (rowid, body)"
        " SELECT pk, :body FROM messages WHERE id = :id"
    ),
    "unindex_message": text(
        "DELETE FROM message_search WHERE rowid = (SELECT pk FROM messages WHERE id = :id)"
    ),
    "index_message_pk": text(
        "INSERT OR REPLACE INTO message_search (rowid, body) VALUES (:pk, :body)"
    ),
    "index_title": text(
        "INSERT OR REPLACE INTO conversation_search (rowid, body) VALUES (:pk, :body)"
    ),
    "unindex_title": text("DELETE FROM conversation_search WHERE rowid = :pk"),
    "unindex_messages": text(
        "DELETE FROM message_search WHERE rowid IN"
        " (SELECT pk FROM messages WHERE conversation_pk = :pk)"
    ),
}
_POSTGRESQL = {
    "index_message": text(
        "INSERT INTO message_search (message_pk, vector)"
        " SELECT pk, CAST(:body AS tsvector) FROM messages WHERE id = :id"
        " ON CONFLICT (message_pk) DO UPDATE SET vector = excluded.vector"
    ),
    "unindex_message": text(
        "DELETE FROM message_search WHERE message_pk = (SELECT pk FROM messages WHERE id = :id)"
    ),
    "index_message_pk": text(
        "INSERT INTO message_search (message_pk, vector) VALUES (:pk, CAST(:body AS tsvector))"
        " ON CONFLICT (message_pk) DO UPDATE SET vector = excluded.vector"
    ),
    "index_title": text(
        "INSERT INTO conversation_search (conversation_pk, vector)"
        " VALUES (:pk, CAST(:body AS tsvector))"
        " ON CONFLICT (conversation_pk) DO UPDATE SET vector = excluded.vector"
    ),
    "unindex_title": text("DELETE FROM conversation_search WHERE conversation_pk = :pk"),
    "unindex_messages": text(
        "DELETE FROM message_search WHERE message_pk IN"
        " (SELECT pk FROM messages WHERE conversation_pk = :pk)"
    ),
}


def _statements(c: Connection) -> dict[str, Any]:
    return _POSTGRESQL if c.dialect.name == "postgresql" else _SQLITE


def indexed_form(dialect: str, text_: str) -> str:
    """What the index stores for ``text_`` on ``dialect`` (``""``: nothing to index)."""
    if dialect == "postgresql":
        return search_text.tsvector_text(text_)
    return search_text.index_text(text_)


def index_many(c: Connection, table: str, rows: Iterable[tuple[int, str]]) -> None:
    """Index many texts at once by pk: ``table`` ``messages`` or ``conversations`` (their
    titles). For bulk loads (a migration, an import): one statement for the batch."""
    dialect = c.dialect.name
    batch = [
        {"pk": pk, "body": body} for pk, value in rows if (body := indexed_form(dialect, value))
    ]
    if batch:
        key = "index_message_pk" if table == "messages" else "index_title"
        c.execute(_statements(c)[key], batch)


def index_message(c: Connection, message_id: str, text: str) -> None:
    """Index (or re-index) the final text of message ``message_id``."""
    statements = _statements(c)
    body = indexed_form(c.dialect.name, text)
    if body:
        c.execute(statements["index_message"], {"id": message_id, "body": body})
    else:
        c.execute(statements["unindex_message"], {"id": message_id})


def index_title(c: Connection, conversation_pk: int, title: str) -> None:
    """Index (or re-index) a conversation's title."""
    statements = _statements(c)
    body = indexed_form(c.dialect.name, title)
    if body:
        c.execute(statements["index_title"], {"pk": conversation_pk, "body": body})
    else:
        c.execute(statements["unindex_title"], {"pk": conversation_pk})


def unindex_conversation(c: Connection, conversation_pk: int) -> None:
    """Remove a conversation's title and messages from the index (before deleting them)."""
    statements = _statements(c)
    c.execute(statements["unindex_messages"], {"pk": conversation_pk})
    c.execute(statements["unindex_title"], {"pk": conversation_pk})


# -- searching ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One conversation found: its row, and its newest matching message (None: the title
    alone matched)."""

    conversation: Row[Any]
    message_id: str | None
    role: str | None
    created_at: datetime | None
    on_active_path: bool
    snippet: list[dict[str, object]]


# The owner's matching messages, newest first ({match}: the dialect's). On SQLite a CROSS
# JOIN keeps the index first: its planner would rather walk the owner's conversations and
# ask the index about each.
_RECENT_MATCHES = """
SELECT m.conversation_pk, m.pk
FROM {source}
{join} messages AS m ON m.pk = {key}
{join} conversations AS c ON c.pk = m.conversation_pk
WHERE {match} AND c.owner_id = :owner
ORDER BY {key} DESC
LIMIT :window
"""
# The newest matching message per conversation (exact, but reads every match).
_MESSAGE_MATCHES = """
SELECT m.conversation_pk, max(m.pk) AS newest
FROM {source}
{join} messages AS m ON m.pk = {key}
{join} conversations AS c ON c.pk = m.conversation_pk
WHERE {match} AND c.owner_id = :owner
GROUP BY m.conversation_pk
ORDER BY newest DESC
LIMIT :limit
"""

_TITLE_MATCHES = """
SELECT c.pk
FROM {source}
{join} conversations AS c ON c.pk = {key}
WHERE {match} AND c.owner_id = :owner
ORDER BY c.updated_at DESC, c.pk DESC
LIMIT :limit
"""
_DIALECTS = {
    "sqlite": {
        "messages": {
            "source": "message_search",
            "key": "message_search.rowid",
            "match": "message_search MATCH :query",
        },
        "titles": {
            "source": "conversation_search",
            "key": "conversation_search.rowid",
            "match": "conversation_search MATCH :query",
        },
    },
    "postgresql": {
        "messages": {
            "source": "message_search AS s",
            "key": "s.message_pk",
            "match": "s.vector @@ CAST(:query AS tsquery)",
        },
        "titles": {
            "source": "conversation_search AS s",
            "key": "s.conversation_pk",
            "match": "s.vector @@ CAST(:query AS tsquery)",
        },
    },
}


def _queries(dialect: str) -> dict[str, Any]:
    parts = _DIALECTS["postgresql" if dialect == "postgresql" else "sqlite"]
    join = "JOIN" if dialect == "postgresql" else "CROSS JOIN"
    return {
        "recent": text(_RECENT_MATCHES.format(join=join, **parts["messages"])),
        "messages": text(_MESSAGE_MATCHES.format(join=join, **parts["messages"])),
        "titles": text(_TITLE_MATCHES.format(join=join, **parts["titles"])),
    }


_QUERIES = {dialect: _queries(dialect) for dialect in ("sqlite", "postgresql")}

_ON_ACTIVE_PATH = text(
    """
WITH RECURSIVE path(pk, parent_pk) AS (
  SELECT m.pk, m.parent_pk FROM messages AS m
  JOIN conversations AS c ON m.pk = c.active_message_pk
  WHERE c.pk IN :conversations
  UNION ALL
  SELECT m.pk, m.parent_pk FROM messages AS m JOIN path ON m.pk = path.parent_pk
)
SELECT pk FROM path WHERE pk IN :messages
"""
).bindparams(bindparam("conversations", expanding=True), bindparam("messages", expanding=True))


_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")

RECENT_WINDOW = 400
"""Matches read newest first before falling back to grouping all of them: enough to find a
page of conversations for a common word without reading its every occurrence."""


def find(c: Connection, owner: str, query: str, limit: int) -> list[Hit]:
    """The owner's conversations matching ``query`` (every word), best first, at most
    ``limit``: those whose title matches first (most recently updated first), then the
    others by their newest matching message (the most recently written first)."""
    words = search_text.parse_query(query)
    if not words:
        return []
    dialect = "postgresql" if c.dialect.name == "postgresql" else "sqlite"
    queries = _QUERIES[dialect]
    expression = (
        search_text.tsquery(words) if dialect == "postgresql" else search_text.fts5_query(words)
    )
    params = {"owner": owner, "query": expression, "limit": limit}
    if dialect == "postgresql":
        # A plan for this query's words, never a generic one cached for any words: that
        # one walks the primary key backwards and reads every row when a word is rare.
        c.execute(_CUSTOM_PLANS)
    titled = list(c.scalars(queries["titles"], params))
    newest = _newest_matches(c, queries, params, limit)
    title_matched = set(titled)
    chosen = (titled + [pk for pk in newest if pk not in title_matched])[:limit]
    conversations = _rows_by_pk(c, _conversations, set(chosen))
    message_pks = [newest[pk] for pk in chosen if pk in newest]
    found_messages = _rows_by_pk(c, _messages, set(message_pks))
    on_path = _on_active_path(c, chosen, message_pks)
    hits = []
    for pk in chosen:
        conversation = conversations[pk]
        if pk in newest:
            message = found_messages[newest[pk]]
            hits.append(
                Hit(
                    conversation,
                    message.id,
                    message.role,
                    message.created_at,
                    conversation.active_message_pk is None or message.pk in on_path,
                    search_text.snippet(message.content, words),
                )
            )
        else:
            snippet = search_text.snippet(conversation.title, words)
            hits.append(Hit(conversation, None, None, None, True, snippet))
    return hits


def _newest_matches(
    c: Connection, queries: dict[str, Any], params: dict[str, Any], limit: int
) -> dict[int, int]:
    """``{conversation pk: its newest matching message's pk}`` for (at least) the
    ``limit`` conversations with the newest matches, newest first.

    A conversation whose title matched but none of whose messages is among them counts as
    a title match alone: finding its newest match would mean reading every match of a
    common word."""
    rows = c.execute(queries["recent"], {**params, "window": RECENT_WINDOW}).all()
    newest: dict[int, int] = {}
    for conversation_pk, message_pk in rows:
        newest.setdefault(conversation_pk, message_pk)
    if len(rows) < RECENT_WINDOW or len(newest) >= limit:
        return newest  # every match was read, or enough conversations were found
    grouped = c.execute(queries["messages"], params).all()
    return {row[0]: row[1] for row in grouped}


def _rows_by_pk(c: Connection, table: Table, pks: set[int]) -> dict[int, Row[Any]]:
    if not pks:
        return {}
    rows = c.execute(select(table).where(table.c.pk.in_(sorted(pks))))
    return {row.pk: row for row in rows}


def _on_active_path(
    c: Connection, conversations: Sequence[int], messages: Sequence[int]
) -> set[int]:
    if not messages:
        return set()
    return set(
        c.scalars(
            _ON_ACTIVE_PATH, {"conversations": list(conversations), "messages": list(messages)}
        )
    )
