"""Revoking a token or disabling an account on one process closes the sockets those
credentials opened on another, within ``credential_check_interval``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from liaotian.store.accounts import DISABLED
from tests.cluster import PASSWORD, Cluster, accounts_of, run_cluster
from tests.conftest import fresh_postgres_database
from tests.fake_upstream import FakeUpstream
from tests.test_admin import call, closed_signed_out
from tests.wsclient import RawClient

pytestmark = pytest.mark.scaleout


@pytest.fixture
async def cluster(tmp_path: Path, fake: FakeUpstream) -> AsyncIterator[tuple[Cluster, str]]:
    """Two processes (the sweep every 0.2 s); alice, the first account, is their admin."""
    async with (
        fresh_postgres_database() as url,
        run_cluster(
            tmp_path, url, fake.dashscope_base_url, credential_check_interval="0.2"
        ) as running,
    ):
        yield running, url


async def bob_socket(cluster: Cluster, token: str) -> RawClient:
    """A socket of bob's ``token`` on the second process."""
    client = RawClient(
        await connect(
            cluster.servers[1].ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
        )
    )
    assert (await client.recv())["type"] == "hello"
    return client


async def test_an_admin_on_one_process_closes_sockets_on_another(
    cluster: tuple[Cluster, str],
) -> None:
    running, url = cluster
    admin, other = running.servers
    async with accounts_of(url) as accounts:
        await accounts.add_user("bob", PASSWORD)
        first_id, first = await accounts.create_token("bob", "one")
        _, second = await accounts.create_token("bob", "two")
    revoked_socket = await bob_socket(running, first)
    kept_socket = await bob_socket(running, second)
    revoked = await call(admin, "DELETE", f"/admin/tokens/{first_id}", token=running.token)
    assert revoked.status == 200
    await closed_signed_out(revoked_socket, within=5)
    await kept_socket.send({"type": "ping", "id": "p"})
    assert (await kept_socket.recv())["type"] == "pong"
    disabled = await call(
        admin, "PATCH", "/admin/users/bob", token=running.token, body={"status": DISABLED}
    )
    assert disabled.status == 200
    await closed_signed_out(kept_socket, within=5)
    assert (await call(other, "GET", "/account/tokens", token=second)).status == 401
