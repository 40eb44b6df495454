"""Shared fixtures: an isolated environment, the fake upstream, a real server."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from liaotian.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer, run_server

PROVIDER_VARIABLES = (
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_HTTP_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)

SettingsFactory = Callable[..., Settings]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's provider keys or LIAOTIAN_* settings."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("LIAOTIAN_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key="test-key") as upstream:
        yield upstream


@pytest.fixture
def make_settings(tmp_path: Path, fake: FakeUpstream) -> SettingsFactory:
    """Settings for a test server: SQLite in tmp_path, both HTTP providers on the fake."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/liaotian.db",
            "local_enabled": False,
            "dashscope_api_key": "test-key",
            "dashscope_base_url": fake.dashscope_base_url,
            "openai_api_key": "test-key",
            "openai_base_url": fake.openai_base_url,
            "checkpoint_interval": 0.05,
            "default_model": "qwen-plus",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings()) as running:
        yield running


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the /dev/null files llama_cpp opens at import and never closes.

    Otherwise Python reports them as ResourceWarnings at exit, after pytest's summary.
    """
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
