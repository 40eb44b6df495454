"""How the server serves the built page: /, /c/<id>, hashed assets, and what to do unbuilt."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from liaotian import app as app_module
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server


async def test_conversation_links_serve_the_page(server: RunningServer) -> None:
    """/c/<id> is the same page as /, never cached, so links and reloads open the conversation."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.http_url}/") as response:
            page = await response.text()
        async with session.get(f"{server.http_url}/c/abc123") as response:
            assert response.status == 200
            assert await response.text() == page
            assert response.headers["Cache-Control"] == "no-cache"


async def test_hashed_assets_are_cached_for_good(server: RunningServer) -> None:
    """Files under /assets carry a content hash in their names and a year-long cache."""
    assets = app_module.DIST / "assets"
    name = next(path.name for path in assets.iterdir() if path.suffix == ".js")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.http_url}/assets/{name}") as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        async with session.get(f"{server.http_url}/assets/missing.js") as response:
            assert response.status == 404


async def test_an_unbuilt_page_says_how_to_build_it(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without web/'s build, / is a 503 page (no script) that says to run scripts/setup."""
    monkeypatch.setattr(app_module, "DIST", tmp_path / "dist")
    async with run_server(make_settings()) as server, aiohttp.ClientSession() as session:
        async with session.get(f"{server.http_url}/") as response:
            assert response.status == 503
            body = await response.text()
            assert "scripts/setup" in body
            assert "<script" not in body
        async with session.get(f"{server.http_url}/healthz") as response:
            assert response.status == 200
