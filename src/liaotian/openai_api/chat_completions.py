"""``POST /v1/chat/completions``: OpenAI's Chat Completions on the chat engine.

One request is one reply of the engine (:mod:`.chat_request` turns the body into its
:class:`~liaotian.engine.SendOptions`); the answer is the reply log's events as OpenAI's
``chat.completion`` object, or as ``chat.completion.chunk`` server-sent events.

* The id is ``chatcmpl-<reply message id>``; ``model`` is liaotian's model id.
* The reply is cancelled (the provider stopped) when the client leaves before its end,
  streaming or not: nobody else waits for an API answer.
* Nothing is sent before the reply's first part or its end, so a reply that fails
  before it produced anything (the provider refused, is down, timed out) is an HTTP
  error with its status, like any refusal; one that fails later ends its stream with
  ``data: {"error": …}`` and ``data: [DONE]`` (the SDKs raise on it).
* Sources (web search results) are not part of Chat Completions: they are stored with
  the reply (``store: true``) but not sent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from liaotian.engine import check_capabilities
from liaotian.errors import NotFound
from liaotian.openai_api.chat_request import ChatCompletionRequest, send_options
from liaotian.openai_api.common import (
    DONE,
    ApiError,
    ApiRoute,
    EventStream,
    api_owner,
    error_from_reply,
    read_json,
    sse_data,
    unless_gone,
)
from liaotian.replies.log import Delta, Done, ReasoningDelta, ReplyEvent, ReplyLog, Started
from liaotian.replies.status import ReplyStatus
from liaotian.services import services_of

router = APIRouter(route_class=ApiRoute)

FINISH_REASONS = frozenset({"stop", "length", "content_filter"})
CANCELLED = {"code": "cancelled", "message": "the answer was cancelled before it ended"}


@router.post("/chat/completions")
async def create_chat_completion(request: Request) -> Response:
    """Answer the conversation the body carries; see the module docstring."""
    owner = await api_owner(request)
    services = services_of(request)
    body = await read_json(request, ChatCompletionRequest)
    # Checked before counting the message: a misspelt model or a wrong switch costs no rate.
    _, model = services.providers.resolve(body.model)
    options = send_options(body, model, max_message_chars=services.settings.max_message_chars)
    check_capabilities(model, options)
    await services.guards.check_message(owner)
    reply_log = await services.engine.send(owner, options)

    async def cancel() -> None:
        with contextlib.suppress(NotFound):  # it has just ended
            await services.engine.cancel(owner, message_id=reply_log.key.message_id)

    events = _events(reply_log)
    try:
        if not body.stream:
            started, done = await unless_gone(request, _until_done(events), cancel)
            _raise_if_failed(done)
            return JSONResponse(Completion(reply_log, started).whole(done))
        # Headers wait for the first part (or the end): until then leaving cancels the
        # reply and a failure is answered with its status.
        head = await unless_gone(request, _head(events), cancel)
    except BaseException:
        await _close(events)
        raise
    last = head[-1]
    if isinstance(last, Done) and _failure(last) is not None:
        await _close(events)
        _raise_if_failed(last)
    started = head[0] if isinstance(head[0], Started) else None
    completion = Completion(reply_log, started, include_usage=body.include_usage)
    return EventStream(completion.chunks(head, events), on_gone=cancel)


async def _events(reply_log: ReplyLog) -> AsyncGenerator[ReplyEvent, None]:
    """The reply's events from its start, consecutive deltas of a kind merged."""
    async for batch in reply_log.follow(merge=True):
        for event in batch:
            yield event


async def _close(events: AsyncGenerator[ReplyEvent, None]) -> None:
    """Stop following (nothing to do when the follower already ended; a follower still
    running, in a task cancelled by shutdown, ends with that task)."""
    with contextlib.suppress(RuntimeError):
        await events.aclose()


async def _head(events: AsyncIterator[ReplyEvent]) -> list[ReplyEvent]:
    """The events up to the first part or the end, ``started`` included."""
    head = [await anext(events)]
    while not isinstance(head[-1], Delta | ReasoningDelta | Done):
        head.append(await anext(events))
    return head


async def _until_done(events: AsyncIterator[ReplyEvent]) -> tuple[Started | None, Done]:
    """The reply's ``started`` (None if it ended before it started) and ``done``."""
    started = None
    async for event in events:
        if isinstance(event, Started):
            started = event
        elif isinstance(event, Done):
            return started, event
    raise RuntimeError("a reply log ended without done")  # pragma: no cover - logs end so


def _failure(done: Done) -> ApiError | None:
    """The error of a reply that did not complete (None for one that did)."""
    if done.status == ReplyStatus.COMPLETED:
        return None
    if done.status == ReplyStatus.CANCELLED:
        return error_from_reply(CANCELLED)
    return error_from_reply(done.error)


def _raise_if_failed(done: Done) -> None:
    failure = _failure(done)
    if failure is not None:
        raise failure


class Completion:
    """One reply as OpenAI's completion objects."""

    def __init__(
        self, reply_log: ReplyLog, started: Started | None, *, include_usage: bool = False
    ) -> None:
        self.reply_log = reply_log
        self.id = f"chatcmpl-{reply_log.key.message_id}"
        self.created = int(started.created_at if started is not None else time.time())
        self.model = started.model if started is not None else ""
        self.include_usage = include_usage

    def whole(self, done: Done) -> dict[str, Any]:
        """The ``chat.completion`` object of a completed reply."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.reply_log.text,
            "refusal": None,
        }
        if self.reply_log.reasoning:
            message["reasoning_content"] = self.reply_log.reasoning
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason(done),
        }
        return {**self._envelope("chat.completion"), "choices": [choice], "usage": usage(done)}

    async def chunks(
        self, head: list[ReplyEvent], events: AsyncGenerator[ReplyEvent, None]
    ) -> AsyncIterator[bytes]:
        """The stream of ``head`` then ``events``: the role, the parts as they come, the
        finish (and the usage), then ``[DONE]``; a failed reply's error instead of the
        finish. Closes ``events`` however it ends."""
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            async for event in _chained(head, events):
                if isinstance(event, Delta):
                    yield self._chunk({"content": event.text})
                elif isinstance(event, ReasoningDelta):
                    yield self._chunk({"reasoning_content": event.text})
                elif isinstance(event, Done):
                    yield self._end(event)
                    return
        finally:
            await _close(events)

    def _end(self, done: Done) -> bytes:
        failure = _failure(done)
        if failure is not None:
            return sse_data(failure.body()) + DONE
        end = self._chunk({}, finish_reason(done))
        if self.include_usage:
            end += sse_data({**self._envelope(), "choices": [], "usage": usage(done)})
        return end + DONE

    def _envelope(self, kind: str = "chat.completion.chunk") -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {**self._envelope(), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return sse_data(chunk)


async def _chained(
    head: list[ReplyEvent], events: AsyncIterator[ReplyEvent]
) -> AsyncIterator[ReplyEvent]:
    for event in head:
        yield event
    async for event in events:
        yield event


def finish_reason(done: Done) -> str:
    """liaotian's finish reason where OpenAI has it; ``stop`` otherwise."""
    reason = done.finish_reason
    return reason if reason in FINISH_REASONS else "stop"


def usage(done: Done) -> dict[str, Any]:
    """OpenAI's usage from the reply's (zeros for what the provider did not report)."""
    counts = done.usage or {}
    prompt, completion = counts.get("input_tokens", 0), counts.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": counts.get("cached_tokens", 0)},
        "completion_tokens_details": {"reasoning_tokens": counts.get("reasoning_tokens", 0)},
    }
