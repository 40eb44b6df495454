"""What every scenario shares: the run's settings (quick or full), its results, printing."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.procs import Upstream


@dataclass(frozen=True)
class Mode:
    """Sizes of one run. :data:`FULL` is the documented run, :data:`QUICK` a smoke-sized
    one (< 2 minutes) printing the same figures for before/after comparisons."""

    name: str
    relay_streams: int
    relay_turns: int
    saturation_streams: int
    saturation_tokens: int
    capacity_counts: tuple[int, ...]
    capacity_turns: int
    latency_counts: tuple[int, ...]
    latency_turns: int
    latency_single_turns: int
    idle_connections: int
    idle_seconds: float
    single_tokens: int
    single_runs: int
    embedded_runs: int
    embedded_max_tokens: int
    scaleout_counts: tuple[int, ...]
    scaleout_latency_counts: tuple[int, ...]
    profile_streams: int
    profile_seconds: float
    stagger: float = 4.0
    """Seconds over which conversations join: one answer's length, so the load is even."""
    share_server: bool = False
    """One SQLite server for scenarios 1, 2, 3, 5 and the profile (saves start-ups)."""
    search_messages: int = 100_000
    """Messages in the database that scenario 8 searches."""
    search_runs: int = 50
    """Times each search query is timed."""
    api_streams: int = 200
    """Scenario 9: paced streams, over the socket and over the API."""
    api_turns: int = 3
    """Scenario 9: answers per stream, each in a new conversation."""


FULL = Mode(
    name="full",
    relay_streams=200,
    relay_turns=3,
    saturation_streams=32,
    saturation_tokens=4000,
    capacity_counts=(50, 100, 200, 300, 400, 600, 800, 1000, 1200, 1500, 2000),
    capacity_turns=3,
    latency_counts=(1, 100, 400),
    latency_turns=3,
    latency_single_turns=40,
    idle_connections=10_000,
    idle_seconds=5.0,
    single_tokens=5000,
    single_runs=5,
    embedded_runs=3,
    embedded_max_tokens=256,
    scaleout_counts=(50, 100, 200, 400, 600, 800, 1000, 1200),
    scaleout_latency_counts=(1, 100, 400),
    profile_streams=400,
    profile_seconds=10.0,
)
QUICK = Mode(
    name="quick",
    relay_streams=100,
    relay_turns=1,
    saturation_streams=16,
    saturation_tokens=2000,
    capacity_counts=(50, 200),
    capacity_turns=1,
    latency_counts=(1, 100),
    latency_turns=1,
    latency_single_turns=3,
    idle_connections=1000,
    idle_seconds=2.0,
    single_tokens=5000,
    single_runs=2,
    embedded_runs=1,
    embedded_max_tokens=64,
    scaleout_counts=(),
    scaleout_latency_counts=(1, 100),
    profile_streams=200,
    profile_seconds=2.0,
    stagger=1.0,
    share_server=True,
    search_messages=10_000,
    search_runs=20,
    api_streams=100,
    api_turns=1,
)

Better = Literal["lower", "higher"]


@dataclass
class Figure:
    """One printed number, with its same-run baseline when it has one."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    better: Better = "lower"

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def line(self) -> str:
        text = f"  {self.name}: {fmt(self.value)} {self.unit}"
        if self.baseline is not None:
            ratio = self.ratio
            text += f"  ({self.baseline_name or 'baseline'}: {fmt(self.baseline)} {self.unit}"
            text += f", ratio {ratio:.2f})" if ratio is not None else ")"
        return text


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    met: bool
    distance: str = ""


@dataclass
class Result:
    """What one scenario found: figures to print, markdown for the report, raw data."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    mode: Mode
    workdir: Path
    outdir: Path
    """Where plots go (docs/performance/)."""
    upstream: Upstream
    stack: ExitStack = field(default_factory=ExitStack)
    """Closed at the end of the run: what scenarios share lives here."""
    baselines: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    """Direct-read runs by (conversations, turns, tokens, stagger), reused across scenarios:
    they do not depend on the server's set-up."""
    shared: list[Any] = field(default_factory=list)
    """The shared server(s) in quick mode, started by the first scenario that asks."""


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude >= 1:
        return f"{value:,.0f}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; numbers go through :func:`fmt`."""

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "**no**"
        if isinstance(value, int):
            return f"{value:,}"
        if isinstance(value, float):
            return fmt(value)
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def announce(result: Result) -> None:
    print(f"\n== {result.title} ({result.seconds:.0f} s)", flush=True)
    for figure in result.figures:
        print(figure.line(), flush=True)
    for goal in result.goals:
        state = "met" if goal.met else f"NOT met ({goal.distance})"
        print(f"  goal {goal.name}: {goal.measured} vs {goal.target}: {state}", flush=True)
    for note in result.notes:
        print(f"  note: {note}", flush=True)
