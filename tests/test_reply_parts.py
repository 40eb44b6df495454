"""Reply parts in the event log: reasoning, sources and text, each with its own seq."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import orjson

from liaotian.replies.codec import event_from_wire, event_to_wire
from liaotian.replies.log import (
    Delta,
    Done,
    ReasoningDelta,
    ReplyEvent,
    ReplyKey,
    ReplyLog,
    SourcesFound,
    Started,
)
from liaotian.replies.replay import finish_from_message
from tests.factories import stored_reply

KEY = ReplyKey(owner="alice", conversation_id="c", message_id="m")
SOURCES = ({"index": 1, "url": "https://example.com/1", "title": "One", "site": "", "icon": ""},)


def part_for(seq: int) -> ReplyEvent:
    """Reasoning first, the sources once, then text, with a reasoning run mid-answer."""
    if seq <= 120 or 200 < seq <= 210:
        return ReasoningDelta(seq, f"r{seq} 想")
    if seq == 121:
        return SourcesFound(seq, SOURCES)
    return Delta(seq, f"t{seq} 答")


def parts_log(parts: int, *, done: bool) -> tuple[ReplyLog, list[ReplyEvent]]:
    log = ReplyLog(KEY)
    events: list[ReplyEvent] = [
        Started(seq=0, user_message_id="u", model="m", title="t", created_at=0.0, thinking=True)
    ]
    events += [part_for(seq) for seq in range(1, parts + 1)]
    if done:
        events.append(Done(seq=parts + 1, status="completed", thinking_ms=12.5))
    for event in events:
        log.append(event)
    return log, events


async def collect(log: ReplyLog, after_seq: int = -1, *, merge: bool = False) -> list[ReplyEvent]:
    events: list[ReplyEvent] = []
    async with contextlib.aclosing(log.follow(after_seq, merge=merge)) as follower:
        async for batch in follower:
            events.extend(batch)
            if not log.done and batch[-1].seq == log.next_seq - 1:
                break
    return events


def merged(events: list[ReplyEvent]) -> list[ReplyEvent]:
    """Consecutive deltas of one kind as one, carrying the last seq (the reference)."""
    out: list[ReplyEvent] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Delta | ReasoningDelta) and type(last) is type(event):
            assert isinstance(last, Delta | ReasoningDelta)
            out[-1] = type(event)(event.seq, last.text + event.text)
        else:
            out.append(event)
    return out


async def test_every_part_keeps_its_seq_and_kind_across_folds() -> None:
    """A log of 300 mixed parts gives back exactly the events appended, in order."""
    log, events = parts_log(300, done=True)
    assert log.events == events


async def test_text_reasoning_and_sources_are_kept_apart() -> None:
    """The answer text has no reasoning in it, and the reasoning no answer text."""
    log, events = parts_log(300, done=False)
    assert log.text == "".join(e.text for e in events if isinstance(e, Delta))
    assert log.reasoning == "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert log.sources == SOURCES
    assert "想" not in log.text
    assert "答" not in log.reasoning


async def test_resuming_after_any_seq_gets_exactly_the_rest_of_every_part() -> None:
    """From every seq, finished or streaming, a follower gets each later event once."""
    for done in (True, False):
        log, events = parts_log(300, done=done)
        for after_seq in range(-1, len(events) - 1):
            assert await collect(log, after_seq) == events[after_seq + 1 :]


async def test_merged_resumes_merge_runs_of_one_kind_only() -> None:
    """With merge, consecutive parts of one kind come as one with the last seq; kinds never
    mix, so resuming after a merged seq is exact."""
    log, events = parts_log(300, done=True)
    for after_seq in range(-1, len(events) - 1):
        assert await collect(log, after_seq, merge=True) == merged(events[after_seq + 1 :])


def test_a_text_only_log_keeps_no_kinds() -> None:
    """The common case (answer text only) stores nothing per part beyond the text."""
    log = ReplyLog(KEY)
    log.append(Started(seq=0, user_message_id="u", model="m", title="t", created_at=0.0))
    for seq in range(1, 100):
        log.append(Delta(seq, "x"))
    assert log._kinds is None
    assert log.reasoning == ""
    assert log.sources == ()


def test_every_event_crosses_the_backplane_unchanged() -> None:
    """The codec round-trips each kind of event through JSON, new fields included."""
    _, events = parts_log(130, done=True)
    started = dataclasses.replace(
        events[0],  # type: ignore[arg-type]
        user_attachments=({"id": "a1", "media_type": "image/png"},),
        search=True,
        replaces=("x",),
        user_parent_id="p",
        user_siblings=("p1", "p2"),
        reply_siblings=("r1",),
    )
    for event in [started, *events[1:]]:
        wire = orjson.loads(orjson.dumps(event_to_wire(event)))
        assert event_from_wire(wire) == event


def test_fields_a_newer_process_adds_are_dropped() -> None:
    """An event with a field this version does not know still decodes (rolling upgrades)."""
    wire: dict[str, Any] = {"k": "e", "seq": 3, "status": "completed", "future_field": 1}
    assert event_from_wire(wire) == Done(seq=3, status="completed")


async def test_a_reply_rebuilt_from_the_database_has_its_parts() -> None:
    """An empty log rebuilt from a stored reply: started, reasoning, sources, text, done."""
    info = dataclasses.replace(
        stored_reply("the answer [1]"), reasoning="I think", sources=SOURCES, thinking_ms=5.0
    )
    log = ReplyLog(KEY)
    finish_from_message(log, info)
    assert [type(event) for event in log.events] == [
        Started,
        ReasoningDelta,
        SourcesFound,
        Delta,
        Done,
    ]
    assert (log.reasoning, log.sources, log.text) == ("I think", SOURCES, "the answer [1]")
    done = log.events[-1]
    assert isinstance(done, Done)
    assert done.thinking_ms == 5.0


async def test_a_log_cut_mid_reasoning_is_finished_with_the_rest_of_each_part() -> None:
    """A mirror that has part of the reasoning gets the rest of it, the sources and the text."""
    log, _events = parts_log(50, done=False)
    reasoning = log.reasoning
    info = dataclasses.replace(
        stored_reply("answer"), reasoning=reasoning + " more", sources=SOURCES
    )
    finish_from_message(log, info)
    assert await collect(log, after_seq=50) == [
        ReasoningDelta(51, " more"),
        SourcesFound(52, SOURCES),
        Delta(53, "answer"),
        Done(seq=54, status="completed", finish_reason="stop"),
    ]
