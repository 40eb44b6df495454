"""How the store runs its transactions: one function, one transaction, one hop.

Every store operation is a plain synchronous function of a SQLAlchemy ``Connection``
(Core statements, no ORM session), run inside one transaction by a :class:`Database`:

* :class:`ThreadedDatabase` (SQLite): one dedicated thread owns a synchronous pysqlite
  connection and runs the transactions one after another. One thread hop per transaction
  instead of aiosqlite's four per *statement*, and no two transactions of this process
  ever wait on SQLite's write lock (its busy handler sleeps up to 100 ms per try).
* :class:`AsyncDatabase` (PostgreSQL, or an in-memory SQLite): the async engine's pooled
  connections, the function run through ``AsyncConnection.run_sync``.

A transaction commits when its function returns and rolls back when it raises. What the
database or its driver raises leaves here as a :class:`~liaotian.errors.StoreError`
(:func:`domain_error`): callers never see SQLAlchemy's exceptions. Once
submitted it runs to its end even if the awaiting task is cancelled: callers that must not
lose its result shield it (see ``ChatEngine.send``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from liaotian.errors import StoreConflict, StoreError, StoreUnavailable

T = TypeVar("T")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def apply_sqlite_pragmas(dbapi_connection: Any) -> None:
    """WAL, no fsync per commit (only at WAL checkpoints), foreign keys, a busy timeout."""
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def domain_error(error: Exception) -> StoreError:
    """The store's error for what the database layer raised (a unique key collision is a
    :class:`StoreConflict`; anything else, unreachable or refused, :class:`StoreUnavailable`)."""
    if isinstance(error, IntegrityError):
        return StoreConflict("the write collided with a concurrent one")
    return StoreUnavailable(f"the database failed: {type(error).__name__}")


DATABASE_ERRORS = (SQLAlchemyError, OSError)
"""What a transaction may raise from below (asyncpg's connection errors are OSErrors)."""


class Database(Protocol):
    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction and return its result."""
        ...

    async def close(self) -> None: ...


class AsyncDatabase:
    """Transactions on the async engine's pool (asyncpg for PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def run(self, work: Callable[[Connection], T]) -> T:
        try:
            async with self._engine.begin() as connection:
                return await connection.run_sync(work)
        except DATABASE_ERRORS as error:
            raise domain_error(error) from error

    async def close(self) -> None:
        """Nothing of its own: the async engine is disposed by its owner."""


class ThreadedDatabase:
    """SQLite transactions on one thread that owns the connection, one at a time."""

    def __init__(self, url: URL) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="liaotian-sqlite")
        self._engine = _threaded_sqlite_engine(url)

    async def run(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._transaction, work)
        except DATABASE_ERRORS as error:
            raise domain_error(error) from error

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        with self._engine.begin() as connection:
            return work(connection)

    async def close(self) -> None:
        """Close the connection on its own thread, then stop the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._engine.dispose)
        self._executor.shutdown(wait=False)


def _threaded_sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, pool_size=1, max_overflow=0)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        apply_sqlite_pragmas(dbapi_connection)
        # Let SQLAlchemy's "begin" below start transactions, not pysqlite's implicit
        # BEGIN before the first write (which leaves earlier reads outside the transaction).
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Take the write lock at the start: a deferred transaction that reads and then
        # writes can fail at once with SQLITE_BUSY if another process wrote in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_database(engine: AsyncEngine) -> Database:
    """The fastest way to run transactions against ``engine``'s database."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return ThreadedDatabase(url.set(drivername="sqlite"))
    return AsyncDatabase(engine)
