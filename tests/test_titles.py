"""Background conversation titles (liaotian.titles), against a real server and the fake
upstream: a title request is a system message mentioning "title" and the user message
holding the conversation, so the fake's ``[title=…]`` directives in the first message
script it (tests/fake_upstream.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liaotian.providers import ChatRequest, ModelInfo, Provider, ProviderRegistry, StreamItem
from liaotian.settings import Settings
from liaotian.titles import Titler, clean_title, first_line_title
from tests.cluster import run_cluster
from tests.conftest import SettingsFactory, fresh_postgres_database
from tests.fake_upstream import (
    OPENAI_CHAT_PATH,
    FakeUpstream,
    RecordedRequest,
    asks_for_title,
    expected_reply,
)
from tests.server_harness import RunningServer, run_server
from tests.test_chat import chat, connect
from tests.test_manage import request
from tests.test_scaleout import connect as cluster_connect
from tests.waiting import eventually
from tests.wsclient import Frame, RawClient, of_type, reply_text


@pytest.fixture
async def titled(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    """A server whose title model is the conversation's own (the default, ``auto``)."""
    async with run_server(make_settings(title_model="auto")) as running:
        yield running


def titles(server: RunningServer, outcome: str) -> float:
    """How many titles ended with ``outcome`` (written, kept, failed, dropped)."""
    value = server.services.metrics.registry.get_sample_value(
        "liaotian_titles_total", {"outcome": outcome}
    )
    return value or 0.0


def title_requests(fake: FakeUpstream) -> list[RecordedRequest]:
    """The title requests the fake received, oldest first."""
    return [
        r
        for r in fake.requests
        if isinstance(r.body, dict)
        and asks_for_title(r.body.get("messages") or r.body.get("input", {}).get("messages", []))
    ]


async def title_update(client: RawClient, conversation_id: str) -> Frame:
    """The next conversation.updated of ``conversation_id`` this client gets."""
    frames = await client.until(
        lambda f: f["type"] == "conversation.updated" and f["conversation"]["id"] == conversation_id
    )
    return frames[-1]["conversation"]


async def conversation(client: RawClient, conversation_id: str) -> Frame:
    return await request(
        client,
        {"type": "conversation.history", "conversation_id": conversation_id},
        "conversation.history",
    )


async def test_a_title_is_generated_after_the_first_answer_and_every_tab_gets_it(
    titled: RunningServer,
) -> None:
    """Both tabs get conversation.updated with the model's title, source generated."""
    first = await connect(titled)
    second = await connect(titled)
    frames = await chat(first, "Explain qubits [title=Quantum basics]")
    conversation_id = frames[0]["conversation_id"]
    assert frames[0]["title"] == "Explain qubits [title=Quantum basics]"
    for client in (first, second):
        updated = await title_update(client, conversation_id)
        assert (updated["title"], updated["title_source"]) == ("Quantum basics", "generated")
    history = await conversation(first, conversation_id)
    assert history["conversation"]["title"] == "Quantum basics"
    for client in (first, second):
        await client.close()


async def test_only_the_first_answer_asks_for_a_title(
    titled: RunningServer, fake: FakeUpstream
) -> None:
    """A second exchange in a titled conversation asks the model for no other title."""
    client = await connect(titled)
    conversation_id = (await chat(client, "hello [title=Greetings]"))[0]["conversation_id"]
    await title_update(client, conversation_id)
    await chat(client, "again [title=Other]", conversation_id=conversation_id)
    assert titled.services.engine.titles.pending == 0
    assert fake.stats.title_requests == 1
    await client.close()


async def test_the_title_request_is_short_cold_and_without_thinking(
    titled: RunningServer, fake: FakeUpstream
) -> None:
    """Temperature 0, a small max_tokens, thinking off for a model that can switch it."""
    client = await connect(titled)
    conversation_id = (await chat(client, "hi [title=Hi]"))[0]["conversation_id"]
    await title_update(client, conversation_id)
    [asked] = title_requests(fake)
    parameters = asked.body["parameters"]
    assert asked.body["model"] == "qwen-plus"
    assert parameters["temperature"] == 0
    assert parameters["max_tokens"] <= 64
    assert parameters["enable_thinking"] is False
    await client.close()


