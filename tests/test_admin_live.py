"""The admin's live view: provider health, the replies streaming now, cancelling any of them
(/admin/providers, /admin/replies, /admin/replies/{id}/cancel) — through a real server,
the fake upstream and real accounts (alice, the first, is the admin; bob and carol are not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from liaotian.store.live_replies import streaming_replies
from tests.cluster import PASSWORD, create_user, run_cluster
from tests.conftest import SettingsFactory, fresh_postgres_database
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer, run_server
from tests.wsclient import Frame, RawClient, of_type

ROUTES = (
    ("GET", "/admin/providers"),
    ("GET", "/admin/replies"),
    ("POST", "/admin/replies/{message_id}/cancel"),
)
SLOW = "[tokens=500] [delay=20]"
"""A reply that streams for 10 s unless cancelled."""


@pytest.fixture
async def tokens(database_url: str) -> dict[str, str]:
    """API tokens of alice (the first account: an admin), bob and carol (users)."""
    return {name: await create_user(database_url, name) for name in ("alice", "bob", "carol")}


@pytest.fixture
async def server(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> AsyncIterator[RunningServer]:
    settings = make_settings(provider_retries=0, breaker_failures=2, breaker_cooldown=600)
    async with run_server(settings) as running:
        yield running


async def socket_of(url: str, token: str) -> RawClient:
    """A WebSocket signed in with ``token``, past its hello."""
    headers = {"Authorization": f"Bearer {token}"}
    client = RawClient(await connect(url, additional_headers=headers, compression=None))
    assert (await client.recv())["type"] == "hello"
    return client


async def start(client: RawClient, message: str) -> Frame:
    """Send ``message``; its reply.started frame."""
    await client.send({"type": "chat.send", "id": "s", "message": message})
    [*_, started] = await client.until(lambda f: f.get("id") == "s")
    assert started["type"] == "reply.started", started
    return started


async def call(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    session: aiohttp.ClientSession | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request to the server at ``base`` (in ``session`` when given, else a fresh one:
    no cookie); its status and JSON body."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
        async with session.request(method, base + path, headers=sent) as response:
            return response.status, await response.json()


@asynccontextmanager
async def signed_in(server: RunningServer, user: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie session of ``user``, as the page has after signing in."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(
            f"{server.http_url}/auth/login", json={"user": user, "password": PASSWORD}
        ) as response:
            assert response.status == 200
        yield session


async def streaming_ids(server: RunningServer) -> set[str]:
    return {reply.message_id for reply in await streaming_replies(server.services.store.database)}


# --- GET /admin/providers


async def test_providers_list_every_provider_with_its_figures(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """Each registered provider is listed with kind, breaker and this process's figures; a
    reply counts one request and a latency; an unused provider has no rate nor latency."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    await start(bob, "hello")
    await bob.until(of_type("reply.done"))
    await bob.close()
    status, body = await call(server.http_url, "GET", "/admin/providers", token=tokens["alice"])
    assert status == 200
    listed = {entry["name"]: entry for entry in body["providers"]}
    registry = server.services.providers
    assert [entry["name"] for entry in body["providers"]] == [p.name for p in registry.providers]
    dashscope = listed["dashscope"]
    assert dashscope["kind"] == "dashscope"
    assert dashscope["breaker"] == "closed"
    assert (dashscope["requests"], dashscope["errors"], dashscope["error_rate"]) == (1, 0, 0.0)
    latency = dashscope["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert listed["openai"] == {
        "name": "openai",
        "kind": "openai",
        "breaker": "closed",
        "requests": 0,
        "errors": 0,
        "error_rate": None,
        "latency_ms": {"p50": None, "p95": None, "p99": None},
    }


