"""Several real `liaotian serve` processes on PostgreSQL and Redis, behind a real nginx.

Several processes require accounts: :func:`run_cluster` creates the user ``alice`` first
and hands out her API token (:attr:`Cluster.token`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
LIAOTIAN = Path(sys.executable).with_name("liaotian")
REDIS_URL = os.environ.get("LIAOTIAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The machine's own Redis, restarted by the Redis-outage test with the command it was
# started with (see the env notes of this machine kind).
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


USER = "alice"
PASSWORD = "correct horse battery"


@asynccontextmanager
async def accounts_of(database_url: str) -> AsyncIterator[Accounts]:
    """The accounts of a migrated database (as ``liaotian user …`` sees them)."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        yield Accounts(engine)
    finally:
        await engine.dispose()


async def create_user(database_url: str, name: str = USER) -> str:
    """Create ``name`` (password :data:`PASSWORD`) in the database, migrating it first;
    return an API token of the user."""
    async with accounts_of(database_url) as accounts:
        await accounts.add_user(name, PASSWORD)
        _, token = await accounts.create_token(name, "tests")
        return token


def free_port() -> int:
    """A local port nothing listens on (it was free when asked)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def redis_available() -> None:
    """Skip the test when Redis is unreachable, except under CI=true (then fail)."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as error:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {error}")
    finally:
        await client.aclose()


async def wait_http_ok(url: str, within: float = 30.0) -> None:
    """Return once ``url`` answers 200; raise TimeoutError otherwise."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(within):
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


@dataclass
class ServerProcess:
    """One `liaotian serve` child process."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(LIAOTIAN), "serve", "--port", str(self.port),
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        await wait_http_ok(f"{self.http_url}/readyz")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class Nginx:
    """nginx running deploy/nginx.conf on 127.0.0.1:``port`` (a free port, never 80)."""

    port: int
    process: asyncio.subprocess.Process

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def start_nginx(workdir: Path, upstream_ports: list[int]) -> Nginx:
    """Run nginx with deploy/nginx.conf, its listen port and upstreams filled in; skip the
    test when nginx is not installed, except under CI=true (then fail)."""
    nginx, prefix, port = _prepare_nginx(workdir, upstream_ports)
    process = await asyncio.create_subprocess_exec(
        nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
        "-g", f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log;",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    running = Nginx(port, process)
    try:
        await wait_http_ok(f"{running.http_url}/healthz")
    except BaseException:
        await running.stop()
        raise
    return running


def _prepare_nginx(workdir: Path, upstream_ports: list[int]) -> tuple[str, Path, int]:
    """nginx's binary, its prefix directory with the configuration written, its port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError("nginx is not installed (scripts/test installs it)")
        pytest.skip("nginx is not installed")
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    port = free_port()
    config = (REPO / "deploy" / "nginx.conf").read_text()
    config = re.sub(r"listen \d+;", f"listen 127.0.0.1:{port};", config)
    config = config.replace("worker_processes auto;", "worker_processes 1;")
    (prefix / "nginx.conf").write_text(config)
    (prefix / "liaotian-upstreams.conf").write_text(
        "".join(f"server 127.0.0.1:{upstream};\n" for upstream in upstream_ports)
    )
    return nginx, prefix, port


@dataclass
class Cluster:
    """``servers`` sharing one database and Redis, and nginx in front of them once
    started; connections sign in as :data:`USER` with ``token``."""

    servers: list[ServerProcess]
    workdir: Path
    token: str
    nginx: Nginx | None = field(default=None)

    @property
    def nginx_ws_url(self) -> str:
        assert self.nginx is not None
        return self.nginx.ws_url

    @property
    def headers(self) -> dict[str, str]:
        """The headers that sign a handshake in as :data:`USER`."""
        return {"Authorization": f"Bearer {self.token}"}

    async def start_nginx(self) -> None:
        self.nginx = await start_nginx(self.workdir, [server.port for server in self.servers])

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers))
        if self.nginx is not None:
            await self.nginx.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {server.log_path.name}\n{server.log_path.read_text(errors='replace')[-3000:]}"
            for server in self.servers
            if server.log_path.exists()
        )


@asynccontextmanager
async def run_cluster(
    workdir: Path,
    database_url: str,
    upstream_base: str,
    *,
    count: int = 2,
    nginx: bool = False,
    **settings: str,
) -> AsyncIterator[Cluster]:
    """Create the user, start ``count`` processes (and nginx); stop them all on exit,
    printing their logs when the test failed."""
    await redis_available()
    token = await create_user(database_url)
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": database_url,
        "LIAOTIAN_REDIS_URL": REDIS_URL,
        "LIAOTIAN_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
        "LIAOTIAN_LOCAL_ENABLED": "false",
        "LIAOTIAN_DEFAULT_MODEL": "qwen-plus",
        "LIAOTIAN_CHECKPOINT_INTERVAL": "0.1",
        "LIAOTIAN_REPLY_LEASE": "2",
        "LIAOTIAN_LOG_LEVEL": "warning",
        "LIAOTIAN_SHUTDOWN_GRACE": "0",
        "LIAOTIAN_TITLE_MODEL": "off",  # tests/test_titles.py turns titles on
        "DASHSCOPE_API_KEY": "test-key",
        "DASHSCOPE_HTTP_BASE_URL": upstream_base,
        **{f"LIAOTIAN_{name.upper()}": value for name, value in settings.items()},
    }
    servers = [ServerProcess(free_port(), env, workdir / f"server-{n}.log") for n in range(count)]
    cluster = Cluster(servers, workdir, token)
    try:
        # One at a time (the user's creation migrated the database already).
        for server in servers:
            await server.start()
        if nginx:
            await cluster.start_nginx()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await cluster.stop()