async def test_the_title_request_is_not_stored_in_the_conversation(
    titled: RunningServer,
) -> None:
    """After the title lands, the conversation holds the user message and its answer only."""
    client = await connect(titled)
    frames = await chat(client, "just this [title=Only this]")
    conversation_id = frames[0]["conversation_id"]
    await title_update(client, conversation_id)
    history = await conversation(client, conversation_id)
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "just this [title=Only this]"),
        ("assistant", expected_reply("just this [title=Only this]")),
    ]
    await client.close()


async def test_a_rename_during_generation_wins(titled: RunningServer, fake: FakeUpstream) -> None:
    """The user's rename lands while the title model is answering: the rename stays."""
    client = await connect(titled)
    frames = await chat(client, "slow title [title=Generated] [title_hold=1]")
    conversation_id = frames[0]["conversation_id"]
    await fake.wait_for(lambda stats: stats.titles_held == 1)
    renamed = await request(
        client,
        {"type": "conversation.rename", "conversation_id": conversation_id, "title": "Mine"},
        "conversation.updated",
    )
    assert renamed["conversation"]["title_source"] == "user"
    fake.release_titles.set()
    await eventually(lambda: titles(titled, "kept") == 1)
    history = await conversation(client, conversation_id)
    assert (history["conversation"]["title"], history["conversation"]["title_source"]) == (
        "Mine",
        "user",
    )
    assert titles(titled, "written") == 0
    await client.close()


async def test_a_failing_title_model_leaves_the_title_and_the_reply(
    titled: RunningServer, fake: FakeUpstream
) -> None:
    """The title request fails (HTTP 500): the reply is complete and the title unchanged."""
    client = await connect(titled)
    prompt = "fine answer [title_fault=500]"
    frames = await chat(client, prompt)
    assert frames[-1]["status"] == "completed"
    assert reply_text(frames) == expected_reply(prompt)
    await eventually(lambda: titles(titled, "failed") == 1)
    history = await conversation(client, frames[0]["conversation_id"])
    assert (history["conversation"]["title"], history["conversation"]["title_source"]) == (
        prompt,
        "message",
    )
    assert fake.stats.title_requests >= 1
    await client.close()


