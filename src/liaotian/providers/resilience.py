"""What stands between the engine and a failing provider, for every provider alike.

:func:`resilient_stream` wraps :meth:`Provider.stream <liaotian.providers.base.Provider.stream>`:

- **Retries before the first token.** A rate limit, an unavailable upstream (5xx,
  connection refused or reset, a malformed or cut-short stream) or a stream that ended
  before saying anything is tried again, at most ``retries`` times, after an exponential
  backoff with jitter, never earlier than the upstream's ``Retry-After``. A ``Retry-After``
  longer than ``max_wait`` is not waited for: the error is raised at once. Timeouts are not
  retried (the user has already waited that long). The loop is tenacity's.
- **Never after the first token.** Once any item (text, reasoning, sources) has reached
  the consumer a failure is raised as is: the partial reply stays, and it ends with the
  error.
- **A circuit breaker per provider** (:class:`CircuitBreaker`): after ``failures``
  failed replies in a row, calls fail fast with ProviderUnavailable for ``cooldown``
  seconds, then one probe call goes through; its first token closes the breaker.
- **A repetition guard** (:class:`RepetitionGuard`): an answer that degenerates into one
  short unit repeated over and over is stopped with ProviderRepetition, its text kept.
  The reasoning has a guard of its own: a model looping in its thinking is stopped too.

The per-token cost (the generator layer and the guard) is ~0.3 µs; see
``bench/resilience_overhead.py``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from tenacity.wait import wait_exponential_jitter

from liaotian.errors import (
    ProviderError,
    ProviderInterrupted,
    ProviderRateLimited,
    ProviderRepetition,
    ProviderTimeout,
    ProviderUnavailable,
)
from liaotian.providers.base import Finish, Reasoning

if TYPE_CHECKING:
    from liaotian.providers.base import ChatRequest, Provider, StreamItem
    from liaotian.settings import Settings

log = logging.getLogger(__name__)

CallObserver = Callable[[str, float | None], None]
"""``observe(outcome, latency)``, called once when a call of :func:`resilient_stream` ends:
``outcome`` is ``ok`` (its Finish was yielded), ``error`` (a ProviderError, the breaker's
fail-fast included, or a stream that ended without a Finish) or ``cancelled`` (its consumer
stopped before the Finish); ``latency`` the seconds from the call to its first item
(retries included), None when there was none. Called on the event loop; must not raise."""

# Failures that say the provider is unwell: they are retried before the first token
# (timeouts excepted) and counted by the breaker. Auth, bad-request and repetition errors
# are answers from a working provider.
RETRIED = (ProviderRateLimited, ProviderUnavailable, ProviderInterrupted)
UNHEALTHY = (*RETRIED, ProviderTimeout)


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    """How hard to try a provider; the ``provider_retry*``, ``breaker_*`` and
    ``repetition_*`` settings. ``sleep`` and ``clock`` are injectable for tests."""

    retries: int = 2
    backoff: float = 0.5
    max_wait: float = 10.0
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    repetition_limit: int = 50
    repetition_max_unit: int = 64
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def from_settings(cls, settings: Settings) -> ResiliencePolicy:
        return cls(
            retries=settings.provider_retries,
            backoff=settings.provider_retry_backoff,
            max_wait=settings.provider_retry_max_wait,
            breaker_failures=settings.breaker_failures,
            breaker_cooldown=settings.breaker_cooldown,
            repetition_limit=settings.repetition_limit,
            repetition_max_unit=settings.repetition_max_unit,
        )


# ---------------------------------------------------------------------------------------------
# Circuit breaker


class BreakerState(enum.Enum):
    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls fail fast until the cool-down is over."""
    HALF_OPEN = "half-open"
    """The cool-down is over: one probe call goes through, the others fail fast."""


