"""The Responses API (``/v1/responses``) on the chat engine.

* ``POST /v1/responses`` turns the request into :class:`~liaotian.engine.SendOptions`:
  ``input`` (a string, or messages: system/developer ones join ``instructions``, the last
  must be the user's, earlier user/assistant ones are given whole as ``prior``),
  ``previous_response_id`` (continue below that answer: a branch when it is not the
  newest) or ``conversation`` (continue a liaotian conversation), else a new conversation.
  ``store: false`` is an ephemeral turn in a new conversation, gone when the answer ends.
  Without ``background`` the answer is cancelled when the client leaves; with it, the
  answer runs whatever the client does.
* ``GET /v1/responses/{id}`` reads a response (live or stored, from any process);
  ``?stream=true&starting_after=N`` resumes its events after N (see
  :mod:`.response_events`: the numbering is the log's, so it is exact in any process while
  the log is kept).
* ``POST /v1/responses/{id}/cancel`` stops the answer at the provider and returns the
  response once it has ended (idempotent).

A response is ``resp_<reply message id>``: nothing maps ids. Another owner's, an unknown
and an unstored response are all 404.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from liaotian.engine import SendOptions
from liaotian.errors import NotFound
from liaotian.openai_api.common import (
    ApiError,
    ApiRoute,
    EventStream,
    api_owner,
    error_from_reply,
    read_json,
    sse_event,
    unless_gone,
)
from liaotian.openai_api.response_events import (
    FAILED,
    RESPONSE_PREFIX,
    ResponseMeta,
    ResponseStream,
    reply_id_of,
    response_of,
)
from liaotian.protocol import check_message_text
from liaotian.replies.log import ReplyLog
from liaotian.services import Services, services_of
from liaotian.store.repository import MessageInfo

router = APIRouter(route_class=ApiRoute)

CANCEL_WAIT = 10.0
"""Seconds ``/cancel`` waits for the answer to end before returning it as it is."""

THINKING_EFFORTS = {"none": False, "minimal": False, "low": True, "medium": True, "high": True}
TEXT_PARTS = {"input_text", "output_text", "text"}
UNSUPPORTED_PARTS = {"input_image", "input_file", "input_audio", "image_url", "file"}


class _Reasoning(BaseModel):
    model_config = ConfigDict(extra="ignore")
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None


class CreateResponse(BaseModel):
    """The body of ``POST /v1/responses`` (fields liaotian does not use are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr
    input: Any
    """A string or a list of message items: checked by :func:`_turns` (to name the item)."""
    instructions: StrictStr | None = None
    stream: StrictBool = False
    background: StrictBool = False
    store: StrictBool = True
    previous_response_id: StrictStr | None = None
    conversation: Any = None
    """A conversation id, or ``{"id": ...}``."""
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    max_output_tokens: int | None = Field(default=None, ge=1, strict=True)
    reasoning: _Reasoning | None = None
    tools: Any = None
    text: Any = None


@dataclass(frozen=True, slots=True)
class _Turns:
    """What ``input`` says: the user message, the earlier turns, system text to add."""

    message: str
    prior: tuple[tuple[str, str], ...]
    system: tuple[str, ...]


@router.post("/responses")
async def create_response(request: Request) -> Response:
    """Start a response; see the module docstring for what each mode returns."""
    owner = await api_owner(request)
    body = await read_json(request, CreateResponse)
    services = services_of(request)
    _refuse_unsupported(body)
    turns = _turns(body.input)
    check_message_text(turns.message, services.settings.max_message_chars)
    instructions = "\n\n".join(
        text for text in (body.instructions, *turns.system) if text and text.strip()
    )
    conversation_id, after = await _continuing(services, owner, body)
    effort = body.reasoning.effort if body.reasoning is not None else None
    options = SendOptions(
        message=turns.message,
        conversation_id=conversation_id,
        model=body.model,
        system_prompt=instructions or None,
        temperature=body.temperature,
        max_tokens=body.max_output_tokens,
        thinking=None if effort is None else THINKING_EFFORTS[effort],
        prior=turns.prior,
        ephemeral=not body.store,
        after_message_id=after,
    )
    await services.guards.check_message(owner)
    reply_log = await services.engine.send(owner, options)
    reply_id = reply_log.key.message_id
    meta = ResponseMeta(
        reply_id=reply_id,
        conversation_id=reply_log.key.conversation_id if body.store else None,
        model=body.model,
        instructions=instructions or None,
        previous_response_id=body.previous_response_id,
        background=body.background,
        store=body.store,
        temperature=body.temperature,
        max_output_tokens=body.max_output_tokens,
    )

    async def cancel() -> None:
        with contextlib.suppress(NotFound):  # it has ended meanwhile
            await services.engine.cancel(owner, message_id=reply_id)

    if body.stream:
        return EventStream(_events(reply_log, meta), on_gone=None if body.background else cancel)
    if body.background:
        return JSONResponse(response_of(meta, reply_log.events))
    await unless_gone(request, _ended(reply_log), cancel)
    response = response_of(meta, reply_log.events)
    if response["status"] == FAILED:
        # An error the SDKs raise (and retry when it is worth it), not a 200 to inspect.
        raise error_from_reply(response["error"])
    return JSONResponse(response)


@router.get("/responses/{response_id}")
async def get_response(
    request: Request,
    response_id: str,
    stream: bool = False,
    starting_after: int | None = Query(default=None, ge=-1),
) -> Response:
    """A response as it is now; with ``stream`` its events (after ``starting_after``),
    until it ends. Leaving the stream does not cancel the answer."""
    owner = await api_owner(request)
    services = services_of(request)
    reply_log, meta = await _find(services, owner, response_id)
    if stream:
        return EventStream(_events(reply_log, meta, starting_after))
    return JSONResponse(response_of(meta, reply_log.events))


@router.post("/responses/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str) -> Response:
    """Stop the answer at the provider (in whichever process runs it) and return the
    response once it has ended (status ``cancelled``), or after :data:`CANCEL_WAIT` s as it
    is then; an answer that had ended is returned as it is."""
    owner = await api_owner(request)
    services = services_of(request)
    reply_log, meta = await _find(services, owner, response_id)
    if not reply_log.done:
        with contextlib.suppress(NotFound):  # it ended meanwhile
            await services.engine.cancel(owner, message_id=meta.reply_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT):
                await _ended(reply_log)
    return JSONResponse(response_of(meta, reply_log.events))


# -- the request ------------------------------------------------------------------------------


def _refuse_unsupported(body: CreateResponse) -> None:
    """400 ``unsupported_parameter`` for what liaotian cannot do: tools, structured output."""
    if body.tools:
        raise _unsupported("tools", "tools are not supported here (yet): send none")
    text_format = body.text.get("format") if isinstance(body.text, dict) else None
    if isinstance(text_format, dict) and text_format.get("type", "text") != "text":
        raise _unsupported(
            "text.format", "only plain text output is supported here (text.format type text)"
        )
    if body.background and not body.store:
        raise ApiError(
            400,
            "background responses must be stored: drop store: false",
            param="store",
            code="invalid_value",
        )
    if body.previous_response_id is not None and body.conversation is not None:
        raise ApiError(
            400,
            "give previous_response_id or conversation, not both",
            param="conversation",
            code="invalid_value",
        )
    if not body.store and (body.previous_response_id is not None or body.conversation is not None):
        # An unstored turn runs in a conversation of its own that is deleted afterwards.
        raise ApiError(
            400,
            "a response that is not stored (store: false) cannot continue a conversation; "
            "give the earlier turns in input",
            param="store",
            code="invalid_value",
        )


def _unsupported(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="unsupported_parameter")


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", param=param, code="invalid_value")


def _turns(value: Any) -> _Turns:
    """``input`` as the user message, the earlier turns and system text; 400 naming the
    item otherwise."""
    if isinstance(value, str):
        return _Turns(value, (), ())
    if not isinstance(value, list) or not value:
        raise _invalid("input", "give a string or a non-empty list of messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "each input item must be an object")
        kind = item.get("type", "message")
        if kind != "message":
            raise ApiError(
                400,
                f"{where}: input items of type {kind!r} are not supported here: send messages",
                param=f"{where}.type",
                code="unsupported_content",
            )
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise _invalid(f"{where}.role", "give user, assistant, system or developer")
        text = _text(item.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise _invalid("input", "the last message must be the user's")
    return _Turns(turns[-1][1], tuple(turns[:-1]), tuple(system))


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(where, "give a string or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in UNSUPPORTED_PARTS:
            raise ApiError(
                400,
                f"{at}: {kind} parts are not supported here: send text",
                param=f"{at}.type",
                code="unsupported_content",
            )
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise _invalid(at, "give a part of type input_text with its text")
        texts.append(part["text"])
    return "\n".join(texts)


async def _continuing(
    services: Services, owner: str, body: CreateResponse
) -> tuple[str | None, str | None]:
    """The conversation the response goes in and the message it goes below (None, None:
    a new conversation); 404 for a response or conversation the owner does not have."""
    if body.previous_response_id is not None:
        reply_id = reply_id_of(body.previous_response_id)
        found = None if reply_id is None else await _stored_reply(services, owner, reply_id)
        if found is None:
            raise _not_found("previous_response_id", body.previous_response_id)
        return found[1], reply_id
    if body.conversation is None:
        return None, None
    conversation = body.conversation
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if not isinstance(conversation, str) or not conversation:
        raise _invalid("conversation", 'give a conversation id, or {"id": ...}')
    try:
        await services.store.get_conversation(owner, conversation)
    except NotFound:
        raise _not_found("conversation", conversation) from None
    return conversation, None


def _not_found(param: str, value: str) -> ApiError:
    return ApiError(404, f"{param} {value!r} not found", param=param, code="not_found")


# -- the response -----------------------------------------------------------------------------


async def _stored_reply(
    services: Services, owner: str, reply_id: str
) -> tuple[MessageInfo, str] | None:
    """The owner's stored reply ``reply_id`` (MessageInfo, conversation id), or None (also
    for an unstored one, which exists only until its answer has ended)."""
    found = await services.store.find_message(owner, reply_id)
    if found is None or found[0].role != "assistant" or services.engine.unkept(found[1]):
        return None
    return found


async def _find(services: Services, owner: str, response_id: str) -> tuple[ReplyLog, ResponseMeta]:
    """A response's log (live, mirrored or rebuilt) and what else its object says; 404."""
    reply_id = reply_id_of(response_id)
    found = None if reply_id is None else await _stored_reply(services, owner, reply_id)
    if reply_id is None or found is None:
        raise ApiError(404, f"response {response_id!r} not found", code="not_found")
    info, conversation_id = found
    try:
        reply_log = await services.engine.replay(owner, reply_id)
        conversation = await services.store.get_conversation(owner, conversation_id)
    except NotFound:  # deleted meanwhile
        raise ApiError(404, f"response {response_id!r} not found", code="not_found") from None
    previous = None
    if reply_log.rebuilt and info.parent_id is not None:
        # A rebuilt log does not say what the answered message follows: the tree does.
        asked = await services.store.find_message(owner, info.parent_id)
        if asked is not None and asked[0].parent_id is not None:
            previous = RESPONSE_PREFIX + asked[0].parent_id
    meta = ResponseMeta(
        reply_id=reply_id,
        conversation_id=conversation_id,
        model=info.model or "",
        instructions=conversation.system_prompt,
        previous_response_id=previous,
    )
    return reply_log, meta


async def _ended(reply_log: ReplyLog) -> None:
    """Return once the reply has ended."""
    async for _ in reply_log.follow(reply_log.next_seq - 1):
        pass


async def _events(
    reply_log: ReplyLog, meta: ResponseMeta, starting_after: int | None = None
) -> AsyncIterator[bytes]:
    """The response's events numbered above ``starting_after``, until it ends.

    A rebuilt log's events are numbered afresh, so resuming one sends only the event that
    ends the stream (with the whole response), numbered ``starting_after + 1``.
    """
    stream = ResponseStream(meta)
    if reply_log.rebuilt and starting_after is not None:
        for event in reply_log.events:
            stream.feed(event)
        if stream.done:
            last = stream.terminal_event(starting_after + 1)
            yield sse_event(last["type"], last)
        return
    after = -1 if starting_after is None else starting_after
    async for batch in reply_log.follow():
        for event in batch:
            for out in stream.feed(event):
                if out["sequence_number"] > after:
                    yield sse_event(out["type"], out)
