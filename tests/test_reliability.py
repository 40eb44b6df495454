"""Replies end with an outcome whatever fails around them: shutdown, the database, Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
import redis.asyncio as aioredis

from liaotian.engine import SendOptions
from liaotian.services import Services
from liaotian.store import Store, create_engine
from liaotian.store.repository import NewReply
from tests.cluster import REDIS_URL, free_port, redis_available
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream
from tests.server_harness import run_server
from tests.tcp_proxy import TcpProxy
from tests.test_auth import make_user, open_with
from tests.waiting import eventually
from tests.wsclient import RawClient, of_type

HANG = "[fault=hang] wait"


class DatabaseFaults:
    """Real faults in the test's real database, made through a connection of its own."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.sqlite = database_url.startswith("sqlite")

    def _sqlite_path(self) -> str:
        return self.url.split(":///", 1)[1]

    def _postgres_dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://")

    async def rename_messages(self, to: str, back: bool = False) -> None:
        """Rename the messages table (every statement on it then fails), or name it back."""
        old, new = (to, "messages") if back else ("messages", to)
        statement = f"ALTER TABLE {old} RENAME TO {new}"
        if self.sqlite:
            connection = sqlite3.connect(self._sqlite_path(), timeout=30)
            try:
                connection.execute(statement)
                connection.commit()
            finally:
                connection.close()
            return
        connection = await asyncpg.connect(self._postgres_dsn())
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    @contextlib.asynccontextmanager
    async def write_lock(self) -> AsyncIterator[Callable[[], None]]:
        """Hold a lock that makes every write wait; yields ``release()`` to end it early."""
        if self.sqlite:
            lite = sqlite3.connect(self._sqlite_path(), timeout=30, isolation_level=None)
            lite.execute("BEGIN EXCLUSIVE")
            released = False

            def release() -> None:
                nonlocal released
                if not released:
                    released = True
                    lite.execute("COMMIT")

            try:
                yield release
            finally:
                release()
                lite.close()
            return
        pg = await asyncpg.connect(self._postgres_dsn())
        transaction = pg.transaction()
        await transaction.start()
        await pg.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        ending: list[asyncio.Task[None]] = []

        def release_pg() -> None:
            if not ending:
                ending.append(asyncio.ensure_future(transaction.commit()))

        try:
            yield release_pg
        finally:
            release_pg()
            await ending[0]
            await pg.close()


async def reply_status(database_url: str, owner: str, message_id: str) -> str | None:
    """The reply's status as the database has it (read through a store of the test's own)."""
    store = Store(create_engine(database_url))
    try:
        found = await store.find_message(owner, message_id)
        return None if found is None else found[0].status
    finally:
        await store.close()


