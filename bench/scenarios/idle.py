"""4. Idle memory: RSS growth per open idle connection.

A fresh server; one load process opens ``idle_connections`` protocol-v1 connections (one
owner each, in waves of 200), each reads its ``hello`` and then stays silent. The server's
RSS (from /proc) is sampled after every wave; the growth from before the first connection
to after the last, over the count, is the cost of one idle connection. The server's CPU
while they idle is measured too (pings run every 20 s).
"""

from __future__ import annotations

import time

from bench import jobs, plots, procs
from bench.core import Context, Figure, Goal, Result, table
from bench.scenarios import running_servers

GOAL_KIB = 20.0


def run(ctx: Context) -> Result:
    count = ctx.mode.idle_connections
    result = Result("idle", "4. Idle memory")
    with running_servers(ctx, fresh=True) as servers:
        server = servers[0]
        time.sleep(1.0)
        before = procs.rss_bytes(server.pid)
        job = procs.start_job(jobs.idle([server.ws_url], count))
        curve: list[tuple[float, float]] = [(0.0, before / 2**20)]
        opened = 0
        assert job.process.stdout is not None
        for line in job.process.stdout:
            if line.startswith("OPEN "):
                opened = int(line.split()[1])
                curve.append((opened, procs.rss_bytes(server.pid) / 2**20))
            elif line.startswith("READY "):
                opened = int(line.split()[1])
                break
        time.sleep(1.0)
        cpu_before = procs.cpu_seconds(server.pid)
        time.sleep(ctx.mode.idle_seconds)
        idle_cpu = (procs.cpu_seconds(server.pid) - cpu_before) / ctx.mode.idle_seconds
        after = procs.rss_bytes(server.pid)
        assert job.process.stdin is not None
        job.process.stdin.write("close\n")
        job.process.stdin.flush()
        outcome = job.result()
    per_connection = (after - before) / opened / 1024 if opened else 0.0
    result.figures = [
        Figure(f"RSS per idle connection ({opened:,} open)", per_connection, "KiB"),
        Figure("server CPU while they idle", idle_cpu * 100, "% of a core"),
    ]
    if opened < count or outcome["errors"]:
        result.notes.append(
            f"{opened:,} of {count:,} connections opened; errors: {outcome['error_samples'][:2]}"
        )
    result.goals.append(
        Goal(
            "idle memory",
            f"≤ {GOAL_KIB:g} KiB per idle connection",
            f"{per_connection:.1f} KiB",
            0 < per_connection <= GOAL_KIB,
            f"{per_connection / GOAL_KIB:.2f}× the goal" if per_connection > GOAL_KIB else "",
        )
    )
    result.markdown.append(
        table(
            ["connections", "RSS before MiB", "RSS after MiB", "KiB per connection", "idle CPU %"],
            [[opened, before / 2**20, after / 2**20, per_connection, idle_cpu * 100]],
        )
    )
    path = plots.lines(
        ctx,
        "idle",
        "Server RSS while idle connections open",
        "open connections",
        "RSS MiB",
        {"server RSS": ([x for x, _ in curve], [y for _, y in curve])},
    )
    result.markdown.append(plots.image(path, "RSS against open connections"))
    result.data = {"per_connection_kib": per_connection, "opened": opened, "curve": curve}
    return result
