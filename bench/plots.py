"""PNG plots for docs/performance.md (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench.core import Context

SIZE = (7.0, 3.6)


def _save(ctx: Context, name: str, figure: Figure) -> Path:
    ctx.outdir.mkdir(parents=True, exist_ok=True)
    path = ctx.outdir / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def image(path: Path, alt: str) -> str:
    """Markdown for a plot, relative to docs/."""
    return f"![{alt}]({path.parent.name}/{path.name})"


def bars(
    ctx: Context,
    name: str,
    title: str,
    series_names: Sequence[str],
    groups: Mapping[str, Sequence[float]],
    ylabel: str,
) -> Path:
    """Grouped bars: one group per key of ``groups``, one bar per series in each."""
    figure, axes = plt.subplots(figsize=SIZE)
    width = 0.8 / max(1, len(series_names))
    for index, series in enumerate(series_names):
        xs = [g + index * width for g in range(len(groups))]
        values = [values[index] for values in groups.values()]
        drawn = axes.bar(xs, values, width, label=series)
        axes.bar_label(drawn, fmt="%.3g", fontsize=8)
    axes.set_xticks([g + width * (len(series_names) - 1) / 2 for g in range(len(groups))])
    axes.set_xticklabels(list(groups))
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize=8)
    return _save(ctx, name, figure)


def lines(
    ctx: Context,
    name: str,
    title: str,
    xlabel: str,
    ylabel: str,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    limits: Mapping[str, float] | None = None,
    log_y: bool = False,
    right: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    right_label: str = "",
) -> Path:
    """Lines with markers; ``limits`` are dashed horizontal bounds; ``right`` series go on
    a second y axis."""
    figure, axes = plt.subplots(figsize=SIZE)
    for label, (xs, ys) in series.items():
        axes.plot(xs, ys, marker="o", label=label)
    for label, value in (limits or {}).items():
        axes.axhline(value, linestyle="--", color="grey", linewidth=1)
        axes.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    handles, labels = axes.get_legend_handles_labels()
    if right:
        other = axes.twinx()
        for label, (xs, ys) in right.items():
            other.plot(xs, ys, marker="s", linestyle=":", color="tab:red", label=label)
        other.set_ylabel(right_label)
        more_handles, more_labels = other.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    axes.legend(handles, labels, fontsize=8, loc="best")
    return _save(ctx, name, figure)


def cdf(
    ctx: Context,
    name: str,
    title: str,
    xlabel: str,
    series: Mapping[str, Sequence[float]],
) -> Path:
    """Cumulative distributions (log x)."""
    figure, axes = plt.subplots(figsize=SIZE)
    for label, values in series.items():
        data = sorted(values)
        if not data:
            continue
        axes.plot(data, [(i + 1) / len(data) for i in range(len(data))], label=label)
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("fraction")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(ctx, name, figure)


def hbars(
    ctx: Context, name: str, title: str, labels: Sequence[str], values: Sequence[float]
) -> Path:
    """Horizontal bars, largest on top (a profile's top frames)."""
    figure, axes = plt.subplots(figsize=(8.0, 0.32 * len(labels) + 1.2))
    axes.barh(list(reversed(labels)), list(reversed(values)))
    axes.set_xlabel("% of samples")
    axes.set_title(title)
    axes.tick_params(axis="y", labelsize=7)
    return _save(ctx, name, figure)
