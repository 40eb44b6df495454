"""The Redis backplane's copy of reply logs: coalesced, exactly once, flushed on close."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import orjson
import pytest
import redis.asyncio as aioredis

from liaotian.backplane import Notice, OwnerBus
from liaotian.backplane.redis import RedisBackplane, entry_id
from liaotian.replies.codec import event_from_wire, event_to_wire
from liaotian.replies.log import Delta, Done, ReplyEvent, ReplyKey, ReplyLog, Started
from liaotian.store import Store
from liaotian.store.repository import MessageInfo
from tests.cluster import REDIS_URL, redis_available
from tests.factories import stored_reply
from tests.tcp_proxy import TcpProxy

Entry = tuple[str, int, list[ReplyEvent]]
"""A stream entry as read back: its id, its ``f`` (first seq covered), its events."""


class FakeStore:
    """The one store call a mirror makes: the reply as the database has it (or None)."""

    def __init__(self) -> None:
        self.replies: dict[str, MessageInfo] = {}

    async def reply_status(self, owner: str, message_id: str) -> MessageInfo | None:
        return self.replies.get(message_id)


class Redis:
    """A test's view of Redis: its own key prefix, a client, and backplanes to close."""

    def __init__(self) -> None:
        self.prefix = f"test-bp-{uuid.uuid4().hex[:10]}"
        self.client = aioredis.Redis.from_url(REDIS_URL)
        self.store = FakeStore()
        self.backplanes: list[RedisBackplane] = []

    def backplane(self, *, flush_interval: float, url: str = REDIS_URL) -> RedisBackplane:
        backplane = RedisBackplane(
            url,
            store=cast(Store, self.store),
            log_ttl=300,
            max_events=10_000,
            lease=15,
            prefix=self.prefix,
            flush_interval=flush_interval,
        )
        self.backplanes.append(backplane)
        return backplane

    def stream(self, message_id: str) -> str:
        return f"{self.prefix}:reply:{message_id}"

    async def entries(self, message_id: str) -> list[Entry]:
        found: Any = await self.client.xrange(self.stream(message_id))
        return [
            (
                entry.decode(),
                int(fields[b"f"]),
                [event_from_wire(wire) for wire in orjson.loads(fields[b"b"])],
            )
            for entry, fields in found
        ]

    async def until(
        self, message_id: str, done: Callable[[list[Entry]], bool], within: float = 10.0
    ) -> list[Entry]:
        """The stream's entries once ``done`` holds for them (TimeoutError otherwise)."""
        async with asyncio.timeout(within):
            while True:
                entries = await self.entries(message_id)
                if done(entries):
                    return entries
                await asyncio.sleep(0.005)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    await redis_available()
    view = Redis()
    try:
        yield view
    finally:
        for backplane in view.backplanes:
            await backplane.close(flush_timeout=0)
        keys = [key async for key in view.client.scan_iter(f"{view.prefix}:*")]
        if keys:
            await view.client.delete(*keys)
        await view.client.aclose()


def new_reply(backplane: RedisBackplane, message_id: str = "m") -> ReplyLog:
    """A local reply log with its ``started`` event, copied by ``backplane``."""
    log = ReplyLog(ReplyKey("alice", "c", message_id))
    log.append(Started(seq=0, user_message_id="u", model="m", title="t", created_at=0.0))
    backplane.publish_reply(log)
    return log


async def stream_deltas(log: ReplyLog, count: int, pause: float = 0.002) -> None:
    """Append ``count`` deltas, one every ``pause`` s (so a copier sees each on its own)."""
    for _ in range(count):
        seq = log.next_seq
        log.append(Delta(seq=seq, text=f"t{seq} "))
        await asyncio.sleep(pause)


def text_of(log: ReplyLog) -> str:
    return "".join(event.text for event in log.events if isinstance(event, Delta))


def finish(log: ReplyLog) -> None:
    log.append(Done(seq=log.next_seq, status="completed"))


def ends_with_done(entries: list[Entry]) -> bool:
    return bool(entries) and isinstance(entries[-1][2][-1], Done)


