"""A hostile upstream cannot grow the SSE decoder without bound or make it work quadratically:
the decoder's cap and linear scan, then the whole path against the fake upstream."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaotian.providers.sse import MAX_EVENT_BYTES, SseDecodeError, SseDecoder, SseEvent
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, reply_chunks
from tests.server_harness import run_server
from tests.wsclient import RawClient, of_type

CAP = 4096
LINE = b"data: " + b"x" * 57 + b"\n"  # 64 bytes


def cut(body: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(min(position, len(body)) for position in cuts), len(body)]
    return [body[start:end] for start, end in itertools.pairwise(bounds)]


def feed_all(decoder: SseDecoder, pieces: list[bytes]) -> list[SseEvent]:
    return [event for piece in pieces for event in decoder.feed(piece)]


# --- the decoder


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=CAP + 200), max_size=10))
def test_an_event_over_the_cap_is_refused_wherever_the_reads_cut_it(cuts: list[int]) -> None:
    """An event longer than max_event_bytes raises SseDecodeError however it is split."""
    body = b"data: ok\n\n" + LINE * (CAP // len(LINE) + 1) + b"\n"
    decoder = SseDecoder(max_event_bytes=CAP)
    with pytest.raises(SseDecodeError, match=f"the provider sent an event larger than {CAP} bytes"):
        feed_all(decoder, cut(body, cuts))
    assert decoder.pending_bytes == 0  # nothing held once refused


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=CAP), max_size=10))
def test_an_event_within_the_cap_decodes_wherever_the_reads_cut_it(cuts: list[int]) -> None:
    """An event a little under the cap, CRLF lines included, is decoded whole."""
    lines = CAP // len(LINE) - 1
    body = (b"data: " + b"x" * 56 + b"\r\n") * lines + b"\r\n"
    expected = [SseEvent("message", "\n".join(["x" * 56] * lines), None, ())]
    assert feed_all(SseDecoder(max_event_bytes=CAP), cut(body, cuts)) == expected


def test_endless_data_lines_are_refused_once_they_pass_the_default_cap() -> None:
    """data: lines with no blank line are held up to MAX_EVENT_BYTES (1 MiB), then refused."""
    decoder = SseDecoder()
    piece = LINE * 16
    held = 0
    while held + len(piece) <= MAX_EVENT_BYTES:
        assert decoder.feed(piece) == []
        held += len(piece)
        assert decoder.pending_bytes == held
    with pytest.raises(SseDecodeError, match=f"larger than {MAX_EVENT_BYTES} bytes"):
        decoder.feed(piece)
    assert decoder.pending_bytes == 0


def test_held_bytes_are_searched_for_the_blank_line_only_once() -> None:
    """Feeding an 8 MiB event in 1 KiB reads searches each byte once, not once per read."""
    size = 8 << 20
    decoder = SseDecoder(max_event_bytes=2 * size)
    piece = LINE * 16
    for _ in range(size // len(piece)):
        assert decoder.feed(piece) == []
    [event] = decoder.feed(b"\n")
    assert len(event.data) == size // len(LINE) * (len(LINE) - len(b"data: ")) - 1
    assert decoder.scanned == size + 1


def test_held_bytes_are_not_copied_again_by_each_read() -> None:
    """Memory allocated while a 4 MiB event arrives in 4 KiB reads stays linear in its size
    (a decoder that copied what it holds at every read would allocate ~2 GiB)."""
    size = 4 << 20
    decoder = SseDecoder(max_event_bytes=2 * size)
    piece = LINE * 64
    allocated = 0
    tracemalloc.start()
    try:
        for _ in range(size // len(piece)):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            decoder.feed(piece)
            allocated += tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert decoder.pending_bytes == size
    assert allocated < 3 * size


# --- end to end


@pytest.mark.parametrize(
    ("model", "cap"),
    [("qwen-plus", MAX_EVENT_BYTES), ("fake-chat", 65536)],
    ids=["dashscope-default-cap", "openai-configured-cap"],
)
async def test_an_endless_upstream_event_ends_the_reply_and_others_are_served(
    make_settings: SettingsFactory, fake: FakeUpstream, model: str, cap: int
) -> None:
    """An upstream event that never ends stops the reply at the cap with provider_unavailable
    (text so far kept, upstream closed) while another client's ping is answered."""
    settings = make_settings(provider_max_event_bytes=cap)
    async with run_server(settings) as running:
        hostile = await RawClient.open(f"{running.ws_url}?client_id=alice")
        other = await RawClient.open(f"{running.ws_url}?client_id=bob")
        for client in (hostile, other):
            assert (await client.recv())["type"] == "hello"
        prompt = "flood me [fault=endless_data] [hold_at=32768]"
        await hostile.send({"type": "chat.send", "id": "s", "message": prompt, "model": model})
        # The stream is open and its unfinished event held by the decoder: serve someone else.
        await fake.wait_for(lambda stats: stats.held == 1, within=20)
        await other.send({"type": "ping", "id": "p"})
        assert (await other.until(of_type("pong", id="p")))[-1]["type"] == "pong"
        fake.resume.set()
        frames = await hostile.until(of_type("reply.done"))
        done = frames[-1]
        assert done["status"] == "error"
        assert done["error"]["code"] == "provider_unavailable"
        assert f"the provider sent an event larger than {cap} bytes" in done["error"]["message"]
        text = "".join(frame["text"] for frame in frames if frame["type"] == "reply.delta")
        assert text == reply_chunks(prompt)[0]
        await fake.wait_for(lambda stats: stats.disconnects >= 1, within=20)
        await other.send({"type": "ping", "id": "q"})
        assert (await other.until(of_type("pong", id="q")))[-1]["type"] == "pong"
        await hostile.close()
        await other.close()
