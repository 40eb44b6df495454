"""6. Embedded model: tokens/s through the server over llama-cpp-python called directly.

The server runs with the embedded model (SmolLM2-135M-Instruct, one llama.cpp thread on the
server core); each run asks it, in a new conversation, the same question with temperature
0 and the same ``max_tokens``, and counts the answer's output tokens (from ``reply.done``)
over the time from ``chat.send`` to ``reply.done``. The baseline calls llama-cpp-python in a
process pinned to the same core, the same way the provider does (bench/llama_direct.py).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from bench import jobs, plots, procs
from bench.core import Context, Figure, Goal, Result, table
from bench.measure import measure
from bench.scenarios import running_servers
from bench.stats import median

PROMPT = "Explain in detail how a WebSocket connection is opened and used."
MODEL = "smollm2-135m-instruct"
GOAL_RATIO = 0.95


def direct_rates(runs: int, max_tokens: int) -> dict[str, list[float]]:
    argv = procs.pinned(
        procs.SERVER_CORE,
        [
            procs.PYTHON,
            "-m",
            "bench.llama_direct",
            json.dumps({"prompt": PROMPT, "runs": runs, "max_tokens": max_tokens}),
        ],
    )
    output = subprocess.run(argv, cwd=procs.REPO, capture_output=True, text=True, check=True)
    line = next(line for line in output.stdout.splitlines() if line.startswith("RESULT "))
    found: dict[str, list[float]] = json.loads(line[len("RESULT ") :])
    return found


def run(ctx: Context) -> Result:
    mode = ctx.mode
    result = Result("embedded", "6. Embedded model")
    direct = direct_rates(mode.embedded_runs, mode.embedded_max_tokens)
    with running_servers(ctx, local=True) as servers:
        options: dict[str, Any] = {
            "model": MODEL,
            "temperature": 0.0,
            "max_tokens": mode.embedded_max_tokens,
            "prompt": PROMPT,
            "fresh": True,
        }
        urls = [servers[0].ws_url]
        measure(jobs.chat(urls, 1, turns=1, stagger=0, **options), servers=servers)  # warm up
        run = measure(
            jobs.chat(urls, 1, turns=mode.embedded_runs, stagger=0, **options), servers=servers
        )
    turns = max(1, int(run.result["turns"]))
    tokens = run.result["output_tokens"] / turns
    server_rate = tokens / (median(run.result["durations_ms"]) / 1000) if run.tokens else 0.0
    direct_rate = median(direct["rates"])
    ratio = server_rate / direct_rate if direct_rate else 0.0
    result.figures = [
        Figure("embedded model", server_rate, "tokens/s", direct_rate, "llama-cpp-python", "higher")
    ]
    if run.errors:
        result.notes.append(f"errors: {run.result['error_samples'][:2]}")
    if direct["tokens"] and abs(tokens - median(direct["tokens"])) > 2:
        result.notes.append(
            f"answers differ in length: {tokens:.0f} tokens through the server, "
            f"{median(direct['tokens']):.0f} directly"
        )
    result.goals.append(
        Goal(
            "embedded model",
            f"≥ {GOAL_RATIO:.0%} of llama-cpp-python's tokens/s",
            f"{ratio:.1%}",
            ratio >= GOAL_RATIO,
            f"{(GOAL_RATIO - ratio) * 100:.1f} points short" if ratio < GOAL_RATIO else "",
        )
    )
    result.markdown.append(
        table(
            ["", "through the server", "llama-cpp-python directly", "ratio"],
            [
                ["tokens/s", server_rate, direct_rate, ratio],
                ["output tokens", tokens, median(direct["tokens"]), ""],
                [
                    "seconds per answer",
                    median(run.result["durations_ms"]) / 1000,
                    median(direct["seconds"]),
                    "",
                ],
                ["runs", turns, len(direct["rates"]), ""],
            ],
        )
    )
    path = plots.bars(
        ctx,
        "embedded",
        "Embedded model (SmolLM2-135M, one thread)",
        ["tokens/s"],
        {"through the server": [server_rate], "llama-cpp-python": [direct_rate]},
        "tokens/s (higher is better)",
    )
    result.markdown.append(plots.image(path, "embedded model tokens/s"))
    result.data = {"server": server_rate, "direct": direct_rate, "ratio": ratio}
    return result