def exactly_once(entries: list[Entry], log: ReplyLog) -> None:
    """Entries hold every event of ``log`` once, in order; ids and ``f`` line up."""
    expected_first = 0
    for entry, first, events in entries:
        assert first == expected_first
        assert [event.seq for event in events] == list(range(first, events[-1].seq + 1))
        assert entry == entry_id(events[-1].seq)
        expected_first = events[-1].seq + 1
    copied = [event for _, _, events in entries for event in events]
    assert [event_to_wire(e) for e in copied] == [event_to_wire(e) for e in log.events]


async def test_started_first_delta_and_done_go_at_once_the_rest_waits(redis: Redis) -> None:
    """With a long flush interval, started, the first delta and done reach Redis at once;
    the 100 deltas in between wait for done and share its entry."""
    backplane = redis.backplane(flush_interval=30)
    log = new_reply(backplane)
    await redis.until("m", lambda entries: len(entries) == 1)
    await stream_deltas(log, 1)
    await redis.until("m", lambda entries: len(entries) == 2)
    await stream_deltas(log, 100)  # 200+ ms, one by one: each could have been an XADD
    assert len(await redis.entries("m")) == 2
    finish(log)
    entries = await redis.until("m", ends_with_done, within=5)
    assert len(entries) == 3
    exactly_once(entries, log)


async def test_one_flush_carries_every_reply_of_the_process(redis: Redis) -> None:
    """The flush that done triggers for one reply also sends what waits for the others."""
    backplane = redis.backplane(flush_interval=30)
    first, second = new_reply(backplane, "a"), new_reply(backplane, "b")
    await stream_deltas(first, 1)
    await stream_deltas(second, 1)
    await redis.until("b", lambda entries: bool(entries) and entries[-1][2][-1].seq == 1)
    before = len(await redis.entries("b"))
    await asyncio.gather(stream_deltas(first, 20), stream_deltas(second, 20))
    finish(first)
    await redis.until("a", ends_with_done, within=5)
    entries = await redis.until("b", lambda entries: len(entries) > before, within=5)
    assert len(entries) == before + 1
    assert entries[-1][2][-1].seq == second.next_seq - 1  # all of it, done still to come


async def test_a_short_interval_copies_every_event_exactly_once(redis: Redis) -> None:
    """Batches on a 10 ms timer: each seq once, in order, ids ``0-{last seq + 1}``."""
    backplane = redis.backplane(flush_interval=0.01)
    log = new_reply(backplane)
    began = asyncio.get_running_loop().time()
    await stream_deltas(log, 150, pause=0.001)
    # Only the timer can copy the last delta before done: waiting for it proves it fired,
    # however slowly a loaded machine ran the loop above.
    last = log.next_seq - 1
    await redis.until("m", lambda entries: bool(entries) and entries[-1][2][-1].seq == last)
    ticks = (asyncio.get_running_loop().time() - began) / 0.01
    finish(log)
    entries = await redis.until("m", ends_with_done)
    exactly_once(entries, log)
    # At most one timer flush per 10 ms tick, besides started, the first delta and done
    # (load slows the timer down, never speeds it up).
    assert len(entries) <= ticks + 4


