"""Protocol v1 parsing and frame building: pure functions, no server."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaotian import protocol
from liaotian.errors import (
    EmptyMessage,
    FrameTooLarge,
    InvalidFrame,
    InvalidJson,
    ProtocolError,
    UnknownFrameType,
)
from liaotian.replies.log import Delta, Done, Started

LIMITS = {"max_bytes": 10_000, "max_message_chars": 1_000}


def parse(frame: object) -> protocol.Command:
    data = frame if isinstance(frame, str | bytes) else orjson.dumps(frame)
    return protocol.parse_frame(data, **LIMITS)


def test_send_with_every_option_parses() -> None:
    """A chat.send frame with all its options becomes a SendMessage."""
    command = parse(
        {
            "type": "chat.send",
            "id": 7,
            "message": "hi",
            "conversation_id": "abc",
            "model": "qwen-plus",
            "stream": False,
            "system_prompt": "be brief",
            "temperature": 1,
            "max_tokens": 20,
            "client_message_id": "m-1",
        }
    )
    assert isinstance(command, protocol.SendMessage)
    assert (command.id, command.message, command.stream, command.temperature) == (
        7,
        "hi",
        False,
        1.0,
    )


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("{not json", InvalidJson),
        (b"\xff\xfe", InvalidJson),
        ("[1, 2]", InvalidFrame),
        ({"type": "nope"}, UnknownFrameType),
        ({"message": "no type"}, UnknownFrameType),
        ({"type": "chat.send", "message": "   "}, EmptyMessage),
        ({"type": "chat.send", "message": 5}, InvalidFrame),
        ({"type": "chat.send", "message": "x", "extra": 1}, InvalidFrame),
        ({"type": "chat.send", "message": "x", "stream": "yes"}, InvalidFrame),
        ({"type": "chat.send", "message": "x", "temperature": 9}, InvalidFrame),
        ({"type": "chat.send", "message": "x", "conversation_id": "../etc"}, InvalidFrame),
        ({"type": "chat.send", "message": "x" * 1001}, InvalidFrame),
        ({"type": "conversation.rename", "conversation_id": "a", "title": ""}, InvalidFrame),
        ({"type": "chat.subscribe", "message_id": "a", "after_seq": -5}, InvalidFrame),
        ("[" * 100 + "]" * 100, InvalidJson),
    ],
)
def test_bad_frames_raise_typed_errors(frame: object, error: type[ProtocolError]) -> None:
    """Each kind of bad frame raises its own ProtocolError subclass."""
    with pytest.raises(error):
        parse(frame)


def test_frame_over_the_size_limit_is_rejected() -> None:
    """A frame larger than max_bytes raises FrameTooLarge before being decoded."""
    with pytest.raises(FrameTooLarge):
        parse({"type": "ping", "id": "x" * 20_000})


def test_request_id_is_recovered_from_an_invalid_frame() -> None:
    """The id of a frame that fails validation is still found, to correlate the error."""
    assert protocol.request_id_of(orjson.dumps({"type": "chat.send", "id": "r1"})) == "r1"
    assert protocol.request_id_of("{broken") is None


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**63 - 1)
        | st.floats(allow_nan=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from([*protocol.FRAME_TYPES, "type", "message", "id", "model", "x"]),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_value_parses_or_raises_a_protocol_error(value: object) -> None:
    """Whatever JSON arrives, the parser returns a command or raises ProtocolError."""
    with contextlib.suppress(ProtocolError):
        parse(orjson.dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_a_protocol_error(data: bytes) -> None:
    """Arbitrary bytes never escape the ProtocolError tree."""
    with contextlib.suppress(ProtocolError):
        parse(data)


def test_reply_frames_carry_conversation_message_and_seq() -> None:
    """started, delta and done frames all name the conversation, the message and a seq."""
    events = [
        Started(seq=0, user_message_id="u", model="m", title="t", created_at=1.0),
        Delta(seq=1, text="hel"),
        Done(seq=2, status="completed", usage={"output_tokens": 1}),
    ]
    frames = [orjson.loads(protocol.build_reply_event("c", "r", event)) for event in events]
    assert [frame["type"] for frame in frames] == ["reply.started", "reply.delta", "reply.done"]
    assert all((f["conversation_id"], f["message_id"]) == ("c", "r") for f in frames)
    assert [frame["seq"] for frame in frames] == [0, 1, 2]
