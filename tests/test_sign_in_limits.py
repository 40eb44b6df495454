"""Sign-in limits: per client address, per user name from an address, bounded password checks,
and a shared limiter (Redis) whose failure is logged, counted and does not lift the limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from liaotian.errors import RateLimited
from liaotian.guards import Guards
from liaotian.metrics import Metrics
from liaotian.settings import Settings
from tests.cluster import free_port
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.test_owners import PASSWORD, add_user

STRANGER = "127.0.0.2"
"""Another loopback address: connections from it are another client, not a trusted proxy."""


@pytest.fixture
async def alice(database_url: str) -> None:
    await add_user(database_url, "alice")


async def sign_in(
    server: RunningServer,
    user: str,
    password: str,
    *,
    address: str = "127.0.0.1",
    forwarded_for: str | None = None,
) -> aiohttp.ClientResponse:
    """POST /auth/login from ``address`` (a fresh connection); the (read) response."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            f"{server.http_url}/auth/login",
            json={"user": user, "password": password},
            headers=headers,
        ) as response,
    ):
        await response.read()
        return response


@pytest.fixture
async def limited(make_settings: SettingsFactory, alice: None) -> AsyncIterator[RunningServer]:
    """A server with alice, 3 attempts a minute per name and address, 5 per address."""
    settings = make_settings(login_attempts_per_minute=3, login_attempts_per_address_per_minute=5)
    async with run_server(settings) as server:
        yield server


async def test_many_names_from_one_address_are_throttled(limited: RunningServer) -> None:
    """Trying a different name each time still counts against the address."""
    for attempt in range(5):
        assert (await sign_in(limited, f"name{attempt}", "guess")).status == 401
    refused = await sign_in(limited, "name5", "guess")
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_stranger_cannot_lock_a_user_out(limited: RunningServer) -> None:
    """Wrong passwords for alice from elsewhere use up only the stranger's attempts."""
    for _ in range(3):
        assert (await sign_in(limited, "alice", "guess", address=STRANGER)).status == 401
    assert (await sign_in(limited, "alice", "guess", address=STRANGER)).status == 429
    assert (await sign_in(limited, "alice", PASSWORD)).status == 200


async def test_a_client_cannot_choose_its_address_with_x_forwarded_for(
    limited: RunningServer,
) -> None:
    """Only a trusted proxy's X-Forwarded-For counts; a client's own is ignored."""
    for attempt in range(5):
        forged = f"198.51.100.{attempt}"
        response = await sign_in(
            limited, f"name{attempt}", "guess", address=STRANGER, forwarded_for=forged
        )
        assert response.status == 401
    response = await sign_in(
        limited, "name5", "guess", address=STRANGER, forwarded_for="198.51.100.99"
    )
    assert response.status == 429


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    limited: RunningServer,
) -> None:
    """Through a proxy on 127.0.0.1 (as nginx), the limit is per forwarded address."""
    for attempt in range(5):
        response = await sign_in(limited, f"name{attempt}", "guess", forwarded_for="203.0.113.5")
        assert response.status == 401
    assert (await sign_in(limited, "x", "guess", forwarded_for="203.0.113.5")).status == 429
    assert (await sign_in(limited, "x", "guess", forwarded_for="203.0.113.6")).status == 401


async def test_password_checks_beyond_the_bound_are_refused_at_once(
    make_settings: SettingsFactory, alice: None
) -> None:
    """With every check slot taken and the queue full, a sign-in gets 503 without waiting."""
    settings = make_settings(password_checks_at_once=1, password_check_queue=2)
    async with run_server(settings) as server:
        guards = server.services.guards
        attempts = [asyncio.create_task(sign_in(server, "alice", "guess")) for _ in range(5)]
        async with guards.password_check():  # the test holds the only slot
            # 1 slot (held) + 2 in the queue: the other 3 are answered while we hold it.
            answered, waiting = await first_answers(attempts, 3)
            for task in answered:
                response = task.result()
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
            assert guards.password_checks_running == 1
            assert not any(task.done() for task in waiting)
        statuses = [(await task).status for task in waiting]
        assert statuses == [401, 401]
        assert guards.password_checks_running == 0


async def first_answers(
    tasks: list[asyncio.Task[aiohttp.ClientResponse]], count: int
) -> tuple[set[asyncio.Task[aiohttp.ClientResponse]], set[asyncio.Task[aiohttp.ClientResponse]]]:
    """Wait (30 s at most) until ``count`` of ``tasks`` are done: (done, pending)."""
    done: set[asyncio.Task[aiohttp.ClientResponse]] = set()
    pending = set(tasks)
    async with asyncio.timeout(30):
        while len(done) < count:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done |= finished
    assert len(done) == count, "more attempts were answered than the slots allow"
    return done, pending


# -- a shared limiter that fails ------------------------------------------------------------


def unreachable_redis_guards(**overrides: Any) -> tuple[Guards, Metrics]:
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", local_enabled=False, **overrides
    )
    metrics = Metrics()
    return Guards(settings, metrics), metrics


async def test_an_unreachable_limiter_is_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis down: one error record for the outage (not one per check), failures counted."""
    guards, metrics = unreachable_redis_guards()
    with caplog.at_level(logging.ERROR, logger="liaotian.guards"):
        for _ in range(3):
            await guards.check_login("alice", "127.0.0.1")
            await guards.check_message("alice")
    records = [record for record in caplog.records if record.name == "liaotian.guards"]
    assert len(records) == 1
    assert "shared store (redis) failed" in records[0].getMessage()
    assert (metrics.registry.get_sample_value("liaotian_limiter_failures_total") or 0) >= 1


async def test_limits_hold_in_the_process_while_the_limiter_is_unreachable() -> None:
    """Redis down: the process's own windows still refuse what is over the rate."""
    guards, _ = unreachable_redis_guards(login_attempts_per_minute=2)
    await guards.check_login("alice", "127.0.0.1")
    await guards.check_login("alice", "127.0.0.1")
    with pytest.raises(RateLimited):
        await guards.check_login("alice", "127.0.0.1")
