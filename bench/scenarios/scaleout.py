"""7. PostgreSQL + Redis: capacity and added latency again on the scale-out backends.

Two set-ups, each on a fresh PostgreSQL database and its own Redis prefix: one server
process, and two server processes (both pinned to the server core, so the figures stay
per core; the load client spreads its connections over both, no proxy in between). A
reply started on one process is followed through the other only when a client asks, so
here each process relays its own replies, but every reply also goes through Redis
Streams and every limit and lease through PostgreSQL / Redis. PostgreSQL and Redis are
not pinned, and their CPU is not in "server core %". Quick mode measures latency only.
With ``redis_url`` the servers require accounts, so each connection signs in with an API
token of its own user (made before the job's window: :func:`bench.procs.sign_up`).
"""

from __future__ import annotations

from bench import procs
from bench.core import Context, Figure, Goal, Result, table
from bench.scenarios import capacity, latency, running_servers


def run(ctx: Context) -> Result:
    mode = ctx.mode
    result = Result("scaleout", "7. PostgreSQL + Redis")
    sweeps: dict[str, list[capacity.Point]] = {}
    levels: dict[str, list[latency.Level]] = {}
    for label, count in (("1 process", 1), ("2 processes", 2)):
        print(f"  -- {label}", flush=True)
        with (
            procs.postgres_database() as database_url,
            running_servers(
                ctx, count=count, database_url=database_url, redis_url=procs.REDIS_URL
            ) as servers,
        ):
            others = {
                "postgres": procs.pids_named("postgres"),
                "redis": procs.pids_named("redis-server"),
            }
            sweeps[label] = capacity.sweep(ctx, servers, mode.scaleout_counts, others=others)
            levels[label] = latency.measure_levels(
                ctx, servers, mode.scaleout_latency_counts, others=others
            )
    for label in sweeps:
        if sweeps[label]:
            top = capacity.best(sweeps[label])
            result.figures.append(
                Figure(f"largest passing count, {label}", top, "conversations", better="higher")
            )
        for level in levels[label]:
            result.figures.append(
                Figure(
                    f"TTFT p50 at {level.conversations}, {label}",
                    level.p50,
                    "ms",
                    level.direct_p50,
                    "direct",
                )
            )
        if sweeps[label]:
            result.markdown.append(
                f"**{label}, capacity**\n\n" + capacity.points_table(sweeps[label])
            )
        result.markdown.append(
            f"**{label}, added latency**\n\n" + latency.levels_table(levels[label])
        )
    goal = latency.goal(levels["1 process"])
    if goal is not None:
        result.goals.append(
            Goal(
                "added TTFT (PostgreSQL + Redis)",
                goal.target,
                goal.measured,
                goal.met,
                goal.distance,
            )
        )
    if any(sweeps.values()):
        result.markdown.append(
            capacity.plot(ctx, "scaleout", "Capacity on PostgreSQL + Redis", sweeps)
        )
    rows = [
        [label, capacity.best(points), points[-1].conversations if points else 0]
        for label, points in sweeps.items()
    ]
    if any(sweeps.values()):
        result.markdown.append(table(["set-up", "largest passing", "last tried"], rows))
    result.data = {
        "sweeps": {label: capacity.as_dicts(points) for label, points in sweeps.items()},
        "levels": {
            label: [
                {k: v for k, v in lv.__dict__.items() if k not in ("ttft", "direct_ttft")}
                for lv in found
            ]
            for label, found in levels.items()
        },
    }
    return result
