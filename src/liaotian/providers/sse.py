"""Server-Sent Events: :class:`SseDecoder` turns the bytes of a ``text/event-stream`` body
into events as they arrive (sans-I/O); :func:`iter_sse` runs it on an aiohttp response.

At 50 tokens/s every event comes in a network read of its own, so the decoder is built
for the cost per read: whole events are cut off the buffer with one ``rfind``, a read's
complete events are decoded and split into lines once, and line endings are only
rewritten when a CR is present. No ``await`` or ``decode`` per line.

A hostile or broken upstream cannot make it work or hold memory without bound: the
unfinished event is capped (:data:`MAX_EVENT_BYTES` by default) and every byte is searched
for the blank line once, however the event is cut into reads.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import NamedTuple

import aiohttp

# ---------------------------------------------------------------------------------------------
# Decoding


class SseEvent(NamedTuple):
    """One dispatched event. ``comments`` holds the event's comment lines (``:text``) without
    the colon, e.g. DashScope's ``("HTTP_STATUS/200",)``; most servers send none."""

    event: str
    data: str
    id: str | None
    comments: tuple[str, ...] = ()


class SseDecodeError(ValueError):
    """The body is not a usable event stream: an event over the size limit."""


MAX_EVENT_BYTES = 1 << 20
"""The default cap on one event: its lines up to the blank line that ends it, each line
ending counted as one byte. LLM servers send events of a few hundred bytes."""
_BOM = b"\xef\xbb\xbf"
# SseEvent from a ready tuple without the NamedTuple's Python-level __new__.
_event: Callable[[tuple[str, str, str | None, tuple[str, ...]]], SseEvent] = partial(
    tuple.__new__, SseEvent
)


class SseDecoder:
    """Decodes an event stream fed in arbitrary pieces, per the WHATWG SSE rules.

    Lines end with ``\\n`` or ``\\r\\n`` (a bare ``\\r``, which no LLM server sends, is not a
    line break); lines, line endings and UTF-8 sequences may be split anywhere across
    :meth:`feed` calls. An event is dispatched at its blank line and only if it has data; an
    incomplete event is held back until its blank line arrives, so an event cut off by the
    end of the body is never dispatched (the caller sees that the stream ended early).
    ``id`` is sticky across events, as the spec says; ``retry`` fields are ignored; a
    leading byte-order mark is skipped.

    An event longer than ``max_event_bytes`` raises :class:`SseDecodeError`, wherever the
    reads cut it. The work of a :meth:`feed` is linear in the size of its piece (plus the
    events it completes): bytes held back are never searched again. ``scanned`` counts the
    bytes searched for a blank line, for tests and diagnostics.
    """

    __slots__ = ("_cr", "_last_id", "_max_event", "_pending", "_started", "scanned")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._pending = bytearray()
        """The incomplete event after the last blank line, line endings already LF; it has
        no blank line (it was searched when it arrived)."""
        self._cr = False
        """The last raw byte was a CR, held back: its LF may come in the next piece."""
        self._last_id: str | None = None
        self._started = False
        self._max_event = max_event_bytes
        self.scanned = 0
        """Bytes searched for a blank line so far."""

    @property
    def pending_bytes(self) -> int:
        """Bytes of the unfinished event held back (never more than ``max_event_bytes``)."""
        return len(self._pending)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that ``chunk`` completes, in order (often none or one).

        Raises :class:`SseDecodeError` once an event exceeds ``max_event_bytes``; the
        decoder then holds nothing and must not be fed again.
        """
        if not self._started:
            chunk = bytes(self._pending) + chunk
            self._pending.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._pending += chunk  # could still be a byte-order mark
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if 13 in chunk:  # b"\r"; an int needle is a plain memchr
            # Every raw byte is normalised exactly once, so a bare CR before a CRLF stays.
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
                self._cr = True
            chunk = chunk.replace(b"\r\n", b"\n")
        pending = self._pending
        buffer: bytes | bytearray = chunk
        self.scanned += len(chunk)
        end = chunk.rfind(b"\n\n")
        if pending:
            # Only the new bytes can hold the blank line, or straddle the old ones' end;
            # the hot path (an event per read) holds nothing and copies nothing.
            held = len(pending)
            if end >= 0:
                end += held
            elif chunk[:1] == b"\n" and pending[-1] == 10:
                end = held - 1
            pending += chunk  # amortised: the held bytes are not copied again
            buffer = pending
        max_event = self._max_event
        if end < 0:
            if buffer is chunk:
                pending += chunk
            if len(pending) + self._cr > max_event:
                self._too_large()
            return []
        if end + 2 > max_event and self._largest_event(buffer, end) > max_event:
            self._too_large()
        if buffer is pending:
            self._pending = pending[end + 2 :]
            if len(self._pending) + self._cr > max_event:
                self._too_large()
        elif end + 2 < len(buffer):
            pending += buffer[end + 2 :]  # was empty
            if len(pending) + self._cr > max_event:
                self._too_large()
        events: list[SseEvent] = []
        data: str | None = None
        more: list[str] | None = None
        event_type = "message"
        comments: list[str] | None = None
        last_id = self._last_id
        # Everything up to the last blank line, decoded once (a cut at a line break never
        # falls inside a UTF-8 sequence) and split once; the final "" dispatches the last
        # event. Lines are tested cheapest-first: data, blank, comment, other fields.
        for line in buffer[: end + 1].decode("utf-8", "replace").split("\n"):
            if line.startswith("data:"):
                value = line[6:] if line[5:6] == " " else line[5:]
                if data is None:
                    data = value
                elif more is None:
                    more = [data, value]
                else:
                    more.append(value)
            elif not line:
                if data is not None:
                    events.append(
                        _event(
                            (
                                event_type,
                                data if more is None else "\n".join(more),
                                last_id,
                                () if comments is None else tuple(comments),
                            )
                        )
                    )
                    data = more = None
                event_type = "message"
                comments = None
            elif line.startswith(":"):
                value = line[2:] if line[1:2] == " " else line[1:]
                if comments is None:
                    comments = [value]
                else:
                    comments.append(value)
            else:
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "event":
                    event_type = value or "message"
                elif name == "id":
                    if "\0" not in value:
                        last_id = value
                elif name == "data":
                    if data is None:
                        data = value
                    elif more is None:
                        more = [data, value]
                    else:
                        more.append(value)
        self._last_id = last_id
        return events

    @staticmethod
    def _largest_event(buffer: bytes | bytearray, end: int) -> int:
        # Only when the complete events of one read add up to more than the cap (a burst).
        return max(len(event) for event in buffer[:end].split(b"\n\n"))

    def _too_large(self) -> None:
        self._pending = bytearray()  # let the memory go now, not when the stream is closed
        raise SseDecodeError(f"the provider sent an event larger than {self._max_event} bytes")


async def iter_sse(
    response: aiohttp.ClientResponse, *, max_event_bytes: int = MAX_EVENT_BYTES
) -> AsyncGenerator[SseEvent, None]:
    """Yield the events of ``response``'s body as they arrive (see :class:`SseDecoder`).

    Raises :class:`SseDecodeError` for an event longer than ``max_event_bytes`` and
    whatever aiohttp raises for the transport (``aiohttp.ClientPayloadError`` when the
    connection is cut mid-body). The relay reads with :class:`SseDecoder` itself, one
    generator less.
    """
    content = response.content
    decoder = SseDecoder(max_event_bytes=max_event_bytes)
    # readany() hands over everything buffered in one call: one await per network read.
    while chunk := await content.readany():
        for event in decoder.feed(chunk):
            yield event
