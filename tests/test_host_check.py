"""Host names (DNS rebinding), several processes without accounts, and who may observe.

A page on an attacker's name that resolves to this server sends ``Host`` and ``Origin``
of that name; the server must refuse it on every route, HTTP and WebSocket, while the
names it is reached by (loopback names, IP literals, the configured ones) keep working,
through nginx on a non-default port too.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from liaotian.auth import Authenticator, HostPolicy, host_name
from liaotian.errors import ConfigError
from liaotian.settings import Settings, load_settings
from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade
from tests.cluster import REDIS_URL, Nginx, create_user, redis_available, start_nginx
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server

LIAOTIAN = Path(sys.executable).with_name("liaotian")
REBOUND = "evil.example"
WS_PATHS = ("/ws?client_id=victim", "/ws/chat/victim")
HTTP_PATHS = ("/", "/c/abc", "/healthz", "/readyz", "/metrics", "/auth/me", "/assets/app.js")
TOKEN = "metrics-token-0123456789abcdef"
REMOTE = {"X-Forwarded-For": "203.0.113.9"}
"""What nginx on this machine adds for a remote client (uvicorn trusts it from 127.0.0.1)."""


async def handshake(url: str, path: str, **headers: str) -> int:
    """The HTTP status of a WebSocket handshake: 101 when accepted."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"{url}{path}", headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status


async def get(url: str, path: str, **headers: str) -> tuple[int, dict[str, object] | None]:
    """The status of a GET and its JSON body (None when it is not JSON)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}{path}", headers=headers) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, body


# -- the Host check ---------------------------------------------------------------------


@pytest.mark.parametrize("path", WS_PATHS)
async def test_a_rebound_host_cannot_open_a_websocket(server: RunningServer, path: str) -> None:
    """A handshake whose Host and Origin are an attacker's name is refused (403)."""
    rebound = f"{REBOUND}:{server.port}"
    status = await handshake(server.http_url, path, Host=rebound, Origin=f"http://{rebound}")
    assert status == 403


@pytest.mark.parametrize("path", HTTP_PATHS)
async def test_a_rebound_host_gets_400_on_every_http_route(
    server: RunningServer, path: str
) -> None:
    """Every HTTP route answers an attacker's Host with 400 host_not_allowed."""
    status, body = await get(server.http_url, path, Host=f"{REBOUND}:{server.port}")
    assert status == 400
    assert body is not None
    assert body["error"]["code"] == "host_not_allowed"  # type: ignore[index]


@pytest.mark.parametrize(
    "host",
    ["localhost:{port}", "app.localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "10.0.0.7"],
)
async def test_loopback_names_and_ip_literals_are_served(server: RunningServer, host: str) -> None:
    """Loopback names and IP literals (a load balancer's health check) pass, HTTP and WS."""
    host = host.format(port=server.port)
    assert (await get(server.http_url, "/healthz", Host=host))[0] == 200
    status = await handshake(server.http_url, WS_PATHS[0], Host=host, Origin=f"http://{host}")
    assert status == 101


async def test_allowed_hosts_name_the_public_hosts(make_settings: SettingsFactory) -> None:
    """allowed_hosts admits its names and the subdomains of a *. entry, nothing else."""
    settings = make_settings(allowed_hosts=["chat.example.com", "*.corp.example"])
    async with run_server(settings) as server:
        for host in ("chat.example.com", "a.corp.example", f"chat.example.com:{server.port}"):
            assert (await get(server.http_url, "/healthz", Host=host))[0] == 200
            status = await handshake(
                server.http_url, WS_PATHS[1], Host=host, Origin=f"https://{host}"
            )
            assert status == 101
        assert (await get(server.http_url, "/healthz", Host="corp.example.net"))[0] == 400


async def test_the_host_of_an_allowed_origin_is_served(make_settings: SettingsFactory) -> None:
    """A page of an allowed origin, served by the same host name, may talk to the server."""
    settings = make_settings(allowed_origins=["https://chat.example.com"])
    async with run_server(settings) as server:
        origin = "https://chat.example.com"
        status = await handshake(
            server.http_url, WS_PATHS[0], Host="chat.example.com", Origin=origin
        )
        assert status == 101


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Example.COM:8011", "example.com"),
        ("localhost.", "localhost"),
        ("[::1]:8011", "::1"),
        ("[::1]", "::1"),
        ("::1", None),
        ("[::1]x", None),
        ("example.com:http", None),
        ("", None),
    ],
)
def test_host_header_parsing(header: str, name: str | None) -> None:
    """A Host header's name: lowercased, without port or brackets; None when malformed."""
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("host", "served"),
    [("chat.internal", True), ("0.0.0.0", False), ("::", False)],
)
def test_the_configured_host_is_served_unless_it_is_a_wildcard(host: str, served: bool) -> None:
    """``host`` set to a name admits that name; a wildcard address admits no name."""
    policy = HostPolicy(Settings(host=host))
    assert policy.allows("chat.internal:8011") is served
    assert not policy.allows(f"{REBOUND}:8011")


