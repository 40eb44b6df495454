"""Quotas and model access: each limit refuses with quota_exceeded before anything is
stored, and lets go when it resets (the quota clock is moved, not waited for)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI, PermissionDeniedError, RateLimitError
from websockets.asyncio.client import connect as ws_connect

from tests.cluster import PASSWORD, accounts_of, run_cluster
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer, run_server
from tests.test_usage import ask, connect
from tests.wsclient import RawClient, of_type

NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def at(server: RunningServer, moment: datetime) -> None:
    server.services.engine.quotas.now = lambda: moment


async def conversations(client: RawClient) -> int:
    await client.send({"type": "conversations.list", "id": "l"})
    return len((await client.until(of_type("conversations")))[-1]["conversations"])


async def refused(client: RawClient, message: str = "one more") -> dict[str, Any]:
    frame = (await ask(client, message))[-1]
    assert frame["type"] == "error", frame
    return frame


async def test_tokens_per_day_refuses_then_resets_at_midnight(
    make_settings: SettingsFactory,
) -> None:
    """Past the day's tokens: the documented frame, nothing stored; next day it goes."""
    settings = make_settings(role_limits={"user": {"tokens_per_day": 5}})
    async with run_server(settings) as server:
        at(server, NOON)
        client = await connect(server)
        assert (await ask(client, "a few words to count"))[-1]["status"] == "completed"
        error = await refused(client)
        assert (error["code"], error["retryable"]) == ("quota_exceeded", False)
        assert error["message"] == "daily token quota reached, resets at 00:00 UTC"
        quota = error["quota"]
        assert quota["limit"] == "tokens_per_day"
        assert quota["allowed"] == 5
        assert quota["used"] > 5
        assert quota["remaining"] == 0
        assert quota["resets_at"] == "2026-12-05T00:00:00Z"
        assert error["retry_after"] == 12 * 3600
        assert await conversations(client) == 1
        # The ledger's day is the real one; the quota clock moves to the day after it.
        at(server, datetime.now(UTC) + timedelta(days=1))
        assert (await ask(client, "a new day"))[-1]["status"] == "completed"
        other = await connect(server, "bob")  # another owner has its own quota
        at(server, datetime.now(UTC))
        assert (await ask(other, "bob's turn"))[-1]["status"] == "completed"
        await client.close()
        await other.close()


