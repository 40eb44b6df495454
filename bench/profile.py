"""The profile: py-spy samples the server while it relays the capacity workload.

``py-spy record --gil --nonblocking`` (pinned to the load core) samples only the thread
holding the GIL, so the samples show where the server's Python CPU goes; the event loop's
own C code (uvloop: polling, socket reads and writes) appears as ``Runner.run``. The raw
collapsed stacks are summarised three ways: by cost centre, by function (self) and by
function (inclusive).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import jobs, plots, procs
from bench.core import Context, Figure, Result, table
from bench.scenarios import running_servers

CENTRES = (
    ("database (SQLAlchemy, aiosqlite)", ("sqlalchemy/", "aiosqlite/", "liaotian/store/")),
    (
        "sending frames (uvicorn, websockets)",
        ("ClientSocket.send", "LeanWebSocketProtocol.send", "WebSocketsSansIOProtocol.send"),
    ),
    ("reading upstream (aiohttp, SSE, provider)", ("relay_sse", "iter_sse", "aiohttp/")),
    ("logging", ("logging/",)),
    ("connections (handshake, ASGI, routing)", ("run_session", "LiaotianApp.__call__", "fastapi/")),
    ("reply log, engine, forwarding", ("liaotian/",)),
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: pip install -e '.[dev]'")
    return found


def centre(frames: list[str]) -> str:
    """The cost centre of one stack (root first). The main thread's stacks start with
    ``liaotian serve`` down to the event loop's ``Runner.run``: those frames say nothing."""
    loop = [i for i, frame in enumerate(frames) if frame.startswith("Runner.run ")]
    if loop:
        if loop[-1] == len(frames) - 1:
            return "event loop (uvloop C code: polling, socket I/O)"
        frames = frames[loop[-1] + 1 :]
    for name, needles in CENTRES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other"


def summarise(
    raw: Path,
) -> tuple[int, collections.Counter[str], collections.Counter[str], collections.Counter[str]]:
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    centres: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
        centres[centre(frames)] += samples
    return total, own, inclusive, centres


def run(ctx: Context) -> Result:
    mode = ctx.mode
    streams = mode.profile_streams
    result = Result("profile", f"Profile: {streams} conversations at 50 tokens/s")
    raw = ctx.workdir / "profile.txt"
    with running_servers(ctx) as servers:
        server = servers[0]
        job = procs.start_job(
            jobs.chat([server.ws_url], streams, turns=mode.capacity_turns + 1, stagger=mode.stagger)
        )
        time.sleep(mode.stagger + 1.5)
        cpu_before = procs.cpu_seconds(server.pid)
        spy = subprocess.run(
            procs.pinned(
                procs.LOAD_CORE,
                [
                    py_spy(),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(mode.profile_seconds)),
                    "--rate",
                    "250",
                    "--gil",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                ],
            ),
            capture_output=True,
            text=True,
        )
        used = (procs.cpu_seconds(server.pid) - cpu_before) / mode.profile_seconds
        outcome = job.result()
    if spy.returncode != 0 or not raw.exists():
        result.notes.append(f"py-spy failed: {spy.stderr.strip()[-300:]}")
        return result
    total, own, inclusive, centres = summarise(raw)
    result.figures = [
        Figure("server core used while sampled", used * 100, "%"),
        Figure("samples", total, ""),
    ]
    if outcome["errors"]:
        result.notes.append(f"errors in the profiled run: {outcome['error_samples'][:2]}")
    share = {name: samples / total * 100 for name, samples in centres.most_common()}
    result.markdown.append(
        table(["cost centre", "% of samples"], [[k, v] for k, v in share.items()])
    )
    result.markdown.append(
        "Top functions by own samples:\n\n"
        + table(
            ["function (file:line)", "% self"],
            [[f"`{name}`", n / total * 100] for name, n in own.most_common(15)],
        )
    )
    top_inclusive = [
        (name, n)
        for name, n in inclusive.most_common(60)
        if not name.startswith(("<module>", "main ", "serve ", "asyncio_run", "Server.run"))
    ][:20]
    result.markdown.append(
        "Top functions including what they call:\n\n"
        + table(
            ["function (file:line)", "% inclusive"],
            [[f"`{name}`", n / total * 100] for name, n in top_inclusive],
        )
    )
    path = plots.hbars(
        ctx,
        "profile",
        f"Server profile: {streams} conversations at 50 tokens/s (py-spy --gil)",
        list(share),
        list(share.values()),
    )
    result.markdown.append(plots.image(path, "profile by cost centre"))
    result.data = {"total": total, "centres": share, "used": used}
    return result
