"""Server-Sent Events over aiohttp: :func:`iter_sse` decodes a ``text/event-stream`` body
incrementally, without a per-line read (see the function for the cost measured)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, NamedTuple

import aiohttp

if TYPE_CHECKING:
    pass

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


async def iter_sse(
    response: aiohttp.ClientResponse, *, max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncGenerator[SseEvent, None]:
    """Yield the events of ``response``'s body as they arrive, per the WHATWG SSE rules.

    Lines end with ``\\n`` or ``\\r\\n`` (a bare ``\\r``, which no LLM server sends, is not a
    line break); lines and UTF-8 sequences may be split anywhere across network reads. An
    event is dispatched at its blank line and only if it has data; an event cut off by the
    end of the body is dropped, as the spec says, so the caller sees that the stream ended
    early. ``retry`` fields are ignored.

    Raises :class:`SseDecodeError` for a line longer than ``max_line_bytes`` and whatever
    aiohttp raises for the transport (``aiohttp.ClientPayloadError`` when the connection is
    cut mid-body).
    """
    content = response.content
    pending = b""
    data: list[str] = []
    event_type = ""
    last_id: str | None = None
    comments: list[str] = []
    first = True
    while True:
        # readany() hands over everything buffered in one call; splitting a whole read with
        # bytes methods is several times cheaper than awaiting readline() for every line.
        chunk = await content.readany()
        if not chunk:
            return
        if pending:
            chunk = pending + chunk
        cut = chunk.rfind(b"\n")
        pending = chunk[cut + 1 :]
        if len(pending) > max_line_bytes:
            raise SseDecodeError(f"event stream line longer than {max_line_bytes} bytes")
        if cut < 0:
            continue
        # b"\n" never occurs inside a multi-byte UTF-8 sequence, so the complete lines
        # decode on their own.
        text = chunk[:cut].decode("utf-8", "replace")
        if first:
            first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        for line in text.split("\n"):
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield SseEvent(
                        event_type or "message", "\n".join(data), last_id, tuple(comments)
                    )
                    data = []
                event_type = ""
                if comments:
                    comments = []
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event_type = value
            elif not name:
                comments.append(value)
            elif name == "id" and "\0" not in value:
                last_id = value
