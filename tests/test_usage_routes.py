"""GET /account/usage and GET /admin/usage: their shapes, and who may see what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from tests.cluster import PASSWORD
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.test_quotas import add_user, open_as
from tests.test_usage import ask

LIMIT_KEYS = {"allowed", "used", "remaining", "resets_at"}
TOTAL_KEYS = {
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "replies",
    "cost",
    "estimated",
}


@pytest.fixture
async def tokens(database_url: str) -> dict[str, str]:
    """alice (the first account: an admin) and bob (a user)."""
    return {name: await add_user(database_url, name) for name in ("alice", "bob")}


@pytest.fixture
async def served(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> AsyncIterator[RunningServer]:
    settings = make_settings(
        prices={"qwen-plus": {"input": 1.0, "output": 2.0}},
        role_limits={"user": {"tokens_per_day": 100000, "messages_per_day": 50}},
    )
    async with run_server(settings) as server:
        for name, replies in (("alice", 2), ("bob", 1)):
            client = await open_as(server, tokens[name])
            for n in range(replies):
                assert (await ask(client, f"{name} {n}"))[-1]["status"] == "completed"
            await client.close()
        yield server


async def get(
    server: RunningServer, path: str, token: str | None = None, **headers: str
) -> tuple[int, Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.http_url + path, headers=headers) as response,
    ):
        return response.status, await response.json()


async def cookie_of(server: RunningServer, name: str) -> str:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
        session.post(
            f"{server.http_url}/auth/login", json={"user": name, "password": PASSWORD}
        ) as response,
    ):
        assert response.status == 200
        return "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)


async def test_account_usage_is_the_callers_own(
    served: RunningServer, tokens: dict[str, str]
) -> None:
    """Each account sees its own days, models and limits, never another's."""
    status, body = await get(served, "/account/usage?days=7", tokens["bob"])
    assert status == 200
    assert set(body) == {"user", "role", "currency", "limits", "days", "models"}
    assert (body["user"], body["role"], body["currency"]) == ("bob", "user", "USD")
    assert set(body["limits"]) == {
        "tokens_per_day",
        "messages_per_day",
        "cost_per_month",
        "concurrent_replies",
    }
    assert all(set(limit) == LIMIT_KEYS for limit in body["limits"].values())
    messages = body["limits"]["messages_per_day"]
    assert (messages["allowed"], messages["used"], messages["remaining"]) == (50, 1, 49)
    assert body["limits"]["cost_per_month"]["allowed"] is None
    today = datetime.now(UTC).date().isoformat()
    (day,) = body["days"]
    assert set(day) == {"day", *TOTAL_KEYS}
    assert day["day"] == today
    assert day["replies"] == 1
    assert day["cost"] > 0
    assert day["estimated"] is False
    (model,) = body["models"]
    assert set(model) == {"model", *TOTAL_KEYS}
    assert model["model"] == "qwen-plus"
    _, alices = await get(served, "/account/usage", tokens["alice"])
    assert (alices["user"], alices["role"], alices["days"][0]["replies"]) == ("alice", "admin", 2)


async def test_admin_usage_groups_by_day_user_and_model(
    served: RunningServer, tokens: dict[str, str]
) -> None:
    today = datetime.now(UTC).date().isoformat()
    common = {"tokens", "input_tokens", "output_tokens", "replies", "cost"}
    status, body = await get(served, "/admin/usage?days=30&by=day", tokens["alice"])
    assert status == 200
    assert (body["currency"], body["by"]) == ("USD", "day")
    (row,) = body["rows"]
    assert set(row) == {"day", *common}
    assert (row["day"], row["replies"]) == (today, 3)
    assert row["tokens"] == row["input_tokens"] + row["output_tokens"]
    _, by_user = await get(served, "/admin/usage?by=user", tokens["alice"])
    assert {r["user"]: r["replies"] for r in by_user["rows"]} == {"alice": 2, "bob": 1}
    assert all(set(r) == {"day", "user", *common} for r in by_user["rows"])
    _, by_model = await get(served, "/admin/usage?by=model", tokens["alice"])
    assert [(r["model"], r["replies"]) for r in by_model["rows"]] == [("qwen-plus", 3)]


async def test_admin_usage_is_for_admins_only(
    served: RunningServer, tokens: dict[str, str]
) -> None:
    """A user's token and cookie get 403, no credential 401; a cross-site page is not
    an admin either."""
    status, body = await get(served, "/admin/usage", tokens["bob"])
    assert (status, body["error"]["code"]) == (403, "forbidden")
    bob_cookie = await cookie_of(served, "bob")
    status, body = await get(served, "/admin/usage", Cookie=bob_cookie)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await get(served, "/admin/usage", Origin="https://evil.example")
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, _ = await get(served, "/admin/usage", Cookie=bob_cookie, Origin="https://evil.example")
    assert status == 403
    status, _ = await get(served, "/account/usage")
    assert status == 401
    alice_cookie = await cookie_of(served, "alice")
    status, body = await get(served, "/admin/usage", Cookie=alice_cookie)
    assert status == 200
    assert body["rows"]


@pytest.mark.parametrize(
    "query",
    [
        "days=0",
        "days=367",
        "days=x",
        "days=-1",
        "by=week",
        "by=day&days=1.5",
        "days=%C2%B2",  # "²", a digit to str.isdigit that int() refuses
        "days=" + "1" * 5000,  # more digits than int() converts
    ],
)
async def test_bad_parameters_are_a_clear_400(
    served: RunningServer, tokens: dict[str, str], query: str
) -> None:
    status, body = await get(served, f"/admin/usage?{query}", tokens["alice"])
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert body["error"]["message"]


async def test_summaries_give_effective_limits_and_today_for_many_accounts(
    served: RunningServer, database_url: str
) -> None:
    """What the admin's list of accounts shows, for several accounts in one call."""
    summaries = await served.services.engine.quotas.summaries(
        [
            (1, "admin", None),
            (2, "user", {"messages_per_day": None, "cost_per_month": 5}),
            (99, "user", None),
        ]
    )
    assert summaries[1]["effective"] == dict.fromkeys(
        ("tokens_per_day", "messages_per_day", "cost_per_month", "concurrent_replies")
    )
    assert summaries[2]["effective"] == {
        "tokens_per_day": 100000,
        "messages_per_day": None,
        "cost_per_month": 5,
        "concurrent_replies": None,
    }
    assert summaries[1]["today"]["replies"] == 2
    assert summaries[2]["today"]["replies"] == 1
    assert summaries[2]["today"]["tokens"] > 0
    assert summaries[2]["today"]["cost"] > 0
    assert summaries[99]["today"] == {"tokens": 0, "replies": 0, "cost": None}
