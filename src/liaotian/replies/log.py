"""The event log of a reply: ``started``, its parts, ``done``, numbered 0, 1, 2, ….

A reply's parts are answer-text deltas (:class:`Delta`), reasoning deltas
(:class:`ReasoningDelta`) and the web search results (:class:`SourcesFound`), in the order
the provider produced them; every part has its own seq, so resuming is exact whatever the
part. Tool calls and their results will be parts too.

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
    """Message ids that the regenerate / edit starting this reply took off the active path."""
    user_attachments: tuple[dict[str, Any], ...] = ()
    """The user message's images (``{id, media_type, name, width, height, bytes}``)."""
    thinking: bool | None = None
    """Whether the model was asked to think (None: its default)."""
    search: bool = False
    user_parent_id: str | None = None
    """The message the user message follows (None for a first message)."""
    user_siblings: tuple[str, ...] = ()
    reply_siblings: tuple[str, ...] = ()
    """The ids of the user message's and the reply's siblings, oldest first, each included."""


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer text."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's thinking (never part of the answer text)."""

    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class SourcesFound:
    """The reply's web search results: ``{index, url, title, site, icon}`` each."""

    seq: int
    sources: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Done:
    seq: int
    status: str
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    error: dict[str, Any] | None = None
    thinking_ms: float | None = None
    """How long the model thought before the answer began (None: it did not think)."""


PartEvent = Delta | ReasoningDelta | SourcesFound
ReplyEvent = Started | Delta | ReasoningDelta | SourcesFound | Done

_TEXT, _REASONING, _OTHER = 0, 1, 2
"""Kinds of parts in :attr:`ReplyLog._kinds`."""


@dataclass(frozen=True, slots=True)
class ReplyKey:
    """Who a reply belongs to and where it lives."""

    owner: str
    conversation_id: str
    message_id: str


class ReplyLog:
    """The events of one reply, in seq order. Only the generating task appends.

    Stored without an object per token that the garbage collector tracks or visits: the
    ``started`` event, the part texts joined into one string with an array of offsets (one
    per seq), the texts of the latest parts in a short list (folded into the string every
    :data:`FOLD_PARTS` parts, or an eighth of the log, whichever is more), and the ``done``
    event. Part events are built when a follower reads them; the last one appended is
    kept, so live followers share it.

    A log of answer text only (the common case) keeps nothing more. Once another kind of
    part arrives, a byte per part records its kind, the answer and reasoning texts are also
    kept as lists of their pieces, and a part without text (sources) is kept as its event.
    """

    FOLD_PARTS = 64

    __slots__ = (
        "_answer",
        "_done",
        "_extras",
        "_kinds",
        "_next_seq",
        "_offsets",
        "_parts",
        "_reasoning",
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
        self._tail: PartEvent | None = None
        """The last event while it is a part and the log streams; live followers get it."""
        self._kinds: bytearray | None = None
        """The kind of each part (index = seq - 1), once a part other than text arrived."""
        self._answer: list[str] = []
        self._reasoning: list[str] = []
        """The answer's and the reasoning's pieces, kept once :attr:`_kinds` exists."""
        self._extras: dict[int, PartEvent] = {}
        """Parts without text (sources), by seq."""
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
        """The answer text so far (every :class:`Delta`, joined)."""
        if self._kinds is not None:
            return "".join(self._answer)
        return self._text + "".join(self._parts) if self._parts else self._text

    @property
    def reasoning(self) -> str:
        """The reasoning so far (every :class:`ReasoningDelta`, joined)."""
        return "".join(self._reasoning)

    @property
    def sources(self) -> tuple[dict[str, Any], ...]:
        """The reply's search results (the last :class:`SourcesFound`), or ()."""
        found = [event for event in self._extras.values() if isinstance(event, SourcesFound)]
        return found[-1].sources if found else ()

    @property
    def events(self) -> list[ReplyEvent]:
        """Every event so far, one per seq: a new list of new deltas, O(events) to build."""
        return self._events(0, self._next_seq, merge=False)

    def append(self, event: ReplyEvent) -> None:
        """Append the next event; its ``seq`` must be :attr:`next_seq`.

        The order is ``started`` (seq 0), parts, ``done``; ``done`` may also come first
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
        if type(event) is Delta and self._kinds is None:  # answer text only: most replies
            if seq == 0:
                raise RuntimeError("a reply log starts with started, not a part")
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
        elif isinstance(event, Done):
            self._fold(parts)
            self._done = event
            self._parts = self._tail = None
            self.finished_at = time.monotonic()
        else:
            if seq == 0:
                raise RuntimeError("a reply log starts with started, not a part")
            self._append_typed(event, parts)
            self._tail = event
            if len(parts) >= self.FOLD_PARTS and len(parts) >= seq >> 3:
                self._fold(parts)
        self._next_seq = seq + 1
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():  # a follower cancelled while waiting
                    waiter.set_result(None)

    def _append_typed(self, event: PartEvent, parts: list[str]) -> None:
        """Append a part to a log that keeps kinds (starting to keep them if needed)."""
        kinds = self._kinds
        if kinds is None:
            # Every part so far was answer text.
            kinds = self._kinds = bytearray(self._next_seq - 1)
            self._answer = [self.text]
        if isinstance(event, Delta):
            parts.append(event.text)
            kinds.append(_TEXT)
            self._answer.append(event.text)
        elif isinstance(event, ReasoningDelta):
            parts.append(event.text)
            kinds.append(_REASONING)
            self._reasoning.append(event.text)
        else:
            parts.append("")
            kinds.append(_OTHER)
            self._extras[event.seq] = event

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
        ``merge`` consecutive deltas of one kind in a batch come as one delta carrying the
        last of their seqs and their texts joined (what a client needs: resuming after that
        seq stays exact).
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
        # Part seqs are 1..count, stored at indexes 0..count-1: the indexes in range.
        low, high = max(start, 1) - 1, min(end, folded + len(parts) + 1) - 1
        if low < high and self._kinds is not None:
            events.extend(self._typed_events(low, high, merge=merge))
        elif low < high:
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

    def _typed_events(self, low: int, high: int, *, merge: bool) -> list[ReplyEvent]:
        """The parts at indexes ``[low, high)`` of a log that keeps kinds."""
        kinds = self._kinds
        assert kinds is not None
        text, offsets, parts = self._text, self._offsets, self._parts or []
        folded = len(offsets) - 1
        # Runs of one kind: [kind, last seq, pieces], or the event of a part without text.
        runs: list[list[Any] | PartEvent] = []
        for index in range(low, high):
            kind = kinds[index]
            if kind == _OTHER:
                runs.append(self._extras[index + 1])
                continue
            piece = (
                text[offsets[index] : offsets[index + 1]]
                if index < folded
                else parts[index - folded]
            )
            last = runs[-1] if runs else None
            if merge and isinstance(last, list) and last[0] == kind:
                last[1] = index + 1
                last[2].append(piece)
            else:
                runs.append([kind, index + 1, [piece]])
        events: list[ReplyEvent] = []
        for run in runs:
            if isinstance(run, list):
                kind, seq, pieces = run
                cls = Delta if kind == _TEXT else ReasoningDelta
                events.append(cls(seq, pieces[0] if len(pieces) == 1 else "".join(pieces)))
            else:
                events.append(run)
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
