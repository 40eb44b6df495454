"""Limits that protect the server and its API keys from one owner or one flood.

* connections: ``max_connections`` in this process, ``max_connections_per_owner`` per owner
  in this process;
* messages: ``messages_per_minute`` per owner;
* attachment uploads: ``attachments_per_minute`` per owner, and at most
  ``attachment_decodes_at_once`` images decoded at once in this process,
  ``attachment_decode_queue`` more waiting (then :class:`AttachmentsBusy`);
* imports: ``imports_per_minute`` per owner, and at most :data:`IMPORTS_AT_ONCE` files
  read and stored at once in this process, :data:`IMPORT_QUEUE` more waiting (then
  :class:`ImportsBusy`): each holds up to ``max_import_bytes`` and its parsed form;
* searches: ``searches_per_minute`` per owner;
* sign-in attempts: ``login_attempts_per_minute`` per user name *from one client address*,
  and ``login_attempts_per_address_per_minute`` per address whatever the names. Keying the
  per-user limit by address too means a stranger guessing alice's password uses up only
  his own attempts: alice, from her address, still gets in;
* password checks: at most ``password_checks_at_once`` argon2 verifications (64 MiB of
  memory each) run at once in this process, ``password_check_queue`` more wait for one;
  any beyond are refused at once (:class:`SignInBusy`) instead of queueing without bound.

Rate windows (messages, sign-ins) are moving windows kept in this process's memory, or by
the ``limits`` library in Redis (shared by every process) when ``redis_url`` is set. If
Redis fails or is slow, the process falls back to its own windows for a while (the limits
then hold per process instead of across them): a limit must not take the service down
with it, nor silently vanish. The fall-back is logged once per outage and each failed
check is counted (``liaotian_limiter_failures``).

Concurrent replies per owner are counted by the engine (in the database, so across
processes). Each refusal raises a :class:`~liaotian.errors.LimitExceeded` subclass that
says when to retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from liaotian import logs
from liaotian.errors import (
    AttachmentsBusy,
    ImportsBusy,
    RateLimited,
    SignInBusy,
    TooManyConnections,
)
from liaotian.metrics import Metrics
from liaotian.settings import Settings

log = logging.getLogger(__name__)

SHARED_TIMEOUT = 1.0
"""Seconds a check may wait on the shared store (Redis) before this process limits alone."""
IMPORTS_AT_ONCE = 1
"""Import files read, parsed and stored at once in one process."""
IMPORT_QUEUE = 2
"""Import files that may wait for that (more are refused at once)."""
SHARED_RETRY_AFTER = 5.0
"""Seconds the process limits alone after the shared store failed, before asking it again."""


class _OwnerRate:
    """One per-owner rate: a moving window per minute (shared through Redis when there is
    one), the metric label and setting it is named by, and the words of its refusal."""

    __slots__ = ("again", "key", "rate", "setting", "what", "window")

    def __init__(self, amount: int, key: str, what: str, again: str) -> None:
        self.rate = RateLimitItemPerMinute(amount)
        self.window = MovingWindow(amount, 60.0)
        self.key = key
        self.setting = f"{'attachments' if key == 'uploads' else key}_per_minute"
        self.what = what
        self.again = again


class Guards:
    """The connection caps, the message and sign-in rates and the password-check slots."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._metrics = metrics
        self._max_total = settings.max_connections
        self._max_per_owner = settings.max_connections_per_owner
        self._connections: Counter[str] = Counter()
        self._messages = _OwnerRate(
            settings.messages_per_minute, "messages", "messages", "sending again"
        )
        self._uploads = _OwnerRate(
            settings.attachments_per_minute, "uploads", "uploads", "adding more"
        )
        self._imports = _OwnerRate(
            settings.imports_per_minute, "imports", "imports", "importing again"
        )
        self._searches = _OwnerRate(
            settings.searches_per_minute, "searches", "searches", "searching again"
        )
        self._limiter: MovingWindowRateLimiter | None = None
        self._login_rate = RateLimitItemPerMinute(settings.login_attempts_per_minute)
        self._login_window = MovingWindow(settings.login_attempts_per_minute, 60.0)
        per_address = settings.login_attempts_per_address_per_minute
        self._address_rate = RateLimitItemPerMinute(per_address)
        self._address_window = MovingWindow(per_address, 60.0)
        self._password_checks = Slots(
            settings.password_checks_at_once, settings.password_check_queue
        )
        self._image_work = Slots(
            settings.attachment_decodes_at_once, settings.attachment_decode_queue
        )
        self._import_work = Slots(IMPORTS_AT_ONCE, IMPORT_QUEUE)
        self._shared_down_until = 0.0
        self._shared_down = False
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

    async def check_login(self, user_name: str, address: str) -> None:
        """Count one sign-in attempt for ``user_name`` from the client ``address``.

        Raises RateLimited over the address's rate (any names) or over the rate of this
        name from this address. Attempts from other addresses do not count against it.
        """
        refused, retry_after = await self._hit(
            self._address_rate, self._address_window, f"login-address:{address}"
        )
        if refused:
            self._metrics.rejections.labels("login_attempts_per_address").inc()
            raise RateLimited(
                "too many sign-in attempts from this address; wait a minute",
                retry_after=retry_after,
            )
        # An address cannot contain "|": the key is unambiguous whatever the name.
        refused, retry_after = await self._hit(
            self._login_rate, self._login_window, f"login:{address}|{user_name}"
        )
        if refused:
            self._metrics.rejections.labels("login_attempts").inc()
            raise RateLimited("too many sign-in attempts; wait a minute", retry_after=retry_after)

    @asynccontextmanager
    async def password_check(self) -> AsyncIterator[None]:
        """Hold one of the password-check slots for the body; wait in the queue for one.

        Raises SignInBusy at once (nothing waits) when every slot is taken and the queue
        is full. Cancelling while waiting leaves the queue.
        """
        if not self._password_checks.enter():
            self._metrics.rejections.labels("password_checks").inc()
            raise SignInBusy("too many sign-ins are being checked; try again", retry_after=1)
        slots = self._password_checks
        try:
            await slots.acquire()
            try:
                yield
            finally:
                slots.release()
        finally:
            slots.leave()

    @property
    def password_checks_running(self) -> int:
        """Password checks holding a slot now (at most ``password_checks_at_once``)."""
        return self._password_checks.running

    async def check_message(self, owner: str) -> None:
        """Count one message of ``owner``; raises RateLimited over the rate."""
        await self._check(self._messages, owner)

    async def check_upload(self, owner: str) -> None:
        """Count one attachment upload of ``owner``; raises RateLimited over the rate."""
        await self._check(self._uploads, owner)

    async def check_search(self, owner: str) -> None:
        """Count one search of ``owner``; raises RateLimited over the rate."""
        await self._check(self._searches, owner)

    @asynccontextmanager
    async def image_room(self) -> AsyncIterator[Slots]:
        """Room for one image to check, held for the body: a slot or a place in the queue,
        taken *before* the upload is read, so waiting uploads hold bounded memory. Raises
        AttachmentsBusy at once when there is none. The body then holds a slot for the
        decoding itself with ``async with room.slot():``."""
        slots = self._image_work
        if not slots.enter():
            self._metrics.rejections.labels("attachment_decodes").inc()
            raise AttachmentsBusy("too many images are being checked; try again", retry_after=1)
        try:
            yield slots
        finally:
            slots.leave()

    @property
    def image_uploads(self) -> int:
        """Uploads holding room in this process now (being read, waiting or decoded)."""
        return self._image_work.entered

    async def check_import(self, owner: str) -> None:
        """Count one import of ``owner``; raises RateLimited over the rate."""
        await self._check(self._imports, owner)

    async def _check(self, limit: _OwnerRate, owner: str) -> None:
        refused, retry_after = await self._hit(limit.rate, limit.window, f"{limit.key}:{owner}")
        if refused:
            self._metrics.rejections.labels(limit.setting).inc()
            raise RateLimited(
                f"too many {limit.what}: at most {limit.rate.amount} a minute; "
                f"wait a little before {limit.again}",
                retry_after=retry_after,
            )

    @asynccontextmanager
    async def import_slot(self) -> AsyncIterator[None]:
        """Hold one of the import slots for the body, waiting in the queue for one; raises
        ImportsBusy at once (before the body is read) when the queue is full too."""
        slots = self._import_work
        if not slots.enter():
            self._metrics.rejections.labels("imports_at_once").inc()
            raise ImportsBusy("too many imports are being read; try again", retry_after=1)
        try:
            async with slots.slot():
                yield
        finally:
            slots.leave()

    @property
    def imports(self) -> int:
        """Imports holding room in this process now (being read, parsed, stored or waiting)."""
        return self._import_work.entered

    async def _hit(
        self, rate: RateLimitItem, window: MovingWindow, key: str
    ) -> tuple[bool, float | None]:
        """Count a hit of ``key``: (refused, seconds until allowed again when known).

        In the shared store when there is one and it answers within SHARED_TIMEOUT, else
        in this process's ``window``.
        """
        if self._limiter is not None and time.monotonic() >= self._shared_down_until:
            try:
                async with asyncio.timeout(SHARED_TIMEOUT):
                    refused, retry_after = await self._shared_hit(self._limiter, rate, key)
            except Exception as error:  # whatever Redis or its client raise: limit locally
                self._shared_failed(error)
            else:
                if self._shared_down:
                    self._shared_down = False
                    log.info("rate limits: the shared store (redis) answers again")
                return refused, retry_after
        wait = window.hit(key)
        return (False, None) if wait is None else (True, round(wait, 1))

    @staticmethod
    async def _shared_hit(
        limiter: MovingWindowRateLimiter, rate: RateLimitItem, key: str
    ) -> tuple[bool, float | None]:
        if await limiter.hit(rate, key):
            return False, None
        stats = await limiter.get_window_stats(rate, key)
        return True, max(0.0, round(stats.reset_time - time.time(), 1))

    def _shared_failed(self, error: Exception) -> None:
        """Count the failure; log it once per outage; limit locally for a while."""
        self._metrics.limiter_failures.inc()
        self._shared_down_until = time.monotonic() + SHARED_RETRY_AFTER
        if not self._shared_down:
            self._shared_down = True
            log.error(
                "rate limits: the shared store (redis) failed; each process limits on its "
                "own until it answers again",
                extra=logs.fields(error=f"{type(error).__name__}: {error}"),
            )


class Slots:
    """``size`` slots and a queue of at most ``queue`` waiters for them.

    A holder first takes room (:meth:`enter`: a slot or a place in the queue, or False
    when there is none), then waits for a slot (:meth:`acquire`), and gives back both
    (:meth:`release`, :meth:`leave`) whatever happened.
    """

    def __init__(self, size: int, queue: int) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self._room = size + queue
        self._entered = 0
        self.running = 0
        """Holders of a slot now (never more than ``size``)."""

    @property
    def entered(self) -> int:
        """Holders of room now: of a slot, or of a place in the queue."""
        return self._entered

    def enter(self) -> bool:
        if self._entered >= self._room:
            return False
        self._entered += 1
        return True

    def leave(self) -> None:
        self._entered -= 1

    async def acquire(self) -> None:
        await self._semaphore.acquire()
        self.running += 1

    def release(self) -> None:
        self.running -= 1
        self._semaphore.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a slot and hold it for the body (after :meth:`enter`)."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()


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
