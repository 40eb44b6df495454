"""8. Full-text search: latency at 100,000 messages, on SQLite and on PostgreSQL.

Each database is filled (migrated schema, bulk inserts, indexed by the store's own
``liaotian.store.search.index_many``) with ``search_messages`` messages: conversations of
20 messages, questions of about 100 characters and answers of about 600, half in English
and half in Chinese (from fixed vocabularies, seeded), owned by 10 owners, one of whom owns
half of everything (the searches are that owner's). Then ``Store.search`` (the whole
answer: matching, one result per conversation, the active path, snippets; limit 20) is
timed in this process for each kind of query, ``search_runs`` times each, after a warm-up.
It also times indexing one 600-character answer as ``finish_reply`` does (per message, in
its transaction): the cost search adds to every reply.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import procs
from bench.core import Context, Figure, Result, table
from bench.stats import percentiles

CONVERSATION_MESSAGES = 20
OWNERS = 10
QUERIES = {
    "English word": "protocol",
    "common English word": "the",
    "English prefix": "sched",
    "2-character Chinese word": "协议",
    "two words": "server design",
    "no hit": "zyxwvutq",
}

_ENGLISH_WORDS = (
    "the a of and to in is it that for on with as this was by be are at from or an not we "
    "you can will your what which how when there about one all would so if more time some "
    "them other into has two like then its only over also after use our work first well way "
    "even new want because any these give day most us server client message answer model "
    "question data network reply stream token cache latency queue thread process memory "
    "python database index search query result browser page window system design error "
    "timeout retry backoff limit price market garden weather travel recipe music history "
    "science physics chemistry biology language grammar poem story chapter letter"
)
_ENGLISH = _ENGLISH_WORDS.split()
_RARE = ("protocol", "scheduler", "schedule", "socket", "websocket", "kubernetes", "sqlite")
_CHINESE = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学"
    "对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头"
    "面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向"
    "情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信"
    "北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难"
)
_CHINESE_WORDS = ("协议", "延迟", "数据", "服务", "模型", "网络")


def run(ctx: Context) -> Result:
    mode = ctx.mode
    result = Result("search", "8. Full-text search")
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    setups: list[tuple[str, Callable[[], Any]]] = [
        ("SQLite", lambda: _sqlite_url(ctx.workdir)),
        ("PostgreSQL", procs.postgres_database),
    ]
    for label, database in setups:
        with _entered(database()) as database_url:
            print(f"  -- {label}: filling {mode.search_messages:,} messages", flush=True)
            found = asyncio.run(_measure(database_url, mode.search_messages, mode.search_runs))
        data[label] = found
        for kind, figures in found["queries"].items():
            rows.append(
                [label, kind, figures["results"], figures["p50"], figures["p90"], figures["p99"]]
            )
            result.figures.append(
                Figure(f"{kind} at {mode.search_messages:,}, {label}, p50", figures["p50"], "ms")
            )
        result.figures.append(
            Figure(f"indexing one answer, {label}", found["index_us"], "µs per message")
        )
        result.notes.append(
            f"{label}: filled and indexed {mode.search_messages:,} messages in "
            f"{found['fill_seconds']:.0f} s"
        )
    result.markdown.append(
        table(["database", "query", "results", "p50 ms", "p90 ms", "p99 ms"], rows)
    )
    result.markdown.append(
        table(
            ["database", "index one 600-char answer (µs)", "of which Python (µs)"],
            [[label, data[label]["index_us"], data[label]["python_us"]] for label in data],
        )
    )
    query_list = ", ".join(f"{kind} `{query}`" for kind, query in QUERIES.items())
    result.markdown.append(f"Queries: {query_list}.")
    result.data = data
    return result


class _entered:
    """``with`` over a context manager or a plain value (the SQLite URL)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __enter__(self) -> str:
        if hasattr(self._value, "__enter__"):
            return str(self._value.__enter__())
        return str(self._value)

    def __exit__(self, *exc: object) -> None:
        if hasattr(self._value, "__exit__"):
            self._value.__exit__(*exc)


def _sqlite_url(workdir: Path) -> str:
    path = workdir / f"search-{time.monotonic_ns()}.db"
    return f"sqlite+aiosqlite:///{path}"


