"""Protocol v1: parse client frames and build server frames. No I/O here.

:func:`parse_frame` turns one WebSocket text frame into a typed command or raises a
:class:`~liaotian.errors.ProtocolError` subclass; the ``build_*`` functions return the
JSON bytes of server frames. docs/protocol.md is the specification; this module is its
implementation, and both must change together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from liaotian.errors import (
    EmptyMessage,
    FrameTooLarge,
    InvalidFrame,
    InvalidJson,
    LiaotianError,
    UnknownFrameType,
)
from liaotian.replies.log import Delta, Done, ReasoningDelta, ReplyEvent, SourcesFound, Started

PROTOCOL_VERSION = 1
MAX_JSON_DEPTH = 32
MAX_ATTACHMENTS = 8
"""Images one message may show."""

RequestId = Annotated[str | int, Field(union_mode="left_to_right")]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: RequestId | None = Field(default=None, description="echoed in the answer frames")


class _ReplyOptions(_Frame):
    """How to answer: the model and its options (every reply-starting frame takes them)."""

    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    stream: bool = True
    system_prompt: Annotated[str, Field(max_length=32_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    thinking: bool | None = None
    thinking_budget: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    search: bool | None = None


Attachments = Annotated[list[Identifier], Field(max_length=MAX_ATTACHMENTS)]


class SendMessage(_ReplyOptions):
    """Start a reply: store the user's message and stream the model's answer."""

    type: Literal["chat.send"]
    message: str
    conversation_id: Identifier | None = None
    client_message_id: Identifier | None = None
    attachments: Attachments = Field(default_factory=list)


class RegenerateReply(_ReplyOptions):
    """Answer again: a new reply beside ``message_id`` (default: the active path's last)."""

    type: Literal["chat.regenerate"]
    conversation_id: Identifier
    message_id: Identifier | None = None


class EditMessage(_ReplyOptions):
    """A new user message beside ``message_id`` (a branch), then its answer."""

    type: Literal["chat.edit"]
    conversation_id: Identifier
    message_id: Identifier
    message: str
    attachments: Attachments = Field(default_factory=list)


class CancelReply(_Frame):
    """Cancel a streaming reply, by message id or by conversation."""

    type: Literal["chat.cancel"]
    message_id: Identifier | None = None
    conversation_id: Identifier | None = None


class SubscribeReply(_Frame):
    """Follow a reply: every event after ``after_seq``, then the live stream."""

    type: Literal["chat.subscribe"]
    message_id: Identifier
    after_seq: Annotated[int, Field(ge=-1)] = -1


class ListConversations(_Frame):
    type: Literal["conversations.list"]
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    before: Identifier | None = None
    query: Annotated[str, Field(max_length=200)] | None = None
    archived: bool = False


class GetHistory(_Frame):
    type: Literal["conversation.history"]
    conversation_id: Identifier
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    before: Identifier | None = None


class RenameConversation(_Frame):
    type: Literal["conversation.rename"]
    conversation_id: Identifier
    title: Annotated[str, Field(min_length=1, max_length=200)]


class DeleteConversation(_Frame):
    type: Literal["conversation.delete"]
    conversation_id: Identifier


class SwitchBranch(_Frame):
    """Make the branch through ``message_id`` the conversation's active path."""

    type: Literal["conversation.switch"]
    conversation_id: Identifier
    message_id: Identifier


class UpdateConversation(_Frame):
    """Pin or unpin, archive or restore a conversation."""

    type: Literal["conversation.update"]
    conversation_id: Identifier
    pinned: bool | None = None
    archived: bool | None = None


class BulkConversations(_Frame):
    """One action on many conversations, in one transaction."""

    type: Literal["conversations.bulk"]
    action: Literal["delete", "archive", "unarchive", "pin", "unpin"]
    conversation_ids: Annotated[list[Identifier], Field(min_length=1, max_length=200)]


class ExportConversation(_Frame):
    """A conversation in liaotian's export format: the active path, or the whole tree."""

    type: Literal["conversation.export"]
    conversation_id: Identifier
    tree: bool = False


class SearchMessages(_Frame):
    """Full-text search over the owner's titles and messages."""

    type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=200)]
    limit: Annotated[int, Field(ge=1, le=50)] = 20


