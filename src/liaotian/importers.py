"""Reading import files: liaotian's own export and ChatGPT's ``conversations.json``.

:func:`parse_import` turns a file's bytes into checked
:class:`~liaotian.store.portability.ImportedConversation` s, or raises
:class:`~liaotian.errors.InvalidImport` saying what is wrong and where (which conversation,
which field). It does no I/O; a whole file is parsed before anything is stored, so a bad
file stores nothing.

What is taken from a **ChatGPT export** (a list of conversations, each a tree of nodes in
``mapping``, ``current_node`` the leaf of the branch last shown):

* the user's and the assistant's text messages, on every branch; the active path is
  ``current_node``'s;
* system, tool and hidden messages (``metadata.is_visually_hidden_from_conversation``),
  the assistant's calls to tools (``recipient`` other than ``all``) and content that is not
  text (code runs, browsing, thoughts, …) are skipped: their children follow the nearest
  message kept above them;
* in a message's ``parts``, text is kept, an image becomes ``[image]`` and anything else
  (audio, files) is dropped; a message left with no text is skipped like the others;
* the conversation's id becomes ``chatgpt-<its id>``, its title stays (the first user
  message's first line when it has none), its model is ``default_model_slug``, an
  answer's model is its ``metadata.model_slug``.

A **liaotian export** (one object or a list; docs/protocol.md) keeps its ids, titles,
flags, active path and every message's parts; images are referenced by attachment ids the
importing owner cannot read, so they are left out (a message with images and no text
becomes ``[image]``), and a reply exported while still streaming becomes ``interrupted``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liaotian.errors import InvalidImport
from liaotian.replies.status import ReplyStatus
from liaotian.store.portability import FORMAT, VERSION, ImportedConversation, ImportedMessage

CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
"""What a conversation id may be (the protocol's ``Identifier``)."""
CHATGPT_PREFIX = "chatgpt-"
IMAGE_PLACEHOLDER = "[image]"
UNTITLED = "Imported conversation"
_TITLE_FROM_MESSAGE = 80


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_M = TypeVar("_M", bound=_Model)


# -- liaotian's format -------------------------------------------------------------------


class _Usage(_Model):
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


class _Error(_Model):
    code: str = Field(default="error", max_length=64)
    message: str | None = None


class _LiaotianMessage(_Model):
    id: str = Field(min_length=1, max_length=128)
    parent_id: str | None = None
    role: Literal["user", "assistant"]
    content: str = ""
    reasoning: str | None = None
    sources: list[dict[str, Any]] = []
    attachments: list[Any] = []
    status: Literal["streaming", "completed", "cancelled", "error", "interrupted"] = "completed"
    model: str | None = Field(default=None, max_length=200)
    finish_reason: str | None = Field(default=None, max_length=64)
    usage: _Usage | None = None
    thinking_ms: float | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    error: _Error | None = None
    created_at: float | None = None


class _LiaotianConversation(_Model):
    id: str = Field(pattern=CONVERSATION_ID.pattern)
    title: str = ""
    system_prompt: str | None = None
    model: str | None = Field(default=None, max_length=200)
    created_at: float | None = None
    updated_at: float | None = None
    pinned: bool = False
    archived: bool = False
    active_message_id: str | None = None


class _LiaotianExport(_Model):
    format: Literal["liaotian.conversation"]
    version: Literal[1]
    conversation: _LiaotianConversation
    messages: list[_LiaotianMessage]


# -- ChatGPT's format --------------------------------------------------------------------


class _Author(_Model):
    role: str


class _Content(_Model):
    content_type: str
    parts: list[Any] | None = None


class _ChatGptMessage(_Model):
    author: _Author
    content: _Content
    create_time: float | None = None
    metadata: dict[str, Any] | None = None
    recipient: str | None = None


class _Node(_Model):
    message: _ChatGptMessage | None = None
    parent: str | None = None


class _ChatGptConversation(_Model):
    id: str | None = None
    conversation_id: str | None = None
    title: str | None = None
    create_time: float | None = None
    update_time: float | None = None
    mapping: dict[str, _Node]
    current_node: str | None = None
    default_model_slug: str | None = None
    is_archived: bool | None = None


# -- parsing -----------------------------------------------------------------------------


def parse_import(
    data: bytes, *, max_title_chars: int = 200, now: datetime
) -> list[ImportedConversation]:
    """The conversations of an import file (one liaotian export, a list of them, or a
    ChatGPT ``conversations.json``). Raises InvalidImport naming what is wrong."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidImport(f"the file is not JSON: {error}") from None
    items: list[Any]
    if isinstance(document, dict):
        items = [document]
    elif isinstance(document, list):
        items = document
    else:
        raise InvalidImport(
            "the file holds neither a liaotian export nor a ChatGPT conversations.json "
            "(expected a JSON object or a list)"
        )
    title_chars = min(max_title_chars, 200)
    return [_conversation(item, index, title_chars, now) for index, item in enumerate(items)]


def _conversation(item: Any, index: int, title_chars: int, now: datetime) -> ImportedConversation:
    where = f"conversation {index + 1}"
    if not isinstance(item, dict):
        raise InvalidImport(f"{where} is not a JSON object")
    title = item.get("title") if isinstance(item.get("title"), str) else None
    if title is None and isinstance(item.get("conversation"), dict):
        inner = item["conversation"].get("title")
        title = inner if isinstance(inner, str) else None
    if title:
        where += f" ({title[:60]!r})"
    if "format" in item:
        if item.get("format") != FORMAT:
            raise InvalidImport(f"{where}: format {item.get('format')!r} is not {FORMAT!r}")
        if item.get("version") != VERSION:
            raise InvalidImport(f"{where}: version {item.get('version')!r} is not {VERSION}")
        export = _checked(_LiaotianExport, item, where)
        return _from_liaotian(export, where, title_chars, now)
    if "mapping" in item:
        return _from_chatgpt(_checked(_ChatGptConversation, item, where), where, title_chars, now)
    raise InvalidImport(
        f"{where} is neither a liaotian export (no 'format') nor a ChatGPT conversation "
        "(no 'mapping')"
    )


def _checked(model: type[_M], item: dict[str, Any], where: str) -> _M:
    try:
        return model.model_validate(item)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise InvalidImport(f"{where}: {location}: {first['msg']}") from None


def _time(value: float | None, default: datetime, where: str) -> datetime:
    if value is None:
        return default
    try:
        if not math.isfinite(value):
            raise ValueError
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidImport(f"{where}: {value!r} is not a time") from None


def _title(raw: str | None, messages: Iterable[ImportedMessage], chars: int) -> str:
    title = " ".join((raw or "").split())
    if not title:
        first = next((m.content for m in messages if m.role == "user" and m.content), "")
        line = first.strip().splitlines()[0] if first.strip() else ""
        title = " ".join(line.split())[:_TITLE_FROM_MESSAGE] or UNTITLED
    return title[:chars]


def _parents_first(nodes: Mapping[str, str | None], where: str) -> list[str]:
    """The keys of ``nodes`` ({key: parent key}) ordered so that parents come first;
    InvalidImport when a parent is unknown or the links loop."""
    children: dict[str | None, list[str]] = {}
    for key, parent in nodes.items():
        if parent is not None and parent not in nodes:
            raise InvalidImport(f"{where}: message {key!r} follows {parent!r}, which is not there")
        children.setdefault(parent, []).append(key)
    ordered: list[str] = []
    pending = list(reversed(children.get(None, [])))
    while pending:
        key = pending.pop()
        ordered.append(key)
        pending.extend(reversed(children.get(key, [])))
    if len(ordered) != len(nodes):
        looped = next(key for key in nodes if key not in set(ordered))
        raise InvalidImport(f"{where}: message {looped!r} is in a loop of parents")
    return ordered


def _from_liaotian(
    export: _LiaotianExport, where: str, title_chars: int, now: datetime
) -> ImportedConversation:
    info = export.conversation
    created = _time(info.created_at, now, f"{where}: conversation.created_at")
    by_key: dict[str, _LiaotianMessage] = {}
    for number, message in enumerate(export.messages):
        if message.id in by_key:
            raise InvalidImport(f"{where}: messages.{number}.id {message.id!r} appears twice")
        by_key[message.id] = message
    order = _parents_first({key: m.parent_id for key, m in by_key.items()}, where)
    imported = tuple(_liaotian_message(by_key[key], created, where) for key in order)
    active = info.active_message_id
    if active is not None and active not in by_key:
        raise InvalidImport(f"{where}: active_message_id {active!r} is not one of its messages")
    if active is None and export.messages:
        active = export.messages[-1].id
    return ImportedConversation(
        id=info.id,
        title=_title(info.title, imported, title_chars),
        created_at=created,
        updated_at=_time(info.updated_at, created, f"{where}: conversation.updated_at"),
        messages=imported,
        active_key=active,
        system_prompt=info.system_prompt,
        model=info.model,
        pinned=info.pinned,
        archived=info.archived,
    )


def _liaotian_message(message: _LiaotianMessage, default: datetime, where: str) -> ImportedMessage:
    content = message.content
    if not content and message.attachments:
        content = IMAGE_PLACEHOLDER
    status = message.status
    error = message.error
    if status == ReplyStatus.STREAMING.value:
        status = ReplyStatus.INTERRUPTED.value
        error = error or _Error(code="interrupted", message="exported while it was streaming")
    usage = message.usage or _Usage()
    return ImportedMessage(
        key=message.id,
        parent_key=message.parent_id,
        role=message.role,
        content=content,
        created_at=_time(message.created_at, default, f"{where}: message {message.id!r}"),
        status=status,
        model=message.model,
        reasoning=message.reasoning,
        sources=tuple(message.sources),
        finish_reason=message.finish_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cached_tokens=usage.cached_tokens,
        thinking_ms=message.thinking_ms,
        ttft_ms=message.ttft_ms,
        duration_ms=message.duration_ms,
        error_code=None if error is None else error.code,
        error_message=None if error is None else error.message,
    )


def _from_chatgpt(
    conversation: _ChatGptConversation, where: str, title_chars: int, now: datetime
) -> ImportedConversation:
    original_id = conversation.id or conversation.conversation_id
    if not original_id:
        raise InvalidImport(f"{where}: id: Field required")
    conversation_id = CHATGPT_PREFIX + original_id
    if not CONVERSATION_ID.match(conversation_id):
        raise InvalidImport(
            f"{where}: id {original_id!r} is not 1-120 characters of A-Z a-z 0-9 _ . : -"
        )
    created = _time(conversation.create_time, now, f"{where}: create_time")
    mapping = conversation.mapping
    order = _parents_first({key: node.parent for key, node in mapping.items()}, where)
    kept: dict[str, ImportedMessage] = {}
    nearest_kept: dict[str, str | None] = {}
    """Each node's nearest kept message, itself included (None: none above it)."""
    for key in order:
        node = mapping[key]
        above = None if node.parent is None else nearest_kept[node.parent]
        message = _chatgpt_message(key, node, above, created, f"{where}: mapping.{key}")
        if message is not None:
            kept[key] = message
        nearest_kept[key] = key if message is not None else above
    active: str | None = None
    if conversation.current_node is not None:
        if conversation.current_node not in mapping:
            raise InvalidImport(
                f"{where}: current_node {conversation.current_node!r} is not in mapping"
            )
        active = nearest_kept[conversation.current_node]
    elif kept:
        active = next(reversed(kept))
    messages = tuple(kept.values())
    return ImportedConversation(
        id=conversation_id,
        title=_title(conversation.title, messages, title_chars),
        created_at=created,
        updated_at=_time(conversation.update_time, created, f"{where}: update_time"),
        messages=messages,
        active_key=active,
        model=conversation.default_model_slug[:200] if conversation.default_model_slug else None,
        archived=bool(conversation.is_archived),
    )


def _chatgpt_message(
    key: str, node: _Node, parent: str | None, default: datetime, where: str
) -> ImportedMessage | None:
    """The message to keep of a node, or None when it is skipped."""
    message = node.message
    if message is None or message.author.role not in ("user", "assistant"):
        return None
    metadata = message.metadata or {}
    if metadata.get("is_visually_hidden_from_conversation"):
        return None
    if message.recipient not in (None, "all"):
        return None
    if message.content.content_type not in ("text", "multimodal_text"):
        return None
    text = _text_of(message.content.parts or ())
    if not text:
        return None
    model = metadata.get("model_slug")
    return ImportedMessage(
        key=key,
        parent_key=parent,
        role=message.author.role,
        content=text,
        created_at=_time(message.create_time, default, f"{where}.message.create_time"),
        model=model[:200]
        if isinstance(model, str) and message.author.role == "assistant"
        else None,
    )


def _text_of(parts: Sequence[Any]) -> str:
    """The text of a message's parts: strings as they are, an image as ``[image]``, a
    transcript's text; anything else dropped."""
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            if part:
                pieces.append(part)
        elif isinstance(part, dict):
            if part.get("content_type") == "image_asset_pointer":
                pieces.append(IMAGE_PLACEHOLDER)
            elif isinstance(part.get("text"), str) and part["text"]:
                pieces.append(part["text"])
    return "\n\n".join(pieces).strip()
