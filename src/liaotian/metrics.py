"""Prometheus metrics, served at ``GET /metrics``.

Each app owns its registry (several apps can live in one test process). Nothing here runs
per token: a reply's tokens are counted once, when it ends; a provider call once, when it
ends. Every figure is this process's, since it started.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
CALL_OUTCOMES = ("ok", "error", "cancelled")
"""How a provider call ends (``liaotian_provider_calls``): see
:data:`liaotian.providers.resilience.CallObserver`."""


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile (0 ≤ q ≤ 1) of a histogram, estimated as Prometheus's
    ``histogram_quantile`` does.

    ``buckets`` are ``(upper bound, cumulative count)`` in ascending order of bound, the last
    bound ``+Inf``. The value is interpolated linearly inside the bucket that holds the
    rank ``q × count`` (the first bucket starts at 0); a rank in the ``+Inf`` bucket gives
    the highest finite bound. None when there is no observation (or no finite bucket).
    Raises ValueError for ``q`` outside [0, 1] or a last bound that is not ``+Inf``.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    if not buckets or not math.isinf(buckets[-1][0]):
        raise ValueError("the last bucket must be +Inf")
    total = buckets[-1][1]
    if total <= 0 or len(buckets) < 2:
        return None
    rank = q * total
    start, below = 0.0, 0.0
    for bound, count in buckets[:-1]:
        if count >= rank and count > below:
            return start + (bound - start) * (rank - below) / (count - below)
        start, below = bound, count
    return buckets[-2][0]


@dataclass(frozen=True, slots=True)
class ProviderFigures:
    """One provider's calls in this process since it started (:meth:`Metrics.providers`)."""

    requests: int
    errors: int
    latency: tuple[tuple[float, float], ...]
    """The first-item latency histogram: ``(upper bound s, cumulative count)``, last +Inf."""

    @property
    def error_rate(self) -> float | None:
        """``errors / requests``; None before the first request."""
        return self.errors / self.requests if self.requests else None

    def latency_quantile(self, q: float) -> float | None:
        """The ``q``-quantile of the time to the first item, in seconds (an estimate)."""
        return histogram_quantile(q, self.latency)


class Metrics:
    """The metrics of one server process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "liaotian_connections",
            "Open WebSocket connections",
            ["protocol"],
            registry=self.registry,
        )
        self.replies = Counter(
            "liaotian_replies",
            "Replies ended, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "liaotian_time_to_first_token_seconds",
            "Time from a message to the first token of its reply",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reply_duration = Histogram(
            "liaotian_reply_duration_seconds",
            "Time from a message to the end of its reply",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "liaotian_tokens_relayed",
            "Text deltas relayed from providers",
            registry=self.registry,
        )
        self.provider_errors = Counter(
            "liaotian_provider_errors",
            "Replies ended by a provider error, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "liaotian_rate_limit_rejections",
            "Requests refused by a limit, by limit",
            ["limit"],
            registry=self.registry,
        )
        self.limiter_failures = Counter(
            "liaotian_limiter_failures",
            "Rate-limit checks the shared store (Redis) failed; this process's own limits "
            "counted them",
            registry=self.registry,
        )
        self.task_failures = Counter(
            "liaotian_background_task_failures",
            "Background tasks that failed unexpectedly and were restarted, by task",
            ["task"],
            registry=self.registry,
        )
        self.titles = Counter(
            "liaotian_titles",
            "Background conversation titles, by outcome: written, kept (renamed meanwhile), "
            "failed, dropped (too many waiting), cancelled (shutdown)",
            ["outcome"],
            registry=self.registry,
        )
        self.provider_calls = Counter(
            "liaotian_provider_calls",
            "Calls to providers (one per reply or title, whatever the attempts), by provider "
            "and outcome: ok, error, cancelled",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "liaotian_provider_first_item_seconds",
            "Time from calling a provider to its first streamed item (retries included), "
            "by provider",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def reply_ended(
        self,
        outcome: str,
        *,
        deltas: int,
        ttft_ms: float | None,
        duration_ms: float | None,
        error_code: str | None,
    ) -> None:
        self.replies.labels(outcome).inc()
        self.tokens.inc(deltas)
        if ttft_ms is not None:
            self.time_to_first_token.observe(ttft_ms / 1000)
        if duration_ms is not None:
            self.reply_duration.observe(duration_ms / 1000)
        if error_code is not None and error_code.startswith("provider_"):
            self.provider_errors.labels(error_code.removeprefix("provider_")).inc()

    def provider_call_ended(self, provider: str, outcome: str, latency: float | None) -> None:
        """Count a call to ``provider`` (``outcome`` one of :data:`CALL_OUTCOMES`) and the
        seconds to its first item (None: it yielded none)."""
        self.provider_calls.labels(provider, outcome).inc()
        if latency is not None:
            self.provider_latency.labels(provider).observe(latency)

    def providers(self) -> dict[str, ProviderFigures]:
        """Every provider's figures (calls, errors, latency histogram) recorded so far."""
        calls: dict[str, dict[str, float]] = {}
        for family in self.provider_calls.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    by_outcome = calls.setdefault(sample.labels["provider"], {})
                    by_outcome[sample.labels["outcome"]] = sample.value
        buckets: dict[str, list[tuple[float, float]]] = {}
        for family in self.provider_latency.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bucket = (float(sample.labels["le"]), sample.value)
                    buckets.setdefault(sample.labels["provider"], []).append(bucket)
        return {
            name: ProviderFigures(
                requests=int(sum(by_outcome.values())),
                errors=int(by_outcome.get("error", 0)),
                latency=tuple(sorted(buckets.get(name, [(math.inf, 0.0)]))),
            )
            for name, by_outcome in calls.items()
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)