async def test_an_outage_loses_nothing_and_duplicates_nothing(redis: Redis) -> None:
    """Connections to Redis cut and refused mid-reply: once it is back, the stream holds
    every event exactly once."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = closed.getsockname()[1]
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy(port) as proxy:
        backplane = redis.backplane(flush_interval=0.01, url=f"redis://127.0.0.1:{proxy.port}/0")
        log = new_reply(backplane)
        await stream_deltas(log, 50, pause=0.001)
        await redis.until("m", lambda entries: len(entries) >= 2)
        proxy.target_port = nowhere  # new connections fail, open ones are cut
        proxy.cut()
        await stream_deltas(log, 50, pause=0.001)
        proxy.cut()
        proxy.target_port = port
        await stream_deltas(log, 50, pause=0.001)
        finish(log)
        entries = await redis.until("m", ends_with_done, within=30)
    exactly_once(entries, log)


async def test_close_flushes_what_waits_for_the_timer(redis: Redis) -> None:
    """Closing sends the deltas still waiting for the flush interval, within its timeout."""
    backplane = redis.backplane(flush_interval=30)
    log = new_reply(backplane)
    await stream_deltas(log, 1)
    await redis.until("m", lambda entries: bool(entries) and entries[-1][2][-1].seq == 1)
    await stream_deltas(log, 10)
    # close() waits the whole timeout for a reply that never ends: a local Redis round
    # trip fits in 3 s however loaded the machine.
    await backplane.close(flush_timeout=3)
    entries = await redis.entries("m")
    assert [event.seq for _, _, events in entries for event in events] == list(range(12))


async def mirrored(redis: Redis, entries: list[tuple[int, list[ReplyEvent]]]) -> ReplyLog:
    """A mirror (on another backplane) of a stream written by hand, once it is done."""
    for first, events in entries:
        await redis.client.xadd(
            redis.stream("m"),
            {"f": first, "b": orjson.dumps([event_to_wire(event) for event in events])},
            id=entry_id(events[-1].seq),
        )
    backplane = redis.backplane(flush_interval=0.01)
    mirror = await backplane.replica(ReplyKey("alice", "c", "m"), streaming=True)
    assert mirror is not None
    async with asyncio.timeout(10):
        async for _ in mirror.follow():
            pass
    return mirror


STARTED = Started(seq=0, user_message_id="u", model="m", title="t", created_at=0.0)


async def test_a_mirror_follows_entries_of_several_events(redis: Redis) -> None:
    """Entries of several events each make the same log on another process."""
    mirror = await mirrored(
        redis,
        [
            (0, [STARTED, Delta(1, "a")]),
            (2, [Delta(2, "b"), Delta(3, "c")]),
            (4, [Delta(4, "d"), Done(5, status="completed")]),
        ],
    )
    assert text_of(mirror) == "abcd"
    assert [event.seq for event in mirror.events] == list(range(6))


async def test_a_mirror_missing_entries_finishes_from_the_database(redis: Redis) -> None:
    """Lost entries (``f`` past what the mirror has) are not a hole in the text: the
    mirror takes the rest from the database."""
    redis.store.replies["m"] = stored_reply("abcdef")
    mirror = await mirrored(
        redis,
        [(0, [STARTED, Delta(1, "ab")]), (4, [Delta(4, "ef"), Done(5, status="completed")])],
    )
    assert text_of(mirror) == "abcdef"
    assert cast(Done, mirror.events[-1]).status == "completed"


async def test_a_mirror_never_repeats_text_of_a_merged_delta(redis: Redis) -> None:
    """A delta standing for seqs 2-4 (a seq jump inside its entry's range) is no gap;
    a log that cannot take it finishes from the database: either way, the text once."""
    redis.store.replies["m"] = stored_reply("abcd")
    mirror = await mirrored(
        redis,
        [(0, [STARTED, Delta(1, "a")]), (2, [Delta(4, "bcd"), Done(5, status="completed")])],
    )
    assert text_of(mirror) == "abcd"


class Listener(OwnerBus.Listener):
    """An owner's connection, as far as the backplane can tell: it has listeners."""

    __slots__ = ()

    def notify(self, notice: Notice) -> None:
        return None


async def test_malformed_messages_do_not_stop_notices_or_cancels(redis: Redis) -> None:
    """Malformed notices and cancels on the channels are ignored; the listener goes on
    and a later cancel still arrives."""
    cancels: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
    receiver = redis.backplane(flush_interval=0.01)
    await receiver.start(lambda owner, message_ids: cancels.put_nowait((owner, message_ids)))
    receiver.subscribe("alice", Listener())
    sender = redis.backplane(flush_interval=0.01)
    notices, cancel_channel = f"{redis.prefix}:notices", f"{redis.prefix}:cancel"
    async with asyncio.timeout(10):  # until the receiver listens
        while True:
            [(_, listening)] = await redis.client.pubsub_numsub(notices)
            if listening:
                break
            await asyncio.sleep(0.01)
    for channel, payload in (
        (notices, b'{"kind": "reply", "owner": "alice"}'),  # no conversation or message id
        (notices, b'{"kind": "change", "owner": "alice", "conversation": 5}'),
        (notices, b"not json"),
        (notices, b"[1, 2]"),
        (cancel_channel, b'{"owner": "alice", "message_ids": 7}'),
    ):
        await redis.client.publish(channel, payload)
    sender.request_cancel("alice", ["m1"])
    async with asyncio.timeout(10):
        assert await cancels.get() == ("alice", ["m1"])
