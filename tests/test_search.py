"""Full-text search: the index written with the messages, what a query finds, the frame."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from liaotian.errors import StoreConflict
from liaotian.replies.status import ReplyStatus
from liaotian.store import ReplyOutcome, Store, create_engine, search
from liaotian.store.migrate import alembic_config, upgrade
from liaotian.store.repository import NewReply, Partial, SearchResult, conversations, messages
from liaotian.store.search_text import parse_query, snippet
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.test_chat import chat, connect
from tests.test_chat_cli import run_cli, server_url
from tests.wsclient import of_type


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The store on a new database brought up to the current schema."""
    await asyncio.to_thread(upgrade, database_url)
    store = Store(create_engine(database_url))
    yield store
    await store.close()


async def exchange(
    store: Store, owner: str, conversation_id: str, question: str, answer: str = "ok"
) -> tuple[str, str]:
    """A stored question and its completed answer; (user message id, reply id)."""
    begun = await store.begin_reply(new_reply(owner, conversation_id, question))
    await store.finish_reply(begun.reply_id, ReplyOutcome(ReplyStatus.COMPLETED, answer))
    return begun.user_message_id, begun.reply_id


def new_reply(owner: str, conversation_id: str, question: str) -> NewReply:
    return NewReply(
        owner=owner,
        conversation_id=conversation_id,
        message=question,
        model="qwen-plus",
        history_messages=10,
        history_chars=10_000,
        create=True,
        title=conversation_id,
    )


async def found(store: Store, owner: str, query: str) -> list[SearchResult]:
    return await store.search(owner, query, limit=20)


async def found_ids(store: Store, owner: str, query: str) -> list[tuple[str, str | None]]:
    """(conversation id, message id) of each result."""
    return [(r.conversation.id, r.message_id) for r in await found(store, owner, query)]


async def index_rows(store: Store) -> int:
    """Rows in both index tables."""

    def count(c: sa.Connection) -> int:
        return sum(
            int(c.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)
            for table in ("message_search", "conversation_search")
        )

    return await store.database.run(count)


# -- what a query finds ------------------------------------------------------------------


async def test_a_two_character_chinese_word_is_found_inside_a_sentence(store: Store) -> None:
    """协议 is found in the middle of a longer Chinese sentence, with no spaces around it."""
    user_id, _ = await exchange(store, "alice", "c1", "我们今天讨论网络协议的设计问题")
    assert await found_ids(store, "alice", "协议") == [("c1", user_id)]


async def test_chinese_characters_that_are_not_adjacent_do_not_match(store: Store) -> None:
    """协 and 议 apart (协商议题) do not make 协议."""
    await exchange(store, "alice", "c1", "我们协商议题")
    assert await found_ids(store, "alice", "协议") == []


async def test_english_words_match_by_prefix_in_any_case(store: Store) -> None:
    """websock and GREA find "WebSockets are Great"; the middle of a word does not."""
    _, reply_id = await exchange(store, "alice", "c1", "hi", "WebSockets are Great")
    assert await found_ids(store, "alice", "websock GREA") == [("c1", reply_id)]
    assert await found_ids(store, "alice", "sockets") == []


async def test_every_word_of_the_query_must_match(store: Store) -> None:
    """Two words: a message with only one of them is not found."""
    await exchange(store, "alice", "c1", "apples and pears")
    await exchange(store, "alice", "c2", "apples alone")
    assert [conversation for conversation, _ in await found_ids(store, "alice", "apple pear")] == [
        "c1"
    ]


async def test_diacritics_and_width_do_not_matter(store: Store) -> None:
    """Café is found by cafe, and full-width ＡＢＣ by abc."""
    user_id, _ = await exchange(store, "alice", "c1", "Café ＡＢＣ")
    assert await found_ids(store, "alice", "cafe abc") == [("c1", user_id)]


async def test_query_syntax_is_searched_as_text(store: Store) -> None:
    """FTS5 and tsquery operators and quotes are words or nothing, never syntax errors."""
    user_id, _ = await exchange(store, "alice", "c1", "alpha OR beta NEAR gamma")
    for query in (
        "alpha OR",
        '"alpha" NEAR(',
        "alpha & !beta",
        "alpha:* | 'gam",
        "alpha*",
        "-alpha",
    ):
        assert await found_ids(store, "alice", query) == [("c1", user_id)], query
    for query in ('"', "*", "&|!():'", "AND"):
        assert await found_ids(store, "alice", query) == [], query


async def test_one_result_per_conversation_with_its_newest_match(store: Store) -> None:
    """Two matching messages in one conversation: one result, the newer message."""
    await exchange(store, "alice", "c1", "kiwi first", "something")
    second, _ = await exchange(store, "alice", "c1", "kiwi second", "something")
    assert await found_ids(store, "alice", "kiwi") == [("c1", second)]


