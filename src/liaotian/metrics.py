"""Prometheus metrics, served at ``GET /metrics``.

Each app owns its registry (several apps can live in one test process). Nothing here runs
per token: a reply's tokens are counted once, when it ends.
"""

from __future__ import annotations

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
