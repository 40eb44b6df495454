"""The store raises its own errors, never SQLAlchemy's or a driver's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from liaotian.errors import InvalidFrame, StoreUnavailable
from liaotian.store import Store, create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade
from tests.cluster import free_port

PASSWORD = "correct horse battery"


def unreachable_postgres() -> str:
    """A PostgreSQL URL on a port where nothing listens."""
    return f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"


async def test_an_unreachable_database_is_store_unavailable() -> None:
    """Conversations on a database that does not answer: StoreUnavailable (retryable)."""
    store = Store(create_engine(unreachable_postgres()))
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.list_conversations("alice", limit=10)
        assert raised.value.retryable
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()


async def test_accounts_on_an_unreachable_database_are_store_unavailable() -> None:
    """Accounts too: StoreUnavailable, not the driver's connection error."""
    engine = create_engine(unreachable_postgres())
    try:
        with pytest.raises(StoreUnavailable):
            await Accounts(engine).has_users()
    finally:
        await engine.dispose()


async def test_a_taken_user_name_is_refused_in_plain_words(database_url: str) -> None:
    """A unique-key collision inside the store is its own conflict, said as the user's."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        accounts = Accounts(engine)
        await accounts.add_user("alice", PASSWORD)
        with pytest.raises(InvalidFrame, match="already exists"):
            await accounts.add_user("alice", PASSWORD)
    finally:
        await engine.dispose()


def test_nothing_outside_the_store_imports_sqlalchemys_errors() -> None:
    """Only the store turns database errors into its own: no other module catches them."""
    package = Path(__file__).resolve().parent.parent / "src" / "liaotian"
    outside = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "sqlalchemy.exc" in path.read_text() and path.parent.name != "store"
    ]
    assert outside == []
