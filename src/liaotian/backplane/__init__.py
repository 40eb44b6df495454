"""What server processes share, behind one interface, chosen by URL.

* ``memory://`` (default): one process; nothing is shared (:mod:`.memory`).
* ``redis://…``, ``rediss://…``, ``unix://…``: several processes share reply logs, owner
  notices, cancels and leases through Redis (:mod:`.redis`).

See :class:`~liaotian.backplane.base.Backplane` for the contract.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from liaotian.backplane.base import Backplane, ConversationChange, Notice, OwnerBus
from liaotian.errors import ConfigError
from liaotian.metrics import Metrics
from liaotian.settings import Settings
from liaotian.store import Store

__all__ = ["Backplane", "ConversationChange", "Notice", "OwnerBus", "open_backplane"]

REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_backplane(url: str, *, settings: Settings, store: Store, metrics: Metrics) -> Backplane:
    """The backend for ``url`` (not started). Raises ConfigError for an unknown scheme."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from liaotian.backplane.memory import MemoryBackplane

        return MemoryBackplane(store, log_ttl=settings.reply_log_ttl)
    if scheme in REDIS_SCHEMES:
        from liaotian.backplane.redis import RedisBackplane

        return RedisBackplane(
            url,
            store=store,
            metrics=metrics,
            log_ttl=settings.reply_log_ttl,
            max_events=settings.reply_stream_max_events,
            lease=settings.reply_lease,
            prefix=settings.redis_prefix,
            flush_interval=settings.backplane_flush_interval,
            cancel_deadline=settings.backplane_cancel_deadline,
        )
    raise ConfigError(
        f"backplane_url {url!r}: the scheme must be memory:// (one process) or "
        "redis://, rediss:// or unix:// (several processes sharing a Redis)"
    )
