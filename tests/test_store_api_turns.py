"""What the OpenAI-compatible API asks of the store and the engine: earlier turns given
whole, a message placed below any message, and turns that are not kept."""

from __future__ import annotations

import pytest

from liaotian.engine import SendOptions
from liaotian.errors import NotFound, RequestError
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, expected_reply
from tests.server_harness import reply_finished, run_server
from tests.test_store_tree import answer, new_reply


async def test_prior_turns_are_stored_in_order_before_the_message(
    make_settings: SettingsFactory,
) -> None:
    """Earlier turns given with a message are stored on its path, oldest first, and are
    all the model's context."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        prior = (("user", "one"), ("assistant", "re: one"), ("user", "two"))
        begun = await answer(
            store, new_reply("three", prior=prior, history_messages=4, history_chars=100)
        )
        assert [(m.role, m.content) for m in begun.context] == list(prior)
        page, _ = await store.history("alice", "c", limit=10)
        assert [m.content for m in page] == ["one", "re: one", "two", "three", "re: three"]
        assert all(m.status == "completed" for m in page)


async def test_a_message_below_an_earlier_answer_starts_a_branch(
    make_settings: SettingsFactory,
) -> None:
    """A message placed below an answer that is not the leaf becomes a sibling of that
    answer's child, and the earlier path leaves the active path."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        first = await answer(store, new_reply("one"))
        second = await answer(store, new_reply("two"))
        branched = await answer(store, new_reply("again", after_message_id=first.reply_id))
        assert branched.replaces == (second.user_message_id, second.reply_id)
        assert branched.user_siblings == (second.user_message_id, branched.user_message_id)
        assert [m.content for m in branched.context] == ["one", "re: one"]
        page, _ = await store.history("alice", "c", limit=10)
        assert [m.content for m in page] == ["one", "re: one", "again", "re: again"]


async def test_a_message_below_an_unknown_or_foreign_message_is_not_found(
    make_settings: SettingsFactory,
) -> None:
    """``after_message_id`` must name a message of that conversation; nothing is stored."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        await answer(store, new_reply("one"))
        other = await answer(store, new_reply("elsewhere", conversation_id="d"))
        with pytest.raises(NotFound):
            await store.begin_reply(new_reply("x", after_message_id=other.reply_id))
        page, _ = await store.history("alice", "c", limit=10)
        assert [m.content for m in page] == ["one", "re: one"]


async def test_an_ephemeral_turn_is_answered_then_forgotten(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """An unkept turn streams like any other, its conversation is archived while it runs
    and deleted once the answer has ended."""
    async with run_server(make_settings()) as server:
        engine, store = server.services.engine, server.services.store
        reply_log = await engine.send("alice", SendOptions("hello", ephemeral=True))
        key = reply_log.key
        listed = await store.list_conversations("alice", limit=10, archived=True)
        assert [c.id for c in listed[0]] == [key.conversation_id]
        await reply_finished(server, "alice", key.message_id)
        assert reply_log.text == expected_reply("hello")
        await engine.forget_pending()
        with pytest.raises(NotFound):
            await store.get_conversation("alice", key.conversation_id)


async def test_an_unkept_turn_never_goes_into_an_existing_conversation(
    make_settings: SettingsFactory,
) -> None:
    """An unkept turn's conversation is deleted when it ends, so it may not name one."""
    async with run_server(make_settings()) as server:
        await answer(server.services.store, new_reply("one"))
        with pytest.raises(RequestError):
            await server.services.engine.send(
                "alice", SendOptions("two", conversation_id="c", ephemeral=True)
            )
        page, _ = await server.services.store.history("alice", "c", limit=10)
        assert [m.content for m in page] == ["one", "re: one"]


async def test_a_restart_deletes_unkept_conversations_an_earlier_stop_left(
    make_settings: SettingsFactory,
) -> None:
    """Unkept conversations whose process stopped before deleting them are gone after a
    restart (a reply it left streaming is first marked interrupted); others stay."""
    settings = make_settings()
    async with run_server(settings) as server:
        store = server.services.store
        await answer(store, new_reply("left behind", conversation_id="unkept-left"))
        await store.begin_reply(new_reply("cut off", conversation_id="unkept-cut"))
        await answer(store, new_reply("kept", conversation_id="unkept_kept"))
    async with run_server(settings) as server:
        listed, _ = await server.services.store.list_conversations("alice", limit=10)
        assert [c.id for c in listed] == ["unkept_kept"]


async def test_the_sweep_leaves_an_unkept_conversation_whose_reply_streams(
    make_settings: SettingsFactory,
) -> None:
    """A reply still streaming (in another process) keeps its unkept conversation."""
    async with run_server(make_settings()) as server:
        store = server.services.store
        await answer(store, new_reply("done", conversation_id="unkept-done"))
        await store.begin_reply(new_reply("streaming", conversation_id="unkept-live"))
        assert await store.delete_idle_with_prefix("unkept-") == 1
        listed, _ = await store.list_conversations("alice", limit=10)
        assert [c.id for c in listed] == ["unkept-live"]
