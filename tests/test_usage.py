"""The usage ledger: one row per ended reply, from every way in; idempotent; priced."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from openai import AsyncOpenAI
from sqlalchemy import Connection, select

from liaotian.cli import main
from liaotian.replies.status import ReplyStatus
from liaotian.store import ReplyOutcome
from liaotian.store.models import UsageRecord
from liaotian.store.usage import LedgerPolicy, estimate_tokens, insert_entry
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, count_input_tokens, reply_chunks
from tests.server_harness import RunningServer, run_server
from tests.wsclient import RawClient, of_type

PRICES = {"qwen-plus": {"input": 2.0, "output": 8.0, "cached_input": 0.5}}


async def ledger(server: RunningServer) -> list[Any]:
    """Every usage row, oldest first."""

    def work(c: Connection) -> list[Any]:
        return list(c.execute(select(UsageRecord.__table__).order_by(UsageRecord.pk)).all())

    return await server.services.store.database.run(work)


async def connect(server: RunningServer, owner: str = "alice") -> RawClient:
    client = await RawClient.open(f"{server.ws_url}?client_id={owner}")
    assert (await client.recv())["type"] == "hello"
    return client


async def ask(client: RawClient, message: str, **fields: object) -> list[dict[str, Any]]:
    """Send; the frames up to this reply's done (or the send's error)."""
    await client.send({"type": "chat.send", "id": "s", "message": message, **fields})
    frames = await client.until(
        lambda f: f["type"] in ("reply.started", "error") and f.get("id") == "s"
    )
    if frames[-1]["type"] == "error":
        return frames
    message_id = frames[-1]["message_id"]
    return frames + await client.until(of_type("reply.done", message_id=message_id))


def test_estimate_counts_cjk_characters_one_each_and_four_others_one() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好 abc") == 3


async def test_a_completed_socket_reply_is_counted_and_priced(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """The provider's counts, estimated false, cost from the price table (cached input at
    its own price); a model without a price has cost null."""
    async with run_server(make_settings(prices=PRICES)) as server:
        client = await connect(server)
        frames = await ask(client, "hello there [cached=3]")
        done = frames[-1]
        assert done["status"] == "completed"
        sent = fake.requests[-1].body["input"]["messages"]
        await ask(client, "no price here", model="qwen-max")
        rows = await ledger(server)
        await client.close()
    assert len(rows) == 2
    row = rows[0]
    assert row.message_id == done["message_id"]
    assert (row.owner_id, row.user_id, row.model) == ("alice", None, "qwen-plus")
    assert row.provider == "dashscope"
    assert row.status == "completed"
    assert not row.estimated
    assert row.input_tokens == count_input_tokens(sent)
    assert row.output_tokens == len(reply_chunks("hello there [cached=3]"))
    assert row.cached_tokens == 3
    assert row.day == datetime.now(UTC).date()
    expected = ((row.input_tokens - 3) * 2.0 + 3 * 0.5 + row.output_tokens * 8.0) / 1e6
    assert math.isclose(row.cost, expected)
    assert rows[1].model == "qwen-max"
    assert rows[1].cost is None


async def test_cancelled_and_failed_replies_are_estimated(server: RunningServer) -> None:
    """A cancelled reply counts what streamed and a failed one what was sent, marked
    estimated: cancelling does not dodge the ledger."""
    client = await connect(server)
    await client.send({"type": "chat.send", "id": "s", "message": "go [tokens=400] [delay=10]"})
    started = (await client.until(of_type("reply.started")))[-1]
    await client.until(of_type("reply.delta"))
    await client.send({"type": "chat.cancel", "message_id": started["message_id"]})
    cancelled = (await client.until(of_type("reply.done")))[-1]
    failed = (await ask(client, "boom [fault=stream_error]"))[-1]
    rows = {row.message_id: row for row in await ledger(server)}
    await client.close()
    assert cancelled["status"] == "cancelled"
    assert failed["status"] == "error"
    row = rows[cancelled["message_id"]]
    assert (row.status, row.estimated) == ("cancelled", True)
    stored = await server.services.store.reply_status("alice", row.message_id)
    assert stored is not None
    text = stored.content
    assert text
    assert row.output_tokens == estimate_tokens(text)
    assert row.input_tokens >= estimate_tokens("go [tokens=400] [delay=10]")
    error_row = rows[failed["message_id"]]
    assert (error_row.status, error_row.estimated) == ("error", True)
    assert error_row.input_tokens >= estimate_tokens("boom [fault=stream_error]")


async def test_seed_protocol_and_api_replies_are_counted(server: RunningServer) -> None:
    """The seed protocol and the OpenAI-compatible API leave rows like the page's."""
    seed = await RawClient.open(server.seed_url("seedling"))
    await seed.send({"message": "from the seed", "stream": True, "model": "qwen-plus"})
    await seed.until(lambda f: f["status"] in ("completed", "error"))
    await seed.close()
    api = AsyncOpenAI(base_url=server.http_url + "/v1", api_key="apiuser", max_retries=0)
    completion = await api.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": "from the api"}]
    )
    stream = await api.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": "streamed"}], stream=True
    )
    async for _ in stream:
        pass
    await api.close()
    rows = await ledger(server)
    by_owner: dict[str, list[Any]] = {}
    for row in rows:
        by_owner.setdefault(row.owner_id, []).append(row)
    assert [row.status for row in by_owner["seedling"]] == ["completed"]
    assert [row.status for row in by_owner["apiuser"]] == ["completed", "completed"]
    assert completion.usage is not None
    assert by_owner["apiuser"][0].input_tokens == completion.usage.prompt_tokens
    assert by_owner["apiuser"][0].output_tokens == completion.usage.completion_tokens