async def test_many_matches_in_one_conversation_do_not_hide_the_others(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More matches in the newest conversation than are read newest-first: the older
    conversation is still found (all matches are then grouped)."""
    monkeypatch.setattr(search, "RECENT_WINDOW", 2)
    await exchange(store, "alice", "older", "ferret")
    for _ in range(2):
        await exchange(store, "alice", "newer", "ferret", "ferret again")
    order = [conversation for conversation, _ in await found_ids(store, "alice", "ferret")]
    assert order == ["newer", "older"]


async def test_title_matches_come_first_then_the_newest(store: Store) -> None:
    """A conversation whose title matches ranks above newer message-only matches."""
    await exchange(store, "alice", "mango talk", "about fruit mango")
    await exchange(store, "alice", "older", "mango here")
    await exchange(store, "alice", "newer", "mango there")
    order = [conversation for conversation, _ in await found_ids(store, "alice", "mango")]
    assert order == ["mango talk", "newer", "older"]


# -- what is indexed, and when -----------------------------------------------------------


async def test_a_user_message_is_found_at_once(store: Store) -> None:
    """The question is searchable as soon as it is stored, while its answer streams."""
    begun = await store.begin_reply(new_reply("alice", "c1", "zebra crossing"))
    assert await found_ids(store, "alice", "zebra") == [("c1", begun.user_message_id)]


async def test_an_answer_is_found_when_it_ends_not_while_it_streams(store: Store) -> None:
    """Checkpointed partial text is not indexed; the final text is."""
    begun = await store.begin_reply(new_reply("alice", "c1", "question"))
    await store.checkpoint([Partial(begun.reply_id, "giraffe partial")])
    assert await found_ids(store, "alice", "giraffe") == []
    await store.finish_reply(
        begun.reply_id, ReplyOutcome(ReplyStatus.COMPLETED, "giraffe complete")
    )
    assert await found_ids(store, "alice", "giraffe") == [("c1", begun.reply_id)]


async def test_an_answer_interrupted_at_start_up_is_indexed(store: Store) -> None:
    """A reply left streaming by a crash keeps its checkpointed text, searchable."""
    begun = await store.begin_reply(new_reply("alice", "c1", "question"))
    await store.checkpoint([Partial(begun.reply_id, "okapi so far")])
    assert await store.interrupt_streaming() == 1
    assert await found_ids(store, "alice", "okapi") == [("c1", begun.reply_id)]


async def test_a_failed_transaction_leaves_no_index_row(store: Store) -> None:
    """begin_reply refused as a conflict (a reply streams) indexes nothing of its message."""
    await store.begin_reply(new_reply("alice", "c1", "first"))
    before = await index_rows(store)
    with pytest.raises(StoreConflict):
        await store.begin_reply(new_reply("alice", "c1", "walrus second"))
    assert await found_ids(store, "alice", "walrus") == []
    assert await index_rows(store) == before


async def insert_sibling(store: Store, of_message: str, text: str) -> str:
    """A user message beside ``of_message`` (same parent), indexed as the store does."""
    sibling_id = f"sibling-{of_message}"

    def work(c: sa.Connection) -> None:
        row = c.execute(sa.select(messages).where(messages.c.id == of_message)).one()
        now = datetime.now(UTC)
        c.execute(
            sa.insert(messages).values(
                id=sibling_id,
                conversation_pk=row.conversation_pk,
                parent_pk=row.parent_pk,
                role="user",
                content=text,
                status="completed",
                created_at=now,
                updated_at=now,
            )
        )
        search.index_message(c, sibling_id, text)

    await store.database.run(work)
    return sibling_id


async def make_path(store: Store, conversation_id: str, message_ids: list[str]) -> None:
    """Link ``message_ids`` as one path (each the parent of the next), the last active."""

    def work(c: sa.Connection) -> None:
        pks = [
            c.scalar(sa.select(messages.c.pk).where(messages.c.id == message_id))
            for message_id in message_ids
        ]
        for parent, child in zip([None, *pks], pks, strict=False):
            c.execute(sa.update(messages).where(messages.c.pk == child).values(parent_pk=parent))
        c.execute(
            sa.update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(active_message_pk=pks[-1])
        )

    await store.database.run(work)


async def test_every_branch_is_searched_and_says_whether_it_is_active(store: Store) -> None:
    """A message on an inactive branch is found, marked off the active path; the active
    branch's message is marked on it."""
    user_id, reply_id = await exchange(store, "alice", "c1", "lemur one", "answer")
    await make_path(store, "c1", [user_id, reply_id])
    sibling = await insert_sibling(store, user_id, "lemur two")
    results = await found(store, "alice", "lemur two")
    assert [(r.message_id, r.on_active_path) for r in results] == [(sibling, False)]
    results = await found(store, "alice", "lemur one")
    assert [(r.message_id, r.on_active_path) for r in results] == [(user_id, True)]


async def test_archived_conversations_are_searched(store: Store) -> None:
    """Archiving hides a conversation from the list, not from search."""
    user_id, _ = await exchange(store, "alice", "c1", "narwhal")
    await store.database.run(
        lambda c: c.execute(
            sa.update(conversations).where(conversations.c.id == "c1").values(archived=True)
        )
    )
    results = await found(store, "alice", "narwhal")
    assert [(r.message_id, r.conversation.archived) for r in results] == [(user_id, True)]


async def test_a_deleted_conversation_leaves_results_and_index(store: Store) -> None:
    """After delete, nothing of it is found and the index tables hold none of its rows."""
    await exchange(store, "alice", "c1", "penguin", "penguin answer")
    assert await index_rows(store) == 3  # title, question, answer
    await store.delete_conversation("alice", "c1")
    assert await found_ids(store, "alice", "penguin") == []
    assert await found_ids(store, "alice", "c1") == []
    assert await index_rows(store) == 0


async def test_a_renamed_title_is_found(store: Store) -> None:
    """Rename: the new title matches (a title-only match has no message), the old not."""
    await exchange(store, "alice", "c1", "question")
    await store.rename_conversation("alice", "c1", "Quokka 旅行 plans")
    assert await found_ids(store, "alice", "quokka 旅行") == [("c1", None)]
    assert await found_ids(store, "alice", "c1") == []


async def test_another_owners_messages_and_titles_are_never_found(store: Store) -> None:
    """Same words in bob's conversation: alice finds only her own."""
    user_id, _ = await exchange(store, "alice", "shared words", "tapir 中文")
    await exchange(store, "bob", "shared words bob", "tapir 中文")
    assert await found_ids(store, "alice", "tapir 中文") == [("shared words", user_id)]
    assert await found_ids(store, "alice", "bob") == []
    assert await found_ids(store, "carol", "tapir") == []


async def test_the_snippet_marks_the_match_in_the_original_text(store: Store) -> None:
    """Pieces are plain text, joined they are the original around the match; the match is
    marked as written (its case kept)."""
    text = "Intro words. " * 30 + "Then the WebSocket 协议 appears here." + " Outro." * 30
    await exchange(store, "alice", "c1", text)
    (result,) = await found(store, "alice", "websocket 协议")
    marked = [piece["text"] for piece in result.snippet if piece.get("match")]
    assert marked == ["WebSocket", "协议"]
    joined = "".join(str(piece["text"]) for piece in result.snippet)
    assert "Then the WebSocket 协议 appears here." in joined
    assert (joined[0], joined[-1]) == ("…", "…")
    assert len(joined) < 200


def test_a_prefix_match_marks_only_the_matched_beginning() -> None:
    """The query sock within Socket: only the matched start of the word is marked."""
    pieces = snippet("one Sockets two", parse_query("sock"))
    assert pieces == [{"text": "one "}, {"text": "Sock", "match": True}, {"text": "ets two"}]


# -- migration ---------------------------------------------------------------------------


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
    sa.column("pk"),
    sa.column("id"),
    sa.column("conversation_pk"),
    sa.column("parent_pk"),
    sa.column("role"),
    sa.column("content"),
    sa.column("status"),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


async def seed_revision_0006(database_url: str) -> None:
    """A database at revision 0006: bob's conversation "Old 标题" with an answered
    question and a reply still streaming."""
    await asyncio.to_thread(upgrade, database_url, "0006")
    engine = create_engine(database_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"pk": 1, "id": "u1", "parent_pk": None, "role": "user", "content": "旧的协议问题"},
        {"pk": 2, "id": "a1", "parent_pk": 1, "role": "assistant", "content": "An ibis answer"},
        {"pk": 3, "id": "u2", "parent_pk": 2, "role": "user", "content": "more"},
        {"pk": 4, "id": "a2", "parent_pk": 3, "role": "assistant", "content": "streamed heron"},
    ]
    try:
        async with engine.begin() as connection:
            await connection.execute(_owners.insert().values(id="bob", created_at=now))
            await connection.execute(
                _conversations.insert().values(
                    pk=1, id="old", owner_id="bob", title="Old 标题", created_at=now, updated_at=now
                )
            )
            for row in rows:
                status = "streaming" if row["id"] == "a2" else "completed"
                await connection.execute(
                    _messages.insert().values(
                        conversation_pk=1, status=status, created_at=now, updated_at=now, **row
                    )
                )
    finally:
        await engine.dispose()


