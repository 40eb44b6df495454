"""The reply event log: ordered, resumable from any seq, shared by many followers."""

from __future__ import annotations

import asyncio

import pytest

from liaotian.events import Delta, Done, ReplyEvent, ReplyHub, ReplyKey, ReplyLog, Started

KEY = ReplyKey(owner="alice", conversation_id="c", message_id="m")


def started() -> Started:
    return Started(seq=0, user_message_id="u", model="m", title="t", created_at=0.0)


async def collect(log: ReplyLog, after_seq: int = -1) -> list[ReplyEvent]:
    events: list[ReplyEvent] = []
    async for batch in log.follow(after_seq):
        events.extend(batch)
    return events


async def test_follower_from_a_seq_gets_exactly_the_later_events() -> None:
    """Following after seq N yields the events N+1… and ends with done."""
    log = ReplyLog(KEY)
    log.append(started())
    for seq in range(1, 6):
        log.append(Delta(seq=seq, text=str(seq)))
    log.append(Done(seq=6, status="completed"))
    events = await collect(log, after_seq=3)
    assert [event.seq for event in events] == [4, 5, 6]


async def test_live_followers_all_see_every_event_once() -> None:
    """Several followers attached before the events arrive each get all of them, in order."""
    log = ReplyLog(KEY)
    followers = [asyncio.create_task(collect(log)) for _ in range(3)]
    await asyncio.sleep(0)  # let the followers start waiting
    log.append(started())
    for seq in range(1, 50):
        log.append(Delta(seq=seq, text="x"))
        if seq % 7 == 0:
            await asyncio.sleep(0)
    log.append(Done(seq=50, status="completed"))
    results = await asyncio.wait_for(asyncio.gather(*followers), timeout=5)
    for events in results:
        assert [event.seq for event in events] == list(range(51))


def test_out_of_order_append_is_refused() -> None:
    """Appending a wrong seq, or after done, raises instead of corrupting the log."""
    log = ReplyLog(KEY)
    log.append(started())
    with pytest.raises(RuntimeError):
        log.append(Delta(seq=5, text="x"))
    log.append(Done(seq=1, status="cancelled"))
    with pytest.raises(RuntimeError):
        log.append(Delta(seq=2, text="x"))


def test_hub_hides_other_owners_replies() -> None:
    """A reply is found only by its owner."""
    hub = ReplyHub(ttl=60)
    hub.create(KEY)
    assert hub.get("alice", "m") is not None
    assert hub.get("mallory", "m") is None


async def test_following_a_finished_log_from_its_end_yields_nothing() -> None:
    """A follower already past the done event gets no batch and returns at once."""
    log = ReplyLog(KEY)
    log.append(started())
    log.append(Done(seq=1, status="completed"))
    assert await asyncio.wait_for(collect(log, after_seq=1), timeout=1) == []
