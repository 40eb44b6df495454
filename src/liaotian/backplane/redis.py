"""The backplane of several processes sharing a Redis (``redis://…``).

Each process keeps its own logs and owner bus as :class:`~.memory.MemoryBackplane` does,
and shares through Redis:

* **Reply logs** — the events of each reply a process generates are copied, in batches, to
  the Redis stream ``{prefix}:reply:{message_id}``; entry ids are ``0-{last seq + 1}`` and
  each entry says the first seq it covers (field ``f``), so a reader resumes after any seq
  exactly and tells a merged delta (a seq jump inside the covered range) from lost entries.
  A batch is retried unchanged until Redis confirms it, and a retried XADD of a batch that
  did arrive is refused as a duplicate instead of stored twice: exactly once. Streams are
  capped at ``reply_stream_max_events`` entries and expire ``reply_log_ttl`` seconds after
  the reply ends.
* **Coalescing** — ``started``, the first part and ``done`` are copied at once; the parts
  in between wait up to ``flush_interval`` seconds (``backplane_flush_interval``), and then
  what accumulated for *every* reply of the process goes out in one pipelined round trip.
  At 50 tokens/s that replaces one XADD round trip per token per reply; the price is that
  followers on other processes see those deltas up to ``flush_interval`` later.
* **Replicas** — a process asked to follow a reply it does not run mirrors that stream
  into a local :class:`~liaotian.events.ReplyLog`, which its connections follow like any
  other. If Redis loses the stream, the mirror finishes the reply from the database.
* **Notices** — a new reply and a renamed or deleted conversation are published on
  ``{prefix}:notices`` so every process can tell the owner's connections.
* **Cancels** — published on ``{prefix}:cancel``; the process running the reply stops it.
  Asking returns at once: the publish is retried in the background for up to
  ``backplane_cancel_deadline`` seconds, so a Redis outage never blocks a connection.
* **Leases** — every process renews the lease of the replies it runs (in the database) and
  reaps the replies whose lease expired: their process died, so they are marked
  interrupted and a terminal event is added to their stream.

Redis being down never stops a process from serving its own connections: copies to Redis
retry with backoff (the local log is the buffer), no call waits on Redis without a bound,
and the database stays the source of truth. The listener, the reaper and the copier are
supervised: an unexpected failure is logged and the loop restarted. :meth:`close` first
flushes what is pending, within its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from liaotian.backplane.base import CancelHandler, ConversationChange
from liaotian.backplane.memory import MemoryBackplane
from liaotian.errors import StoreError
from liaotian.metrics import Metrics
from liaotian.replies.codec import event_from_wire, event_to_wire
from liaotian.replies.log import Done, PartEvent, ReplyEvent, ReplyKey, ReplyLog
from liaotian.replies.replay import finish_from_message
from liaotian.store import Store
from liaotian.store.repository import INTERRUPTED_MESSAGE
from liaotian.supervisor import supervise

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
FLUSH_INTERVAL = 0.05
"""Default of ``backplane_flush_interval``: seconds a delta may wait to be copied."""
CANCEL_DEADLINE = 30.0
"""Default of ``backplane_cancel_deadline``: seconds a cancel is retried while Redis is down."""
REDIS_CALL_TIMEOUT = 2.0
"""Bound on a Redis call a request waits for (the rest runs in the background)."""
SOCKET_TIMEOUT = 10.0
"""No Redis read waits longer than this on a silent connection (blocking reads ask for 1 s;
the notice listener polls every 5 s)."""


def entry_id(seq: int) -> str:
    return f"0-{seq + 1}"


def seq_of(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.partition("-")[2]) - 1


@dataclass(frozen=True, slots=True)
class _Entry:
    """One stream entry: the events of seqs ``first`` … ``last``, encoded once so that a
    retry sends exactly the same entry."""

    first: int
    last: int
    body: bytes
    final: bool
    announce: bool


@dataclass(slots=True, eq=False)
class _Copy:
    """The copy of one local reply: events followed but not yet sent, and the entry that is
    sent but not yet confirmed (at most one, so a failed entry is never overtaken)."""

    key: ReplyKey
    stream: str
    pending: list[ReplyEvent] = field(default_factory=list)
    unconfirmed: _Entry | None = None
    next_first: int = 0
    prompt: bool = True
    """True until a part is followed: ``started`` and the first part go out at once."""
    announced: bool = False


class RedisBackplane(MemoryBackplane):
    """The Redis-backed backplane of one process (see the module docstring)."""

    scheme = "redis"

    def __init__(
        self,
        url: str,
        *,
        store: Store,
        metrics: Metrics | None = None,
        log_ttl: float,
        max_events: int,
        lease: float,
        prefix: str = "liaotian",
        flush_interval: float = FLUSH_INTERVAL,
        cancel_deadline: float = CANCEL_DEADLINE,
    ) -> None:
        super().__init__(store, log_ttl=log_ttl)
        self.instance = uuid.uuid4().hex[:12]
        self._prefix = prefix
        self._notices = f"{prefix}:notices"
        self._cancels = f"{prefix}:cancel"
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=SOCKET_TIMEOUT,
            socket_keepalive=True,
            health_check_interval=10,
        )
        self._metrics = metrics
        self._log_ttl = max(1, int(log_ttl))
        self._max_events = max_events
        self._lease = lease
        self._cancel_deadline = cancel_deadline
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_interval = flush_interval
        self._copies: dict[str, _Copy] = {}
        """Replies being copied, until their ``done`` is confirmed."""
        self._dirty: dict[str, _Copy] = {}
        """Copies with pending events or an unconfirmed entry (insertion order: fair)."""
        self._kick = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._copied = asyncio.Event()
        """Set whenever no copy is left (what :meth:`close` waits for)."""
        self._copied.set()
        self._closing = False
        self._mirrors: dict[str, ReplyLog] = {}
        self._state = "starting"
        self._last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, cancel_local: CancelHandler) -> None:
        """Listen for notices and cancels, and reap the replies of dead processes (by
        lease: the others' replies are not this process's to interrupt)."""
        self._cancel_local = cancel_local
        self._spawn(self._supervised("notices", self._listen), "liaotian-notices")
        self._spawn(self._supervised("reaper", self._reap), "liaotian-reaper")

    def _supervised(
        self, name: str, loop: Callable[[], Awaitable[None]]
    ) -> Coroutine[Any, Any, None]:
        return supervise(f"backplane {name}", loop, on_failure=self._task_failed)

    def _task_failed(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.task_failures.labels(name).inc()

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Stop; first flush what is pending and give the copies up to ``flush_timeout``
        seconds to reach Redis (what is still unsent then is only in the database)."""
        if self._copies:
            self._closing = True  # from now on every batch goes out at once
            self._kick.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    await self._copied.wait()
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    def status(self) -> dict[str, object]:
        report: dict[str, object] = {"kind": "redis", "state": self._state}
        if self._last_error is not None and self._state != "ok":
            report["error"] = self._last_error
        report["instance"] = self.instance
        return report

    def _stream(self, message_id: str) -> str:
        return f"{self._prefix}:reply:{message_id}"

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _ok(self) -> None:
        self._state = "ok"

    def _failed(self, error: BaseException) -> None:
        if self._state != "unreachable":
            log.warning("redis unreachable: %s", error)
        self._state = "unreachable"
        self._last_error = f"{type(error).__name__}: {error}"

    # -- copying local replies to Redis ------------------------------------------------------

    def publish_reply(self, reply_log: ReplyLog) -> None:
        """Tell the owner's connections here; copy ``reply_log`` to its Redis stream as it
        grows, and announce it to the other processes."""
        self.bus.publish(reply_log.key.owner, reply_log)
        key = reply_log.key
        copy = _Copy(key, self._stream(key.message_id))
        self._copies[key.message_id] = copy
        self._copied.clear()
        if self._flusher is None:
            self._flusher = self._spawn(
                self._supervised("copier", self._flush_loop), "liaotian-copies"
            )
        self._spawn(self._follow(copy, reply_log), f"liaotian-copy-{key.message_id}")

    async def _follow(self, copy: _Copy, reply_log: ReplyLog) -> None:
        """Queue the log's events for the flusher as they come; the first ones and ``done``
        wake it at once, the rest on its timer."""
        async for batch in reply_log.follow():
            copy.pending.extend(batch)
            self._dirty[copy.key.message_id] = copy
            urgent = copy.prompt or isinstance(batch[-1], Done) or self._closing
            if copy.prompt and any(isinstance(event, PartEvent) for event in batch):
                copy.prompt = False
            if urgent:
                self._kick.set()
            elif self._timer is None and not self._kick.is_set():
                self._timer = asyncio.get_running_loop().call_later(
                    self._flush_interval, self._kick.set
                )

    async def _flush_loop(self) -> None:
        """Flush when kicked; after a failure, back off and flush again (the data waits)."""
        attempt = 0
        while True:
            if attempt == 0:
                await self._kick.wait()
            self._kick.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                await self._flush()
            except (RedisError, OSError) as error:
                self._failed(error)
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1
                continue
            self._ok()
            if attempt:
                attempt = 0
                self._kick.set()  # events that waited behind the retried entries

    async def _flush(self) -> None:
        """Send one entry per dirty copy in one pipeline; raise RedisError/OSError if any
        was not confirmed (it is sent again, unchanged, by the next flush)."""
        sending: list[tuple[_Copy, _Entry]] = []
        for copy in self._dirty.values():
            if copy.unconfirmed is None:
                copy.unconfirmed = self._entry(copy)
            sending.append((copy, copy.unconfirmed))
        if not sending:
            return
        pipe = self._redis.pipeline(transaction=False)
        for copy, entry in sending:
            pipe.xadd(
                copy.stream,
                {"f": entry.first, "b": entry.body},
                id=entry_id(entry.last),
                maxlen=self._max_events,
                approximate=True,
            )
            if entry.announce:
                pipe.publish(self._notices, self._reply_notice(copy.key))
            if entry.final:
                pipe.expire(copy.stream, self._log_ttl)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        failure: BaseException | None = None
        answers = iter(results)
        for copy, entry in sending:
            answered = [next(answers) for _ in range(1 + entry.announce + entry.final)]
            errors = [
                answer
                for answer in answered
                if isinstance(answer, BaseException)
                # A retry of an entry that did arrive: it is there already, exactly once.
                and not (isinstance(answer, ResponseError) and "equal or smaller" in str(answer))
            ]
            if errors:
                failure = errors[0]
                continue
            copy.unconfirmed = None
            copy.announced = copy.announced or entry.announce
            if not copy.pending:
                del self._dirty[copy.key.message_id]
            if entry.final:
                del self._copies[copy.key.message_id]
        if not self._copies:
            self._copied.set()
        if failure is not None:
            raise failure

    def _entry(self, copy: _Copy) -> _Entry:
        events, copy.pending = copy.pending, []
        entry = _Entry(
            first=copy.next_first,
            last=events[-1].seq,
            body=orjson.dumps([event_to_wire(event) for event in events]),
            final=isinstance(events[-1], Done),
            announce=not copy.announced,
        )
        copy.next_first = entry.last + 1
        return entry

    def _reply_notice(self, key: ReplyKey) -> bytes:
        return orjson.dumps(
            {
                "kind": "reply",
                "owner": key.owner,
                "conversation_id": key.conversation_id,
                "message_id": key.message_id,
                "from": self.instance,
            }
        )

    async def _retry(self, operation: Callable[[], Awaitable[Any]]) -> None:
        """Run a Redis operation until it succeeds, backing off (the caller's data waits)."""
        attempt = 0
        while True:
            try:
                await operation()
                self._ok()
                return
            except (RedisError, OSError) as error:
                self._failed(error)
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1

    # -- following replies of other processes ----------------------------------------------

    async def replica(self, key: ReplyKey, *, streaming: bool) -> ReplyLog | None:
        """A local log mirroring the reply's Redis stream, or None if there is none.

        ``streaming`` (from the database) means the reply is live somewhere: its stream may
        not exist yet, and the mirror waits for it.
        """
        existing = self._mirrors.get(key.message_id)
        if existing is not None:
            return existing
        if not streaming:
            try:
                async with asyncio.timeout(REDIS_CALL_TIMEOUT):
                    if not await self._redis.exists(self._stream(key.message_id)):
                        return None
            except (RedisError, OSError, TimeoutError) as error:
                self._failed(error)
                return None  # the database has the whole reply
        mirror = self.hub.create(key)
        self._mirrors[key.message_id] = mirror
        self._spawn(self._mirror(mirror), f"liaotian-mirror-{key.message_id}")
        return mirror

    async def _mirror(self, mirror: ReplyLog) -> None:
        key = mirror.key
        stream = self._stream(key.message_id)
        last = "0-0"
        gap = False
        try:
            while not mirror.done:
                try:
                    answer: Any = await self._redis.xread({stream: last}, block=1000, count=1000)
                    self._ok()
                except (RedisError, OSError) as error:
                    self._failed(error)
                    answer = []
                    await asyncio.sleep(0.5)
                if gap or not answer:
                    # Quiet (or the stream lost events): maybe the reply ended and Redis
                    # does not have it all; the database does.
                    await self._finish_from_database(mirror)
                if not answer:
                    continue
                for entry, fields in answer[0][1]:
                    last = entry.decode()
                    if not gap:
                        # Trimmed or lost entries: finish from the database.
                        gap = not self._apply(mirror, fields)
        finally:
            self._mirrors.pop(key.message_id, None)

    @staticmethod
    def _apply(mirror: ReplyLog, fields: dict[bytes, bytes]) -> bool:
        """Append a stream entry's new events to ``mirror``; False if some are missing.

        An event covers the seqs after the one before it (the first, those from the
        entry's ``f``), so a delta may stand for several merged ones: a seq jump inside
        the covered range is no gap. Events the mirror has already are skipped.
        """
        events = [event_from_wire(wire) for wire in orjson.loads(fields[b"b"])]
        # Entries of older versions have no "f": then every seq stands alone.
        covered = int(fields[b"f"]) if b"f" in fields else events[0].seq
        for event in events:
            start, covered = covered, event.seq + 1
            if event.seq < mirror.next_seq:
                continue
            if start != mirror.next_seq:
                return False
            try:
                mirror.append(event)
            except RuntimeError:
                return False  # a log that takes no seq jumps: the database has the text
        return True

    async def _finish_from_database(self, mirror: ReplyLog) -> None:
        """End a mirror from the database once the reply has ended there.

        Adds the text Redis did not deliver and the outcome. A mirror that received nothing
        becomes a rebuilt log (started, the whole text, done), as after a restart.
        """
        try:
            info = await self._store.reply_status(mirror.key.owner, mirror.key.message_id)
        except StoreError as error:
            log.warning("could not read reply %s: %s", mirror.key.message_id, error.message)
            return  # asked again at the next quiet read
        if info is None or info.status == "streaming" or mirror.done:
            return
        finish_from_message(mirror, info)

    # -- notices and cancels ---------------------------------------------------------------

    def publish_change(self, owner: str, change: ConversationChange) -> None:
        self.bus.publish(owner, change)
        notice = {
            "kind": "change",
            "owner": owner,
            "conversation_id": change.conversation_id,
            "conversation": change.conversation,
        }
        self._spawn(self._publish_notice(notice), "liaotian-notice")

    async def shared_streaming(
        self, owner: str, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        return await self._store.streaming_replies(
            owner, message_id=message_id, conversation_id=conversation_id
        )

    def request_cancel(self, owner: str, message_ids: list[str]) -> None:
        """Publish the cancel in the background, retried for ``backplane_cancel_deadline``
        seconds (then dropped, with a warning: the reply ends on its own)."""
        payload = orjson.dumps({"owner": owner, "message_ids": message_ids, "from": self.instance})
        self._spawn(
            self._publish(self._cancels, payload, "cancel"), f"liaotian-cancel-{message_ids[0]}"
        )

    async def _publish_notice(self, notice: dict[str, Any]) -> None:
        payload = orjson.dumps({**notice, "from": self.instance})
        await self._publish(self._notices, payload, "notice")

    async def _publish(self, channel: str, payload: bytes, what: str) -> None:
        """Publish, retrying with backoff until ``backplane_cancel_deadline`` passes."""
        try:
            async with asyncio.timeout(self._cancel_deadline):
                await self._retry(lambda: self._redis.publish(channel, payload))
        except TimeoutError:
            log.warning(
                "a %s could not reach the other processes within %g s (Redis unreachable); dropped",
                what,
                self._cancel_deadline,
            )

    async def _listen(self) -> None:
        attempt = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._notices, self._cancels)
                self._ok()
                attempt = 0
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        await self._on_message(message["channel"], message["data"])
            except (RedisError, OSError) as error:
                self._failed(error)
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _on_message(self, channel: bytes, data: bytes) -> None:
        """Act on one notice or cancel; a malformed one is logged and ignored."""
        try:
            message = orjson.loads(data)
            if not isinstance(message, dict) or message.get("from") == self.instance:
                return
            owner = message.get("owner")
            if not isinstance(owner, str):
                raise TypeError("no owner")
            if channel == self._cancels.encode():
                message_ids = message.get("message_ids")
                if not isinstance(message_ids, list):
                    raise TypeError("no message_ids")
                self._cancel_local(owner, [str(mid) for mid in message_ids])
            elif not self.bus.has_listeners(owner):
                return
            elif message.get("kind") == "reply":
                key = ReplyKey(owner, str(message["conversation_id"]), str(message["message_id"]))
                if self.hub.get(owner, key.message_id) is None:
                    mirror = await self.replica(key, streaming=True)
                    if mirror is not None:
                        self.bus.publish(owner, mirror)
            elif message.get("kind") == "change":
                conversation = message.get("conversation")
                if conversation is not None and not isinstance(conversation, dict):
                    raise TypeError("conversation is not an object")
                self.bus.publish(
                    owner, ConversationChange(str(message["conversation_id"]), conversation)
                )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            log.warning("ignored a malformed backplane message (%s): %.200r", error, data)

    # -- reaping the replies of dead processes -----------------------------------------------

    async def _reap(self) -> None:
        interval = max(1.0, self._lease / 5)
        while True:
            await asyncio.sleep(interval)
            try:
                stale = await self._store.reap_stale(self._lease)
            except StoreError as error:
                log.warning("could not look for replies of dead processes: %s", error.message)
                continue
            for reply in stale:
                log.warning("reply %s lost its process; marked interrupted", reply.message_id)
                await self._retry(partial(self._append_interrupted, reply.message_id))

    async def _append_interrupted(self, message_id: str) -> None:
        stream = self._stream(message_id)
        newest: Any = await self._redis.xrevrange(stream, count=1)
        next_seq = seq_of(newest[0][0]) + 1 if newest else 0
        if newest:
            batch = orjson.loads(newest[0][1][b"b"])
            if batch and batch[-1].get("k") == "e":
                return  # it did finish after all
        event = Done(
            seq=next_seq,
            status="interrupted",
            error={"code": "interrupted", "message": INTERRUPTED_MESSAGE},
        )
        body = orjson.dumps([event_to_wire(event)])
        try:
            await self._redis.xadd(
                stream,
                {"f": next_seq, "b": body},
                id=entry_id(next_seq),
                maxlen=self._max_events,
                approximate=True,
            )
        except ResponseError as error:
            if "equal or smaller" not in str(error):
                raise
            # A retry of this very entry that did arrive: it is there already.
        await self._redis.expire(stream, self._log_ttl)