class CreateShare(_Frame):
    """A read-only snapshot of the active path up to ``message_id`` at an unguessable URL."""

    type: Literal["share.create"]
    conversation_id: Identifier
    message_id: Identifier | None = None
    expires_in: Annotated[int, Field(ge=60, le=31_536_000)] | None = None


class ListShares(_Frame):
    type: Literal["shares.list"]
    conversation_id: Identifier | None = None


class RevokeShare(_Frame):
    type: Literal["share.revoke"]
    share_id: Annotated[str, Field(min_length=1, max_length=64)]


class CopyShare(_Frame):
    """Continue a shared snapshot as a new conversation of the caller's own."""

    type: Literal["share.copy"]
    share_id: Annotated[str, Field(min_length=1, max_length=64)]


class ListModels(_Frame):
    type: Literal["models.list"]


class Ping(_Frame):
    type: Literal["ping"]


Command = Annotated[
    SendMessage
    | RegenerateReply
    | EditMessage
    | CancelReply
    | SubscribeReply
    | ListConversations
    | GetHistory
    | RenameConversation
    | DeleteConversation
    | SwitchBranch
    | UpdateConversation
    | BulkConversations
    | ExportConversation
    | SearchMessages
    | CreateShare
    | ListShares
    | RevokeShare
    | CopyShare
    | ListModels
    | Ping,
    Field(discriminator="type"),
]
FRAME_TYPES = (
    "chat.send",
    "chat.regenerate",
    "chat.edit",
    "chat.cancel",
    "chat.subscribe",
    "conversations.list",
    "conversation.history",
    "conversation.rename",
    "conversation.delete",
    "conversation.switch",
    "conversation.update",
    "conversations.bulk",
    "conversation.export",
    "search",
    "share.create",
    "shares.list",
    "share.revoke",
    "share.copy",
    "models.list",
    "ping",
)
_COMMAND = TypeAdapter[Command](Command)


def parse_frame(data: str | bytes, *, max_bytes: int, max_message_chars: int) -> Command:
    """Parse one client frame.

    Raises FrameTooLarge, InvalidJson (not JSON, not UTF-8, too deep), UnknownFrameType,
    InvalidFrame (wrong fields or types) or EmptyMessage. ``error_request_id`` recovers
    the request id from a frame that failed to parse, so the error can be correlated.
    """
    if len(data) > max_bytes:
        raise FrameTooLarge(f"frame is larger than {max_bytes} bytes")
    raw = load_json(data)
    if not isinstance(raw, dict):
        raise InvalidFrame("a frame must be a JSON object with a 'type'")
    frame_type = raw.get("type")
    if frame_type not in FRAME_TYPES:
        raise UnknownFrameType(
            f"unknown frame type {str(frame_type)[:60]!r}; expected one of {', '.join(FRAME_TYPES)}"
        )
    try:
        command = _COMMAND.validate_python(raw)
    except ValidationError as exc:
        raise InvalidFrame(describe_validation_error(exc)) from None
    if isinstance(command, SendMessage | EditMessage):
        if len(set(command.attachments)) != len(command.attachments):
            raise InvalidFrame("attachments: an image is attached twice")
        check_message_text(command.message, max_message_chars, images=len(command.attachments))
    return command