async def _measure(database_url: str, count: int, runs: int) -> dict[str, Any]:
    from liaotian.store import Store, create_engine
    from liaotian.store.migrate import upgrade

    await asyncio.to_thread(upgrade, database_url)
    store = Store(create_engine(database_url))
    try:
        began = time.monotonic()
        await _fill(store, count)
        fill_seconds = time.monotonic() - began
        heavy = "owner-0"
        queries: dict[str, dict[str, float]] = {}
        for kind, query in QUERIES.items():
            results = len(await store.search(heavy, query, limit=20))  # warm-up
            timings = []
            for _ in range(runs):
                started = time.perf_counter()
                await store.search(heavy, query, limit=20)
                timings.append((time.perf_counter() - started) * 1000)
            stats = percentiles(timings)
            queries[kind] = {
                "results": results,
                "p50": stats["p50"],
                "p90": stats["p90"],
                "p99": stats["p99"],
            }
        index_us, python_us = await _index_cost(store)
        return {
            "queries": queries,
            "fill_seconds": fill_seconds,
            "index_us": index_us,
            "python_us": python_us,
        }
    finally:
        await store.close()


def _sentence(rng: random.Random, chars: int) -> str:
    if rng.random() < 0.5:
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chars:
            words.append(rng.choice(_RARE) if rng.random() < 0.01 else rng.choice(_ENGLISH))
        return " ".join(words).capitalize() + "."
    out: list[str] = []
    while len(out) < chars // 3:
        out.append(rng.choice(_CHINESE_WORDS) if rng.random() < 0.02 else rng.choice(_CHINESE))
    return "".join(out) + "。"


async def _fill(store: Any, count: int) -> None:
    """``count`` messages in conversations of 20, as the store would have written them."""
    import sqlalchemy as sa

    from liaotian.store import search
    from liaotian.store.repository import conversations, messages, owners

    rng = random.Random(13)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    conversation_count = max(1, count // CONVERSATION_MESSAGES)
    per_batch = 50  # conversations per transaction

    def owner_of(index: int) -> str:
        return "owner-0" if index % 2 == 0 else f"owner-{1 + index % (OWNERS - 1)}"

    def setup(c: sa.Connection) -> None:
        c.execute(
            sa.insert(owners), [{"id": f"owner-{i}", "created_at": start} for i in range(OWNERS)]
        )

    await store.database.run(setup)
    next_pk = 1
    for first in range(0, conversation_count, per_batch):
        batch = range(first, min(conversation_count, first + per_batch))
        conversation_rows = []
        message_rows = []
        for index in batch:
            when = start + timedelta(minutes=index * 5)
            conversation_rows.append(
                {
                    "pk": index + 1,
                    "id": f"c{index}",
                    "owner_id": owner_of(index),
                    "title": _sentence(rng, 30)[:60],
                    "created_at": when,
                    "updated_at": when,
                    "active_message_pk": next_pk + CONVERSATION_MESSAGES - 1,
                }
            )
            for position in range(CONVERSATION_MESSAGES):
                user = position % 2 == 0
                message_rows.append(
                    {
                        "pk": next_pk,
                        "id": f"m{next_pk}",
                        "conversation_pk": index + 1,
                        "parent_pk": next_pk - 1 if position else None,
                        "role": "user" if user else "assistant",
                        "content": _sentence(rng, 100 if user else 600),
                        "status": "completed",
                        "created_at": when + timedelta(seconds=position),
                        "updated_at": when + timedelta(seconds=position),
                    }
                )
                next_pk += 1

        def write(
            c: sa.Connection, cs: list[Any] = conversation_rows, ms: list[Any] = message_rows
        ) -> None:
            c.execute(sa.insert(conversations), cs)
            c.execute(sa.insert(messages), ms)
            search.index_many(c, "conversations", ((r["pk"], r["title"]) for r in cs))
            search.index_many(c, "messages", ((r["pk"], r["content"]) for r in ms))

        await store.database.run(write)
    if store.engine.dialect.name == "postgresql":
        async with store.engine.begin() as connection:
            for table in ("messages", "conversations", "message_search", "conversation_search"):
                await connection.execute(sa.text(f"ANALYZE {table}"))


async def _index_cost(store: Any) -> tuple[float, float]:
    """µs to index one 600-character answer in its transaction, and of that the Python
    part (folding, terms), each the median of 200."""
    from statistics import median

    from liaotian.store import search

    rng = random.Random(7)
    texts = [_sentence(rng, 600) for _ in range(200)]
    dialect = store.engine.dialect.name
    python = []
    for text in texts:
        started = time.perf_counter()
        search.indexed_form(dialect, text)
        python.append((time.perf_counter() - started) * 1e6)

    def work(c: Any) -> list[float]:
        spent = []
        for number, text in enumerate(texts):
            message_id = f"m{number + 1}"
            started = time.perf_counter()
            search.index_message(c, message_id, text)
            spent.append((time.perf_counter() - started) * 1e6)
        raise _Rollback(spent)

    try:
        await store.database.run(work)
    except _Rollback as rollback:
        return median(rollback.spent), median(python)
    raise AssertionError("unreachable")


class _Rollback(Exception):
    """Carries the timings out of a transaction that must not commit."""

    def __init__(self, spent: list[float]) -> None:
        super().__init__("rollback")
        self.spent = spent
