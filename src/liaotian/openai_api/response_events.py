"""A reply log's events as the Responses API's response object and stream events.

Pure (no I/O). :class:`ResponseStream` is fed the log's events one seq at a time, in
order, and returns the Responses events each one gives, numbered 0, 1, 2, … by
``sequence_number``. The events are a deterministic function of the log's events and the
:class:`ResponseMeta`, so every process that holds a reply's log (live, or mirrored from
Redis) numbers them identically, and ``starting_after=N`` resumes exactly: translate from
the start, send what is numbered above N.

==================  =============================================================
log event           Responses events
==================  =============================================================
``Started``         ``response.created``, ``response.in_progress``
first reasoning     ``output_item.added`` (reasoning), ``content_part.added``
each reasoning      ``response.reasoning_text.delta``
first text delta    the reasoning item closed (``reasoning_text.done``,
                    ``content_part.done``, ``output_item.done``), then
                    ``output_item.added`` (message), ``content_part.added``
each text delta     ``response.output_text.delta``
``SourcesFound``    nothing: the sources become ``url_citation`` annotations of the
                    text when it is closed (``output_text.done`` onwards)
``Done``            the open parts closed, then ``response.completed``,
                    ``response.failed`` (with ``error``), or ``response.incomplete``
                    (``finish_reason`` length, *and* cancelled: status ``cancelled``)
==================  =============================================================

A cancelled response ends with ``response.incomplete`` whose response has status
``cancelled``: OpenAI's SDKs know no ``response.cancelled`` event (the Python SDK builds
an unrelated type for it and its stream helper drops it), and ``incomplete`` is what a
cut-short answer is. Reasoning that comes after the answer text began is not sent (the
item is closed by then; providers send reasoning first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from liaotian.replies.log import Delta, Done, ReasoningDelta, ReplyEvent, SourcesFound, Started

RESPONSE_PREFIX = "resp_"
MESSAGE_PREFIX = "msg_"
REASONING_PREFIX = "rs_"

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INCOMPLETE = "incomplete"

_REPLY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_TERMINAL_EVENT = {
    COMPLETED: "response.completed",
    FAILED: "response.failed",
    INCOMPLETE: "response.incomplete",
    CANCELLED: "response.incomplete",
}


def response_id(reply_id: str) -> str:
    """The response id of a reply (``resp_<reply message id>``)."""
    return RESPONSE_PREFIX + reply_id


def reply_id_of(response_id: str) -> str | None:
    """The reply message id a response id names, or None when it is not one."""
    if not response_id.startswith(RESPONSE_PREFIX):
        return None
    reply_id = response_id[len(RESPONSE_PREFIX) :]
    return reply_id if _REPLY_ID.fullmatch(reply_id) else None


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What the response object says beyond the log: the request's parameters (unknown
    for a response read back later: None)."""

    reply_id: str
    conversation_id: str | None
    """None for a response that is not stored (its conversation goes with it)."""
    model: str = ""
    """The model when the log does not say (a log always starts by saying)."""
    instructions: str | None = None
    previous_response_id: str | None = None
    """None: the reply the answered message follows, when the log says."""
    background: bool | None = None
    store: bool = True
    temperature: float | None = None
    max_output_tokens: int | None = None


@dataclass(slots=True)
class _Item:
    """An output item being built: the reasoning or the message."""

    id: str
    output_index: int
    pieces: list[str] = field(default_factory=list)
    open: bool = True

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def status_of(done: Done) -> str:
    """The response status a reply's ``done`` event gives."""
    if done.status == "completed":
        return INCOMPLETE if done.finish_reason == "length" else COMPLETED
    if done.status == "cancelled":
        return CANCELLED
    return FAILED  # error, interrupted (a stopped server), or an unknown outcome


