"""Server-Sent Events: :class:`SseDecoder` turns the bytes of a ``text/event-stream`` body
into events as they arrive (sans-I/O); :func:`iter_sse` runs it on an aiohttp response.

At 50 tokens/s every event comes in a network read of its own, so the decoder is built
for the cost per read: whole events are cut off the buffer with one ``rfind``, a read's
complete events are decoded and split into lines once, and line endings are only
rewritten when a CR is present. No ``await`` or ``decode`` per line.
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
    """The body is not a usable event stream (a line over the size limit)."""


MAX_LINE_BYTES = 1 << 20
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
    """

    __slots__ = ("_cr", "_last_id", "_max_line", "_pending", "_started")

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._pending = b""
        """The incomplete event after the last blank line, line endings already LF."""
        self._cr = False
        """The last raw byte was a CR, held back: its LF may come in the next piece."""
        self._last_id: str | None = None
        self._started = False
        self._max_line = max_line_bytes

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that ``chunk`` completes, in order (often none or one).

        Raises :class:`SseDecodeError` once an unfinished line exceeds ``max_line_bytes``.
        """
        if not self._started:
            chunk = self._pending + chunk
            self._pending = b""
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._pending = chunk  # could still be a byte-order mark
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
        buffer = self._pending + chunk if self._pending else chunk
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = buffer
            if len(buffer) + self._cr > self._max_line:
                self._check_line(buffer)
            return []
        rest = self._pending = buffer[end + 2 :]
        if len(rest) + self._cr > self._max_line:
            self._check_line(rest)
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

    def _check_line(self, pending: bytes) -> None:
        line = len(pending) - pending.rfind(b"\n") - 1 + self._cr
        if line > self._max_line:
            raise SseDecodeError(f"event stream line longer than {self._max_line} bytes")


async def iter_sse(
    response: aiohttp.ClientResponse, *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncGenerator[SseEvent, None]:
    """Yield the events of ``response``'s body as they arrive (see :class:`SseDecoder`).

    Raises :class:`SseDecodeError` for a line longer than ``max_line_bytes`` and whatever
    aiohttp raises for the transport (``aiohttp.ClientPayloadError`` when the connection is
    cut mid-body). The relay reads with :class:`SseDecoder` itself, one generator less.
    """
    content = response.content
    decoder = SseDecoder(max_line_bytes=max_line_bytes)
    # readany() hands over everything buffered in one call: one await per network read.
    while chunk := await content.readany():
        for event in decoder.feed(chunk):
            yield event
