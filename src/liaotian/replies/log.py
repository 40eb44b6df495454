"""The event log of a reply: ``started``, ``delta``…, ``done``, numbered 0, 1, 2, ….

A reply's events are appended by the one task that generates it and read by any number of
followers, each from the sequence number it last saw, so a follower that reconnects gets
exactly the events it missed: no gap, no duplicate. The log of a finished reply is kept for
``reply_log_ttl`` seconds, then dropped (the database keeps the text). Logs hold no object
per token that the garbage collector tracks (see :class:`ReplyLog`), so thousands of kept
logs do not lengthen its full collections.

:class:`ReplyHub` keeps the logs of one process; the backplane owns it.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any


@dataclass(frozen=True, slots=True)
class Started:
    seq: int
    user_message_id: str
    model: str
    title: str
    created_at: float
    client_message_id: str | None = None
    user_text: str = ""
    replaces: tuple[str, ...] = ()
    """Message ids deleted by the regenerate / edit that started this reply."""


@dataclass(frozen=True, slots=True)
class Delta:
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    seq: int
    status: str
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    error: dict[str, Any] | None = None


ReplyEvent = Started | Delta | Done


@dataclass(frozen=True, slots=True)
class ReplyKey:
    """Who a reply belongs to and where it lives."""

    owner: str
    conversation_id: str
    message_id: str


class ReplyLog:
    """The events of one reply, in seq order. Only the generating task appends.

    Stored without an object per token that the garbage collector tracks or visits: the
    ``started`` event, the delta texts joined into one string with an array of offsets (one
    per seq), the texts of the latest deltas in a short list (folded into the string every
    :data:`FOLD_PARTS` deltas, or an eighth of the log, whichever is more), and the ``done``
    event. :class:`Delta` events are built when a follower reads them; the last one
    appended is kept, so live followers share it.
    """

    FOLD_PARTS = 64

    __slots__ = (
        "_done",
        "_next_seq",
        "_offsets",
        "_parts",
        "_started",
        "_tail",
        "_text",
        "_waiters",
        "finished_at",
        "key",
        "rebuilt",
    )

    def __init__(self, key: ReplyKey, *, rebuilt: bool = False) -> None:
        self.key = key
        self.rebuilt = rebuilt
        """True for a log rebuilt from the database: its seqs are not the original ones."""
        self.finished_at: float | None = None
        self._next_seq = 0
        self._started: Started | None = None
        self._text = ""
        """The folded delta texts: delta ``i`` (seq ``i + 1``) is ``_offsets[i]:_offsets[i+1]``."""
        self._offsets = array("I", (0,))
        self._parts: list[str] | None = []
        """The texts of the deltas after the folded ones; None once finished (all folded)."""
        self._tail: Delta | None = None
        """The last event while it is a delta and the log streams; live followers get it."""
        self._done: Done | None = None
        self._waiters: list[asyncio.Future[None]] = []
        """One future per waiting follower: cheaper per event than one shared, shielded future."""

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def text(self) -> str:
        """The text of every delta so far, joined."""
        return self._text + "".join(self._parts) if self._parts else self._text

    @property
    def events(self) -> list[ReplyEvent]:
        """Every event so far, one per seq: a new list of new deltas, O(events) to build."""
        return self._events(0, self._next_seq, merge=False)

    def append(self, event: ReplyEvent) -> None:
        """Append the next event; its ``seq`` must be :attr:`next_seq`.

        The order is ``started`` (seq 0), deltas, ``done``; ``done`` may also come first
        (a reply that ended before it started). Raises RuntimeError after ``done``, on a
        wrong sequence number, or out of that order.
        """
        if self.finished_at is not None:
            raise RuntimeError("reply log is closed")
        seq = self._next_seq
        if event.seq != seq:
            raise RuntimeError(f"event seq {event.seq} != expected {seq}")
        parts = self._parts
        assert parts is not None  # only None once finished
        if isinstance(event, Delta):
            if seq == 0:
                raise RuntimeError("a reply log starts with started, not a delta")
            parts.append(event.text)
            self._tail = event
            # An eighth of the log at least: folding copies the text, so the copies add up
            # to a few times its length however long the reply gets.
            if len(parts) >= self.FOLD_PARTS and len(parts) >= seq >> 3:
                self._fold(parts)
        elif isinstance(event, Started):
            if seq != 0:
                raise RuntimeError("started must be the first event")
            self._started = event
        else:
            self._fold(parts)
            self._done = event
            self._parts = self._tail = None
            self.finished_at = time.monotonic()
        self._next_seq = seq + 1
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():  # a follower cancelled while waiting
                    waiter.set_result(None)

    def _fold(self, parts: list[str]) -> None:
        """Move ``parts`` (the unfolded texts) to the end of the joined text."""
        if not parts:
            return
        ends = accumulate(map(len, parts), initial=len(self._text))
        next(ends)  # the start of the first part: already the last offset
        self._offsets.extend(ends)
        self._text += "".join(parts)
        parts.clear()

    async def follow(
        self, after_seq: int = -1, *, merge: bool = False
    ) -> AsyncGenerator[list[ReplyEvent], None]:
        """Yield batches of events with ``seq > after_seq`` until ``done`` is yielded.

        Each batch holds every event appended since the last one, so a slow consumer gets
        fewer, larger batches instead of falling behind event by event. Yields nothing
        when the log is finished and ``after_seq`` is at or past its last event.

        By default every seq is its own event (what a copy of the log needs). With
        ``merge`` the deltas of a batch come as one delta carrying the last of their seqs
        and their texts joined (what a client needs: resuming after that seq stays exact).
        """
        cursor = max(after_seq + 1, 0)
        while True:
            end = self._next_seq
            if cursor < end:
                tail = self._tail
                if tail is not None and tail.seq == cursor:
                    # A live follower that keeps up: the delta just appended, as it was.
                    batch: list[ReplyEvent] = [tail]
                else:
                    batch = self._events(cursor, end, merge=merge)
                cursor = end
                yield batch
                if isinstance(batch[-1], Done):
                    return
                continue
            if self.finished_at is not None:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _events(self, start: int, end: int, *, merge: bool) -> list[ReplyEvent]:
        """The events with ``start <= seq < end`` (``end <= next_seq``), built on demand."""
        events: list[ReplyEvent] = []
        if start == 0 and self._started is not None:
            events.append(self._started)
        text, offsets, parts = self._text, self._offsets, self._parts or []
        folded = len(offsets) - 1
        # Delta seqs are 1..count, stored at indexes 0..count-1: the indexes in range.
        low, high = max(start, 1) - 1, min(end, folded + len(parts) + 1) - 1
        if low < high:
            # [low, high) = folded [low, folded_high) + parts [parts_low, parts_high)
            folded_high = min(high, folded)
            parts_low, parts_high = max(low - folded, 0), max(high - folded, 0)
            if merge:
                head = text[offsets[low] : offsets[folded_high]] if low < folded else ""
                joined = head + "".join(parts[parts_low:parts_high])
                events.append(Delta(high, joined))
            else:
                events.extend(
                    [
                        Delta(i + 1, text[offsets[i] : offsets[i + 1]])
                        for i in range(low, folded_high)
                    ]
                )
                events.extend(
                    [Delta(folded + i + 1, parts[i]) for i in range(parts_low, parts_high)]
                )
        if self._done is not None and end == self._next_seq:
            events.append(self._done)
        return events


class ReplyHub:
    """All reply logs of this process, by message id."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._logs: dict[str, ReplyLog] = {}
        self._next_expiry = 0.0

    def create(self, key: ReplyKey) -> ReplyLog:
        self._expire()
        log = ReplyLog(key)
        self._logs[key.message_id] = log
        return log

    def get(self, owner: str, message_id: str) -> ReplyLog | None:
        """The log of ``message_id`` if it exists *and belongs to owner*."""
        log = self._logs.get(message_id)
        if log is None or log.key.owner != owner:
            return None
        return log

    def _expire(self) -> None:
        # At most once a second: a scan of every log per new reply was O(replies kept).
        now = time.monotonic()
        if now < self._next_expiry:
            return
        self._next_expiry = now + min(1.0, self._ttl)
        cutoff = now - self._ttl
        stale = [
            message_id
            for message_id, log in self._logs.items()
            if log.finished_at is not None and log.finished_at < cutoff
        ]
        for message_id in stale:
            del self._logs[message_id]
