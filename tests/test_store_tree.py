"""The store's conversation trees: paths, the model's context, switching, the migration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from liaotian.errors import ConversationBusy, NotFound
from liaotian.replies.status import ReplyStatus
from liaotian.store import ReplyOutcome, Store, create_engine
from liaotian.store.migrate import alembic_config, upgrade
from liaotian.store.repository import BegunReply, NewReply
from tests.conftest import SettingsFactory
from tests.server_harness import run_server


def new_reply(message: str, **fields: object) -> NewReply:
    values: dict[str, object] = {
        "owner": "alice",
        "conversation_id": "c",
        "message": message,
        "model": "qwen-plus",
        "history_messages": 20,
        "history_chars": 100_000,
        "create": True,
    }
    values.update(fields)
    return NewReply(**values)  # type: ignore[arg-type]


async def answer(store: Store, new: NewReply, text: str | None = None) -> BegunReply:
    """Store ``new`` and finish its reply completed with ``text`` (default: "re: message")."""
    begun = await store.begin_reply(new)
    content = f"re: {begun.user_text}" if text is None else text
    status = ReplyStatus.COMPLETED if content else ReplyStatus.ERROR
    await store.finish_reply(begun.reply_id, ReplyOutcome(status=status, content=content))
    return begun


async def test_switch_follows_the_newest_child_down_to_a_leaf(
    make_settings: SettingsFactory,
) -> None:
    """Switching to a first answer goes on through the newest answer at each step."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        one = await answer(store, new_reply("one"))
        await answer(store, new_reply("two"))
        await answer(store, new_reply("", regenerate=True))
        newest = await answer(store, new_reply("", regenerate=True))
        await answer(store, new_reply("", regenerate=True, regenerate_message_id=one.reply_id))
        switched = await store.switch_branch("alice", "c", one.reply_id)
        assert switched.active_message_id == newest.reply_id
        again = await store.get_conversation("alice", "c")
        assert again.active_message_id == newest.reply_id
        page, _ = await store.history("alice", "c", limit=10)
        assert [m.content for m in page] == ["one", "re: one", "two", "re: two"]
        assert len(page[3].siblings) == 3


async def test_switch_is_refused_while_a_reply_streams(make_settings: SettingsFactory) -> None:
    """The store itself refuses a switch while the conversation has a streaming reply."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        one = await answer(store, new_reply("one"))
        await store.begin_reply(new_reply("two"))
        with pytest.raises(ConversationBusy):
            await store.switch_branch("alice", "c", one.reply_id)
        with pytest.raises(NotFound):
            await store.switch_branch("bob", "c", one.reply_id)


async def test_context_is_the_active_path_without_empty_failed_answers(
    make_settings: SettingsFactory,
) -> None:
    """The model's context keeps the active path's last messages, skipping answers that
    failed before their first token, within history_messages."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        await answer(store, new_reply("one"))
        await answer(store, new_reply("two"), text="")
        await answer(store, new_reply("three"))
        begun = await store.begin_reply(new_reply("four", history_messages=3))
        assert [m.content for m in begun.context] == ["two", "three", "re: three"]
        await store.finish_reply(
            begun.reply_id, ReplyOutcome(status=ReplyStatus.COMPLETED, content="x")
        )
        page, _ = await store.history("alice", "c", limit=50)
        three = next(m.id for m in page if m.content == "three")
        edited = await store.begin_reply(new_reply("tres", edit_message_id=three))
        assert [m.content for m in edited.context] == ["one", "re: one", "two"]


# -- the migration ----------------------------------------------------------------------

_owners = sa.table("owners", sa.column("id"), sa.column("created_at"))
_conversations = sa.table(
    "conversations",
    sa.column("pk"),
    sa.column("id"),
    sa.column("owner_id"),
    sa.column("title"),
    sa.column("created_at"),
    sa.column("updated_at"),
)
_messages = sa.table(
    "messages",
    sa.column("pk"),
    sa.column("id"),
    sa.column("conversation_pk"),
    sa.column("role"),
    sa.column("content"),
    sa.column("status"),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


async def seed_revision_0005(database_url: str) -> None:
    """A database at revision 0005: bob's conversation "line" of two exchanges, and an
    empty conversation "empty"."""
    await asyncio.to_thread(upgrade, database_url, "0005")
    engine = create_engine(database_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(_owners.insert().values(id="bob", created_at=now))
            for pk, conversation_id in ((1, "line"), (2, "empty")):
                await connection.execute(
                    _conversations.insert().values(
                        pk=pk,
                        id=conversation_id,
                        owner_id="bob",
                        title=conversation_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
            for message_id, role in (("u1", "user"), ("a1", "assistant"), ("u2", "user")):
                await connection.execute(
                    _messages.insert().values(
                        id=message_id,
                        conversation_pk=1,
                        role=role,
                        content=message_id,
                        status="completed",
                        created_at=now,
                        updated_at=now,
                    )
                )
            await connection.execute(
                _messages.insert().values(
                    id="a2",
                    conversation_pk=1,
                    role="assistant",
                    content="a2",
                    status="completed",
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()


async def test_linear_conversations_migrate_as_single_path_trees(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """After 0006 each message's parent is the one before it and the leaf is the last."""
    await seed_revision_0005(database_url)
    await asyncio.to_thread(upgrade, database_url)
    async with run_server(make_settings()) as server:
        store = server.services.store
        line = await store.get_conversation("bob", "line")
        assert line.active_message_id == "a2"
        assert (await store.get_conversation("bob", "empty")).active_message_id is None
        page, _ = await store.history("bob", "line", limit=10)
        assert [(m.id, m.parent_id, m.siblings) for m in page] == [
            ("u1", None, ("u1",)),
            ("a1", "u1", ("a1",)),
            ("u2", "a1", ("u2",)),
            ("a2", "u2", ("a2",)),
        ]
        assert await store.history("bob", "empty", limit=10) == ([], False)


async def test_the_downgrade_keeps_the_active_path(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Back at 0005 only the active path of each conversation is left."""
    await seed_revision_0005(database_url)
    await asyncio.to_thread(upgrade, database_url)
    async with run_server(make_settings()) as server:
        store = server.services.store
        await answer(
            store, new_reply("", owner="bob", conversation_id="line", create=False, regenerate=True)
        )
        await store.switch_branch("bob", "line", "a2")
        kept = [m.id for m in (await store.history("bob", "line", limit=10))[0]]
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0005")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            ids = (
                await connection.scalars(
                    sa.select(_messages.c.id)
                    .where(_messages.c.conversation_pk == 1)
                    .order_by(_messages.c.pk)
                )
            ).all()
    finally:
        await engine.dispose()
    assert list(ids) == kept == ["u1", "a1", "u2", "a2"]