async def test_the_migration_indexes_existing_messages_and_titles(database_url: str) -> None:
    """0006 → 0007 indexes final messages and titles (not a streaming reply); it can be
    undone."""
    await seed_revision_0006(database_url)
    await asyncio.to_thread(upgrade, database_url)
    store = Store(create_engine(database_url))
    try:
        assert await found_ids(store, "bob", "协议") == [("old", "u1")]
        assert await found_ids(store, "bob", "ibis") == [("old", "a1")]
        assert await found_ids(store, "bob", "标题") == [("old", None)]
        assert await found_ids(store, "bob", "heron") == []
    finally:
        await store.close()
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0006")


# -- the frame and the clients -----------------------------------------------------------


async def test_the_search_frame_finds_a_sent_message_and_its_answer(
    server: RunningServer,
) -> None:
    """Over a real server: a question and the fake's echo answer are found; the result has
    the protocol's shape."""
    client = await connect(server)
    frames = await chat(client, "tell me about 协议 design")
    conversation_id = frames[0]["conversation_id"]
    await client.send({"type": "search", "id": 7, "query": "协议 DESIGN"})
    (answer,) = await client.until(of_type("search.results"))
    assert (answer["id"], answer["query"]) == (7, "协议 DESIGN")
    (result,) = answer["results"]
    assert result["conversation"]["id"] == conversation_id
    assert result["message_id"] == frames[-1]["message_id"]  # the answer is the newest
    assert (result["role"], result["on_active_path"]) == ("assistant", True)
    assert [p["text"] for p in result["snippet"] if p.get("match")] == ["协议", "design"]
    await client.close()