async def test_a_breaker_opened_by_upstream_faults_shows_open_with_the_errors(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """Two failed replies (breaker_failures 2) open dashscope's breaker; the next one fails
    fast and counts as an error too."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    for message in ("fine", "[fault=500]", "[fault=500]", "fails fast"):
        await start(bob, message)
        await bob.until(of_type("reply.done"))
    await bob.close()
    status, body = await call(server.http_url, "GET", "/admin/providers", token=tokens["alice"])
    assert status == 200
    [dashscope] = [entry for entry in body["providers"] if entry["name"] == "dashscope"]
    assert dashscope["breaker"] == "open"
    assert (dashscope["requests"], dashscope["errors"], dashscope["error_rate"]) == (4, 3, 0.75)


# --- GET /admin/replies


async def test_replies_list_another_users_streaming_reply_with_its_name_and_model(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """bob's streaming reply is listed for alice with bob's name, the model and its start;
    an unkept (OpenAI API, store false) reply of bob's is listed too, marked unkept."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    started = await start(bob, SLOW)
    async with aiohttp.ClientSession() as session:
        unkept = await session.post(
            f"{server.http_url}/v1/chat/completions",
            json={
                "model": "qwen-plus",
                "messages": [{"role": "user", "content": f"off the record {SLOW}"}],
                "stream": True,
            },
            headers={"Authorization": f"Bearer {tokens['bob']}"},
        )
        assert unkept.status == 200
        await unkept.content.readline()  # streaming: its reply is stored as such
        status, body = await call(server.http_url, "GET", "/admin/replies", token=tokens["alice"])
        unkept.close()
    assert status == 200
    replies = {reply["message_id"]: reply for reply in body["replies"]}
    assert len(replies) == 2
    kept = replies.pop(started["message_id"])
    assert kept["conversation_id"] == started["conversation_id"]
    assert (kept["user"], kept["model"], kept["unkept"]) == ("bob", "qwen-plus", False)
    assert kept["started_at"].endswith("Z")
    [other] = replies.values()
    assert (other["user"], other["unkept"]) == ("bob", True)
    assert other["conversation_id"].startswith("unkept-")
    await bob.send({"type": "chat.cancel", "message_id": started["message_id"]})
    await bob.close()


async def test_an_open_mode_owner_is_named_by_its_owner_id(make_settings: SettingsFactory) -> None:
    """Without accounts, a streaming reply's ``user`` is its owner id."""
    async with run_server(make_settings()) as running:
        guest = await RawClient.open(f"{running.ws_url}?client_id=guest")
        owner = (await guest.recv())["owner"]
        started = await start(guest, SLOW)
        [live] = await streaming_replies(running.services.store.database)
        assert (live.message_id, live.owner, live.user) == (started["message_id"], owner, owner)
        await guest.send({"type": "chat.cancel", "message_id": started["message_id"]})
        await guest.until(of_type("reply.done"))
        await guest.close()
        assert await streaming_replies(running.services.store.database) == []


# --- POST /admin/replies/{id}/cancel


async def test_cancel_stops_another_users_reply_and_its_upstream(
    server: RunningServer, tokens: dict[str, str], fake: FakeUpstream
) -> None:
    """alice cancels bob's reply: bob's socket sees it end cancelled, the upstream request is
    closed, the audit log says who did it; it is then gone from the list, and the provider's
    figures count the call but no error."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    started = await start(bob, SLOW)
    message_id = started["message_id"]
    await bob.until(of_type("reply.delta"))
    path = f"/admin/replies/{message_id}/cancel"
    status, body = await call(server.http_url, "POST", path, token=tokens["alice"])
    assert (status, body) == (200, {"message_id": message_id, "cancelled": True})
    done = (await bob.until(of_type("reply.done", message_id=message_id)))[-1]
    assert done["status"] == "cancelled"
    # A disconnect counts only before the scripted 10 s answer ends: that is the bound.
    await fake.wait_for(lambda stats: stats.disconnects >= 1, within=10)
    [entry] = await server.services.audit.entries()
    assert (entry.actor, entry.action, entry.target) == ("alice", "reply.cancel", message_id)
    assert entry.details == {"user": "bob", "model": "qwen-plus"}
    status, body = await call(server.http_url, "GET", "/admin/replies", token=tokens["alice"])
    assert body == {"replies": []}
    status, body = await call(server.http_url, "GET", "/admin/providers", token=tokens["alice"])
    [dashscope] = [entry for entry in body["providers"] if entry["name"] == "dashscope"]
    assert (dashscope["requests"], dashscope["errors"]) == (1, 0)  # cancelled is no error
    await bob.close()


async def test_cancel_of_an_unknown_or_finished_reply_is_not_found(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """404 not_found for an id no reply has, and for a reply that has ended; no audit entry."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    started = await start(bob, "short")
    await bob.until(of_type("reply.done"))
    await bob.close()
    for message_id in ("no-such-reply", started["message_id"]):
        path = f"/admin/replies/{message_id}/cancel"
        status, body = await call(server.http_url, "POST", path, token=tokens["alice"])
        assert (status, body["error"]["code"]) == (404, "not_found")
    assert await server.services.audit.entries() == []


# --- isolation


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_without_a_credential_every_route_is_unauthorized(
    server: RunningServer, tokens: dict[str, str], method: str, route: str
) -> None:
    """No cookie and no token: 401 unauthorized."""
    path = route.format(message_id="any")
    status, body = await call(server.http_url, method, path)
    assert (status, body["error"]["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_a_users_cookie_and_token_are_forbidden(
    server: RunningServer, tokens: dict[str, str], method: str, route: str
) -> None:
    """bob (not an admin) gets 403 forbidden with his session cookie and with his token,
    even for a reply of his own; the reply goes on."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    started = await start(bob, SLOW)
    path = route.format(message_id=started["message_id"])
    async with signed_in(server, "bob") as session:
        by_cookie = await call(server.http_url, method, path, session=session)
    by_token = await call(server.http_url, method, path, token=tokens["bob"])
    for status, body in (by_cookie, by_token):
        assert (status, body["error"]["code"]) == (403, "forbidden")
    assert started["message_id"] in await streaming_ids(server)
    await bob.send({"type": "chat.cancel", "message_id": started["message_id"]})
    await bob.until(of_type("reply.done"))
    await bob.close()


async def test_a_user_cannot_cancel_another_users_reply(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """carol's reply keeps streaming when bob asks this route to cancel it."""
    carol = await socket_of(server.ws_url, tokens["carol"])
    started = await start(carol, SLOW)
    path = f"/admin/replies/{started['message_id']}/cancel"
    status, body = await call(server.http_url, "POST", path, token=tokens["bob"])
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert started["message_id"] in await streaming_ids(server)
    assert await server.services.audit.entries() == []
    await carol.send({"type": "chat.cancel", "message_id": started["message_id"]})
    done = (await carol.until(of_type("reply.done")))[-1]
    assert done["status"] == "cancelled"  # by carol herself, not earlier
    await carol.close()


async def test_a_cross_site_cancel_with_the_admins_cookie_is_refused(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """The admin's cookie on a POST from another site's page: 403 origin_not_allowed, and
    the reply goes on; from the server's own page the same POST cancels it."""
    bob = await socket_of(server.ws_url, tokens["bob"])
    started = await start(bob, SLOW)
    path = f"/admin/replies/{started['message_id']}/cancel"
    async with signed_in(server, "alice") as session:
        status, body = await call(
            server.http_url, "POST", path, session=session, headers={"Origin": "https://evil.test"}
        )
        assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
        assert started["message_id"] in await streaming_ids(server)
        own = {"Origin": server.http_url}
        status, _ = await call(server.http_url, "POST", path, session=session, headers=own)
    assert status == 200
    done = (await bob.until(of_type("reply.done")))[-1]
    assert done["status"] == "cancelled"
    await bob.close()


# --- across processes


@pytest.mark.scaleout
async def test_an_admin_lists_and_cancels_through_one_process_a_reply_of_another(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """bob's reply streams on process A; alice (the admin) lists it and cancels it through
    process B: bob's socket on A sees it end cancelled and the upstream request is closed."""
    async with (
        fresh_postgres_database() as database_url,
        run_cluster(tmp_path, database_url, fake.dashscope_base_url) as cluster,
    ):
        a, b = cluster.servers
        bob_token = await create_user(database_url, "bob")
        bob = await socket_of(a.ws_url, bob_token)
        started = await start(bob, SLOW)
        message_id = started["message_id"]
        await bob.until(of_type("reply.delta"))
        status, body = await call(b.http_url, "GET", "/admin/replies", token=cluster.token)
        assert status == 200
        [listed] = body["replies"]
        assert (listed["message_id"], listed["user"], listed["model"]) == (
            message_id,
            "bob",
            "qwen-plus",
        )
        path = f"/admin/replies/{message_id}/cancel"
        status, _ = await call(b.http_url, "POST", path, token=cluster.token)
        assert status == 200
        done = (await bob.until(of_type("reply.done", message_id=message_id)))[-1]
        assert done["status"] == "cancelled"
        await fake.wait_for(lambda stats: stats.disconnects >= 1, within=10)
        await bob.close()
        status, body = await call(b.http_url, "GET", "/admin/replies", token=cluster.token)
        assert body == {"replies": []}