async def test_cost_per_month_resets_on_the_first(make_settings: SettingsFactory) -> None:
    """A month's cost over the limit refuses until the 1st of the next month."""
    settings = make_settings(
        prices={"qwen-plus": {"input": 1e6, "output": 1e6}},
        role_limits={"user": {"cost_per_month": 1}},
    )
    async with run_server(settings) as server:
        client = await connect(server)
        assert (await ask(client, "costly"))[-1]["status"] == "completed"
        error = await refused(client)
        assert error["message"] == "monthly cost quota reached, resets on the 1st at 00:00 UTC"
        assert error["quota"]["limit"] == "cost_per_month"
        assert error["quota"]["allowed"] == 1
        today = datetime.now(UTC)
        first = (today.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
        assert error["quota"]["resets_at"] == first.strftime("%Y-%m-%dT00:00:00Z")
        at(server, first)
        assert (await ask(client, "a new month"))[-1]["status"] == "completed"
        await client.close()


async def test_messages_per_day_refuses_the_next_reply(make_settings: SettingsFactory) -> None:
    """The day's replies count ledger rows; the next one is refused, nothing stored."""
    async with run_server(make_settings(role_limits={"user": {"messages_per_day": 1}})) as server:
        client = await connect(server)
        assert (await ask(client, "one"))[-1]["status"] == "completed"
        error = await refused(client)
        assert error["message"] == "daily message quota reached, resets at 00:00 UTC"
        assert error["quota"] | {"resets_at": None} == {
            "limit": "messages_per_day",
            "allowed": 1,
            "used": 1,
            "remaining": 0,
            "resets_at": None,
        }
        assert await conversations(client) == 1
        await client.close()


async def test_concurrent_replies_refuse_until_one_ends(make_settings: SettingsFactory) -> None:
    """concurrent_replies refuses while the account streams its maximum, not after."""
    async with run_server(make_settings(role_limits={"user": {"concurrent_replies": 1}})) as server:
        client = await connect(server)
        await client.send({"type": "chat.send", "message": "long [tokens=400] [delay=10]"})
        started = (await client.until(of_type("reply.started")))[-1]
        error = await refused(client)
        assert error["message"] == (
            "at most 1 answers can stream at once; wait for one to finish or cancel one"
        )
        assert error["quota"] == {
            "limit": "concurrent_replies",
            "allowed": 1,
            "used": 1,
            "remaining": 0,
            "resets_at": None,
        }
        assert await conversations(client) == 1
        await client.send({"type": "chat.cancel", "message_id": started["message_id"]})
        await client.until(of_type("reply.done"))
        assert (await ask(client, "now")).pop()["status"] == "completed"
        await client.close()


async def add_user(database_url: str, name: str, **fields: Any) -> str:
    async with accounts_of(database_url) as accounts:
        await accounts.add_user(name, PASSWORD, **fields)
        return (await accounts.create_token(name, "tests"))[1]


async def open_as(server: RunningServer, token: str) -> RawClient:
    client = RawClient(
        await ws_connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    )
    assert (await client.recv())["type"] == "hello"
    return client


async def test_an_own_null_lifts_the_role_limit(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """An account's own limit of null lifts its role's; an own number overrides it."""
    admin = await add_user(database_url, "root")  # the first account: an admin, no limits
    lifted = await add_user(database_url, "free", limits={"messages_per_day": None})
    tighter = await add_user(database_url, "tight", limits={"messages_per_day": 1})
    plain = await add_user(database_url, "plain")
    settings = make_settings(role_limits={"user": {"messages_per_day": 2}})
    async with run_server(settings) as server:
        for token, allowed in ((admin, None), (lifted, None), (tighter, 1), (plain, 2)):
            client = await open_as(server, token)
            for n in range(3):
                frame = (await ask(client, f"message {n}"))[-1]
                if allowed is not None and n >= allowed:
                    assert frame["code"] == "quota_exceeded"
                    assert frame["quota"]["allowed"] == allowed
                else:
                    assert frame["status"] == "completed"
            await client.close()


async def test_the_api_answers_429_with_retry_after_and_403_for_a_model(
    make_settings: SettingsFactory,
) -> None:
    """/v1: a quota is 429 (OpenAI's rate_limit_error, Retry-After, the quota member); a
    model the role may not use is 403 and left out of /v1/models."""
    settings = make_settings(
        role_limits={"user": {"messages_per_day": 1}}, role_models={"user": ["qwen-plus"]}
    )
    async with run_server(settings) as server:
        api = AsyncOpenAI(base_url=server.http_url + "/v1", api_key="carol", max_retries=0)
        listed = [model.id async for model in api.models.list()]
        assert listed == ["qwen-plus"]
        with pytest.raises(PermissionDeniedError) as denied:
            await api.chat.completions.create(
                model="qwen-max", messages=[{"role": "user", "content": "hi"}]
            )
        assert denied.value.status_code == 403
        assert denied.value.code == "model_not_allowed"
        await api.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(RateLimitError) as limited:
            await api.chat.completions.create(
                model="qwen-plus", messages=[{"role": "user", "content": "again"}]
            )
        response = limited.value.response
        assert int(response.headers["Retry-After"]) > 0
        body = response.json()["error"]
        assert (body["type"], body["code"]) == ("rate_limit_error", "quota_exceeded")
        assert body["quota"]["limit"] == "messages_per_day"
        await api.close()


async def test_role_models_refuse_on_the_socket_and_filter_its_list(
    make_settings: SettingsFactory,
) -> None:
    """The models frame lists the role's models only; another is a model_not_allowed
    error frame and nothing is stored."""
    async with run_server(make_settings(role_models={"user": ["qwen-plus"]})) as server:
        client = await connect(server)
        await client.send({"type": "models.list", "id": "m"})
        models = (await client.until(of_type("models")))[-1]["models"]
        assert [model["id"] for model in models] == ["qwen-plus"]
        assert (await ask(client, "hi"))[-1]["status"] == "completed"
        await client.close()
    async with run_server(make_settings(role_models={"user": ["qwen-max"]})) as server:
        client = await connect(server, "dave")
        await client.send({"type": "chat.send", "id": "s", "message": "hi"})
        error = (await client.until(of_type("error")))[-1]
        assert (error["code"], error["id"]) == ("model_not_allowed", "s")
        assert await conversations(client) == 0
        await client.close()


@pytest.mark.scaleout
async def test_concurrent_replies_hold_across_two_processes(
    tmp_path: Path, postgres_url: str, fake: FakeUpstream
) -> None:
    """A reply streaming in one process counts against the account's concurrent_replies
    in the other."""
    async with run_cluster(
        tmp_path,
        postgres_url,
        fake.dashscope_base_url,
        count=2,
        role_limits='{"admin": {"concurrent_replies": 1}}',
    ) as cluster:
        first, second = [
            RawClient(await ws_connect(server.ws_url, additional_headers=cluster.headers))
            for server in cluster.servers
        ]
        for client in (first, second):
            assert (await client.recv())["type"] == "hello"
        await first.send({"type": "chat.send", "message": "long [tokens=400] [delay=20]"})
        started = (await first.until(of_type("reply.started")))[-1]
        error = await refused(second)
        assert error["code"] == "quota_exceeded"
        assert error["quota"]["limit"] == "concurrent_replies"
        await first.send({"type": "chat.cancel", "message_id": started["message_id"]})
        await first.until(of_type("reply.done"))
        assert (await ask(second, "now")).pop()["status"] == "completed"
        await first.close()
        await second.close()


async def test_concurrent_replies_hold_for_sends_at_the_same_moment(
    make_settings: SettingsFactory,
) -> None:
    """Sends that arrive together (from several sockets of the account, each opening a
    conversation) are counted together: with concurrent_replies 1, one starts and the
    others are refused."""
    async with run_server(make_settings(role_limits={"user": {"concurrent_replies": 1}})) as server:
        clients = [await connect(server) for _ in range(4)]
        for client in clients:
            await client.send(
                {"type": "chat.send", "id": "s", "message": "long [tokens=400] [delay=10]"}
            )
        answers = [
            (
                await client.until(
                    lambda f: f["type"] in ("reply.started", "error") and f.get("id") == "s"
                )
            )[-1]
            for client in clients
        ]
        started = [frame for frame in answers if frame["type"] == "reply.started"]
        assert len(started) == 1, answers
        assert {frame["code"] for frame in answers if frame["type"] == "error"} == {
            "quota_exceeded"
        }
        assert await conversations(clients[0]) == 1
        await clients[0].send({"type": "chat.cancel", "message_id": started[0]["message_id"]})
        await clients[0].until(of_type("reply.done"))
        for client in clients:
            await client.close()
