"""Issue 15's whole scenario over HTTP and WebSocket, on PostgreSQL with two processes.

The admin works on one process, the user on the other: the admin creates the user with a
10,000-token daily quota, watches the usage rise while the user chats, sees the user refused
with the documented quota error, lifts the limit, and revokes the user's token, whose socket
on the other process closes. (The page's side of it: tests/browser/.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.cluster import PASSWORD, USER, Cluster, ServerProcess, run_cluster
from tests.conftest import fresh_postgres_database
from tests.fake_upstream import FakeUpstream
from tests.wsclient import TIMEOUT, RawClient

pytestmark = pytest.mark.scaleout

QUOTA = 10_000
# The fake upstream reports one output token per chunk, and a handful of input tokens.
TOKENS_PER_ANSWER = 4_000


@pytest.fixture
async def cluster(tmp_path: Path, fake: FakeUpstream) -> AsyncIterator[Cluster]:
    async with (
        fresh_postgres_database() as url,
        run_cluster(
            tmp_path, url, fake.dashscope_base_url, credential_check_interval="0.2"
        ) as running,
    ):
        yield running


def browser_session() -> aiohttp.ClientSession:
    """A session that keeps cookies of an IP address (127.0.0.1), as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


class Browser:
    """An HTTP client of one process with a session cookie, as the page is."""

    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.origin = {"Origin": server.http_url}

    async def sign_in(self, user: str, password: str = PASSWORD) -> None:
        await self.call("POST", "/auth/login", {"user": user, "password": password})

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(
            method, self.server.http_url + path, json=body, headers=self.origin
        ) as response:
            payload = await response.json()
            assert response.status == expect, payload
            return payload


async def open_socket(server: ServerProcess, token: str) -> RawClient:
    client = RawClient(
        await ws_connect(
            server.ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            compression=None,
        )
    )
    assert (await client.recv())["type"] == "hello"
    return client


async def chat(client: RawClient, message: str) -> dict[str, Any]:
    """Send; return the reply's ``reply.done`` or the request's ``error`` frame."""
    await client.send({"type": "chat.send", "id": "s", "message": message})
    frames = await client.until(
        lambda f: f["type"] == "reply.done" or (f["type"] == "error" and f.get("id") == "s")
    )
    return frames[-1]


async def test_an_admin_limits_watches_lifts_and_revokes(cluster: Cluster) -> None:
    admin_process, user_process = cluster.servers
    async with browser_session() as admin_http, browser_session() as user_http:
        admin = Browser(admin_process, admin_http)
        await admin.sign_in(USER)  # the first account: an admin
        await admin.call(
            "POST",
            "/admin/users",
            {"name": "bob", "password": PASSWORD, "limits": {"tokens_per_day": QUOTA}},
            expect=201,
        )
        bob = Browser(user_process, user_http)
        await bob.sign_in("bob")
        token = (await bob.call("POST", "/account/tokens", {"name": "laptop"}, expect=201))["token"]
        socket = await open_socket(user_process, token)

        used = []
        for _ in range(3):  # 3 x 4,000 output tokens: over 10,000 after the third
            done = await chat(socket, f"[tokens={TOKENS_PER_ANSWER}] count")
            assert done["type"] == "reply.done"
            assert done["status"] == "completed"
            rows = (await admin.call("GET", "/admin/usage?days=1&by=user"))["rows"]
            used.append(sum(row["tokens"] for row in rows if row["user"] == "bob"))
        assert used[0] > TOKENS_PER_ANSWER
        assert used[0] < used[1] < used[2]
        assert used[2] >= QUOTA

        refused = await chat(socket, "one more")
        assert refused["type"] == "error"
        assert refused["code"] == "quota_exceeded"
        assert refused["message"] == "daily token quota reached, resets at 00:00 UTC"
        assert refused["quota"]["limit"] == "tokens_per_day"
        assert refused["quota"]["remaining"] == 0
        assert refused["quota"]["resets_at"].endswith("T00:00:00Z")
        own = await bob.call("GET", "/account/usage?days=1")
        assert own["limits"]["tokens_per_day"]["remaining"] == 0

        await admin.call("PATCH", "/admin/users/bob", {"limits": {"tokens_per_day": None}})
        done = await chat(socket, "[tokens=3] again")
        assert done["type"] == "reply.done"
        assert done["status"] == "completed"

        tokens = (await admin.call("GET", "/admin/tokens"))["tokens"]
        laptop = next(t for t in tokens if t["user"] == "bob" and t["name"] == "laptop")
        await admin.call("DELETE", f"/admin/tokens/{laptop['id']}")
        # The socket is on the other process: its sweep closes it.
        with pytest.raises(ConnectionClosed):
            await socket.until(lambda _frame: False, within=TIMEOUT)
        actions = [e["action"] for e in (await admin.call("GET", "/admin/audit"))["entries"]]
        assert actions[0] == "token.revoke"
        assert "user.create" in actions
