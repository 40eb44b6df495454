"""The scenarios of issue 6, one module each; :data:`SCENARIOS` runs them in order."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench import jobs, procs
from bench.core import Context, Result
from bench.procs import Server


@contextmanager
def running_servers(
    ctx: Context,
    *,
    count: int = 1,
    database_url: str | None = None,
    redis_url: str | None = None,
    local: bool = False,
    warm: bool = True,
    fresh: bool = False,
) -> Iterator[list[Server]]:
    """Fresh ``liaotian serve`` processes on the server core, warmed up with a few replies;
    in quick mode the plain set-up (one process, SQLite) is one server shared by all."""
    plain = not fresh and count == 1 and database_url is None and redis_url is None and not local
    if plain and ctx.mode.share_server:
        if not ctx.shared:
            shared = running_servers(ctx, count=1, warm=warm, fresh=True)
            ctx.shared.append(ctx.stack.enter_context(shared))
        yield ctx.shared[0]
        return
    env = procs.server_env(
        ctx.workdir, ctx.upstream.url, database_url=database_url, redis_url=redis_url, local=local
    )
    with procs.servers(env, ctx.workdir, count=count) as servers:
        if warm:
            urls = [server.ws_url for server in servers]
            warm_up = jobs.chat(urls, 20, turns=2, stagger=0.2, tokens=20, delay_ms=0)
            procs.run_job(procs.sign_up(warm_up, servers))
        yield servers
        problems = [line for server in servers for line in server.log_problems()]
        if problems:
            print("  server log problems:\n    " + "\n    ".join(problems[:10]), flush=True)


NAMES = (
    "relay",
    "capacity",
    "latency",
    "idle",
    "single",
    "embedded",
    "scaleout",
    "search",
    "openai_api",
)


def scenarios() -> dict[str, Callable[[Context], Result]]:
    """Each scenario's ``run``, by name, in the issue's order (imported when called)."""

    def runner(name: str) -> Callable[[Context], Result]:
        def run(ctx: Context) -> Result:
            module = importlib.import_module(f"bench.scenarios.{name}")
            result: Result = module.run(ctx)
            return result

        return run

    return {name: runner(name) for name in NAMES}
