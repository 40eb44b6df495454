"""CORS on the OpenAI-compatible API: off by default, only for ``/v1``, only for the
origins in ``api_cors_origins``, and never with credentials (the API takes a bearer key,
not the page's cookie)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from liaotian.errors import ConfigError
from liaotian.settings import load_settings
from tests.cluster import PASSWORD, USER, create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server

APP = "https://app.example"
OTHER = "https://other.example"
AUTH = {"Authorization": "Bearer cors-client"}
"""Open mode, per-client owners (the test server's): the API key is the client id."""
ACAO = "Access-Control-Allow-Origin"


@pytest.fixture
async def cors_server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings(api_cors_origins=[APP])) as running:
        yield running


async def preflight(
    server: RunningServer, path: str, origin: str, method: str = "GET"
) -> tuple[int, CIMultiDictProxy[str]]:
    """A browser's preflight for a request with ``Authorization`` and a JSON body."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.options(f"{server.http_url}{path}", headers=headers) as response,
    ):
        return response.status, response.headers


async def get(
    server: RunningServer, path: str, origin: str | None, **params: str
) -> tuple[int, CIMultiDictProxy[str], Any]:
    """A GET as a browser on ``origin`` sends it: (status, headers, JSON body or None)."""
    headers = {**AUTH, **({"Origin": origin} if origin else {})}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.http_url}{path}", headers=headers, params=params) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers, body


# -- by default: no cross-site browser access -------------------------------------------------


async def test_by_default_a_preflight_from_another_site_is_not_allowed(
    server: RunningServer,
) -> None:
    """Without api_cors_origins, a preflight for /v1/models gets no Allow-Origin header."""
    _, headers = await preflight(server, "/v1/models", OTHER)
    assert ACAO not in headers


async def test_by_default_another_sites_request_is_refused_in_openais_format(
    server: RunningServer,
) -> None:
    """Without api_cors_origins, a request with another site's Origin is 403
    origin_not_allowed, OpenAI's error object, with no CORS header."""
    status, headers, body = await get(server, "/v1/models", OTHER)
    assert status == 403
    assert body == {
        "error": {
            "message": "this origin may not call the API (api_cors_origins lists those that may)",
            "type": "permission_error",
            "param": None,
            "code": "origin_not_allowed",
        }
    }
    assert ACAO not in headers


async def test_the_servers_own_origin_may_call_the_api(server: RunningServer) -> None:
    """A page of the server's own origin is not another site: its request is answered."""
    status, _, _ = await get(server, "/v1/models", server.http_url)
    assert status == 200


# -- with api_cors_origins --------------------------------------------------------------------


async def test_a_listed_origins_preflight_allows_the_authorization_header(
    cors_server: RunningServer,
) -> None:
    """A preflight from a listed origin is answered with that origin, POST and the
    Authorization header allowed."""
    status, headers = await preflight(cors_server, "/v1/chat/completions", APP, "POST")
    assert status == 200
    assert headers[ACAO] == APP
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()


async def test_a_listed_origins_request_is_answered_with_its_origin(
    cors_server: RunningServer,
) -> None:
    """GET /v1/models from a listed origin works and carries Allow-Origin for it."""
    status, headers, body = await get(cors_server, "/v1/models", APP)
    assert status == 200
    assert headers[ACAO] == APP
    assert body["object"] == "list"


async def test_cors_never_allows_credentials(cors_server: RunningServer) -> None:
    """Neither the preflight nor the answer allows credentials: cookies never reach /v1
    from another site (the key is the Authorization header)."""
    _, preflight_headers = await preflight(cors_server, "/v1/models", APP)
    _, headers, _ = await get(cors_server, "/v1/models", APP)
    assert "Access-Control-Allow-Credentials" not in preflight_headers
    assert "Access-Control-Allow-Credentials" not in headers


@pytest.mark.parametrize("path", ["/attachments", "/auth/me", "/conversations/import"])
async def test_a_listed_origin_gets_no_cors_outside_v1(
    cors_server: RunningServer, path: str
) -> None:
    """api_cors_origins opens /v1 only: the page's routes answer a listed origin's
    preflight with no CORS header."""
    _, headers = await preflight(cors_server, path, APP, "POST")
    assert ACAO not in headers


async def test_a_listed_origin_gets_no_cors_header_on_the_pages_routes(
    cors_server: RunningServer,
) -> None:
    """A listed origin's GET of /auth/me carries no Allow-Origin header: the browser keeps
    the answer from that site."""
    _, headers, _ = await get(cors_server, "/auth/me", APP, client_id="cors-client")
    assert ACAO not in headers


async def test_an_unlisted_origin_is_still_refused(cors_server: RunningServer) -> None:
    """With api_cors_origins set, another origin's preflight gets no Allow-Origin and its
    request is 403 origin_not_allowed."""
    _, preflight_headers = await preflight(cors_server, "/v1/models", OTHER)
    status, headers, body = await get(cors_server, "/v1/models", OTHER)
    assert ACAO not in preflight_headers
    assert status == 403
    assert body["error"]["code"] == "origin_not_allowed"
    assert ACAO not in headers


# -- the setting --------------------------------------------------------------------------------


def test_api_cors_origins_takes_comma_separated_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LIAOTIAN_API_CORS_ORIGINS=a,b`` is the list [a, b] (spaces and blanks dropped)."""
    monkeypatch.setenv("LIAOTIAN_API_CORS_ORIGINS", "https://app.example, http://127.0.0.1:5173,")
    assert load_settings().api_cors_origins == ["https://app.example", "http://127.0.0.1:5173"]


def test_api_cors_origins_takes_json_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LIAOTIAN_API_CORS_ORIGINS`` as a JSON list is the same list."""
    monkeypatch.setenv("LIAOTIAN_API_CORS_ORIGINS", '["https://app.example", "https://b.example"]')
    assert load_settings().api_cors_origins == ["https://app.example", "https://b.example"]


def test_api_cors_origins_is_empty_by_default() -> None:
    """No setting: no origin is listed (no cross-site browser access)."""
    assert load_settings().api_cors_origins == []


@pytest.mark.parametrize("entry", ["https://app.example/", "*", "app.example", "ftp://a.example"])
def test_an_api_cors_origin_that_no_browser_sends_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    """A path, a trailing slash, a wildcard or a bare host would never match a browser's
    Origin: start-up refuses it with a message saying what an origin looks like."""
    monkeypatch.setenv("LIAOTIAN_API_CORS_ORIGINS", entry)
    with pytest.raises(ConfigError, match="is not an origin"):
        load_settings()


# -- credentials --------------------------------------------------------------------------------


async def test_the_pages_session_cookie_is_not_an_api_key(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """With accounts, a signed-in page's cookie on /v1 is 401 missing_api_key; the same
    user's API token is answered."""
    token = await create_user(database_url)
    async with (
        run_server(make_settings()) as server,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
    ):
        async with browser.post(
            f"{server.http_url}/auth/login", json={"user": USER, "password": PASSWORD}
        ) as signed_in:
            assert signed_in.status == 200
        async with browser.get(f"{server.http_url}/v1/models") as with_cookie:
            assert with_cookie.status == 401
            assert (await with_cookie.json())["error"]["code"] == "missing_api_key"
        async with browser.get(
            f"{server.http_url}/v1/models", headers={"Authorization": f"Bearer {token}"}
        ) as with_token:
            assert with_token.status == 200