async def test_the_search_frame_is_owner_scoped(server: RunningServer) -> None:
    """Another owner searching the same words gets an empty list."""
    alice = await connect(server, "alice")
    await chat(alice, "capybara facts")
    bob = await connect(server, "bob")
    await bob.send({"type": "search", "id": 1, "query": "capybara"})
    (answer,) = await bob.until(of_type("search.results"))
    assert answer["results"] == []
    await alice.close()
    await bob.close()


async def test_searches_are_rate_limited_per_owner(make_settings: SettingsFactory) -> None:
    """Over searches_per_minute, a search is refused with rate_limited and retry_after; the
    connection goes on, and another owner still searches."""
    async with run_server(make_settings(searches_per_minute=2)) as server:
        alice = await connect(server, "alice")
        for request_id in (1, 2):
            await alice.send({"type": "search", "id": request_id, "query": "anything"})
            await alice.until(of_type("search.results"))
        await alice.send({"type": "search", "id": 3, "query": "anything"})
        (error,) = await alice.until(of_type("error"))
        assert (error["id"], error["code"]) == (3, "rate_limited")
        assert error["retry_after"] > 0
        await alice.send({"type": "ping", "id": 4})
        await alice.until(of_type("pong"))
        bob = await connect(server, "bob")
        await bob.send({"type": "search", "id": 1, "query": "anything"})
        await bob.until(of_type("search.results"))
        await alice.close()
        await bob.close()


async def test_an_empty_query_is_an_invalid_frame(server: RunningServer) -> None:
    """query "" is refused with invalid_frame; the connection goes on."""
    client = await connect(server)
    await client.send({"type": "search", "id": 1, "query": ""})
    (error,) = await client.until(of_type("error"))
    assert error["code"] == "invalid_frame"
    await client.send({"type": "ping", "id": 2})
    await client.until(of_type("pong"))
    await client.close()


async def test_the_python_client_returns_typed_results(server: RunningServer) -> None:
    """Client.search returns the results as sent."""
    from liaotian.client import Client

    async with Client(server.http_url, client_id="alice") as client:
        reply = await client.send("hedgehog question")
        await reply.result()
        results = await client.search("hedgehog")
    assert [r["message_id"] for r in results] == [reply.message_id]
    assert results[0]["conversation"]["title"] == "hedgehog question"


async def test_the_cli_prints_title_and_snippet(tmp_path: Path, server: RunningServer) -> None:
    """liaotian search prints the conversation's title, id and the matching text; exit 0;
    nothing found exits 1 with a line on stderr."""
    from liaotian.client import Client

    async with Client(server.http_url, client_id="cli") as client:
        reply = await client.send("armadillo 装甲")
        await reply.result()
    url = server_url(server)
    run = await run_cli(tmp_path, "--server", url, "--client-id", "cli", "装甲", command="search")
    assert run.returncode == 0, run.stderr
    assert "armadillo 装甲" in run.stdout.splitlines()[0]
    assert reply.conversation_id in run.stdout.splitlines()[0]
    assert "装甲" in run.stdout.splitlines()[1]
    run = await run_cli(
        tmp_path, "--server", url, "--client-id", "cli", "nothing", command="search"
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert "nothing found" in run.stderr
