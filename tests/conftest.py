"""Shared fixtures: an isolated environment, the fake upstream, a real server."""

from __future__ import annotations

import gc
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from liaotian.settings import Settings, normalize_database_url
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer, run_server

# Which database the tests run on: "sqlite" (default) or "postgresql". scripts/test runs
# the suite once on each. Read at import, before the environment is isolated.
TEST_DATABASE = os.environ.get("LIAOTIAN_TEST_DATABASE", "sqlite")
TEST_POSTGRES_URL = os.environ.get(
    "LIAOTIAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

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


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so a leaked socket or task is reported against the
    test that leaked it, not whichever test the collector happens to run in."""
    yield
    gc.collect()


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key="test-key") as upstream:
        yield upstream


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards.

    Skips the test when PostgreSQL is unreachable, except under CI=true (then it fails).
    """
    import asyncpg

    try:
        admin = await asyncpg.connect(TEST_POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL unreachable at {TEST_POSTGRES_URL}: {error}")
    name = f"liaotian_test_{uuid.uuid4().hex[:16]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = TEST_POSTGRES_URL.rpartition("/")
    try:
        yield normalize_database_url(f"{base}/{name}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database whatever the run's database (several processes
    need one): see :func:`fresh_postgres_database`."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A new, empty database for this test: a SQLite file, or a fresh PostgreSQL database."""
    if TEST_DATABASE == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/liaotian.db"
        return
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def make_settings(database_url: str, fake: FakeUpstream) -> SettingsFactory:
    """Settings for a test server: the test's database, both HTTP providers on the fake."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "local_enabled": False,
            "dashscope_api_key": "test-key",
            "dashscope_base_url": fake.dashscope_base_url,
            "openai_api_key": "test-key",
            "openai_base_url": fake.openai_base_url,
            "checkpoint_interval": 0.05,
            "default_model": "qwen-plus",
            # Each client id its own owner, so tests can keep owners apart without accounts;
            # the shared default is tested in tests/test_open_owner.py.
            "open_owner": "per-client",
            "shutdown_grace": 0,
            # Retries before the first token are real (tests/test_resilience.py), but fast.
            "provider_retry_backoff": 0.01,
            # Background titles would add upstream requests and title changes to every
            # test; tests/test_titles.py turns them on.
            "title_model": "off",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings()) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use a database, so they can be run again on another one."""
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the /dev/null files llama_cpp opens at import and never closes.

    Otherwise Python reports them as ResourceWarnings at exit, after pytest's summary.
    """
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
