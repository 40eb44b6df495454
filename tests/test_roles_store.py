"""Accounts' roles and statuses in the store: the first account is an admin, a disabled or
pending account's credentials stop working, and migration 0009 makes the oldest account an
admin."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command

from liaotian.store import create_engine
from liaotian.store.accounts import ADMIN, DISABLED, PENDING, SESSION, TOKEN, USER
from liaotian.store.audit import AuditLog
from liaotian.store.migrate import alembic_config, upgrade
from liaotian.store.models import User
from tests.cluster import PASSWORD, accounts_of


async def set_status(database_url: str, name: str, status: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.update(User).where(User.name == name).values(status=status))
    finally:
        await engine.dispose()


async def test_the_first_account_is_an_admin_and_later_ones_users(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    async with accounts_of(database_url) as accounts:
        assert await accounts.add_user("root", PASSWORD) == ADMIN
        assert await accounts.add_user("alice", PASSWORD) == USER
        assert await accounts.add_user("boss", PASSWORD, role=ADMIN) == ADMIN
        _, token = await accounts.create_token("alice")
        identity = await accounts.identify(token, TOKEN)
    assert identity is not None
    assert (identity.role, identity.is_admin) == (USER, False)


async def test_a_disabled_or_pending_account_has_no_live_credential(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    async with accounts_of(database_url) as accounts:
        await accounts.add_user("root", PASSWORD)
        await accounts.add_user("alice", PASSWORD)
        token_id, token = await accounts.create_token("alice")
        session = await accounts.create_session("alice", 3600)
        assert await accounts.dead([token_id]) == set()
        for status in (DISABLED, PENDING):
            await set_status(database_url, "alice", status)
            assert await accounts.identify(token, TOKEN) is None
            assert await accounts.identify(session, SESSION) is None
            assert await accounts.dead([token_id]) == {token_id}
            assert not await accounts.verify_password("alice", PASSWORD)
        await set_status(database_url, "alice", "active")
        assert await accounts.identify(token, TOKEN) is not None
        assert await accounts.verify_password("alice", PASSWORD)


async def test_migration_0009_makes_the_oldest_account_an_admin(database_url: str) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.upgrade, config, "0008")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for name in ("first", "second"):
                await connection.execute(
                    sa.text(
                        "INSERT INTO users (name, password_hash, created_at) "
                        "VALUES (:name, 'x', CURRENT_TIMESTAMP)"
                    ),
                    {"name": name},
                )
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(User.name, User.role, User.status).order_by(User.id)
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("first", ADMIN, "active"),
            ("second", USER, "active"),
        ]
        await asyncio.to_thread(command.downgrade, config, "0008")
        async with engine.connect() as connection:
            names = (await connection.execute(sa.text("SELECT name FROM users"))).scalars()
            assert sorted(names) == ["first", "second"]
    finally:
        await engine.dispose()


async def test_the_audit_log_lists_newest_first_in_pages(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        audit = AuditLog(engine)
        for number in range(5):
            await audit.record("root", "user.create", f"user{number}", {"role": USER})
        first = await audit.entries(limit=3)
        assert [entry.target for entry in first] == ["user4", "user3", "user2"]
        rest = await audit.entries(limit=3, before=first[-1].id)
        assert [entry.target for entry in rest] == ["user1", "user0"]
        assert rest[0].to_wire()["details"] == {"role": USER}
        assert str(rest[0].to_wire()["at"]).endswith("Z")
    finally:
        await engine.dispose()
