"""1. Relay cost: server CPU per relayed token, and tokens/s per core at saturation.

*Paced*: ``relay_streams`` conversations at 50 tokens/s (200-token answers, persistence on)
through the server; its CPU time (from /proc, every thread) over the tokens relayed. The
ceiling is the same streams read straight from the fake upstream by one process pinned to
the same core, with liaotian's own DashScope provider (same aiohttp session, same SSE
decoder): the relay cannot cost less than reading.

*Saturated*: ``saturation_streams`` long answers with no delay between upstream tokens, so
the server core is the bottleneck; tokens/s divided by the cores used.
"""

from __future__ import annotations

from typing import Any

from bench import jobs, plots
from bench.core import Context, Figure, Goal, Result, fmt, table
from bench.measure import Run, measure
from bench.procs import SERVER_CORE
from bench.scenarios import running_servers

GOAL_US = 20.0


def direct_cost(run: Run) -> float:
    """CPU µs per token of a direct reader (its own process time over its window)."""
    return float(run.result["cpu_s"]) / run.tokens * 1e6 if run.tokens else 0.0


def run(ctx: Context) -> Result:
    mode = ctx.mode
    up = ctx.upstream
    result = Result("relay", "1. Relay cost")
    streams, turns = mode.relay_streams, mode.relay_turns
    paced_direct = measure(
        jobs.direct(up.url, streams, turns=turns, stagger=mode.stagger),
        upstream=up,
        core=SERVER_CORE,
    )
    sat_direct = measure(
        jobs.direct(
            up.url,
            mode.saturation_streams,
            turns=1,
            stagger=0,
            tokens=mode.saturation_tokens,
            delay_ms=0,
        ),
        upstream=up,
        core=SERVER_CORE,
    )
    with running_servers(ctx) as servers:
        urls = [s.ws_url for s in servers]
        paced = measure(
            jobs.chat(urls, streams, turns=turns, stagger=mode.stagger),
            servers=servers,
            upstream=up,
        )
        sat = measure(
            jobs.chat(
                urls,
                mode.saturation_streams,
                turns=1,
                stagger=0,
                tokens=mode.saturation_tokens,
                delay_ms=0,
            ),
            servers=servers,
            upstream=up,
        )

    us_server = paced.us_per_token("server")
    us_direct = direct_cost(paced_direct)
    sat_util = sat.util("server")
    sat_direct_util = float(sat_direct.result["cpu_s"]) / sat_direct.window
    per_core = sat.tokens_per_s / sat_util if sat_util else 0.0
    per_core_direct = sat_direct.tokens_per_s / sat_direct_util if sat_direct_util else 0.0
    result.figures = [
        Figure(
            f"server CPU per token, {streams} streams at 50 tokens/s",
            us_server,
            "µs",
            us_direct,
            "direct read",
        ),
        Figure(
            "tokens/s per core at saturation",
            per_core,
            "tokens/s",
            per_core_direct,
            "direct read",
            better="higher",
        ),
    ]
    errors = paced.errors + sat.errors + paced_direct.errors + sat_direct.errors
    if errors:
        result.notes.append(
            f"{errors} errors: "
            + "; ".join(paced.result["error_samples"][:2] + sat.result["error_samples"][:2])
        )
    result.goals.append(
        Goal(
            "relay cost",
            f"≤ {GOAL_US:g} µs of server CPU per token at 50 tokens/s, persistence on",
            f"{fmt(us_server)} µs",
            0 < us_server <= GOAL_US,
            f"{us_server / GOAL_US:.2f}× the goal" if us_server > GOAL_US else "",
        )
    )
    rows: list[list[Any]] = [
        [
            f"paced: {streams} × 50 tokens/s, {turns} × 200-token answers",
            paced.tokens,
            us_server,
            paced.util("server") * 100,
            us_direct,
            float(paced_direct.result["cpu_s"]) / paced_direct.window * 100,
            us_server / us_direct if us_direct else 0.0,
        ],
        [
            f"saturated: {mode.saturation_streams} × {mode.saturation_tokens} tokens, no delay",
            sat.tokens,
            sat.us_per_token("server"),
            sat_util * 100,
            direct_cost(sat_direct),
            sat_direct_util * 100,
            sat.us_per_token("server") / direct_cost(sat_direct) if direct_cost(sat_direct) else 0,
        ],
    ]
    result.markdown.append(
        table(
            [
                "workload",
                "tokens",
                "server µs/token",
                "server core %",
                "direct µs/token",
                "direct core %",
                "ratio",
            ],
            rows,
        )
    )
    result.markdown.append(
        table(
            ["at saturation", "through the server", "direct read (ceiling)", "ratio"],
            [
                [
                    "tokens/s",
                    sat.tokens_per_s,
                    sat_direct.tokens_per_s,
                    sat.tokens_per_s / sat_direct.tokens_per_s if sat_direct.tokens_per_s else 0,
                ],
                ["core used", sat_util, sat_direct_util, ""],
                [
                    "tokens/s per core",
                    per_core,
                    per_core_direct,
                    per_core / per_core_direct if per_core_direct else 0,
                ],
                [
                    "WebSocket frames (deltas merged while the socket was busy)",
                    sat.result["frames"],
                    "",
                    "",
                ],
            ],
        )
    )
    result.data = {
        "us_per_token": us_server,
        "us_per_token_direct": us_direct,
        "tokens_per_core": per_core,
        "tokens_per_core_direct": per_core_direct,
        "paced_frames_per_token": paced.result["frames"] / paced.tokens if paced.tokens else 0,
    }
    plot = plots.bars(
        ctx,
        "relay",
        "CPU per relayed token (lower is better)",
        ["through the server", "direct read"],
        {"paced, 50 tokens/s": [us_server, us_direct], "saturated": [rows[1][2], rows[1][4]]},
        "µs of CPU per token",
    )
    result.markdown.append(plots.image(plot, "CPU per token"))
    return result