async def test_a_replayed_final_write_does_not_count_twice(server: RunningServer) -> None:
    """The final write of a reply already saved changes nothing; a second insert of the
    same message's row is ignored."""
    client = await connect(server)
    done = (await ask(client, "once"))[-1]
    await client.close()
    store = server.services.store
    policy = LedgerPolicy({}, lambda _model: "dashscope")
    entry = policy.entry(
        message_id=done["message_id"],
        owner="alice",
        model="qwen-plus",
        provider="dashscope",
        status="completed",
        counted=(1000, 1000, None, None),
        sent="",
        streamed="",
        reasoning=None,
    )
    outcome = ReplyOutcome(status=ReplyStatus.COMPLETED, content="again")
    assert not await store.finish_reply(done["message_id"], outcome, entry)
    await store.database.run(lambda c: insert_entry(c, entry))
    rows = await ledger(server)
    assert len(rows) == 1
    assert rows[0].input_tokens != 1000


async def test_the_usage_command_prints_the_ledger(
    server: RunningServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`liaotian usage` prints a table per day, per account or per model; bad input is a
    plain-words usage error."""
    client = await connect(server)
    await ask(client, "counted")
    await client.close()
    monkeypatch.setenv("LIAOTIAN_DATABASE_URL", database_url)
    assert await asyncio.to_thread(main, ["usage", "--days", "7", "--by", "model"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "day",
        "model",
        "tokens",
        "input_tokens",
        "output_tokens",
        "replies",
        "cost",
        "(USD)",
    ]
    (row,) = lines[1:]
    assert row.split()[1:2] == ["qwen-plus"]
    assert row.split()[-2:] == ["1", "-"]
    with pytest.raises(SystemExit) as bad:
        main(["usage", "--days", "0"])
    assert bad.value.code == 2
    assert "not a whole number from 1 to 366" in capsys.readouterr().err


async def test_a_reply_marked_interrupted_by_the_store_is_counted_once(
    server: RunningServer,
) -> None:
    """Replies a restart (or a dead process's lease) marks interrupted get an estimated
    row from their saved text; the engine's own final write then adds none."""
    client = await connect(server)
    await client.send({"type": "chat.send", "id": "s", "message": "long [tokens=300] [delay=10]"})
    started = (await client.until(of_type("reply.started")))[-1]
    message_id = started["message_id"]
    await client.until(of_type("reply.delta"))
    store = server.services.store
    assert await store.interrupt_streaming([message_id]) == 1
    await client.send({"type": "chat.cancel", "message_id": message_id})
    await client.until(of_type("reply.done", message_id=message_id))
    await client.close()
    (row,) = await ledger(server)
    assert (row.message_id, row.status, row.estimated) == (message_id, "interrupted", True)
    assert (row.model, row.provider) == ("qwen-plus", "dashscope")
    assert row.input_tokens == estimate_tokens("long [tokens=300] [delay=10]")
