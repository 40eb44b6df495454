"""``python -m bench``: run the performance suite and write docs/performance.md.

``--quick`` runs every scenario at a smaller size (under two minutes) and prints the same
figures without touching the docs, for before/after comparisons on a branch
(``--save FILE`` and ``--compare FILE``). ``--only relay,capacity`` runs some scenarios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import procs, report
from bench.core import FULL, QUICK, Context, Result, announce
from bench.scenarios import scenarios

DOCS = procs.REPO / "docs"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under two minutes")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument(
        "--write",
        action="store_true",
        help="write docs/performance.md even in quick mode (full mode always writes it)",
    )
    parser.add_argument("--save", type=Path, help="save the figures as JSON here")
    parser.add_argument("--compare", type=Path, help="print ratios to figures saved before")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="only rewrite docs/performance.md from docs/performance/results.json "
        "(after editing bench/findings.md)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.report:
        meta, saved, saved_profile = report.load(DOCS / "performance" / "results.json")
        print(f"wrote {report.write(DOCS / 'performance.md', meta, saved, saved_profile)}")
        return 0
    mode = QUICK if args.quick else FULL
    available = scenarios()
    chosen = [name for name in args.only.split(",") if name] or list(available)
    unknown = [name for name in chosen if name not in available and name != "profile"]
    if unknown:
        print(f"unknown scenarios {unknown}; choose from {list(available)}", file=sys.stderr)
        return 2
    procs.raise_file_limit()
    procs.pin_self(procs.LOAD_CORE)
    workdir = Path(tempfile.mkdtemp(prefix="liaotian-bench-"))
    outdir = (DOCS / "performance") if (mode is FULL or args.write) else workdir / "plots"
    started = time.monotonic()
    load_before = procs.machine_load()
    print(
        f"liaotian bench, {mode.name} mode; server on core {procs.SERVER_CORE}, upstream and "
        f"load on core {procs.LOAD_CORE}; load average {load_before[0]:.2f}; work in {workdir}",
        flush=True,
    )
    results: list[Result] = []
    profile = None
    try:
        with procs.upstream() as upstream:
            ctx = Context(mode=mode, workdir=workdir, outdir=outdir, upstream=upstream)
            with ctx.stack:
                run_all(ctx, chosen, available, results)
                if not args.no_profile and ("profile" in chosen or not args.only):
                    from bench import profile as profiler

                    begun = time.monotonic()
                    profile = profiler.run(ctx)
                    profile.seconds = time.monotonic() - begun
                    announce(profile)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    load_after = procs.machine_load()
    print(f"\ndone in {elapsed:.0f} s; load average {load_after[0]:.2f}", flush=True)
    figures = {
        f"{r.key}: {f.name}": {"value": f.value, "unit": f.unit, "better": f.better}
        for r in results
        for f in r.figures
    }
    if args.compare:
        compare(json.loads(args.compare.read_text()), figures)
    if args.save:
        args.save.write_text(json.dumps(figures, indent=1))
    if mode is FULL or args.write:
        meta = report.meta_of(mode.name, elapsed, load_before, load_after)
        saved_path = outdir / "results.json"
        if args.only and saved_path.exists():
            # Only some scenarios ran: keep the others' figures from the last run.
            _, before, before_profile = report.load(saved_path)
            ran = {r.key: r for r in results}
            kept = [ran.pop(r.key, r) for r in before]
            results = kept + list(ran.values())
            profile = profile or before_profile
            meta["partial"] = f"re-ran {args.only}"
        report.save(saved_path, meta, results, profile)
        path = report.write(DOCS / "performance.md", meta, results, profile)
        print(f"wrote {path} and {outdir / 'results.json'}", flush=True)
    return 0


def run_all(
    ctx: Context,
    chosen: list[str],
    available: dict[str, Callable[[Context], Result]],
    results: list[Result],
) -> None:
    for name in chosen:
        if name == "profile":
            continue
        begun = time.monotonic()
        result = available[name](ctx)
        result.seconds = time.monotonic() - begun
        announce(result)
        results.append(result)


def compare(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> None:
    print("\nbefore → after (ratio; > 1 is better)")
    for name, figure in after.items():
        old = before.get(name)
        if old is None:
            continue
        new_value = float(figure["value"])
        old_value = float(old["value"])
        if not old_value or not new_value:
            continue
        gain = new_value / old_value if figure["better"] == "higher" else old_value / new_value
        print(f"  {name}: {old_value:.4g} → {new_value:.4g} {figure['unit']}  ({gain:.2f}×)")


if __name__ == "__main__":
    sys.exit(main())
