"""Accounts: sign-in, tokens, origins, modes, and closing what a sign-out revokes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from tests.cluster import PASSWORD, create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.wsclient import RawClient, of_type

LIAOTIAN = Path(sys.executable).with_name("liaotian")


make_user = create_user
"""Create a user in a migrated database (password :data:`PASSWORD`); return its API token."""


@pytest.fixture
async def tokens(database_url: str) -> dict[str, str]:
    return {name: await make_user(database_url, name) for name in ("alice", "bob")}


@pytest.fixture
async def secured(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings(credential_check_interval=0.2)) as server:
        yield server


async def open_with(server: RunningServer, token: str | None = None, **headers: str) -> RawClient:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection = await connect(server.ws_url, additional_headers=headers, compression=None)
    return RawClient(connection)


async def test_with_users_a_handshake_without_credentials_is_refused(
    secured: RunningServer,
) -> None:
    """Once a user exists, a WebSocket without a credential is refused before accept."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{secured.ws_url}?client_id=anyone")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        await connect(secured.seed_url("anyone"))


async def test_a_token_signs_in_as_its_user(secured: RunningServer, tokens: dict[str, str]) -> None:
    """A bearer token opens a connection owned by its user; a wrong token is refused."""
    client = await open_with(secured, tokens["alice"])
    assert (await client.recv())["owner"] == "user/1"  # alice, the first user
    await client.close()
    with pytest.raises(InvalidStatus):
        await open_with(secured, "lt_not-a-token")


async def test_users_see_only_their_own_conversations(
    secured: RunningServer, tokens: dict[str, str]
) -> None:
    """bob gets not_found for alice's conversation, and an empty list."""
    alice = await open_with(secured, tokens["alice"])
    await alice.recv()
    await alice.send({"type": "chat.send", "message": "alice's secret"})
    started = (await alice.until(of_type("reply.started")))[-1]
    bob = await open_with(secured, tokens["bob"])
    await bob.recv()
    await bob.send({"type": "conversation.history", "conversation_id": started["conversation_id"]})
    assert (await bob.recv())["code"] == "not_found"
    await bob.send({"type": "conversations.list"})
    assert (await bob.recv())["conversations"] == []
    await alice.close()
    await bob.close()


