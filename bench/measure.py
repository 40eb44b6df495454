"""Run one load job against the servers and account for every process's CPU in its window."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import jobs, procs
from bench.core import Context
from bench.procs import CpuSampler, Server, Upstream
from bench.stats import percentiles


@dataclass
class Run:
    """A finished job: the workload's result and the CPU used in its window."""

    result: dict[str, Any]
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per process group (``server``, ``load``, ``postgres``, ``redis``)."""

    @property
    def window(self) -> float:
        return float(self.result["ended"] - self.result["started"])

    def util(self, name: str) -> float:
        """Mean cores used by ``name`` over the window."""
        return self.cpu.get(name, 0.0) / self.window if self.window > 0 else 0.0

    @property
    def tokens(self) -> int:
        return int(self.result["tokens"])

    @property
    def errors(self) -> int:
        return int(self.result["errors"])

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.window if self.window > 0 else 0.0

    def ttft(self) -> dict[str, float]:
        return percentiles(self.result["ttft_ms"])

    def gap(self) -> dict[str, float]:
        gap: dict[str, float] = self.result["gap_ms"]
        return gap

    def us_per_token(self, name: str = "server") -> float:
        return self.cpu.get(name, 0.0) / self.tokens * 1e6 if self.tokens else 0.0


def _cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    """CPU seconds at ``when``, interpolated between samples."""
    times = [t for t, _ in samples]
    index = bisect.bisect_left(times, when)
    if index <= 0:
        return samples[0][1]
    if index >= len(samples):
        return samples[-1][1]
    (t0, c0), (t1, c1) = samples[index - 1], samples[index]
    return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1


def measure(
    job: Mapping[str, Any],
    *,
    servers: Sequence[Server] = (),
    upstream: Upstream | None = None,
    core: int = procs.LOAD_CORE,
    others: Mapping[str, Sequence[int]] | None = None,
) -> Run:
    """Run ``job`` in a load process pinned to ``core``; CPU of the servers, of the load
    (upstream + load process) and of ``others`` over the job's own window."""
    running = procs.start_job(procs.sign_up(job, servers), core)
    groups: dict[str, list[int]] = {"server": [s.pid for s in servers], "job": [running.pid]}
    if upstream is not None:
        groups["upstream"] = [upstream.pid]
    groups.update({name: list(pids) for name, pids in (others or {}).items()})
    pids = {f"{name}:{pid}": pid for name, members in groups.items() for pid in members}
    with CpuSampler(pids, period=0.1) as sampler:
        result = running.result()
    run = Run(result)
    start, end = result["started"], result["ended"]
    for name, members in groups.items():
        total = 0.0
        for pid in members:
            series = [(t, v[f"{name}:{pid}"]) for t, v in sampler.samples if f"{name}:{pid}" in v]
            if len(series) >= 2:
                total += _cpu_at(series, end) - _cpu_at(series, start)
        run.cpu[name] = total
    run.cpu["load"] = run.cpu.get("job", 0.0) + run.cpu.get("upstream", 0.0)
    return run


def baseline(ctx: Context, count: int, *, turns: int, stagger: float, tokens: int) -> Run:
    """The same streams read directly from the fake upstream (from the load core); measured
    once per shape and run, since it does not depend on the server."""
    key = (count, turns, tokens, stagger)
    found = ctx.baselines.get(key)
    if found is None:
        found = ctx.baselines[key] = measure(
            jobs.direct(ctx.upstream.url, count, turns=turns, stagger=stagger, tokens=tokens),
            upstream=ctx.upstream,
        )
    assert isinstance(found, Run)
    return found
