"""The event log of a reply: ``started``, ``delta``…, ``done``, numbered 0, 1, 2, ….

A reply's events are appended by the one task that generates it and read by any number of
followers, each from the sequence number it last saw, so a follower that reconnects gets
exactly the events it missed: no gap, no duplicate. The log of a finished reply is kept for
``reply_log_ttl`` seconds, then dropped (the database keeps the text).

:class:`ReplyHub` is the in-memory backend (one process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liaotian.store.repository import MessageInfo


class ReplyStatus(StrEnum):
    """Outcome of a reply. STREAMING is the only non-terminal state."""

    STREAMING = "streaming"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ERROR = "error"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self is not ReplyStatus.STREAMING


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


def event_to_wire(event: ReplyEvent) -> dict[str, Any]:
    """A plain dict for another process (the inverse of :func:`event_from_wire`)."""
    if isinstance(event, Delta):
        return {"k": "d", "seq": event.seq, "text": event.text}
    if isinstance(event, Started):
        wire = {field: getattr(event, field) for field in Started.__slots__}
        wire["replaces"] = list(event.replaces)
        return {"k": "s", **wire}
    return {"k": "e", **{field: getattr(event, field) for field in Done.__slots__}}


def event_from_wire(wire: dict[str, Any]) -> ReplyEvent:
    """Rebuild an event from :func:`event_to_wire`'s dict. Raises KeyError/TypeError if bad."""
    kind = wire.pop("k")
    if kind == "d":
        return Delta(**wire)
    if kind == "s":
        wire["replaces"] = tuple(wire.get("replaces", ()))
        return Started(**wire)
    if kind == "e":
        return Done(**wire)
    raise TypeError(f"unknown event kind {kind!r}")


@dataclass(frozen=True, slots=True)
class ReplyKey:
    """Who a reply belongs to and where it lives."""

    owner: str
    conversation_id: str
    message_id: str


@dataclass(slots=True, eq=False)
class ReplyLog:
    """The append-only events of one reply. Only the generating task appends."""

    key: ReplyKey
    events: list[ReplyEvent] = field(default_factory=list)
    finished_at: float | None = None
    rebuilt: bool = False
    """True for a log rebuilt from the database: its seqs are not the original ones."""
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)
    """One future per waiting follower: cheaper per event than one shared, shielded future."""

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def next_seq(self) -> int:
        return len(self.events)

    def append(self, event: ReplyEvent) -> None:
        """Append the next event; its ``seq`` must be :attr:`next_seq`.

        Raises RuntimeError after ``done`` or on a wrong sequence number.
        """
        if self.finished_at is not None:
            raise RuntimeError("reply log is closed")
        if event.seq != len(self.events):
            raise RuntimeError(f"event seq {event.seq} != expected {len(self.events)}")
        self.events.append(event)
        if isinstance(event, Done):
            self.finished_at = time.monotonic()
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():  # a follower cancelled while waiting
                    waiter.set_result(None)

    async def follow(self, after_seq: int = -1) -> AsyncIterator[list[ReplyEvent]]:
        """Yield batches of events with ``seq > after_seq`` until ``done`` is yielded.

        Each batch holds every event appended since the last one, so a slow consumer gets
        fewer, larger batches instead of falling behind event by event. Yields nothing
        when the log is finished and ``after_seq`` is at or past its last event.
        """
        cursor = after_seq + 1
        while True:
            if self.finished_at is not None and cursor >= len(self.events):
                return
            if cursor < len(self.events):
                batch = self.events[cursor:]
                cursor += len(batch)
                yield batch
                if isinstance(batch[-1], Done):
                    return
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


@dataclass(frozen=True, slots=True)
class ConversationChange:
    """A conversation was renamed (``conversation`` is its new wire form) or deleted."""

    conversation_id: str
    conversation: dict[str, Any] | None
    origin: object = None
    """Whoever caused it (a connection), so it is not told twice."""

    @property
    def deleted(self) -> bool:
        return self.conversation is None


Notice = ReplyLog | ConversationChange


class OwnerBus:
    """Fans out notices (new replies, conversation changes) to an owner's connections."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[Notice]]] = {}

    def subscribe(self, owner: str) -> asyncio.Queue[Notice]:
        queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._queues.setdefault(owner, set()).add(queue)
        return queue

    def unsubscribe(self, owner: str, queue: asyncio.Queue[Notice]) -> None:
        queues = self._queues.get(owner)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[owner]

    def has_listeners(self, owner: str) -> bool:
        return owner in self._queues

    def publish(self, owner: str, notice: Notice) -> None:
        for queue in self._queues.get(owner, ()):
            queue.put_nowait(notice)


def finish_from_message(reply_log: ReplyLog, info: MessageInfo) -> None:
    """Complete ``reply_log`` from the stored reply ``info`` (which has ended).

    An empty log becomes a rebuilt one (``started``, the whole text, ``done``: its seqs are
    not the original ones); a log that has part of the text gets the rest, then ``done``.
    """
    if not reply_log.events:
        reply_log.rebuilt = True
        reply_log.append(
            Started(
                seq=0,
                user_message_id="",
                model=info.model or "",
                title="",
                created_at=info.created_at.timestamp(),
            )
        )
    have = "".join(event.text for event in reply_log.events if isinstance(event, Delta))
    if info.content.startswith(have) and len(info.content) > len(have):
        reply_log.append(Delta(seq=reply_log.next_seq, text=info.content[len(have) :]))
    wire = info.to_wire()
    reply_log.append(
        Done(
            seq=reply_log.next_seq,
            status=info.status,
            finish_reason=info.finish_reason,
            usage=wire["usage"],
            ttft_ms=info.ttft_ms,
            duration_ms=info.duration_ms,
            error=wire["error"],
        )
    )


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
