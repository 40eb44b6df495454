"""Percentiles estimated from histogram buckets (liaotian.metrics.histogram_quantile), and
the per-provider figures the metrics give the admin's provider page."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaotian.metrics import LATENCY_BUCKETS, Metrics, histogram_quantile

INF = math.inf


def test_the_quantile_is_interpolated_inside_its_bucket() -> None:
    """10 observations in (0, 1] and 10 in (1, 2]: the median is at 1, p75 half-way into
    the second bucket, p25 half-way into the first (which starts at 0)."""
    buckets = [(1.0, 10.0), (2.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(0.75, buckets) == 1.5
    assert histogram_quantile(0.25, buckets) == 0.5
    assert histogram_quantile(1.0, buckets) == 2.0


def test_empty_buckets_below_are_skipped() -> None:
    """Every observation in (0.5, 1]: no quantile falls below 0.5."""
    buckets = [(0.1, 0.0), (0.5, 0.0), (1.0, 4.0), (INF, 4.0)]
    assert histogram_quantile(0.0, buckets) == 0.5
    assert histogram_quantile(0.5, buckets) == 0.75


def test_a_rank_in_the_infinite_bucket_gives_the_highest_finite_bound() -> None:
    """Observations beyond the last bound: the estimate is that bound, never infinity."""
    buckets = [(1.0, 1.0), (5.0, 2.0), (INF, 10.0)]
    assert histogram_quantile(0.99, buckets) == 5.0


def test_without_observations_there_is_no_quantile() -> None:
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, [(INF, 3.0)]) is None


@pytest.mark.parametrize(
    ("q", "buckets"),
    [(1.5, [(1.0, 1.0), (INF, 1.0)]), (-0.1, [(1.0, 1.0), (INF, 1.0)]), (0.5, [(1.0, 1.0)])],
)
def test_a_quantile_outside_0_1_or_buckets_without_inf_are_refused(
    q: float, buckets: list[tuple[float, float]]
) -> None:
    with pytest.raises(ValueError, match=r"quantile is between|last bucket must be"):
        histogram_quantile(q, buckets)


@given(
    counts=st.lists(st.integers(0, 50), min_size=len(LATENCY_BUCKETS) + 1, max_size=20).map(
        lambda counts: counts[: len(LATENCY_BUCKETS) + 1]
    ),
    q=st.floats(0, 1),
    r=st.floats(0, 1),
)
def test_quantiles_grow_with_q_and_stay_within_the_finite_bounds(
    counts: list[int], q: float, r: float
) -> None:
    """For any histogram: a larger q never gives a smaller estimate, and every estimate is
    between 0 and the highest finite bound."""
    cumulative = [float(sum(counts[: n + 1])) for n in range(len(counts))]
    buckets = [*zip((*LATENCY_BUCKETS, INF), cumulative, strict=True)]
    low, high = sorted((q, r))
    lower, upper = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    if cumulative[-1] == 0:
        assert lower is upper is None
        return
    assert lower is not None
    assert upper is not None
    assert 0 <= lower <= upper <= LATENCY_BUCKETS[-1]


def test_provider_figures_count_calls_by_outcome_and_latency() -> None:
    """Requests are every outcome; errors the error outcome; the latency histogram is the
    provider's own; a provider never called is absent."""
    metrics = Metrics()
    metrics.provider_call_ended("dashscope", "ok", 0.3)
    metrics.provider_call_ended("dashscope", "ok", 0.4)
    metrics.provider_call_ended("dashscope", "cancelled", None)
    metrics.provider_call_ended("dashscope", "error", None)
    metrics.provider_call_ended("openai", "ok", 20.0)
    figures = metrics.providers()
    assert set(figures) == {"dashscope", "openai"}
    dashscope = figures["dashscope"]
    assert (dashscope.requests, dashscope.errors, dashscope.error_rate) == (4, 1, 0.25)
    # Both observations in (0.25, 0.5]: the median half-way through it, p100 at its end.
    assert dashscope.latency_quantile(0.5) == pytest.approx(0.375)
    assert dashscope.latency_quantile(1.0) == pytest.approx(0.5)
    assert figures["openai"].latency_quantile(0.5) == pytest.approx(20.0)
    assert b'liaotian_provider_calls_total{outcome="error",provider="dashscope"} 1.0' in (
        metrics.render()
    )