class CircuitBreaker:
    """One provider's breaker. Single-threaded (one event loop); per process.

    A call asks :meth:`admit` first, then reports exactly one verdict: :meth:`success`
    (the provider answered), :meth:`failure` (an UNHEALTHY error) or :meth:`abandon` (no
    verdict: cancelled, or closed by its consumer). ``failures`` 0 disables the breaker.
    """

    __slots__ = (
        "_clock",
        "_cooldown",
        "_probing",
        "_threshold",
        "failures",
        "name",
        "retry_at",
        "state",
    )

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.state = BreakerState.CLOSED
        self.failures = 0
        """Consecutive failed calls."""
        self.retry_at: float | None = None
        """While open: when (``clock`` time) the probe will be let through."""
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._probing = False

    def admit(self) -> bool:
        """Let a call through; True if it is the half-open probe.

        Raises ProviderUnavailable (fail fast) while open, or while half-open with a probe
        already in flight; the message says when the provider will be tried again.
        """
        if self.state is BreakerState.CLOSED:
            return False
        if self.state is BreakerState.OPEN:
            assert self.retry_at is not None
            wait = self.retry_at - self._clock()
            if wait > 0:
                raise ProviderUnavailable(
                    f"{self.name} is failing ({self.failures} failed replies in a row); "
                    f"it will be tried again in {wait:.1f} s"
                )
            self.state = BreakerState.HALF_OPEN
        if self._probing:
            raise ProviderUnavailable(
                f"{self.name} is failing; a trial request is checking whether it is back"
            )
        self._probing = True
        return True

    def success(self) -> None:
        """The provider answered: close, forget the failures."""
        if self.state is not BreakerState.CLOSED:
            log.warning("%s answers again; its circuit breaker is closed", self.name)
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.retry_at = None
        self._probing = False

    def failure(self) -> None:
        """An UNHEALTHY failure: count it; open at the threshold or if the probe failed."""
        self.failures += 1
        if self._threshold <= 0 or self.state is BreakerState.OPEN:
            return
        if self.state is BreakerState.HALF_OPEN or self.failures >= self._threshold:
            self.state = BreakerState.OPEN
            self.retry_at = self._clock() + self._cooldown
            self._probing = False
            log.warning(
                "%s failed %d replies in a row; failing fast for %g s",
                self.name,
                self.failures,
                self._cooldown,
            )

    def abandon(self, probe: bool) -> None:
        """A call ended without a verdict; a probe's place goes to the next call."""
        if probe and self.state is BreakerState.HALF_OPEN:
            self._probing = False

    def status(self) -> dict[str, object]:
        """``state``, ``failures`` and, while open, ``retry_at`` (ISO 8601, UTC)."""
        state = self.state
        retry_at = None
        if state is BreakerState.OPEN:
            assert self.retry_at is not None
            wait = self.retry_at - self._clock()
            if wait <= 0:
                state = BreakerState.HALF_OPEN  # the next call is the probe
            else:
                retry_at = datetime.fromtimestamp(time.time() + wait, UTC).isoformat()
        return {"state": state.value, "failures": self.failures, "retry_at": retry_at}


# ---------------------------------------------------------------------------------------------
# Repetition guard

MIN_RUN_CHARS = 256
"""A repeated run must also be this long: a ruler of 60 dashes is not a loop."""
CHECK_EVERY = 256
"""Characters between two checks: a check costs ~2 µs, so ~0.05 µs per token."""


