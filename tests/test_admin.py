"""Roles and account administration over HTTP (docs/administration.md): /admin accounts,
tokens and audit log, the account's own /account tokens and password, sign-up, and closing
the sockets of what is disabled or revoked; against a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import pytest
import sqlalchemy as sa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from liaotian.store import create_engine
from liaotian.store.accounts import DISABLED, PENDING
from liaotian.store.models import Message
from tests.cluster import PASSWORD, accounts_of, create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.wsclient import RawClient

CROSS_SITE = "http://evil.example"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error["code"] if error else None


class Served(Protocol):
    @property
    def http_url(self) -> str: ...


async def call(
    server: Served,
    method: str,
    path: str,
    *,
    token: str | None = None,
    session: aiohttp.ClientSession | None = None,
    body: Any = None,
    origin: str | None = None,
) -> Answer:
    """One request; a ``session`` carries its cookies. Writes from a session send the
    server's own Origin unless ``origin`` says otherwise, as the page does."""
    headers: dict[str, str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["Origin"] = origin
    elif session is not None and method != "GET":
        headers["Origin"] = server.http_url
    owned = session is None
    client = session or aiohttp.ClientSession()
    try:
        async with client.request(
            method, f"{server.http_url}{path}", headers=headers, json=body
        ) as response:
            text = await response.text()
            return Answer(
                response.status, json.loads(text) if text else None, dict(response.headers)
            )
    finally:
        if owned:
            await client.close()


def browser() -> aiohttp.ClientSession:
    """A session that keeps cookies of 127.0.0.1, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(
    server: RunningServer, session: aiohttp.ClientSession, name: str, password: str = PASSWORD
) -> Answer:
    return await call(
        server, "POST", "/auth/login", session=session, body={"user": name, "password": password}
    )


def cookie_of(session: aiohttp.ClientSession) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)


async def open_socket(server: RunningServer, **headers: str) -> RawClient:
    client = RawClient(await connect(server.ws_url, additional_headers=headers, compression=None))
    assert (await client.recv())["type"] == "hello"
    return client


async def closed_signed_out(client: RawClient, within: float = 5.0) -> None:
    """The server closes the socket with 1008 within ``within`` seconds."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.connection.recv(), within)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


@pytest.fixture
async def tokens(database_url: str) -> dict[str, str]:
    """root (the first account: an admin), alice and bob (users), each with an API token."""
    return {name: await create_user(database_url, name) for name in ("root", "alice", "bob")}


@pytest.fixture
async def server(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> AsyncIterator[RunningServer]:
    # The sweep is far off: the sockets these tests see closed, the route itself closed.
    settings = make_settings(credential_check_interval=600, self_signup="approval")
    async with run_server(settings) as running:
        yield running


async def audit_actions(server: RunningServer, token: str) -> list[tuple[str, str, str]]:
    answer = await call(server, "GET", "/admin/audit?limit=1000", token=token)
    assert answer.status == 200
    return [(e["actor"], e["action"], e["target"]) for e in answer.body["entries"]]


async def test_the_first_account_is_an_admin(server: RunningServer, tokens: dict[str, str]) -> None:
    """/auth/me says the role; /admin/users lists every account with role and status."""
    assert (await call(server, "GET", "/auth/me", token=tokens["root"])).body["role"] == "admin"
    assert (await call(server, "GET", "/auth/me", token=tokens["alice"])).body["role"] == "user"
    answer = await call(server, "GET", "/admin/users", token=tokens["root"])
    assert answer.status == 200
    users = {u["name"]: u for u in answer.body["users"]}
    assert [(u["role"], u["status"], u["limits"]) for u in users.values()] == [
        ("user", "active", {}),
        ("user", "active", {}),
        ("admin", "active", {}),
    ]
    assert list(users) == ["alice", "bob", "root"]
    assert users["root"]["created_at"].endswith("Z")


async def test_the_users_list_says_effective_limits_and_todays_usage(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> None:
    """``effective``: the role's limits with the account's own over them; ``today``: the
    ledger's totals of the day, per account."""
    settings = make_settings(role_limits={"user": {"tokens_per_day": 5000}})
    async with run_server(settings) as running:
        root = tokens["root"]
        changed = await call(
            running,
            "PATCH",
            "/admin/users/alice",
            token=root,
            body={"limits": {"messages_per_day": 3}},
        )
        assert changed.status == 200
        client = await open_socket(running, Authorization=f"Bearer {tokens['alice']}")
        await client.send({"type": "chat.send", "id": "s", "message": "[tokens=7] count"})
        done = (await client.until(lambda f: f["type"] == "reply.done"))[-1]
        assert done["status"] == "completed"
        await client.close()
        answer = await call(running, "GET", "/admin/users", token=root)
    users = {u["name"]: u for u in answer.body["users"]}
    assert users["alice"]["effective"] == {
        "tokens_per_day": 5000,
        "messages_per_day": 3,
        "cost_per_month": None,
        "concurrent_replies": None,
    }
    assert users["root"]["effective"]["tokens_per_day"] is None
    assert users["alice"]["today"]["replies"] == 1
    assert users["alice"]["today"]["tokens"] == done["usage"]["input_tokens"] + 7
    assert users["bob"]["today"] == {"tokens": 0, "replies": 0, "cost": None}


async def test_an_admin_creates_and_changes_accounts(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """POST creates an active account (409 for a taken name, 400 for bad input, nothing
    created); PATCH changes role and replaces own limits (null clears them)."""
    root = tokens["root"]
    created = await call(
        server,
        "POST",
        "/admin/users",
        token=root,
        body={"name": "carol", "password": PASSWORD, "limits": {"tokens_per_day": 1000}},
    )
    assert created.status == 201
    assert (created.body["role"], created.body["status"]) == ("user", "active")
    assert created.body["limits"] == {"tokens_per_day": 1000}
    async with browser() as session:
        assert (await sign_in(server, session, "carol")).status == 200

    body = {"name": "carol", "password": PASSWORD}
    taken = await call(server, "POST", "/admin/users", token=root, body=body)
    assert (taken.status, taken.code) == (409, "name_taken")
    for wrong, words in (
        ({"name": "Bad Name", "password": PASSWORD}, "user name"),
        ({"name": "dave", "password": "short"}, "at least 8"),
        ({"name": "dave", "password": PASSWORD, "role": "owner"}, "role"),
        ({"name": "dave", "password": PASSWORD, "limits": {"tokens": 5}}, "unknown limit"),
        ({"name": "dave", "password": PASSWORD, "limits": {"cost_per_month": -1}}, "at least"),
        ({"name": "dave", "password": PASSWORD, "limits": {"messages_per_day": "9"}}, "number"),
        ({"name": "dave"}, "password"),
        ({"name": "carol\n", "password": PASSWORD}, "user name"),
        ({"name": "dave", "password": PASSWORD, "limits": {"tokens_per_day": 10**400}}, "finite"),
    ):
        refused = await call(server, "POST", "/admin/users", token=root, body=wrong)
        assert refused.status == 400, wrong
        assert words in refused.body["error"]["message"], refused.body
    names = [
        u["name"] for u in (await call(server, "GET", "/admin/users", token=root)).body["users"]
    ]
    assert "dave" not in names

    changed = await call(
        server,
        "PATCH",
        "/admin/users/carol",
        token=root,
        body={"role": "admin", "limits": {"messages_per_day": 5, "cost_per_month": None}},
    )
    assert changed.status == 200
    assert changed.body["role"] == "admin"
    assert changed.body["limits"] == {"messages_per_day": 5, "cost_per_month": None}
    me = await call(server, "GET", "/auth/me", token=await token_of(server, "carol"))
    assert me.body["role"] == "admin"
    cleared = await call(server, "PATCH", "/admin/users/carol", token=root, body={"limits": None})
    assert cleared.body["limits"] == {}

    for wrong in (
        {"status": PENDING},
        {"status": "gone"},
        {"role": "root"},
        {"limits": {"concurrent_replies": 0}},
        {"limits": {"tokens_per_day": 1.5}},
        {"limits": {"tokens_per_day": 10**400}},
        {"limits": {"cost_per_month": 10**400}},
        {"limits": {"tokens_per_day": float("nan")}},
        {"limits": {"cost_per_month": float("inf")}},
        {"limits": {"concurrent_replies": True}},
        {"role": "user", "limits": {"tokens_per_day": -1}},
        {},
    ):
        refused = await call(server, "PATCH", "/admin/users/carol", token=root, body=wrong)
        assert refused.status == 400, wrong
    unchanged = (await call(server, "GET", "/admin/users", token=root)).body["users"]
    assert {"name": "carol", "role": "admin", "status": "active", "limits": {}}.items() <= next(
        u for u in unchanged if u["name"] == "carol"
    ).items()
    missing = await call(server, "PATCH", "/admin/users/nobody", token=root, body={"role": "user"})
    assert (missing.status, missing.code) == (404, "not_found")
    actions = await audit_actions(server, root)
    assert ("root", "user.create", "carol") in actions
    assert ("root", "user.role", "carol") in actions
    assert actions.count(("root", "user.limits", "carol")) == 2


async def token_of(server: RunningServer, name: str) -> str:
    """A new API token of ``name``, made in its database."""
    async with accounts_of(server.settings.database_url) as accounts:
        return (await accounts.create_token(name, "test"))[1]


async def test_an_admin_cannot_demote_or_disable_itself(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """409 ``own_account``; its own limits may change; the last active admin stays one."""
    root = tokens["root"]
    for change in ({"role": "user"}, {"status": DISABLED}):
        refused = await call(server, "PATCH", "/admin/users/root", token=root, body=change)
        assert (refused.status, refused.code) == (409, "own_account")
        assert "itself" in refused.body["error"]["message"]
    assert (await call(server, "GET", "/auth/me", token=root)).body["role"] == "admin"
    own = await call(
        server, "PATCH", "/admin/users/root", token=root, body={"limits": {"tokens_per_day": 9}}
    )
    assert own.status == 200
    # Another admin demotes root, then root (a user now) can do nothing more.
    made = await call(server, "PATCH", "/admin/users/alice", token=root, body={"role": "admin"})
    assert made.status == 200
    demoted = await call(
        server, "PATCH", "/admin/users/root", token=tokens["alice"], body={"role": "user"}
    )
    assert demoted.status == 200
    assert (await call(server, "GET", "/admin/users", token=root)).status == 403
    # alice, the last active admin now, cannot be demoted by herself (nor anyone else).
    last = await call(
        server, "PATCH", "/admin/users/alice", token=tokens["alice"], body={"role": "user"}
    )
    assert last.status == 409


async def test_disabling_an_account_closes_its_sockets_and_stops_its_credentials(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """Disabled: its socket closes at once (1008), its token and sessions get 401, its
    password answers ``account_disabled``; enabled again, its token works again."""
    root = tokens["root"]
    by_token = await open_socket(server, Authorization=f"Bearer {tokens['alice']}")
    async with browser() as session:
        assert (await sign_in(server, session, "alice")).status == 200
        by_cookie = await open_socket(server, Cookie=cookie_of(session))
        disabled = await call(
            server, "PATCH", "/admin/users/alice", token=root, body={"status": DISABLED}
        )
        assert (disabled.status, disabled.body["status"]) == (200, DISABLED)
        await closed_signed_out(by_token, within=2)
        await closed_signed_out(by_cookie, within=2)
        assert (await call(server, "GET", "/account/tokens", session=session)).status == 401
    assert (await call(server, "GET", "/account/tokens", token=tokens["alice"])).status == 401
    with pytest.raises(InvalidStatus):
        await open_socket(server, Authorization=f"Bearer {tokens['alice']}")
    async with browser() as session:
        refused = await sign_in(server, session, "alice")
        assert (refused.status, refused.code) == (403, "account_disabled")
        wrong = await sign_in(server, session, "alice", "not the password")
        assert (wrong.status, wrong.code) == (401, "invalid_credentials")
    # bob's socket stays open throughout.
    bob = await open_socket(server, Authorization=f"Bearer {tokens['bob']}")
    enabled = await call(
        server, "PATCH", "/admin/users/alice", token=root, body={"status": "active"}
    )
    assert enabled.status == 200
    assert (await call(server, "GET", "/account/tokens", token=tokens["alice"])).status == 200
    await bob.send({"type": "ping", "id": "p"})
    assert (await bob.recv())["type"] == "pong"
    await bob.close()
    actions = await audit_actions(server, root)
    assert actions.index(("root", "user.enable", "alice")) < actions.index(
        ("root", "user.disable", "alice")
    )


async def test_disabling_an_account_cancels_its_streaming_replies(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """A disabled account spends nothing more: its answer streaming now ends cancelled
    (saved as such, so it leaves the admin's live list); bob's goes on."""
    root = tokens["root"]
    streams, replies = {}, {}
    for name in ("alice", "bob"):
        client = await open_socket(server, Authorization=f"Bearer {tokens[name]}")
        await client.send({"type": "chat.send", "id": "s", "message": "[tokens=400] [delay=50]"})
        frames = await client.until(lambda f: f["type"] == "reply.delta")
        streams[name], replies[name] = client, frames[-1]["message_id"]
    live = (await call(server, "GET", "/admin/replies", token=root)).body["replies"]
    assert sorted(reply["user"] for reply in live) == ["alice", "bob"]
    disabled = await call(
        server, "PATCH", "/admin/users/alice", token=root, body={"status": DISABLED}
    )
    assert disabled.status == 200
    left: list[str] = []
    async with asyncio.timeout(10):
        while left != ["bob"]:
            answer = await call(server, "GET", "/admin/replies", token=root)
            left = [reply["user"] for reply in answer.body["replies"]]
            await asyncio.sleep(0.05)
    engine = create_engine(server.settings.database_url)
    try:
        async with engine.connect() as connection:
            status = await connection.scalar(
                sa.select(Message.status).where(Message.id == replies["alice"])
            )
    finally:
        await engine.dispose()
    assert status == "cancelled"
    await streams["bob"].close()


async def test_revoking_a_token_closes_its_socket(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """DELETE /admin/tokens/{id} revokes any token and closes its socket at once; the
    account's other credentials stay; a revoked or unknown id is 404."""
    root = tokens["root"]
    listed = (await call(server, "GET", "/admin/tokens", token=root)).body["tokens"]
    assert {t["user"] for t in listed} == {"root", "alice", "bob"}
    assert set(listed[0]) == {"id", "user", "name", "created_at", "revoked"}
    (bobs,) = [t for t in listed if t["user"] == "bob"]
    socket = await open_socket(server, Authorization=f"Bearer {tokens['bob']}")
    other = await token_of(server, "bob")
    revoked = await call(server, "DELETE", f"/admin/tokens/{bobs['id']}", token=root)
    assert (revoked.status, revoked.body["revoked"]) == (200, True)
    await closed_signed_out(socket, within=2)
    assert (await call(server, "GET", "/account/tokens", token=tokens["bob"])).status == 401
    assert (await call(server, "GET", "/account/tokens", token=other)).status == 200
    for gone in (str(bobs["id"]), "999999", "x1"):
        answer = await call(server, "DELETE", f"/admin/tokens/{gone}", token=root)
        assert (answer.status, answer.code) == (404, "not_found")
    listed = (await call(server, "GET", "/admin/tokens", token=root)).body["tokens"]
    assert next(t for t in listed if t["id"] == bobs["id"])["revoked"] is True
    assert ("root", "token.revoke", "bob") in await audit_actions(server, root)


async def test_an_admin_resets_a_password_and_its_sessions_end(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    root = tokens["root"]
    async with browser() as session:
        assert (await sign_in(server, session, "alice")).status == 200
        socket = await open_socket(server, Cookie=cookie_of(session))
        new = "a brand new password"
        reset = await call(
            server, "POST", "/admin/users/alice/password", token=root, body={"password": new}
        )
        assert (reset.status, reset.body["sessions_ended"]) == (200, 1)
        await closed_signed_out(socket, within=2)
        assert (await call(server, "GET", "/account/tokens", session=session)).status == 401
        assert (await sign_in(server, session, "alice", PASSWORD)).status == 401
        assert (await sign_in(server, session, "alice", new)).status == 200
    assert (await call(server, "GET", "/account/tokens", token=tokens["alice"])).status == 200
    short = await call(
        server, "POST", "/admin/users/alice/password", token=root, body={"password": "x"}
    )
    assert short.status == 400
    actions = await audit_actions(server, root)
    assert actions.count(("root", "user.password", "alice")) == 1
    entries = (await call(server, "GET", "/admin/audit", token=root)).body["entries"]
    assert new not in json.dumps(entries)


async def test_own_tokens(server: RunningServer, tokens: dict[str, str]) -> None:
    """An account creates (signed in, not with a token), lists and revokes its own tokens;
    another's id is 404 and another's tokens are never listed."""
    minted = await call(
        server, "POST", "/account/tokens", token=tokens["alice"], body={"name": "copy"}
    )
    assert (minted.status, minted.code) == (403, "forbidden")
    async with browser() as page:
        assert (await sign_in(server, page, "alice")).status == 200
        created = await call(
            server, "POST", "/account/tokens", session=page, body={"name": "laptop"}
        )
    assert created.status == 201
    assert set(created.body) == {"id", "name", "token"}
    secret = created.body["token"]
    assert (await call(server, "GET", "/auth/me", token=secret)).body["user"] == "alice"
    mine = (await call(server, "GET", "/account/tokens", token=secret)).body["tokens"]
    assert [t["name"] for t in mine] == ["tests", "laptop"]
    assert set(mine[1]) == {"id", "name", "created_at", "revoked"}
    bobs = (await call(server, "GET", "/account/tokens", token=tokens["bob"])).body["tokens"]
    assert created.body["id"] not in [t["id"] for t in bobs]
    # bob cannot revoke alice's token: 404, as for an id that does not exist.
    stolen = await call(
        server, "DELETE", f"/account/tokens/{created.body['id']}", token=tokens["bob"]
    )
    assert (stolen.status, stolen.code) == (404, "not_found")
    assert (await call(server, "GET", "/auth/me", token=secret)).body["user"] == "alice"
    socket = await open_socket(server, Authorization=f"Bearer {secret}")
    revoked = await call(
        server, "DELETE", f"/account/tokens/{created.body['id']}", token=tokens["alice"]
    )
    assert (revoked.status, revoked.body["revoked"]) == (200, True)
    await closed_signed_out(socket, within=2)
    assert (await call(server, "GET", "/auth/me", token=secret)).body["user"] is None
    again = await call(
        server, "DELETE", f"/account/tokens/{created.body['id']}", token=tokens["alice"]
    )
    assert again.status == 404
    actions = await audit_actions(server, tokens["root"])
    assert ("alice", "token.create", "alice") in actions
    assert ("alice", "token.revoke", "alice") in actions
    entries = (await call(server, "GET", "/admin/audit", token=tokens["root"])).body["entries"]
    assert secret not in json.dumps(entries)


async def test_own_password_change_keeps_this_session_and_ends_the_others(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    new = "another long password"
    async with browser() as here, browser() as there:
        assert (await sign_in(server, here, "alice")).status == 200
        assert (await sign_in(server, there, "alice")).status == 200
        other_socket = await open_socket(server, Cookie=cookie_of(there))
        wrong = await call(
            server, "POST", "/account/password", session=here, body={"current": "nope", "new": new}
        )
        assert (wrong.status, wrong.code) == (403, "invalid_credentials")
        short = await call(
            server,
            "POST",
            "/account/password",
            session=here,
            body={"current": PASSWORD, "new": "x"},
        )
        assert short.status == 400
        changed = await call(
            server,
            "POST",
            "/account/password",
            session=here,
            body={"current": PASSWORD, "new": new},
        )
        assert (changed.status, changed.body["sessions_ended"]) == (200, 1)
        await closed_signed_out(other_socket, within=2)
        assert (await call(server, "GET", "/auth/me", session=here)).body["user"] == "alice"
        assert (await call(server, "GET", "/auth/me", session=there)).body["user"] is None
        assert (await sign_in(server, there, "alice", PASSWORD)).status == 401
        assert (await sign_in(server, there, "alice", new)).status == 200
    # With an API token: every session ends, the token stays.
    back = await call(
        server,
        "POST",
        "/account/password",
        token=tokens["alice"],
        body={"current": new, "new": PASSWORD},
    )
    assert (back.status, back.body["sessions_ended"]) == (200, 2)
    assert (await call(server, "GET", "/auth/me", token=tokens["alice"])).body["user"] == "alice"
    actions = await audit_actions(server, tokens["root"])
    assert actions.count(("alice", "password.change", "alice")) == 2
    entries = (await call(server, "GET", "/admin/audit", token=tokens["root"])).body["entries"]
    assert new not in json.dumps(entries)
    assert PASSWORD not in json.dumps(entries)


async def test_a_pending_sign_up_signs_in_once_approved(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """Sign-up makes a pending user account; its password is answered ``account_pending``
    (a wrong one ``invalid_credentials``); approved by an admin, it signs in."""
    async with browser() as session:
        body = {"user": "dora", "password": PASSWORD}
        cross = await call(
            server, "POST", "/auth/signup", session=session, body=body, origin=CROSS_SITE
        )
        assert (cross.status, cross.code) == (403, "origin_not_allowed")
        signed_up = await call(server, "POST", "/auth/signup", session=session, body=body)
        assert (signed_up.status, signed_up.body) == (201, {"user": "dora", "status": PENDING})
        taken = await call(server, "POST", "/auth/signup", session=session, body=body)
        assert (taken.status, taken.code) == (409, "name_taken")
        lookalike = await call(
            server, "POST", "/auth/signup", session=session, body={**body, "user": "dora\n"}
        )
        assert (lookalike.status, lookalike.code) == (400, "invalid_frame")
        short = await call(
            server, "POST", "/auth/signup", session=session, body={"user": "eve", "password": "x"}
        )
        assert short.status == 400
        pending = await sign_in(server, session, "dora")
        assert (pending.status, pending.code) == (403, "account_pending")
        assert "approval" in pending.body["error"]["message"]
        wrong = await sign_in(server, session, "dora", "not the password")
        assert (wrong.status, wrong.code) == (401, "invalid_credentials")
        assert (await call(server, "GET", "/auth/me", session=session)).body["user"] is None
        users = (await call(server, "GET", "/admin/users", token=tokens["root"])).body["users"]
        dora = next(u for u in users if u["name"] == "dora")
        assert (dora["role"], dora["status"]) == ("user", PENDING)
        approved = await call(
            server, "PATCH", "/admin/users/dora", token=tokens["root"], body={"status": "active"}
        )
        assert approved.status == 200
        assert (await sign_in(server, session, "dora")).status == 200
        me = await call(server, "GET", "/auth/me", session=session)
        assert (me.body["user"], me.body["role"]) == ("dora", "user")
    actions = await audit_actions(server, tokens["root"])
    assert actions[:2] == [("root", "user.approve", "dora"), ("dora", "user.signup", "dora")]


async def test_sign_up_is_off_by_default_and_rate_limited(
    make_settings: SettingsFactory, tokens: dict[str, str]
) -> None:
    body = {"user": "dora", "password": PASSWORD}
    async with run_server(make_settings()) as server:
        off = await call(server, "POST", "/auth/signup", body=body)
        assert (off.status, off.code) == (403, "signup_disabled")
        assert (await call(server, "GET", "/auth/me")).body["signup"] == "off"
    settings = make_settings(self_signup="approval", login_attempts_per_address_per_minute=3)
    async with run_server(settings) as server:
        statuses = [
            (await call(server, "POST", "/auth/signup", body={**body, "user": f"u{n}"})).status
            for n in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        not_json = await call(server, "POST", "/auth/signup")
        assert not_json.status == 415


async def test_sign_up_before_any_account_is_refused(make_settings: SettingsFactory) -> None:
    """Open mode (no account): sign-up would lock the server behind a pending account, so
    it is refused; the admin routes answer 403: open mode has no admin."""
    async with run_server(make_settings(self_signup="approval")) as server:
        refused = await call(
            server, "POST", "/auth/signup", body={"user": "dora", "password": PASSWORD}
        )
        assert (refused.status, refused.code) == (403, "signup_disabled")
        for method, path in (("GET", "/admin/users"), ("GET", "/admin/audit")):
            answer = await call(server, method, path)
            assert (answer.status, answer.code) == (403, "forbidden")
        assert (await call(server, "GET", "/account/tokens")).status == 401


async def test_the_audit_log_is_newest_first_with_paging(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    root = tokens["root"]
    for n in range(5):
        answer = await call(
            server, "PATCH", "/admin/users/bob", token=root, body={"limits": {"tokens_per_day": n}}
        )
        assert answer.status == 200
    first = (await call(server, "GET", "/admin/audit?limit=2", token=root)).body["entries"]
    assert [e["details"]["to"] for e in first] == [{"tokens_per_day": 4}, {"tokens_per_day": 3}]
    assert first[0]["id"] > first[1]["id"]
    assert set(first[0]) == {"id", "at", "actor", "action", "target", "details"}
    assert first[0]["at"].endswith("Z")
    page = await call(server, "GET", f"/admin/audit?limit=2&before={first[1]['id']}", token=root)
    assert [e["details"]["to"] for e in page.body["entries"]] == [
        {"tokens_per_day": 2},
        {"tokens_per_day": 1},
    ]
    for query in (
        "limit=0",
        "limit=1001",
        "limit=x",
        "before=-1",
        "limit=" + "1" * 5000,  # more digits than int() converts
        "before=" + "9" * 5000,
    ):
        bad = await call(server, "GET", f"/admin/audit?{query}", token=root)
        assert (bad.status, bad.code) == (400, "invalid_frame"), query


ADMIN_ROUTES = [
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"name": "mallory", "password": PASSWORD, "role": "admin"}),
    ("PATCH", "/admin/users/root", {"status": DISABLED}),
    ("PATCH", "/admin/users/alice", {"role": "admin"}),
    ("POST", "/admin/users/root/password", {"password": "taken over, ha"}),
    ("GET", "/admin/tokens", None),
    ("DELETE", "/admin/tokens/1", None),
    ("GET", "/admin/audit", None),
]
ACCOUNT_ROUTES = [
    ("GET", "/account/tokens", None),
    ("POST", "/account/tokens", {"name": "sneaky"}),
    ("DELETE", "/account/tokens/2", None),
    ("POST", "/account/password", {"current": PASSWORD, "new": "taken over, ha"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_everyone_but_an_admin(
    server: RunningServer, tokens: dict[str, str], method: str, path: str, body: Any
) -> None:
    """No credential 401; a user's cookie or API token 403; a cross-site write 403, even
    an admin's; and nothing changed."""
    assert (await call(server, method, path, body=body)).status == 401
    assert (await call(server, method, path, token="lt_not-a-token", body=body)).status == 401
    user = await call(server, method, path, token=tokens["alice"], body=body)
    assert (user.status, user.code) == (403, "forbidden")
    async with browser() as session:
        assert (await sign_in(server, session, "alice")).status == 200
        by_cookie = await call(server, method, path, session=session, body=body)
        assert (by_cookie.status, by_cookie.code) == (403, "forbidden")
    if method != "GET":
        async with browser() as session:
            assert (await sign_in(server, session, "root")).status == 200
            cross = await call(server, method, path, session=session, body=body, origin=CROSS_SITE)
            assert (cross.status, cross.code) == (403, "origin_not_allowed")
        cross = await call(server, method, path, token=tokens["root"], body=body, origin=CROSS_SITE)
        assert (cross.status, cross.code) == (403, "origin_not_allowed")
    await nothing_changed(server, tokens)


async def nothing_changed(server: RunningServer, tokens: dict[str, str]) -> None:
    """Every account as the fixture made it, every token live, the audit log empty."""
    root = tokens["root"]
    users = (await call(server, "GET", "/admin/users", token=root)).body["users"]
    assert [(u["name"], u["role"], u["status"]) for u in users] == [
        ("alice", "user", "active"),
        ("bob", "user", "active"),
        ("root", "admin", "active"),
    ]
    listed = (await call(server, "GET", "/admin/tokens", token=root)).body["tokens"]
    assert [(t["user"], t["name"], t["revoked"]) for t in listed] == [
        ("root", "tests", False),
        ("alice", "tests", False),
        ("bob", "tests", False),
    ]
    for name in ("root", "alice"):
        async with browser() as session:
            assert (await sign_in(server, session, name)).status == 200
    assert (await call(server, "GET", "/admin/audit", token=root)).body["entries"] == []


@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_ROUTES)
async def test_account_routes_need_a_credential_and_the_own_origin(
    server: RunningServer, tokens: dict[str, str], method: str, path: str, body: Any
) -> None:
    """No credential 401; a cross-site write 403 with a cookie or a token; nothing changed
    (token 2 is alice's: bob's DELETE of it is tested in test_own_tokens)."""
    assert (await call(server, method, path, body=body)).status == 401
    assert (await call(server, method, path, token="lt_not-a-token", body=body)).status == 401
    if method != "GET":
        async with browser() as session:
            assert (await sign_in(server, session, "alice")).status == 200
            cross = await call(server, method, path, session=session, body=body, origin=CROSS_SITE)
            assert (cross.status, cross.code) == (403, "origin_not_allowed")
        cross = await call(
            server, method, path, token=tokens["alice"], body=body, origin=CROSS_SITE
        )
        assert (cross.status, cross.code) == (403, "origin_not_allowed")
    await nothing_changed(server, tokens)


async def test_an_account_never_reaches_anothers_tokens(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    """bob, by cookie or token, lists only his own and cannot revoke alice's (404)."""
    alices = (await call(server, "GET", "/account/tokens", token=tokens["alice"])).body["tokens"]
    async with browser() as session:
        assert (await sign_in(server, session, "bob")).status == 200
        for bob_session, bob_token in ((session, None), (None, tokens["bob"])):
            listed = await call(
                server, "GET", "/account/tokens", session=bob_session, token=bob_token
            )
            assert [t["id"] for t in listed.body["tokens"]] == [3]
            refused = await call(
                server,
                "DELETE",
                f"/account/tokens/{alices[0]['id']}",
                session=bob_session,
                token=bob_token,
            )
            assert (refused.status, refused.code) == (404, "not_found")
    assert (await call(server, "GET", "/auth/me", token=tokens["alice"])).body["user"] == "alice"