def browser_session() -> aiohttp.ClientSession:
    """A session that keeps cookies of 127.0.0.1, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(session: aiohttp.ClientSession, server: RunningServer, password: str) -> int:
    async with session.post(
        f"{server.http_url}/auth/login", json={"user": "alice", "password": password}
    ) as response:
        return response.status


async def test_sign_in_sets_a_strict_http_only_cookie(secured: RunningServer) -> None:
    """A right password sets an HttpOnly SameSite=Strict cookie; a wrong one gets 401."""
    async with browser_session() as session:
        assert await sign_in(session, secured, "wrong password") == 401
        async with session.post(
            f"{secured.http_url}/auth/login", json={"user": "alice", "password": PASSWORD}
        ) as response:
            assert response.status == 200
            cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        async with session.get(f"{secured.http_url}/auth/me") as response:
            assert (await response.json())["user"] == "alice"


async def test_sign_in_and_me_name_the_owner_the_socket_names(secured: RunningServer) -> None:
    """``/auth/login`` and ``/auth/me`` answer the owner id the WebSocket's hello names, so
    the page can tell a sign-in as someone else in another tab."""
    async with browser_session() as session:
        async with session.post(
            f"{secured.http_url}/auth/login", json={"user": "alice", "password": PASSWORD}
        ) as response:
            signed_in = await response.json()
        async with session.get(f"{secured.http_url}/auth/me") as response:
            me = await response.json()
        cookie = "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)
        client = await open_with(secured, Cookie=cookie)
        hello = await client.recv()
        await client.close()
    assert signed_in["owner"] == me["owner"] == hello["owner"]


async def test_signing_out_closes_the_sessions_sockets(secured: RunningServer) -> None:
    """The socket opened with a session cookie is closed (1008) when that session signs out."""
    async with browser_session() as session:
        assert await sign_in(session, secured, PASSWORD) == 200
        cookie = "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)
        client = await open_with(secured, Cookie=cookie)
        assert (await client.recv())["owner"] == "user/1"  # alice, the first user
        async with session.post(f"{secured.http_url}/auth/logout") as response:
            assert response.status == 200
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.connection.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008


async def test_revoking_a_token_closes_its_sockets(
    secured: RunningServer, tokens: dict[str, str], database_url: str
) -> None:
    """A token revoked elsewhere (the CLI) has its open sockets closed within the check interval."""
    client = await open_with(secured, tokens["bob"])
    await client.recv()
    engine = create_engine(database_url)
    accounts = Accounts(engine)
    (bobs,) = list(await accounts.list_tokens("bob"))
    await accounts.revoke(bobs.id)
    await engine.dispose()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(client.connection.recv(), 5)
    with pytest.raises(InvalidStatus):
        await open_with(secured, tokens["bob"])


async def test_sign_in_attempts_are_rate_limited(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> None:
    """After login_attempts_per_minute tries, sign-in answers 429."""
    async with (
        run_server(make_settings(login_attempts_per_minute=3)) as server,
        aiohttp.ClientSession() as session,
    ):
        statuses = [await sign_in(session, server, "nope") for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("http://evil.example", False), ("null", False), (None, True), ("own", True)],
)
async def test_handshake_origin_must_be_the_servers_own(
    server: RunningServer, origin: str | None, allowed: bool
) -> None:
    """A browser page from another origin cannot open a socket (cross-site hijacking)."""
    headers = {}
    if origin == "own":
        headers["Origin"] = server.http_url
    elif origin is not None:
        headers["Origin"] = origin
    url = f"{server.ws_url}?client_id=victim"
    if allowed:
        client = RawClient(await connect(url, additional_headers=headers))
        assert (await client.recv())["type"] == "hello"
        await client.close()
    else:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers=headers)
        assert refused.value.response.status_code == 403


async def test_allowed_origins_admit_other_pages(make_settings: SettingsFactory) -> None:
    """LIAOTIAN_ALLOWED_ORIGINS lets a named origin in (e.g. "null" for a page from a file)."""
    async with run_server(make_settings(allowed_origins=["null"])) as server:
        client = RawClient(
            await connect(
                f"{server.ws_url}?client_id=seedpage", additional_headers={"Origin": "null"}
            )
        )
        assert (await client.recv())["type"] == "hello"
        await client.close()


async def test_beyond_loopback_without_users_start_up_refuses(tmp_path: Path) -> None:
    """Bound to 0.0.0.0 with no user, serve exits 2 and says how to create one."""
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/open.db",
        "LIAOTIAN_LOCAL_ENABLED": "false",
    }
    process = await asyncio.create_subprocess_exec(
        str(LIAOTIAN), "serve", "--host", "0.0.0.0", "--port", "0", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    assert b"liaotian user add" in stderr


async def test_user_and_token_commands(tmp_path: Path) -> None:
    """user add/list/passwd/remove and token create/list/revoke work from the shell."""
    env = {**os.environ, "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/accounts.db"}

    async def run(*args: str, stdin: str = "") -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            str(LIAOTIAN), *args, env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
        assert process.returncode is not None
        return process.returncode, out.decode()

    assert (await run("user", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n"))[0] == 0
    code, listed = await run("user", "list")
    assert code == 0
    assert "carol" in listed
    code, short = await run("user", "passwd", "carol", "--password-stdin", stdin="short\n")
    assert code == 2
    assert "at least" in short
    code, out = await run("token", "create", "carol", "--label", "ci")
    assert code == 0
    assert out.startswith("lt_")
    code, listed = await run("token", "list", "carol")
    assert "active" in listed
    assert (await run("token", "revoke", listed.split()[0]))[0] == 0
    assert "revoked" in (await run("token", "list"))[1]
    assert (await run("user", "remove", "carol"))[0] == 0
    assert "carol" not in (await run("user", "list"))[1]


async def test_user_add_without_a_terminal_or_password_stdin_says_what_to_do(
    tmp_path: Path,
) -> None:
    """No terminal to ask on (stdin a pipe, no controlling terminal), no --password-stdin:
    one line saying to pipe the password, status 2, no traceback, no user created; a
    refused password is said in words, without the protocol's error code."""
    env = {**os.environ, "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/accounts.db"}

    async def run(*args: str, stdin: str = "") -> tuple[int | None, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(LIAOTIAN), *args, env=env, cwd=tmp_path, start_new_session=True,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
        return process.returncode, out.decode(), err.decode()

    code, out, err = await run("user", "add", "bob", stdin="a long enough password\n")
    assert (code, out) == (2, "")
    assert err == "liaotian: no terminal to ask for the password: pipe it with --password-stdin\n"
    assert "bob" not in (await run("user", "list"))[1]
    code, out, err = await run("user", "add", "bob", "--password-stdin", stdin="short\n")
    assert (code, out) == (2, "")
    assert err == "liaotian: a password needs at least 8 characters\n"
