"""9. OpenAI-compatible API: an answer over `POST /v1/chat/completions` next to the socket.

The same workload three times on the same server, in the same run: `api_streams` streams
at 50 tokens/s (200-token answers from the fake upstream, `api_turns` answers each, every
answer in a new conversation, persistence on), joining over `stagger` seconds; once over
the WebSocket (protocol v1, `chat.send` with no conversation), once over `POST
/v1/chat/completions` with `stream: true`, `stream_options.include_usage` and `store:
false` (the turn runs in a conversation deleted when the answer ends), and once with
`store: true` (kept, as a page's turn). The API client is a light aiohttp reader of the
event stream, one pooled session, in the load process (not the SDK). Time to first token
is from sending the request (or the frame) to the first text; server CPU per token is the
server process's CPU time over the job's window divided by the tokens answered. The added
cost is the API's figure minus the socket's. The client's own core use and event-loop lag
are shown to tell that it was not the bottleneck. The API path is warmed up (a few answers
of each kind) before it is measured, as the socket path is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench import jobs, plots, procs
from bench.core import Context, Figure, Result, table
from bench.measure import Run, measure
from bench.scenarios import running_servers


@dataclass
class Way:
    """One way to the same answers, measured."""

    name: str
    run: Run

    @property
    def ttft(self) -> dict[str, float]:
        return self.run.ttft()

    @property
    def us_per_token(self) -> float:
        return self.run.us_per_token("server")


def run(ctx: Context) -> Result:
    mode = ctx.mode
    result = Result("openai_api", "9. OpenAI-compatible API")
    streams, turns, stagger = mode.api_streams, mode.api_turns, mode.stagger
    with running_servers(ctx) as servers:
        ws_urls = [server.ws_url for server in servers]
        http_urls = [server.http_url for server in servers]
        for store in (False, True):
            warm_up = jobs.api(http_urls, 20, turns=2, stagger=0.2, store=store, tokens=20)
            warmed = procs.run_job(procs.sign_up(warm_up, servers))
            if warmed["errors"]:
                result.notes.append(f"warm-up (store {store}): {warmed['error_samples'][:2]}")
        ways = [
            ("WebSocket", jobs.chat(ws_urls, streams, turns=turns, stagger=stagger, fresh=True)),
            *(
                (
                    f"API, store {str(store).lower()}",
                    jobs.api(http_urls, streams, turns=turns, stagger=stagger, store=store),
                )
                for store in (False, True)
            ),
        ]
        paths = []
        for name, job in ways:
            # The previous way's titles and deletions would otherwise be measured here.
            procs.settle(servers)
            paths.append(Way(name, measure(job, servers=servers, upstream=ctx.upstream)))
    socket, *api = paths
    for path in paths:
        print(
            f"  {path.name}: TTFT p50 {path.ttft['p50']:.1f} ms, p99 {path.ttft['p99']:.1f} ms; "
            f"{path.us_per_token:.1f} µs/token; errors {path.run.errors}",
            flush=True,
        )
    for path in paths:
        for name, value, unit, of_socket in (
            ("TTFT p50", path.ttft["p50"], "ms", socket.ttft["p50"]),
            ("TTFT p99", path.ttft["p99"], "ms", socket.ttft["p99"]),
            ("server CPU per token", path.us_per_token, "µs", socket.us_per_token),
        ):
            baseline = None if path is socket else of_socket
            figure = Figure(f"{name}, {path.name}", value, unit, baseline, "WebSocket")
            result.figures.append(figure)
    for path in api:
        result.figures.append(
            Figure(
                f"added server CPU per token, {path.name} − WebSocket",
                path.us_per_token - socket.us_per_token,
                "µs",
            )
        )
    rows: list[list[Any]] = [
        [
            path.name,
            int(path.ttft["n"]),
            path.run.errors,
            f"{path.ttft['p50']:.2f} / {path.ttft['p99']:.2f}",
            path.ttft["p50"] - socket.ttft["p50"],
            path.us_per_token,
            path.us_per_token - socket.us_per_token,
            path.run.util("server") * 100,
            path.run.result["frames"] / path.run.tokens if path.run.tokens else 0.0,
            path.run.util("job") * 100,
            path.run.result["lag_ms"]["p99"],
        ]
        for path in paths
    ]
    result.markdown.append(
        table(
            [
                f"{streams} streams × {turns} answers, 50 tokens/s",
                "samples",
                "errors",
                "TTFT p50 / p99 ms",
                "added p50 ms",
                "server µs/token",
                "added µs/token",
                "server core %",
                "events per token",
                "client core %",
                "client loop lag p99 ms",
            ],
            rows,
        )
    )
    errors = [sample for path in paths for sample in path.run.result["error_samples"][:2]]
    if errors:
        result.notes.append(f"errors: {'; '.join(errors)}")
    result.data = {
        path.name: {
            "ttft": path.ttft,
            "us_per_token": path.us_per_token,
            "server_util": path.run.util("server"),
            "tokens": path.run.tokens,
            "errors": path.run.errors,
        }
        for path in paths
    }
    plot = plots.cdf(
        ctx,
        "openai_api",
        "Time to first token, socket and API",
        "ms",
        {path.name: path.run.result["ttft_ms"] for path in paths},
    )
    result.markdown.append(plots.image(plot, "Time to first token, CDF"))
    return result
