"""2. Capacity: the most concurrent 50-tokens/s conversations within the latency bounds.

Each point of the sweep runs ``n`` conversations (one connection and owner each, joining
evenly over one answer's length), each sending ``capacity_turns`` messages in a row and
reading 200-token answers paced 20 ms apart upstream. It passes with zero errors, added
time to first token p99 ≤ 50 ms (through the server minus the same streams read directly,
measured right before at the same concurrency) and inter-token gap p99 ≤ 40 ms (20 ms
pace + 20 ms). The sweep stops at the first point that fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench import jobs, plots
from bench.core import Context, Figure, Goal, Result, table
from bench.measure import baseline, measure
from bench.procs import Server
from bench.scenarios import running_servers

TTFT_BOUND_MS = 50.0
GAP_BOUND_MS = 40.0
GOAL_CONVERSATIONS = 1000


@dataclass
class Point:
    conversations: int
    errors: int
    ttft_p50: float
    ttft_p99: float
    direct_ttft_p50: float
    direct_ttft_p99: float
    gap_p50: float
    gap_p99: float
    tokens_per_s: float
    server_cores: float
    load_cores: float
    frames_per_token: float
    client_lag_p99: float
    error_samples: list[str]

    @property
    def added_p99(self) -> float:
        return self.ttft_p99 - self.direct_ttft_p99

    @property
    def added_p50(self) -> float:
        return self.ttft_p50 - self.direct_ttft_p50

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.added_p99 <= TTFT_BOUND_MS and self.gap_p99 <= GAP_BOUND_MS


def sweep(
    ctx: Context,
    servers: Sequence[Server],
    counts: Sequence[int],
    *,
    others: dict[str, list[int]] | None = None,
) -> list[Point]:
    """Run the sweep on running ``servers``; print each point as it is measured."""
    mode = ctx.mode
    urls = [s.ws_url for s in servers]
    points = []
    for count in counts:
        direct = baseline(ctx, count, turns=1, stagger=mode.stagger, tokens=jobs.ANSWER_TOKENS)
        run = measure(
            jobs.chat(urls, count, turns=mode.capacity_turns, stagger=mode.stagger),
            servers=servers,
            upstream=ctx.upstream,
            others=others,
        )
        ttft, dttft, gap = run.ttft(), direct.ttft(), run.gap()
        point = Point(
            conversations=count,
            errors=run.errors,
            ttft_p50=ttft["p50"],
            ttft_p99=ttft["p99"],
            direct_ttft_p50=dttft["p50"],
            direct_ttft_p99=dttft["p99"],
            gap_p50=gap["p50"],
            gap_p99=gap["p99"],
            tokens_per_s=run.tokens_per_s,
            server_cores=run.util("server"),
            load_cores=run.util("load"),
            frames_per_token=run.result["frames"] / run.tokens if run.tokens else 0.0,
            client_lag_p99=run.result["lag_ms"]["p99"],
            error_samples=run.result["error_samples"],
        )
        points.append(point)
        print(
            f"  {count:5d} conversations: errors {point.errors}, added TTFT p99 "
            f"{point.added_p99:.1f} ms, gap p99 {point.gap_p99:.1f} ms, server "
            f"{point.server_cores * 100:.0f}% core, load {point.load_cores * 100:.0f}% core: "
            f"{'pass' if point.passed else 'FAIL'}",
            flush=True,
        )
        if not point.passed:
            break
    return points


def best(points: Sequence[Point]) -> int:
    passed = [p.conversations for p in points if p.passed]
    return max(passed) if passed else 0


def points_table(points: Sequence[Point]) -> str:
    return table(
        [
            "conversations",
            "errors",
            "TTFT p50 / p99 ms",
            "direct p50 / p99 ms",
            "added p99 ms",
            "gap p50 / p99 ms",
            "tokens/s",
            "server core %",
            "load core %",
            "frames/token",
            "pass",
        ],
        [
            [
                p.conversations,
                p.errors,
                f"{p.ttft_p50:.1f} / {p.ttft_p99:.1f}",
                f"{p.direct_ttft_p50:.1f} / {p.direct_ttft_p99:.1f}",
                p.added_p99,
                f"{p.gap_p50:.1f} / {p.gap_p99:.1f}",
                p.tokens_per_s,
                p.server_cores * 100,
                p.load_cores * 100,
                p.frames_per_token,
                p.passed,
            ]
            for p in points
        ],
    )


def plot(ctx: Context, name: str, title: str, runs: Mapping[str, Sequence[Point]]) -> str:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for label, points in runs.items():
        xs = [float(p.conversations) for p in points]
        series[f"added TTFT p99 {label}"] = (xs, [p.added_p99 for p in points])
        series[f"gap p99 {label}"] = (xs, [p.gap_p99 for p in points])
    right = {
        f"server core % {label}": (
            [float(p.conversations) for p in points],
            [p.server_cores * 100 for p in points],
        )
        for label, points in runs.items()
    }
    path = plots.lines(
        ctx,
        name,
        title,
        "concurrent conversations (50 tokens/s each)",
        "ms",
        series,
        limits={"TTFT bound 50 ms": TTFT_BOUND_MS, "gap bound 40 ms": GAP_BOUND_MS},
        right=right,
        right_label="server core %",
    )
    return plots.image(path, title)


def run(ctx: Context) -> Result:
    result = Result("capacity", "2. Capacity")
    with running_servers(ctx) as servers:
        points = sweep(ctx, servers, ctx.mode.capacity_counts)
    top = best(points)
    tested = max(p.conversations for p in points)
    result.figures.append(Figure("largest passing count", top, "conversations", better="higher"))
    if points:
        last = points[-1]
        result.figures.append(
            Figure(
                f"TTFT p99 at {last.conversations}",
                last.ttft_p99,
                "ms",
                last.direct_ttft_p99,
                "direct",
            )
        )
        result.figures.append(Figure(f"gap p99 at {last.conversations}", last.gap_p99, "ms"))
    limited = "" if not points or points[-1].passed else f" (failed at {points[-1].conversations})"
    result.goals.append(
        Goal(
            "capacity",
            f"≥ {GOAL_CONVERSATIONS:,} conversations within the bounds",
            f"{top:,}{limited}",
            top >= GOAL_CONVERSATIONS,
            f"{top / GOAL_CONVERSATIONS:.0%} of the goal"
            + ("" if tested >= GOAL_CONVERSATIONS or not points[-1].passed else "; sweep ended"),
        )
    )
    saturated = [p for p in points if p.load_cores > 0.9]
    if saturated:
        result.notes.append(
            f"the load core was over 90% busy from {saturated[0].conversations} conversations:"
            " latencies there include the load generator's own delays"
        )
    failing = [p for p in points if p.error_samples]
    if failing:
        result.notes.append(f"errors at {failing[0].conversations}: {failing[0].error_samples[:2]}")
    result.markdown.append(points_table(points))
    result.markdown.append(plot(ctx, "capacity", "Capacity on one server core", {"": points}))
    result.data = {"points": [p.__dict__ for p in points], "best": top}
    return result


def as_dicts(points: Sequence[Point]) -> list[dict[str, Any]]:
    return [p.__dict__ for p in points]
