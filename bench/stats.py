"""Percentiles and histograms of timings (milliseconds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILES = (50, 90, 99, 99.9)
HIST_EDGES = [0.0, *np.geomspace(0.1, 10_000, 81).tolist()]
"""Log-spaced bins from 0.1 ms to 10 s (and one bin below)."""


def percentiles(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float]:
    """``{"n", "p50", "p90", "p99", "p99.9", "max", "mean"}``; zeros when empty."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"n": 0, **{f"p{q:g}": 0.0 for q in QUANTILES}, "max": 0.0, "mean": 0.0}
    found = np.percentile(data, QUANTILES)
    return {
        "n": int(data.size),
        **{f"p{q:g}": float(v) for q, v in zip(QUANTILES, found, strict=True)},
        "max": float(data.max()),
        "mean": float(data.mean()),
    }


def histogram(values: np.ndarray[Any, Any]) -> list[int]:
    """Counts per :data:`HIST_EDGES` bin (values above 10 s go in the last one)."""
    clipped = np.clip(values, 0, HIST_EDGES[-1])
    counts, _ = np.histogram(clipped, bins=HIST_EDGES)
    return [int(c) for c in counts]


def median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else 0.0