class ResponseStream:
    """The Responses view of one reply log: feed it every event in seq order."""

    def __init__(self, meta: ResponseMeta) -> None:
        self.meta = meta
        self._next = 0
        self._started: Started | None = None
        self._announced = False
        self._reasoning: _Item | None = None
        self._message: _Item | None = None
        self._sources: tuple[dict[str, Any], ...] = ()
        self._done: Done | None = None

    @property
    def next_sequence_number(self) -> int:
        return self._next

    @property
    def done(self) -> bool:
        return self._done is not None

    @property
    def status(self) -> str:
        return IN_PROGRESS if self._done is None else status_of(self._done)

    def feed(self, event: ReplyEvent) -> list[dict[str, Any]]:
        """The Responses events (each with ``type`` and ``sequence_number``) that ``event``
        gives; events after ``done`` give none."""
        if self._done is not None:
            return []
        out: list[dict[str, Any]] = []
        if isinstance(event, Started):
            self._started = event
            self._announce(out)
        elif isinstance(event, ReasoningDelta):
            self._announce(out)
            self._on_reasoning(event.text, out)
        elif isinstance(event, Delta):
            self._announce(out)
            self._on_text(event.text, out)
        elif isinstance(event, SourcesFound):
            self._sources = event.sources
        else:
            self._announce(out)
            self._done = event
            status = status_of(event)
            self._close_reasoning(out)
            self._close_message(out)
            self._emit(out, _TERMINAL_EVENT[status], response=self.response())
        return out

    def terminal_event(self, sequence_number: int) -> dict[str, Any]:
        """The event that ends the stream (after ``done`` was fed), numbered
        ``sequence_number``: what a resumed stream of a rebuilt log sends."""
        assert self._done is not None, "the reply has not ended"
        return {
            "type": _TERMINAL_EVENT[status_of(self._done)],
            "sequence_number": sequence_number,
            "response": self.response(),
        }

    def response(self) -> dict[str, Any]:
        """The response object as the events fed so far make it."""
        meta, started, done = self.meta, self._started, self._done
        status = self.status
        previous = meta.previous_response_id
        if previous is None and started is not None and started.user_parent_id:
            previous = response_id(started.user_parent_id)
        output = []
        if self._reasoning is not None:
            output.append(self._reasoning_item(self._reasoning))
        if self._message is not None:
            output.append(self._message_item(self._message))
        return {
            "id": response_id(meta.reply_id),
            "object": "response",
            "created_at": int(started.created_at) if started is not None else 0,
            "model": (started.model if started is not None else "") or meta.model,
            "status": status,
            "output": output,
            "usage": _usage(done.usage) if done is not None and done.usage else None,
            "error": _error(done) if done is not None and status == FAILED else None,
            "incomplete_details": (
                {"reason": "max_output_tokens"}
                if done is not None and done.finish_reason == "length"
                else None
            ),
            "instructions": meta.instructions,
            "previous_response_id": previous,
            "conversation": None if meta.conversation_id is None else {"id": meta.conversation_id},
            "background": meta.background,
            "store": meta.store,
            "temperature": meta.temperature,
            "max_output_tokens": meta.max_output_tokens,
            "metadata": {},
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": {"type": "text"}},
        }

    # -- the events ---------------------------------------------------------------------

    def _emit(self, out: list[dict[str, Any]], type_: str, **fields: Any) -> None:
        out.append({"type": type_, "sequence_number": self._next, **fields})
        self._next += 1

    def _announce(self, out: list[dict[str, Any]]) -> None:
        """``created`` and ``in_progress``, once, before anything else."""
        if self._announced:
            return
        self._announced = True
        self._emit(out, "response.created", response=self.response())
        self._emit(out, "response.in_progress", response=self.response())

    def _on_reasoning(self, text: str, out: list[dict[str, Any]]) -> None:
        if self._message is not None:
            return  # its item is closed: see the module docstring
        item = self._reasoning
        if item is None:
            item = self._reasoning = _Item(REASONING_PREFIX + self.meta.reply_id, 0)
            part = {"type": "reasoning_text", "text": ""}
            self._open(out, item, self._reasoning_item(item), part)
        item.pieces.append(text)
        self._emit(
            out,
            "response.reasoning_text.delta",
            item_id=item.id,
            output_index=item.output_index,
            content_index=0,
            delta=text,
        )

    def _on_text(self, text: str, out: list[dict[str, Any]]) -> None:
        item = self._message
        if item is None:
            self._close_reasoning(out)
            index = 0 if self._reasoning is None else 1
            item = self._message = _Item(MESSAGE_PREFIX + self.meta.reply_id, index)
            self._open(out, item, self._message_item(item), _output_text("", ()))
        item.pieces.append(text)
        self._emit(
            out,
            "response.output_text.delta",
            item_id=item.id,
            output_index=item.output_index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _open(
        self,
        out: list[dict[str, Any]],
        item: _Item,
        item_object: dict[str, Any],
        part: dict[str, Any],
    ) -> None:
        """Add an output item and its one content part, both still empty."""
        self._emit(
            out, "response.output_item.added", output_index=item.output_index, item=item_object
        )
        self._emit(
            out,
            "response.content_part.added",
            item_id=item.id,
            output_index=item.output_index,
            content_index=0,
            part=part,
        )

    def _close_reasoning(self, out: list[dict[str, Any]]) -> None:
        item = self._reasoning
        if item is None or not item.open:
            return
        item.open = False
        text = item.text
        where = {"item_id": item.id, "output_index": item.output_index, "content_index": 0}
        self._emit(out, "response.reasoning_text.done", **where, text=text)
        self._emit(
            out,
            "response.content_part.done",
            **where,
            part={"type": "reasoning_text", "text": text},
        )
        self._emit(
            out,
            "response.output_item.done",
            output_index=item.output_index,
            item=self._reasoning_item(item),
        )

    def _close_message(self, out: list[dict[str, Any]]) -> None:
        item = self._message
        if item is None or not item.open:
            return
        item.open = False
        part = _output_text(item.text, self._sources)
        where = {"item_id": item.id, "output_index": item.output_index, "content_index": 0}
        self._emit(out, "response.output_text.done", **where, text=part["text"], logprobs=[])
        self._emit(out, "response.content_part.done", **where, part=part)
        self._emit(
            out,
            "response.output_item.done",
            output_index=item.output_index,
            item=self._message_item(item),
        )

    # -- the items -----------------------------------------------------------------------

    def _item_status(self, item: _Item) -> str:
        if item.open:
            return IN_PROGRESS
        return COMPLETED if self._done is None or self.status == COMPLETED else INCOMPLETE

    def _reasoning_item(self, item: _Item) -> dict[str, Any]:
        return {
            "id": item.id,
            "type": "reasoning",
            "status": self._item_status(item),
            "summary": [],
            "content": [{"type": "reasoning_text", "text": item.text}],
        }

    def _message_item(self, item: _Item) -> dict[str, Any]:
        # The annotations come with the closed text (their end is its end).
        sources = () if item.open else self._sources
        return {
            "id": item.id,
            "type": "message",
            "role": "assistant",
            "status": self._item_status(item),
            "content": [_output_text(item.text, sources)],
        }


def _output_text(text: str, sources: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    annotations = [
        {
            "type": "url_citation",
            "url": str(source.get("url") or ""),
            "title": str(source.get("title") or source.get("url") or ""),
            # A source backs the whole answer: the provider does not say which words.
            "start_index": 0,
            "end_index": len(text),
        }
        for source in sources
        if source.get("url")
    ]
    return {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}


def _usage(usage: dict[str, int]) -> dict[str, Any]:
    input_tokens = usage.get("input_tokens", 0)
    output_tokens = usage.get("output_tokens", 0)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
        "total_tokens": input_tokens + output_tokens,
    }


def _error(done: Done) -> dict[str, str]:
    error = done.error or {}
    return {
        "code": str(error.get("code") or "server_error"),
        "message": str(error.get("message") or "the answer failed"),
    }


def response_of(meta: ResponseMeta, events: list[ReplyEvent]) -> dict[str, Any]:
    """The response object of a log's events (all so far)."""
    stream = ResponseStream(meta)
    for event in events:
        stream.feed(event)
    return stream.response()
