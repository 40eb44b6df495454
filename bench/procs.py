"""The processes under test and the load, pinned to cores, and what /proc says about them.

The server (``liaotian serve``) runs pinned to :data:`SERVER_CORE`; the fake upstream, the
load client and this orchestrator share :data:`LOAD_CORE`. CPU time and RSS come from
``/proc/<pid>/stat`` and ``/proc/<pid>/status`` (all threads of the process included).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LIAOTIAN = str(Path(sys.executable).with_name("liaotian"))
SERVER_CORE = 0
LOAD_CORE = 1
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def pin_self(core: int) -> None:
    """Pin this process (and so its children unless they say otherwise) to ``core``."""
    os.sched_setaffinity(0, {core})


def raise_file_limit() -> int:
    """Raise the open-file limit to the hard limit (inherited by the children)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def machine_load() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class CpuSampler:
    """Samples the CPU time of some processes every ``period`` seconds, in a thread."""

    pids: Mapping[str, int]
    period: float = 0.5
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.period):
                self.sample()
                return

    def sample(self) -> None:
        values = {}
        for name, pid in self.pids.items():
            try:
                values[name] = cpu_seconds(pid)
            except OSError:
                continue
        self.samples.append((time.monotonic(), values))

    def utilisation(self, name: str, start: float, end: float) -> float:
        """Mean share of one core used by ``name`` between two monotonic times."""
        inside = [(t, v[name]) for t, v in self.samples if start <= t <= end and name in v]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def timeline(self, name: str) -> list[tuple[float, float]]:
        """``(time, share of a core)`` per sampling period."""
        points = [(t, v[name]) for t, v in self.samples if name in v]
        return [
            (t1, (c1 - c0) / (t1 - t0))
            for (t0, c0), (t1, c1) in itertools.pairwise(points)
            if t1 > t0
        ]


# ---------------------------------------------------------------------------------------------
# The fake upstream


@dataclass
class Upstream:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def upstream(core: int = LOAD_CORE) -> Iterator[Upstream]:
    process = subprocess.Popen(
        pinned(core, [PYTHON, "-m", "bench.upstream", "--port", "0"]),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake upstream did not start: {line!r}")
        yield Upstream(process, int(line.split()[1]))
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------------------
# The server


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    accounts_url: str | None = None
    """The database of its users when the server requires accounts (several processes:
    ``redis_url`` set); load jobs then sign in (:func:`sign_up`)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_problems(self) -> list[str]:
        """Lines of the server's log at level ERROR or worse (and tracebacks)."""
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line][:20]


