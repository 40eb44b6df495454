"""The reply log's events as Responses events: a pure, deterministic translation."""

from __future__ import annotations

from typing import Any

from liaotian.openai_api.response_events import (
    ResponseMeta,
    ResponseStream,
    reply_id_of,
    response_id,
    response_of,
)
from liaotian.replies.log import Delta, Done, ReasoningDelta, ReplyEvent, SourcesFound, Started

META = ResponseMeta(reply_id="r1", conversation_id="c1")
USAGE = {"input_tokens": 5, "output_tokens": 7, "reasoning_tokens": 2, "cached_tokens": 1}


def started(**fields: Any) -> Started:
    return Started(
        seq=0, user_message_id="u1", model="qwen-plus", title="t", created_at=12.5, **fields
    )


def translate(events: list[ReplyEvent], meta: ResponseMeta = META) -> list[dict[str, Any]]:
    stream = ResponseStream(meta)
    return [out for event in events for out in stream.feed(event)]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"].removeprefix("response.") for event in events]


THINKING_REPLY: list[ReplyEvent] = [
    started(),
    ReasoningDelta(1, "r0 "),
    ReasoningDelta(2, "r1 "),
    Delta(3, "Hel"),
    Delta(4, "lo"),
    Done(5, "completed", finish_reason="stop", usage=USAGE),
]


def test_a_reply_with_reasoning_gives_every_event_in_order() -> None:
    """Reasoning item, then message item, then completed: OpenAI's order of events."""
    assert types(translate(THINKING_REPLY)) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "reasoning_text.delta",
        "reasoning_text.delta",
        "reasoning_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]


def test_sequence_numbers_are_contiguous_from_zero() -> None:
    """sequence_number counts 0, 1, 2, … over every event."""
    events = translate(THINKING_REPLY)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))


def test_translation_is_deterministic_whatever_the_batches() -> None:
    """Two translators of one log give identical events (what resuming relies on)."""
    assert translate(THINKING_REPLY) == translate(list(THINKING_REPLY))


def test_text_deltas_name_the_message_item() -> None:
    """Deltas carry msg_<id>, output index 1 after a reasoning item, and empty logprobs."""
    deltas = [e for e in translate(THINKING_REPLY) if e["type"] == "response.output_text.delta"]
    assert [(e["item_id"], e["output_index"], e["content_index"], e["delta"]) for e in deltas] == [
        ("msg_r1", 1, 0, "Hel"),
        ("msg_r1", 1, 0, "lo"),
    ]
    assert all(e["logprobs"] == [] for e in deltas)


def test_the_final_response_holds_both_items_and_usage() -> None:
    """completed carries reasoning and message items, their texts, and OpenAI's usage."""
    final = translate(THINKING_REPLY)[-1]["response"]
    assert final["id"] == "resp_r1"
    assert final["status"] == "completed"
    assert final["created_at"] == 12
    assert final["model"] == "qwen-plus"
    reasoning, message = final["output"]
    assert reasoning["id"] == "rs_r1"
    assert reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "r0 r1 "}]
    assert message["id"] == "msg_r1"
    assert message["status"] == "completed"
    assert message["content"][0]["text"] == "Hello"
    assert final["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"cached_tokens": 1},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 12,
    }
    assert final["conversation"] == {"id": "c1"}


def test_a_reply_without_reasoning_puts_the_message_first() -> None:
    """Without reasoning the message item is output index 0."""
    events = translate([started(), Delta(1, "hi"), Done(2, "completed", finish_reason="stop")])
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["item"]["type"], e["output_index"]) for e in added] == [("message", 0)]


def test_sources_become_url_citations_of_the_closed_text() -> None:
    """Sources are annotations of output_text.done onwards, spanning the whole answer."""
    source = {"index": 1, "url": "https://a.example/", "title": "A", "site": "a", "icon": ""}
    events = translate(
        [started(), SourcesFound(1, (source,)), Delta(2, "abc"), Done(3, "completed")]
    )
    done = next(e for e in events if e["type"] == "response.content_part.done")
    assert done["part"]["annotations"] == [
        {
            "type": "url_citation",
            "url": "https://a.example/",
            "title": "A",
            "start_index": 0,
            "end_index": 3,
        }
    ]
    assert not any(e["type"] == "response.output_text.annotation.added" for e in events)


def test_length_ends_incomplete() -> None:
    """finish_reason length: response.incomplete with reason max_output_tokens."""
    last = translate([started(), Delta(1, "a"), Done(2, "completed", finish_reason="length")])[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"


def test_an_error_ends_failed_with_the_error() -> None:
    """A failed reply ends with response.failed carrying {code, message}."""
    error = {"code": "provider_unavailable", "message": "down"}
    last = translate([started(), Done(1, "error", error=error)])[-1]
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"] == error
    assert "error" not in last  # a top-level error would make the SDK raise


def test_cancelled_ends_incomplete_with_status_cancelled() -> None:
    """Cancelled: response.incomplete (the SDK knows no response.cancelled), status cancelled."""
    last = translate([started(), Delta(1, "a"), Done(2, "cancelled", finish_reason="cancelled")])[
        -1
    ]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "cancelled"
    assert last["response"]["incomplete_details"] is None


def test_an_in_progress_response_shows_the_text_so_far() -> None:
    """Before done: status in_progress, open items in_progress, no usage."""
    response = response_of(META, [started(), Delta(1, "par"), Delta(2, "tial")])
    assert response["status"] == "in_progress"
    assert response["usage"] is None
    assert response["output"][0]["status"] == "in_progress"
    assert response["output"][0]["content"][0]["text"] == "partial"


def test_previous_response_id_is_the_reply_the_message_follows() -> None:
    """Without one in the meta, the log's user_parent_id names the previous response."""
    response = response_of(META, [started(user_parent_id="r0")])
    assert response["previous_response_id"] == "resp_r0"


def test_terminal_event_is_renumbered() -> None:
    """The terminal event of a finished stream can be numbered as a resume needs."""
    stream = ResponseStream(META)
    for event in THINKING_REPLY:
        stream.feed(event)
    last = stream.terminal_event(42)
    assert (last["type"], last["sequence_number"]) == ("response.completed", 42)


def test_events_after_done_give_nothing() -> None:
    """The stream ends at done."""
    stream = ResponseStream(META)
    for event in THINKING_REPLY:
        stream.feed(event)
    assert stream.feed(Delta(6, "late")) == []


def test_response_ids_round_trip() -> None:
    """resp_<id> names the reply; anything else names none."""
    assert reply_id_of(response_id("abc123")) == "abc123"
    assert reply_id_of("abc123") is None
    assert reply_id_of("resp_") is None
    assert reply_id_of("resp_../x") is None
