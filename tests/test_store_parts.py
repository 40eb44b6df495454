"""Reply parts in the database: checkpointed while streaming, kept at the end, migrated."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from liaotian.replies.status import ReplyStatus
from liaotian.store import create_engine
from liaotian.store.migrate import alembic_config, upgrade
from liaotian.store.repository import NewReply, Partial
from tests.conftest import SettingsFactory
from tests.server_harness import run_server
from tests.test_chat import connect
from tests.wsclient import of_type

SOURCES = ({"index": 1, "url": "https://example.com/a", "title": "A", "site": "ex", "icon": ""},)


async def test_a_crashed_reply_keeps_its_checkpointed_reasoning_and_sources(
    make_settings: SettingsFactory,
) -> None:
    """Reasoning and sources saved by a checkpoint survive a crash: history has them and a
    subscribe replays them as parts, apart from the text."""
    settings = make_settings()
    async with run_server(settings) as server:
        store = server.services.store
        begun = await store.begin_reply(
            NewReply(
                owner="alice",
                conversation_id="crash",
                message="q",
                model="qwen-plus",
                history_messages=10,
                history_chars=1000,
                create=True,
            )
        )
        await store.checkpoint([Partial(begun.reply_id, "partial", "I was thinking", SOURCES)])
    async with run_server(settings) as server:
        messages, _ = await server.services.store.history("alice", "crash", limit=10)
        reply = messages[-1].to_wire()
        assert reply["status"] == ReplyStatus.INTERRUPTED.value
        assert (reply["content"], reply["reasoning"]) == ("partial", "I was thinking")
        assert reply["sources"] == list(SOURCES)
        client = await connect(server)
        await client.send({"type": "chat.subscribe", "message_id": begun.reply_id})
        frames = await client.until(of_type("reply.done"))
        kinds = [frame["type"] for frame in frames]
        assert kinds == [
            "reply.started",
            "reply.reasoning",
            "reply.sources",
            "reply.delta",
            "reply.done",
        ]
        assert frames[1]["text"] == "I was thinking"
        assert frames[3]["text"] == "partial"
        await client.close()


_owners = sa.table("owners", sa.column("id"), sa.column("created_at", sa.DateTime(timezone=True)))
_conversations = sa.table(
    "conversations",
    sa.column("pk"),
    sa.column("id"),
    sa.column("owner_id"),
    sa.column("title"),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_messages = sa.table(
    "messages",
    sa.column("id"),
    sa.column("conversation_pk"),
    sa.column("role"),
    sa.column("content"),
    sa.column("status"),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


async def seed_revision_0004(database_url: str) -> None:
    """A database at revision 0004 with one exchange of owner bob."""
    await asyncio.to_thread(upgrade, database_url, "0004")
    engine = create_engine(database_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(_owners.insert().values(id="bob", created_at=now))
            await connection.execute(
                _conversations.insert().values(
                    pk=1, id="old", owner_id="bob", title="old", created_at=now, updated_at=now
                )
            )
            for message_id, role, content in (("u1", "user", "hi"), ("a1", "assistant", "hello")):
                await connection.execute(
                    _messages.insert().values(
                        id=message_id,
                        conversation_pk=1,
                        role=role,
                        content=content,
                        status="completed",
                        created_at=now,
                        updated_at=now,
                    )
                )
    finally:
        await engine.dispose()


async def test_earlier_conversations_migrate_with_text_and_no_parts(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """After the migration an old answer reads as text only; it can be undone."""
    await seed_revision_0004(database_url)
    await asyncio.to_thread(upgrade, database_url)
    async with run_server(make_settings()) as server:
        messages, _ = await server.services.store.history("bob", "old", limit=10)
    wires = [message.to_wire() for message in messages]
    assert [(w["content"], w["reasoning"], w["sources"], w["attachments"]) for w in wires] == [
        ("hi", None, [], []),
        ("hello", None, [], []),
    ]
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0004")