def load_json(data: str | bytes) -> Any:
    """Decode JSON text, rejecting invalid UTF-8, lone surrogates and deep nesting."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"frame is not valid JSON: {exc.msg}") from None
    if _too_deep(value):
        raise InvalidJson(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def check_message_text(message: str, max_chars: int, *, images: int = 0) -> None:
    """Raise EmptyMessage for blank text without images and InvalidFrame for text over
    ``max_chars``."""
    if not images and not message.strip():
        raise EmptyMessage("message is empty")
    if len(message) > max_chars:
        raise InvalidFrame(
            f"message is longer than {max_chars} characters", code="message_too_long"
        )


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(loc) for loc in error["loc"] if not str(loc).startswith("chat."))
        parts.append(f"{where or 'frame'}: {error['msg']}")
    return "; ".join(parts)


def request_id_of(data: str | bytes) -> str | int | None:
    """Best-effort ``id`` of a frame that failed to parse (None when unreadable)."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, str) and len(value) <= 128:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# -- server frames -------------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> bytes:
    return orjson.dumps(frame)


def build_hello(owner: str, default_model: str, server_version: str) -> bytes:
    return encode(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "server": server_version,
            "owner": owner,
            "default_model": default_model,
        }
    )


def build_reply_event(
    conversation_id: str,
    message_id: str,
    event: ReplyEvent,
    request_id: str | int | None = None,
) -> bytes:
    """The frame for one reply event (see :func:`build_delta` for merged deltas)."""
    frame: dict[str, Any]
    if isinstance(event, Started):
        frame = {
            "type": "reply.started",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": event.seq,
            "user_message_id": event.user_message_id,
            "user_message": event.user_text,
            "replaces": list(event.replaces),
            "model": event.model,
            "title": event.title,
            "created_at": event.created_at,
            "user_attachments": list(event.user_attachments),
            "thinking": event.thinking,
            "search": event.search,
            "user_parent_id": event.user_parent_id,
            "user_siblings": list(event.user_siblings),
            "reply_siblings": list(event.reply_siblings),
        }
        if event.client_message_id is not None:
            frame["client_message_id"] = event.client_message_id
    elif isinstance(event, Done):
        frame = {
            "type": "reply.done",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": event.seq,
            "status": event.status,
            "finish_reason": event.finish_reason,
            "usage": event.usage,
            "ttft_ms": event.ttft_ms,
            "duration_ms": event.duration_ms,
            "error": event.error,
            "thinking_ms": event.thinking_ms,
        }
    elif isinstance(event, Delta):
        return build_delta(conversation_id, message_id, event.seq, event.text, request_id)
    elif isinstance(event, ReasoningDelta):
        frame = {
            "type": "reply.reasoning",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": event.seq,
            "text": event.text,
        }
    elif isinstance(event, SourcesFound):
        frame = {
            "type": "reply.sources",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": event.seq,
            "sources": list(event.sources),
        }
    else:  # pragma: no cover - every event type is handled above
        raise TypeError(f"not a reply event: {event!r}")
    if request_id is not None:
        frame["id"] = request_id
    return encode(frame)


def build_delta(
    conversation_id: str,
    message_id: str,
    seq: int,
    text: str,
    request_id: str | int | None = None,
) -> bytes:
    """A ``reply.delta``: ``seq`` is the last event it contains, ``text`` their joined text."""
    frame: dict[str, Any] = {
        "type": "reply.delta",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "seq": seq,
        "text": text,
    }
    if request_id is not None:
        frame["id"] = request_id
    return encode(frame)


def build_error(error: LiaotianError, request_id: str | int | None = None, **extra: Any) -> bytes:
    frame: dict[str, Any] = {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "retryable": error.retryable,
    }
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        frame["retry_after"] = retry_after
    capability = getattr(error, "capability", None)
    if capability is not None:
        frame["capability"] = capability
    quota = getattr(error, "quota", None)
    if quota is not None:
        frame["quota"] = quota
    if request_id is not None:
        frame["id"] = request_id
    frame.update({key: value for key, value in extra.items() if value is not None})
    return encode(frame)


def build_result(frame_type: str, request_id: str | int | None, **fields: Any) -> bytes:
    """A response frame to a request (``conversations``, ``history``, ``models``, ...)."""
    frame: dict[str, Any] = {"type": frame_type}
    if request_id is not None:
        frame["id"] = request_id
    frame.update(fields)
    return encode(frame)
