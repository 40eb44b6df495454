"""5. Single stream: tokens/s of one 5,000-token answer with no upstream delay.

Through the server: from ``chat.send`` to ``reply.done`` at the client (a new conversation
each run, persistence on). Directly: the same answer read from the fake upstream with the
server's HTTP client. The median of ``single_runs`` runs each.
"""

from __future__ import annotations

from bench import jobs, plots
from bench.core import Context, Figure, Result, table
from bench.measure import measure
from bench.scenarios import running_servers
from bench.stats import median


def run(ctx: Context) -> Result:
    mode = ctx.mode
    tokens = mode.single_tokens
    result = Result("single", "5. Single stream")
    direct = measure(
        jobs.direct(
            ctx.upstream.url, 1, turns=mode.single_runs, stagger=0, tokens=tokens, delay_ms=0
        ),
        upstream=ctx.upstream,
    )
    with running_servers(ctx) as servers:
        run = measure(
            jobs.chat(
                [servers[0].ws_url],
                1,
                turns=mode.single_runs,
                stagger=0,
                tokens=tokens,
                delay_ms=0,
                fresh=True,
            ),
            servers=servers,
            upstream=ctx.upstream,
        )
    server_rate = tokens / (median(run.result["durations_ms"]) / 1000) if run.tokens else 0.0
    direct_rate = tokens / (median(direct.result["durations_ms"]) / 1000) if direct.tokens else 0.0
    frames = run.result["frames"] / max(1, mode.single_runs)
    result.figures = [
        Figure(
            f"one {tokens:,}-token answer", server_rate, "tokens/s", direct_rate, "direct", "higher"
        )
    ]
    if run.errors or direct.errors:
        result.notes.append(f"errors: {run.result['error_samples'][:2]}")
    result.markdown.append(
        table(
            ["", "through the server", "direct", "ratio"],
            [
                [
                    "tokens/s",
                    server_rate,
                    direct_rate,
                    server_rate / direct_rate if direct_rate else 0,
                ],
                [
                    "ms for the answer",
                    median(run.result["durations_ms"]),
                    median(direct.result["durations_ms"]),
                    "",
                ],
                ["WebSocket frames per answer", frames, "", ""],
            ],
        )
    )
    path = plots.bars(
        ctx,
        "single",
        f"One {tokens:,}-token answer, no upstream delay",
        ["tokens/s"],
        {"through the server": [server_rate], "direct": [direct_rate]},
        "tokens/s (higher is better)",
    )
    result.markdown.append(plots.image(path, "single stream tokens/s"))
    result.data = {"server": server_rate, "direct": direct_rate, "frames": frames}
    return result