def server_env(
    workdir: Path,
    upstream_url: str,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    local: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a server under test: production defaults, except the limits a
    load test must raise, the database, and the DashScope provider on the fake."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LIAOTIAN_", "DASHSCOPE_", "OPENAI_"))
    }
    env.update(
        {
            "LIAOTIAN_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir}/bench.db",
            "LIAOTIAN_LOCAL_ENABLED": "true" if local else "false",
            "LIAOTIAN_MESSAGES_PER_MINUTE": "100000",
            "LIAOTIAN_MAX_CONNECTIONS": "30000",
            "LIAOTIAN_MAX_CONNECTIONS_PER_OWNER": "1000",
            "LIAOTIAN_MAX_REPLIES_PER_OWNER": "1000",
            # Clients are many users, each its own owner (open mode shares one by default).
            "LIAOTIAN_OPEN_OWNER": "per-client",
            "DASHSCOPE_API_KEY": "bench-key",
            "DASHSCOPE_HTTP_BASE_URL": f"{upstream_url}/api/v1",
        }
    )
    if not local:
        env["LIAOTIAN_DEFAULT_MODEL"] = "qwen-plus"
    if redis_url:
        env["LIAOTIAN_REDIS_URL"] = redis_url
        env["LIAOTIAN_REDIS_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
    env.update(extra or {})
    return env


def wait_ready(port: int, process: subprocess.Popen[Any], within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} was not ready within {within}s")


@contextmanager
def servers(
    env: Mapping[str, str], workdir: Path, *, count: int = 1, core: int = SERVER_CORE
) -> Iterator[list[Server]]:
    """``count`` ``liaotian serve`` processes pinned to ``core``, started one at a time (the
    first migrates the database); stopped (SIGTERM) on exit. With ``redis_url`` the
    servers require accounts: a first user is made before they start."""
    started: list[Server] = []
    accounts_url = None
    if env.get("LIAOTIAN_REDIS_URL"):
        accounts_url = env["LIAOTIAN_DATABASE_URL"]
        subprocess.run(
            [LIAOTIAN, "user", "add", "bench", "--password-stdin"],
            input=b"bench password\n",
            env=dict(env),
            cwd=workdir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    try:
        for index in range(count):
            port = free_port()
            log_path = workdir / f"server-{port}.log"
            log: IO[bytes]
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    pinned(core, [LIAOTIAN, "serve", "--port", str(port)]),
                    env=dict(env),
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append(Server(process, port, log_path, accounts_url))
            wait_ready(port, process)
            del index
        yield started
    finally:
        for server in started:
            stop(server.process)


# ---------------------------------------------------------------------------------------------
# Accounts


def sign_up(job: Mapping[str, Any], servers: Sequence[Server]) -> dict[str, Any]:
    """``job``, signed in when ``servers`` require accounts: one user per connection (the
    owners stay apart, as client ids keep them in open mode), with the API token
    ``f"{bearer}-{i}"``. Made straight in the database, without argon2 (these users never
    sign in with a password), before the job's window starts."""
    accounts_url = servers[0].accounts_url if servers else None
    if accounts_url is None or job["kind"] not in ("chat", "api", "idle"):
        return dict(job)
    bearer = f"lt_{uuid.uuid4().hex}"
    names = [f"{job['prefix']}-{index}" for index in range(job["conversations"])]
    asyncio.run(_add_users(accounts_url, names, bearer))
    return {**job, "bearer": bearer}


async def _add_users(database_url: str, names: Sequence[str], bearer: str) -> None:
    from sqlalchemy import insert, select

    from liaotian.store import create_engine
    from liaotian.store.accounts import TOKEN, hash_secret
    from liaotian.store.models import Credential, User

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(User), [{"name": name, "password_hash": "!"} for name in names]
            )
            ids = dict(
                (await connection.execute(select(User.name, User.id).where(User.name.in_(names))))
                .tuples()
                .all()
            )
            await connection.execute(
                insert(Credential),
                [
                    {
                        "user_id": ids[name],
                        "kind": TOKEN,
                        "name": "bench",
                        "secret_hash": hash_secret(f"{bearer}-{index}"),
                    }
                    for index, name in enumerate(names)
                ],
            )
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------------------
# Load jobs


@dataclass
class RunningJob:
    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_line(self, prefix: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise RuntimeError(f"the load process ended without {prefix!r}")

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.wait_line("RESULT "))
        self.process.wait(timeout)
        return value


def start_job(job: Mapping[str, Any], core: int = LOAD_CORE) -> RunningJob:
    process = subprocess.Popen(
        pinned(core, [PYTHON, "-m", "bench.workload", json.dumps(dict(job))]),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return RunningJob(process)


def run_job(job: Mapping[str, Any], core: int = LOAD_CORE) -> dict[str, Any]:
    return start_job(job, core).result()


# ---------------------------------------------------------------------------------------------
# Databases


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the run (dropped afterwards); its asyncpg URL."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"liaotian_bench_{uuid.uuid4().hex[:8]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pids_named(name: str) -> list[int]:
    """Pids whose command name is ``name`` (to account PostgreSQL's and Redis's CPU)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() == name:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def total_cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def settle(servers: Sequence[Server], *, window: float = 0.5, within: float = 30.0) -> None:
    """Wait (``within`` s at most) until the servers are idle: under 5% of a core over
    ``window`` s, so background work left by earlier answers (titles, deleting unkept
    conversations) does not land in the next measurement."""
    pids = [server.pid for server in servers]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = total_cpu(pids)
        time.sleep(window)
        if total_cpu(pids) - before < 0.05 * window * len(pids):
            return
