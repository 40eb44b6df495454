"""The reply event log: ordered, resumable from any seq, shared by many followers."""

from __future__ import annotations

import asyncio
import contextlib
import gc

import pytest

from liaotian.replies.log import Delta, Done, ReplyEvent, ReplyHub, ReplyKey, ReplyLog, Started
from liaotian.replies.replay import finish_from_message
from tests.factories import stored_reply

KEY = ReplyKey(owner="alice", conversation_id="c", message_id="m")


def started() -> Started:
    return Started(seq=0, user_message_id="u", model="m", title="t", created_at=0.0)


async def collect(log: ReplyLog, after_seq: int = -1, *, merge: bool = False) -> list[ReplyEvent]:
    events: list[ReplyEvent] = []
    async for batch in log.follow(after_seq, merge=merge):
        events.extend(batch)
    return events


async def first_batch(log: ReplyLog, after_seq: int, *, merge: bool = False) -> list[ReplyEvent]:
    """The batch a follower gets at once (the log has events after ``after_seq``)."""
    async with contextlib.aclosing(log.follow(after_seq, merge=merge)) as follower:
        return await asyncio.wait_for(anext(follower), timeout=1)


def text_for(seq: int) -> str:
    """Delta texts of every width CPython stores, and empty ones."""
    return ("ab", "中文", "😀", "", "x y")[seq % 5] + ("" if seq % 5 == 3 else str(seq))


def streamed(deltas: int) -> tuple[ReplyLog, list[ReplyEvent]]:
    """A log of ``started`` and ``deltas`` deltas, still streaming, and its events."""
    log = ReplyLog(KEY)
    events: list[ReplyEvent] = [started()]
    events += [Delta(seq=seq, text=text_for(seq)) for seq in range(1, deltas + 1)]
    for event in events:
        log.append(event)
    return log, events


def finished(deltas: int) -> tuple[ReplyLog, list[ReplyEvent]]:
    log, events = streamed(deltas)
    events.append(Done(seq=deltas + 1, status="completed"))
    log.append(events[-1])
    return log, events


def merged(events: list[ReplyEvent]) -> list[ReplyEvent]:
    """``events`` with their deltas as one, carrying the last delta's seq."""
    deltas = [event for event in events if isinstance(event, Delta)]
    if len(deltas) < 2:
        return events
    joined = Delta(seq=deltas[-1].seq, text="".join(delta.text for delta in deltas))
    head = [event for event in events[:1] if isinstance(event, Started)]
    tail = [event for event in events[-1:] if isinstance(event, Done)]
    return [*head, joined, *tail]


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


async def test_resuming_a_finished_log_after_any_seq_gets_exactly_the_rest() -> None:
    """After every seq of a finished log, a follower gets each later event once, as sent."""
    log, events = finished(300)
    for after_seq in range(-1, len(events)):
        assert await collect(log, after_seq) == events[after_seq + 1 :]


async def test_resuming_a_streaming_log_after_any_seq_gets_exactly_the_rest() -> None:
    """While a long reply streams, a follower from any seq gets the later events at once."""
    log, events = streamed(700)
    for after_seq in range(-1, len(events) - 1):
        assert await first_batch(log, after_seq) == events[after_seq + 1 :]


async def test_a_merged_resume_is_one_delta_of_the_rest_with_the_last_seq() -> None:
    """With merge, the deltas after any seq come as one: the rest of the text, the last seq."""
    for log, events in (finished(300), streamed(300)):
        for after_seq in range(-1, len(events) - 1):
            batch = await first_batch(log, after_seq, merge=True)
            assert batch == merged(events[after_seq + 1 :])


async def test_a_live_merged_follower_resumes_after_the_merged_seq_without_a_gap() -> None:
    """Deltas appended while a merging follower waits reach it as one; resuming after its
    seq gives exactly the text that came later."""
    log = ReplyLog(KEY)
    log.append(started())
    async with contextlib.aclosing(log.follow(0, merge=True)) as follower:
        waiting = asyncio.ensure_future(anext(follower))
        await asyncio.sleep(0)  # the follower waits for the next event
        for seq in range(1, 4):
            log.append(Delta(seq=seq, text=text_for(seq)))
        text = text_for(1) + text_for(2) + text_for(3)
        assert await asyncio.wait_for(waiting, timeout=1) == [Delta(seq=3, text=text)]
    log.append(Delta(seq=4, text="!"))
    log.append(Done(seq=5, status="completed"))
    assert await collect(log, after_seq=3, merge=True) == [
        Delta(seq=4, text="!"),
        Done(seq=5, status="completed"),
    ]


def test_a_log_takes_started_then_deltas_then_done() -> None:
    """Deltas before started, or started after seq 0, raise; done may come first."""
    log = ReplyLog(KEY)
    with pytest.raises(RuntimeError):
        log.append(Delta(seq=0, text="x"))
    log.append(started())
    with pytest.raises(RuntimeError):
        log.append(Started(seq=1, user_message_id="u", model="m", title="t", created_at=0.0))
    ended = ReplyLog(KEY)
    ended.append(Done(seq=0, status="interrupted"))
    assert ended.events == [Done(seq=0, status="interrupted")]


def reachable(root: object) -> int:
    """How many objects ``root`` refers to, directly or not (itself included)."""
    seen = {id(root)}
    todo = [root]
    while todo:
        for referent in gc.get_referents(todo.pop()):
            if id(referent) not in seen and not isinstance(referent, type):
                seen.add(id(referent))
                todo.append(referent)
    return len(seen)


def test_a_kept_log_holds_no_object_per_token() -> None:
    """A finished log's objects do not grow with its deltas; a streaming one's by an eighth."""
    short, long = finished(10)[0], finished(4000)[0]
    assert reachable(long) == reachable(short)
    streaming = streamed(4000)[0]
    assert reachable(streaming) <= reachable(short) + 4000 // 8


async def test_finishing_from_the_database_adds_the_rest_after_the_log_seqs() -> None:
    """A log with part of the text gets the rest as the next delta, then done; the seqs it
    had keep their texts."""
    log, events = streamed(100)
    text = "".join(event.text for event in events if isinstance(event, Delta))
    finish_from_message(log, stored_reply(text + "the rest"))
    assert not log.rebuilt
    assert await collect(log, after_seq=99) == [
        events[100],
        Delta(seq=101, text="the rest"),
        Done(seq=102, status="completed", finish_reason="stop"),
    ]


async def test_finishing_an_empty_log_from_the_database_rebuilds_it() -> None:
    """An empty log becomes started, the whole text, done, marked rebuilt."""
    log = ReplyLog(KEY)
    finish_from_message(log, stored_reply("whole"))
    assert log.rebuilt
    assert [type(event) for event in log.events] == [Started, Delta, Done]
    assert log.text == "whole"