async def test_a_reply_whose_start_is_in_flight_at_shutdown_ends_with_an_outcome(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Shutdown waits for a reply start still being stored, runs it and ends it: the
    database never keeps a reply streaming that nobody runs."""
    services = await Services.start(make_settings())
    engine = services.engine
    faults = DatabaseFaults(database_url)
    async with faults.write_lock() as release:
        sending = asyncio.create_task(engine.send("alice", SendOptions(message=HANG)))
        await eventually(lambda: bool(engine._storing))
        sending.cancel()  # the connection that asked is gone, as after a disconnect
        closing = asyncio.create_task(services.close())
        await eventually(lambda: engine._closing)
        release()
        async with asyncio.timeout(30):
            await closing
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    store = Store(create_engine(database_url))
    try:
        conversations, _ = await store.list_conversations("alice", limit=10)
        assert len(conversations) == 1
        messages, _ = await store.history("alice", conversations[0].id, limit=10)
    finally:
        await store.close()
    assert [message.role for message in messages] == ["user", "assistant"]
    assert messages[1].status == "interrupted"


async def start_hanging_reply(client: RawClient) -> str:
    await client.send({"type": "chat.send", "id": 1, "message": HANG})
    started = await client.until(of_type("reply.started"))
    message_id: str = started[-1]["message_id"]
    return message_id


async def test_a_final_write_that_fails_is_retried(
    make_settings: SettingsFactory,
    database_url: str,
    fake: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database failing at a reply's end: the outcome is written once it is back."""
    caplog.set_level(logging.WARNING, logger="liaotian.engine")
    faults = DatabaseFaults(database_url)
    async with run_server(make_settings(final_write_timeout=60)) as server:
        client = await RawClient.open(f"{server.ws_url}?client_id=alice")
        owner = (await client.until(of_type("hello")))[-1]["owner"]
        message_id = await start_hanging_reply(client)
        await faults.rename_messages("messages_away")
        try:
            await client.send({"type": "chat.cancel", "id": 2, "message_id": message_id})
            await eventually(lambda: "could not save reply" in caplog.text)
        finally:
            await faults.rename_messages("messages_away", back=True)
        done = (await client.until(of_type("reply.done")))[-1]
        await client.close()
    assert done["status"] == "cancelled"
    assert done["error"] is None
    assert await reply_status(database_url, owner, message_id) == "cancelled"


async def test_a_final_write_that_cannot_be_saved_says_so(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """When the outcome cannot be saved, ``reply.done`` says ``not_saved`` instead of
    claiming an outcome the database does not have."""
    faults = DatabaseFaults(database_url)
    async with run_server(make_settings(final_write_timeout=0.2)) as server:
        client = await RawClient.open(f"{server.ws_url}?client_id=alice")
        await client.until(of_type("hello"))
        message_id = await start_hanging_reply(client)
        await faults.rename_messages("messages_away")
        try:
            await client.send({"type": "chat.cancel", "id": 2, "message_id": message_id})
            done = (await client.until(of_type("reply.done")))[-1]
        finally:
            await faults.rename_messages("messages_away", back=True)
        await client.close()
    assert done["error"]["code"] == "not_saved"
    assert "could not be saved" in done["error"]["message"]


async def test_a_cancel_for_another_process_is_answered_while_redis_is_down(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """With Redis unreachable, ``chat.cancel`` for a reply another process runs is
    acknowledged at once and pings are answered meanwhile; the cancel reaches Redis once
    it is back."""
    await redis_available()
    token = await make_user(database_url, "alice")
    prefix = f"test-rel-{uuid.uuid4().hex[:10]}"
    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    listener = aioredis.Redis.from_url(REDIS_URL)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{prefix}:cancel")
    try:
        async with TcpProxy(redis_port) as proxy:
            settings = make_settings(
                redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                redis_prefix=prefix,
                reply_lease=600,
            )
            async with run_server(settings) as server:
                client = await open_with(server, token)
                owner = (await client.until(of_type("hello")))[-1]["owner"]
                # A reply that another process streams: stored, run by nobody here.
                begun = await server.services.store.begin_reply(
                    NewReply(
                        owner=owner,
                        conversation_id=uuid.uuid4().hex,
                        message="elsewhere",
                        model="qwen-plus",
                        history_messages=20,
                        history_chars=10_000,
                        create=True,
                        title="elsewhere",
                    )
                )
                proxy.target_port = free_port()
                proxy.cut()
                await client.send({"type": "chat.cancel", "id": 1, "message_id": begun.reply_id})
                await client.send({"type": "ping", "id": 2})
                seen: dict[str, dict[str, object]] = {}
                async with asyncio.timeout(5):
                    while len(seen) < 2:
                        frame = await client.recv()
                        if frame.get("type") in ("ack", "pong"):
                            seen[frame["type"]] = frame
                assert seen["ack"]["message_ids"] == [begun.reply_id]
                proxy.target_port = redis_port  # Redis is back: the cancel goes out
                async with asyncio.timeout(20):
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            break
                assert begun.reply_id in message["data"].decode()
                await client.close()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
