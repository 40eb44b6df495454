"""Limits that protect the server and its API keys from one owner or one flood.

* connections: ``max_connections`` in this process, ``max_connections_per_owner`` per owner
  in this process;
* messages: ``messages_per_minute`` per owner, a moving window kept in this process's
  memory, or by the ``limits`` library in Redis (shared by every process) when
  ``redis_url`` is set.

Concurrent replies per owner are counted by the engine (in the database, so across
processes). Each refusal raises a :class:`~liaotian.errors.LimitExceeded` subclass that
says when to retry.
"""

from __future__ import annotations

import time
from collections import Counter, deque

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from liaotian.errors import RateLimited, TooManyConnections
from liaotian.metrics import Metrics
from liaotian.settings import Settings


class Guards:
    """The connection caps and the message rate of this process."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._metrics = metrics
        self._max_total = settings.max_connections
        self._max_per_owner = settings.max_connections_per_owner
        self._connections: Counter[str] = Counter()
        self._rate = RateLimitItemPerMinute(settings.messages_per_minute)
        self._limiter: MovingWindowRateLimiter | None = None
        self._window = MovingWindow(settings.messages_per_minute, 60.0)
        self._login_rate = RateLimitItemPerMinute(settings.login_attempts_per_minute)
        self._login_window = MovingWindow(settings.login_attempts_per_minute, 60.0)
        if settings.redis_url:
            shared = storage_from_string(
                f"async+{settings.redis_url}",
                implementation="redispy",
                key_prefix=f"{settings.redis_prefix}:limits",
            )
            assert isinstance(shared, Storage)  # "async+" gives the asyncio storage
            self._limiter = MovingWindowRateLimiter(shared)

    @property
    def connections(self) -> int:
        return self._connections.total()

    def admit(self, owner: str) -> None:
        """Count a new connection of ``owner``; raises TooManyConnections over a cap."""
        if self._connections.total() >= self._max_total:
            self._metrics.rejections.labels("connections").inc()
            raise TooManyConnections(
                "the server has too many connections; try again later", retry_after=5
            )
        if self._connections[owner] >= self._max_per_owner:
            self._metrics.rejections.labels("connections_per_owner").inc()
            raise TooManyConnections(
                f"too many connections for this owner (at most {self._max_per_owner}); "
                "close another tab or client",
                retry_after=5,
            )
        self._connections[owner] += 1

    def release(self, owner: str) -> None:
        """Forget a connection counted by :meth:`admit`."""
        self._connections[owner] -= 1
        if self._connections[owner] <= 0:
            del self._connections[owner]

    async def check_login(self, user_name: str) -> None:
        """Count one sign-in attempt for ``user_name``; raises RateLimited over the rate."""
        refused, retry_after = await self._hit(
            self._login_rate, self._login_window, f"login:{user_name}"
        )
        if refused:
            self._metrics.rejections.labels("login_attempts").inc()
            raise RateLimited("too many sign-in attempts; wait a minute", retry_after=retry_after)

    async def check_message(self, owner: str) -> None:
        """Count one message of ``owner``; raises RateLimited over the rate.

        If the shared store (Redis) is unreachable, the message is allowed: a limit must not
        take the service down with it.
        """
        refused, retry_after = await self._hit(self._rate, self._window, owner)
        if refused:
            self._metrics.rejections.labels("messages_per_minute").inc()
            raise RateLimited(
                f"too many messages: at most {self._rate.amount} a minute; "
                "wait a little before sending again",
                retry_after=retry_after,
            )

    async def _hit(
        self, rate: RateLimitItem, window: MovingWindow, key: str
    ) -> tuple[bool, float | None]:
        """Count a hit of ``key``: (refused, seconds until allowed again when known)."""
        if self._limiter is None:
            wait = window.hit(key)
            return (False, None) if wait is None else (True, round(wait, 1))
        try:
            if await self._limiter.hit(rate, key):
                return False, None
        except Exception:
            return False, None
        try:
            stats = await self._limiter.get_window_stats(rate, key)
            return True, max(0.0, round(stats.reset_time - time.time(), 1))
        except Exception:
            return True, None


class MovingWindow:
    """At most ``amount`` hits per ``seconds`` per key, in memory.

    ``limits``' in-memory storages are not used here: the asyncio one hops to a thread for
    every key on every hit (so each message cost O(owners) thread round trips, measured in
    bench/), the synchronous one starts a timer thread. This keeps the last ``amount``
    hit times per key and forgets idle keys once per window.
    """

    def __init__(self, amount: int, seconds: float) -> None:
        self._amount = amount
        self._seconds = seconds
        self._hits: dict[str, deque[float]] = {}
        self._swept = time.monotonic()

    def hit(self, key: str) -> float | None:
        """Count a hit: None if allowed, else the seconds until one would be."""
        now = time.monotonic()
        cutoff = now - self._seconds
        if self._swept < cutoff:
            self._sweep(cutoff)
            self._swept = now
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if len(hits) >= self._amount:
            return max(0.0, hits[0] - cutoff)
        hits.append(now)
        return None

    def _sweep(self, cutoff: float) -> None:
        for key in [key for key, hits in self._hits.items() if not hits or hits[-1] <= cutoff]:
            del self._hits[key]