@pytest.mark.parametrize("entry", ["https://chat.example.com", "chat.example.com:8080", "a b"])
def test_allowed_hosts_entries_must_be_host_names(entry: str) -> None:
    """A URL or host:port in allowed_hosts stops start-up, naming the setting."""
    with pytest.raises(ConfigError, match="allowed_hosts"):
        load_settings(allowed_hosts=[entry])


# -- through nginx ----------------------------------------------------------------------


@pytest.fixture
async def behind_nginx(server: RunningServer, tmp_path: Path) -> AsyncIterator[Nginx]:
    running = await start_nginx(tmp_path, [server.port])
    try:
        yield running
    finally:
        await running.stop()


async def test_the_pages_origin_opens_a_websocket_through_nginx(behind_nginx: Nginx) -> None:
    """Through deploy/nginx.conf on a non-default port, the page's own Origin is accepted."""
    status = await handshake(behind_nginx.http_url, WS_PATHS[0], Origin=behind_nginx.http_url)
    assert status == 101


async def test_the_pages_origin_may_sign_in_through_nginx(behind_nginx: Nginx) -> None:
    """Through nginx on a non-default port, sign-in from the page's origin is not refused."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{behind_nginx.http_url}/auth/login",
            json={"user": "nobody", "password": "wrong password"},
            headers={"Origin": behind_nginx.http_url},
        ) as response,
    ):
        assert response.status == 401


async def test_a_rebound_host_is_refused_through_nginx(behind_nginx: Nginx) -> None:
    """nginx passes the browser's Host on, so an attacker's name is refused behind it too."""
    rebound = f"{REBOUND}:{behind_nginx.port}"
    assert (await get(behind_nginx.http_url, "/healthz", Host=rebound))[0] == 400
    status = await handshake(
        behind_nginx.http_url, WS_PATHS[0], Host=rebound, Origin=f"http://{rebound}"
    )
    assert status == 403


# -- several processes need accounts ------------------------------------------------------


async def test_several_processes_without_users_refuse_to_start(tmp_path: Path) -> None:
    """With redis_url and no user, serve exits non-zero and says how to create one."""
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/open.db",
        "LIAOTIAN_REDIS_URL": "redis://127.0.0.1:6379/0",
        "LIAOTIAN_LOCAL_ENABLED": "false",
    }
    process = await asyncio.create_subprocess_exec(
        str(LIAOTIAN), "serve", "--port", "0", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode != 0
    assert b"redis_url" in stderr
    assert b"liaotian user add" in stderr


async def test_several_processes_never_run_open(tmp_path: Path) -> None:
    """With redis_url, credentials are required even when no user exists (any more)."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/accounts.db"
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        settings = Settings(database_url=database_url, redis_url="redis://127.0.0.1:6379/0")
        assert await Authenticator(settings, Accounts(engine)).required()
    finally:
        await engine.dispose()


async def test_a_user_lets_several_processes_start(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Once a user exists, a server with redis_url starts and admits only credentials."""
    await redis_available()
    token = await create_user(database_url)
    async with run_server(make_settings(redis_url=REDIS_URL, redis_prefix="host-check")) as server:
        assert await handshake(server.http_url, WS_PATHS[0]) == 403
        status = await handshake(server.http_url, "/ws", Authorization=f"Bearer {token}")
        assert status == 101


# -- /metrics and /readyz ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/readyz"])
async def test_probes_answer_loopback_clients_only_by_default(
    server: RunningServer, path: str
) -> None:
    """By default /metrics and /readyz answer this machine, and 403 a remote client."""
    assert (await get(server.http_url, path))[0] == 200
    status, body = await get(server.http_url, path, **REMOTE)
    assert status == 403
    assert body is not None
    assert "metrics_token" in body["error"]["message"]  # type: ignore[index]


@pytest.mark.parametrize("path", ["/metrics", "/readyz"])
async def test_the_metrics_token_admits_a_remote_client(
    make_settings: SettingsFactory, path: str
) -> None:
    """A remote client with the bearer metrics_token is answered; a wrong token is not."""
    async with run_server(make_settings(metrics_token=TOKEN)) as server:
        right = await get(server.http_url, path, Authorization=f"Bearer {TOKEN}", **REMOTE)
        wrong = await get(server.http_url, path, Authorization=f"Bearer {TOKEN}x", **REMOTE)
    assert (right[0], wrong[0]) == (200, 403)


async def test_metrics_access_any_opens_the_probes(make_settings: SettingsFactory) -> None:
    """metrics_access = "any" answers every client, as before."""
    async with run_server(make_settings(metrics_access="any")) as server:
        assert (await get(server.http_url, "/metrics", **REMOTE))[0] == 200
        assert (await get(server.http_url, "/readyz", **REMOTE))[0] == 200


def test_a_short_metrics_token_is_refused() -> None:
    """A metrics_token shorter than 16 characters stops start-up."""
    with pytest.raises(ConfigError, match="metrics_token"):
        load_settings(metrics_token="short")