async def test_a_named_title_model_writes_every_title(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """title_model names another model: it is asked, whatever answered."""
    async with run_server(make_settings(title_model="fake-mini")) as server:
        client = await connect(server)
        frames = await chat(client, "via qwen [title=From mini]")
        updated = await title_update(client, frames[0]["conversation_id"])
        assert updated["title"] == "From mini"
        [asked] = title_requests(fake)
        assert (asked.path, asked.body["model"]) == (OPENAI_CHAT_PATH, "fake-mini")
        await client.close()


async def test_off_keeps_the_first_message_and_asks_nothing(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """title_model off: the title is the first message on one line, no model is asked."""
    async with run_server(make_settings(title_model="off")) as server:
        client = await connect(server)
        frames = await chat(client, "first line\nsecond line [title=Never]")
        assert frames[0]["title"] == "first line second line [title=Never]"
        assert server.services.engine.titles.pending == 0  # scheduled before reply.done
        assert fake.stats.title_requests == 0
        await client.close()


async def test_first_line_titles_from_the_first_line_and_asks_nothing(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """title_model first-line: the title is the first non-blank line, no model is asked."""
    async with run_server(make_settings(title_model="first-line")) as server:
        client = await connect(server)
        frames = await chat(client, "\n  The subject  \nthe details [title=Never]")
        assert frames[0]["title"] == "The subject"
        assert server.services.engine.titles.pending == 0
        assert fake.stats.title_requests == 0
        await client.close()


async def test_shutdown_does_not_wait_for_a_title(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """A server stops while its title model has not answered; the title stays as it was."""
    async with asyncio.timeout(15):
        async with run_server(make_settings(title_model="auto")) as server:
            client = await connect(server)
            frames = await chat(client, "stop now [title=Late] [title_hold=1]")
            await fake.wait_for(lambda stats: stats.titles_held == 1)
            await client.close()
    assert titles(server, "cancelled") == 1
    # That server's store is closed: read with another one on the same database.
    async with run_server(make_settings()) as again:
        found = await again.services.store.get_conversation("alice", frames[0]["conversation_id"])
        assert (found.title, found.title_source) == (frames[0]["title"], "message")


class _Embedded(Provider):
    """A stand-in for the embedded model's provider (kind ``local``)."""

    kind = "local"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("tiny", self.name, "tiny")]

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        raise AssertionError("the embedded model is never asked for a title")
        yield ""  # pragma: no cover


def test_auto_with_the_embedded_model_takes_the_first_line() -> None:
    """auto: a conversation answered by the embedded model is titled by its first line."""
    settings = Settings(title_model="auto", local_enabled=False)
    registry = ProviderRegistry([_Embedded("local")], settings)
    titler = Titler(settings, None, registry, None, None)  # type: ignore[arg-type]
    assert titler.title_model("tiny") is None
    assert titler.initial_title("Line one\nline two", model_kind="local") == "Line one"
    assert titler.initial_title("Line one\nline two", model_kind="dashscope") == (
        "Line one line two"
    )


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Quantum basics", "Quantum basics"),
        ('"Quantum basics."', "Quantum basics"),
        ("**Title:** Quantum basics\nBecause the user asked…", "Quantum basics"),
        ("# 量子计算入门。", "量子计算入门"),
        ("标题：「量子计算入门」", "量子计算入门"),
        ("<think>hmm</think>\n\n  Spaced   out  title ", "Spaced out title"),
        ("   \n\n", ""),
        ("x" * 300, "x" * 199 + "…"),
    ],
)
def test_a_models_answer_is_cleaned_into_a_title(answer: str, title: str) -> None:
    """One line, no prefix, markdown, quotes or final punctuation, at most max_title_chars."""
    assert clean_title(answer, 200) == title


def test_a_first_line_title_is_cut_short() -> None:
    """A long first line is cut at 60 characters, ending with an ellipsis."""
    assert first_line_title("word " * 30) == ("word " * 12).strip()[:59].rstrip() + "…"


@pytest.mark.scaleout
async def test_a_title_reaches_the_owners_tabs_on_every_process(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """Two processes on PostgreSQL + Redis: the tab on the other process gets the title too."""
    async with (
        fresh_postgres_database() as database_url,
        run_cluster(
            tmp_path, database_url, fake.dashscope_base_url, count=2, title_model="auto"
        ) as cluster,
    ):
        sender = await cluster_connect(cluster, cluster.servers[0].ws_url)
        watcher = await cluster_connect(cluster, cluster.servers[1].ws_url)
        await sender.send({"type": "chat.send", "id": "s", "message": "far [title=Far away]"})
        [*_, done] = await sender.until(of_type("reply.done"))
        for client in (sender, watcher):
            updated = await title_update(client, done["conversation_id"])
            assert (updated["title"], updated["title_source"]) == ("Far away", "generated")
            await client.close()


async def test_titles_do_not_count_against_the_message_rate_limit(
    make_settings: SettingsFactory,
) -> None:
    """Two messages a minute: after a first message and its title, a second is still taken."""
    async with run_server(make_settings(title_model="auto", messages_per_minute=2)) as server:
        client = await connect(server)
        frames = await chat(client, "one [title=One]")
        await title_update(client, frames[0]["conversation_id"])
        second = await chat(client, "two")
        assert second[-1]["type"] == "reply.done"
        third = await chat(client, "three")
        assert (third[-1]["type"], third[-1]["code"]) == ("error", "rate_limited")
        await client.close()
