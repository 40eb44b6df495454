"""Limits that protect the server and its API keys from one owner or one flood.

* connections: ``max_connections`` in this process, ``max_connections_per_owner`` per owner
  in this process;
* messages: ``messages_per_minute`` per owner, a moving window kept by the ``limits``
  library in memory, or in Redis (shared by every process) when ``redis_url`` is set.

Concurrent replies per owner are counted by the engine (in the database, so across
processes). Each refusal raises a :class:`~liaotian.errors.LimitExceeded` subclass that
says when to retry.
"""

from __future__ import annotations

import time
from collections import Counter

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
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
        storage: Storage
        if settings.redis_url:
            shared = storage_from_string(
                f"async+{settings.redis_url}",
                implementation="redispy",
                key_prefix=f"{settings.redis_prefix}:limits",
            )
            assert isinstance(shared, Storage)  # "async+" gives the asyncio storage
            storage = shared
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

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

    async def check_message(self, owner: str) -> None:
        """Count one message of ``owner``; raises RateLimited over the rate.

        If the shared store (Redis) is unreachable, the message is allowed: a limit must not
        take the service down with it.
        """
        try:
            allowed = await self._limiter.hit(self._rate, owner)
        except Exception:
            return
        if allowed:
            return
        self._metrics.rejections.labels("messages_per_minute").inc()
        retry_after = None
        try:
            stats = await self._limiter.get_window_stats(self._rate, owner)
            retry_after = max(0.0, round(stats.reset_time - time.time(), 1))
        except Exception:
            pass
        raise RateLimited(
            f"too many messages: at most {self._rate.amount} a minute; "
            "wait a little before sending again",
            retry_after=retry_after,
        )
