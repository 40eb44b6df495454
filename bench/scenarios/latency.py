"""3. Added latency: time to first token through the server minus directly from upstream.

At each concurrency every conversation streams at 50 tokens/s and sends its next message
as soon as an answer ends, so the server reads the conversation and its history and writes
the message and the reply for every sample (persistence on). With one conversation the
answers are 20 tokens long, to collect more samples in the same time. The direct baseline
is the same streams read straight from the fake upstream, measured right before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench import jobs, plots
from bench.core import Context, Figure, Goal, Result, table
from bench.measure import baseline, measure
from bench.procs import Server
from bench.scenarios import running_servers

GOAL_P50_MS = 3.0
GOAL_AT = 100


@dataclass
class Level:
    conversations: int
    samples: int
    errors: int
    p50: float
    p99: float
    direct_p50: float
    direct_p99: float
    server_cores: float
    ttft: list[float]
    direct_ttft: list[float]

    @property
    def added_p50(self) -> float:
        return self.p50 - self.direct_p50

    @property
    def added_p99(self) -> float:
        return self.p99 - self.direct_p99


def measure_levels(
    ctx: Context,
    servers: Sequence[Server],
    counts: Sequence[int],
    *,
    others: dict[str, list[int]] | None = None,
) -> list[Level]:
    mode = ctx.mode
    urls = [s.ws_url for s in servers]
    levels = []
    for count in counts:
        single = count == 1
        turns = mode.latency_single_turns if single else mode.latency_turns
        tokens = 20 if single else jobs.ANSWER_TOKENS
        stagger = 0.0 if single else mode.stagger
        direct = baseline(ctx, count, turns=turns, stagger=stagger, tokens=tokens)
        run = measure(
            jobs.chat(urls, count, turns=turns, stagger=stagger, tokens=tokens),
            servers=servers,
            upstream=ctx.upstream,
            others=others,
        )
        ttft, dttft = run.ttft(), direct.ttft()
        level = Level(
            conversations=count,
            samples=int(ttft["n"]),
            errors=run.errors,
            p50=ttft["p50"],
            p99=ttft["p99"],
            direct_p50=dttft["p50"],
            direct_p99=dttft["p99"],
            server_cores=run.util("server"),
            ttft=run.result["ttft_ms"],
            direct_ttft=direct.result["ttft_ms"],
        )
        levels.append(level)
        print(
            f"  {count:4d} conversations: TTFT p50 {level.p50:.1f} ms (direct "
            f"{level.direct_p50:.1f}), p99 {level.p99:.1f} ms (direct {level.direct_p99:.1f}); "
            f"errors {level.errors}",
            flush=True,
        )
    return levels


def levels_table(levels: Sequence[Level]) -> str:
    return table(
        [
            "conversations",
            "samples",
            "errors",
            "server p50 / p99 ms",
            "direct p50 / p99 ms",
            "added p50 ms",
            "added p99 ms",
            "server core %",
        ],
        [
            [
                lv.conversations,
                lv.samples,
                lv.errors,
                f"{lv.p50:.2f} / {lv.p99:.2f}",
                f"{lv.direct_p50:.2f} / {lv.direct_p99:.2f}",
                lv.added_p50,
                lv.added_p99,
                lv.server_cores * 100,
            ]
            for lv in levels
        ],
    )


def goal(levels: Sequence[Level]) -> Goal | None:
    at = [lv for lv in levels if lv.conversations == GOAL_AT]
    if not at:
        return None
    added = at[0].added_p50
    return Goal(
        "added TTFT",
        f"p50 ≤ {GOAL_P50_MS:g} ms at {GOAL_AT} conversations",
        f"{added:.2f} ms",
        added <= GOAL_P50_MS,
        f"{added - GOAL_P50_MS:.1f} ms over" if added > GOAL_P50_MS else "",
    )


def run(ctx: Context) -> Result:
    result = Result("latency", "3. Added latency")
    with running_servers(ctx) as servers:
        levels = measure_levels(ctx, servers, ctx.mode.latency_counts)
    for lv in levels:
        result.figures.append(
            Figure(
                f"TTFT p50 at {lv.conversations}",
                lv.p50,
                "ms",
                lv.direct_p50,
                "direct",
            )
        )
        result.figures.append(
            Figure(f"TTFT p99 at {lv.conversations}", lv.p99, "ms", lv.direct_p99, "direct")
        )
    found = goal(levels)
    if found is not None:
        result.goals.append(found)
    result.markdown.append(levels_table(levels))
    series = {f"server, {lv.conversations}": lv.ttft for lv in levels}
    series.update({f"direct, {lv.conversations}": lv.direct_ttft for lv in levels})
    path = plots.cdf(ctx, "latency", "Time to first token", "ms", series)
    result.markdown.append(plots.image(path, "Time to first token, CDF"))
    result.data = {
        "levels": [
            {k: v for k, v in lv.__dict__.items() if k not in ("ttft", "direct_ttft")}
            for lv in levels
        ]
    }
    return result