class RepetitionGuard:
    """Spots an answer that ends in one unit of at most ``max_unit`` characters repeated at
    least ``limit`` times in a row (and over at least MIN_RUN_CHARS characters).

    Units need not align with chunks. :meth:`feed` costs a list append and an addition;
    every CHECK_EVERY characters it checks the tail of the answer with one C-level
    ``rfind`` and at most one comparison, so a loop is caught within CHECK_EVERY
    characters of reaching the threshold.
    """

    __slots__ = ("_chunks", "_limit", "_max_unit", "_pending", "_tail", "_window", "count", "unit")

    def __init__(self, limit: int, max_unit: int = 64) -> None:
        self._limit = limit
        self._max_unit = max_unit
        self._window = max(limit * max_unit, MIN_RUN_CHARS + max_unit, 3 * max_unit)
        self._tail = ""
        self._chunks: list[str] = []
        self._pending = 0
        self.unit = ""
        """After a detection: the repeated unit."""
        self.count = 0
        """After a detection: how many times it repeats at the end (at least)."""

    def feed(self, text: str) -> bool:
        """Add a chunk of the answer; True once the answer ends in a loop."""
        self._chunks.append(text)
        self._pending += len(text)
        if self._pending < CHECK_EVERY:
            return False
        return self._check()

    def _check(self) -> bool:
        self._pending = 0
        tail = self._tail + "".join(self._chunks)
        self._chunks.clear()
        if len(tail) > self._window:
            tail = tail[-self._window :]
        self._tail = tail
        size = len(tail)
        if size < MIN_RUN_CHARS:
            return False
        # The shortest shift (up to max_unit) at which the last `probe` characters occur
        # again is the only candidate period: when the tail is a run of period p and the
        # probe spans 2p or more, that shift divides p (Fine and Wilf).
        probe = min(2 * self._max_unit, size // 2)
        start = size - probe
        found = tail.rfind(tail[start:], start - self._max_unit, size - 1)
        if found < 0:
            return False
        period = start - found
        count = max(self._limit, -(-MIN_RUN_CHARS // period))
        run = period * count
        if run > size or tail[size - run + period :] != tail[size - run : size - period]:
            return False
        self.unit = tail[size - period :]
        self.count = count
        return True


# ---------------------------------------------------------------------------------------------
# The wrapper


def _wait(policy: ResiliencePolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(
        multiplier=policy.backoff, max=policy.max_wait, jitter=policy.backoff
    )

    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        return max(delay, retry_after) if retry_after is not None else delay

    return wait


def _stop(policy: ResiliencePolicy) -> Callable[[RetryCallState], bool]:
    def stop(state: RetryCallState) -> bool:
        # Waiting less than the upstream asked would only earn another 429.
        return state.attempt_number > policy.retries or state.upcoming_sleep > policy.max_wait

    return stop


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.info("retrying in %.2f s after: %s", state.upcoming_sleep, error)


def _amend(error: ProviderError, note: str) -> None:
    error.message = f"{error.message} ({note})"
    error.args = (error.message,)


async def _first_item(
    provider: Provider, request: ChatRequest, policy: ResiliencePolicy
) -> tuple[AsyncIterator[StreamItem], StreamItem | None]:
    """Open the stream and read its first item, retrying as the module doc says.

    Returns the stream and its first item (None: it ended at once, without a Finish).
    """
    stream: AsyncIterator[StreamItem] | None = None
    first: StreamItem | None = None
    attempts = 0
    retrying = AsyncRetrying(
        sleep=policy.sleep,
        stop=_stop(policy),
        wait=_wait(policy),
        retry=retry_if_exception(lambda error: isinstance(error, RETRIED)),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                attempts += 1
                stream = provider.stream(request)
                first = await anext(stream, None)
    except ProviderError as error:
        retry_after = getattr(error, "retry_after", None)
        if attempts > 1:
            _amend(error, f"gave up after {attempts} attempts")
        elif policy.retries and retry_after is not None and retry_after > policy.max_wait:
            _amend(error, f"it asks to wait {retry_after:g} s before trying again")
        raise
    assert stream is not None
    return stream, first


async def resilient_stream(
    provider: Provider,
    request: ChatRequest,
    breaker: CircuitBreaker,
    policy: ResiliencePolicy,
    observe: CallObserver | None = None,
) -> AsyncIterator[StreamItem]:
    """``provider.stream(request)`` with retries, the breaker and the repetition guard.

    Yields what the provider yields. Raises ProviderError only: the provider's (after the
    retries, its message saying how many attempts were made), ProviderUnavailable when the
    breaker is open, ProviderRepetition when the answer loops (the upstream stream is
    closed first). Cancelling or closing it closes the provider's stream. ``observe`` is
    told once how the call ended (:data:`CallObserver`).
    """
    started = time.perf_counter()
    try:
        probe = breaker.admit()
    except ProviderError:
        if observe is not None:
            observe("error", None)
        raise
    first_at: float | None = None
    item: StreamItem | None = None
    failed = False
    settled = False
    stream: AsyncIterator[StreamItem] | None = None
    try:
        stream, first = await _first_item(provider, request, policy)
        if first is None:
            failed = True  # no answer at all: the engine ends the reply with an error
            return
        first_at = time.perf_counter()
        item = first
        breaker.success()
        settled = True
        limit = policy.repetition_limit
        yield first
        if limit <= 0:
            async for item in stream:
                yield item
            failed = type(item) is not Finish
            return
        # Text and reasoning are guarded apart: a model looping in its thinking is stopped
        # too, and reasoning never hides (or fakes) a loop in the answer.
        text_guard = RepetitionGuard(limit, policy.repetition_max_unit)
        reasoning_guard = RepetitionGuard(limit, policy.repetition_max_unit)
        # Per token: one generator step and, for text, the guard's append (see the module doc).
        feed = text_guard.feed
        think = reasoning_guard.feed
        if type(first) is str:
            if feed(first):
                raise _looping(provider, text_guard, "answer")
        elif type(first) is Reasoning and think(first.text):
            raise _looping(provider, reasoning_guard, "reasoning")
        async for item in stream:
            yield item
            if type(item) is str:
                if feed(item):
                    raise _looping(provider, text_guard, "answer")
            elif type(item) is Reasoning and think(item.text):
                raise _looping(provider, reasoning_guard, "reasoning")
        failed = type(item) is not Finish
    except ProviderError as error:
        failed = True
        if isinstance(error, UNHEALTHY):
            breaker.failure()
        elif not settled:
            breaker.success()
        settled = True
        raise
    except Exception:
        failed = True
        raise
    finally:
        if not settled:
            breaker.abandon(probe)
        if observe is not None:
            # A consumer stops reading at the Finish (the reply is complete) or earlier
            # (cancelled); a stream read to its end without one has failed.
            outcome = "error" if failed else "ok" if type(item) is Finish else "cancelled"
            observe(outcome, None if first_at is None else first_at - started)
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _looping(provider: Provider, guard: RepetitionGuard, what: str) -> ProviderRepetition:
    return ProviderRepetition(
        f"{provider.name}: the {what} got stuck repeating {guard.unit[:40]!r} "
        f"({guard.count}+ times in a row), so it was stopped"
    )
