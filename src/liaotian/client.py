"""An asyncio client for protocol v1 (docs/protocol.md), on the ``websockets`` library.

::

    async with Client("ws://127.0.0.1:8011", client_id="me") as client:
        reply = await client.send("Hello")
        async for text in reply:
            print(text, end="", flush=True)
        result = await reply.result()

A reply is a sequence of parts (docs/protocol.md, "Reply events"): the model's thinking,
its web sources, and the answer text. Iterating a reply yields the answer text only;
:meth:`Reply.parts` yields every part, typed::

        reply = await client.send("Why is the sky blue?", thinking=True, search=True)
        async for part in reply.parts():
            if isinstance(part, ReasoningDelta):
                ...  # part.text: a piece of the thinking
            elif isinstance(part, SourcesPart):
                ...  # part.sources: [{index, url, title, site, icon}]
            elif isinstance(part, TextDelta):
                ...  # part.text: a piece of the answer
        result = await reply.result()  # .text, .reasoning, .sources, .thinking_ms, .usage

``images=`` (paths or bytes) uploads images first (:meth:`Client.upload_image`) and sends
their ids with the message.

One background task reads every frame and routes it: answers to requests by their ``id``
(generated here), reply events by ``message_id`` to the :class:`Reply` they belong to. A
reply's :class:`Reply` exists as soon as its ``reply.started`` is read, before any of its
deltas, so nothing is lost between :meth:`Client.send` returning and iterating the reply.

Errors:

* the server's ``error`` answer to a request raises the :mod:`liaotian.errors` class named
  by its ``code`` (``ModelNotFound``, ``NotFound``, ``ConversationBusy``, ...), with the
  server's ``message`` and ``retryable``; an unknown code raises a plain LiaotianError;
* a connection that cannot be opened, or that drops, raises :class:`ClientConnectionError`
  from every pending call and every unfinished reply at once: nothing waits forever; a
  server that requires signing in and got no token, or a token it does not accept, raises
  its subclass :class:`SignInRequired`;
* a request the server does not answer within ``request_timeout`` raises TimeoutError.

A reply that ends badly is not an exception: :meth:`Reply.result` returns its status
(``completed``, ``cancelled``, ``error``, ``interrupted``) and error.

The server also sends this connection the replies that the owner's *other* connections
start. They are dropped unless the client is created with ``follow_other_replies=True``;
then :meth:`Client.other_replies` yields them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from liaotian import errors
from liaotian.errors import LiaotianError

__all__ = [
    "AttachmentInfo",
    "Capabilities",
    "Client",
    "ClientConnectionError",
    "ConversationInfo",
    "ConversationPage",
    "HistoryPage",
    "ImportResult",
    "MessageInfo",
    "ModelInfo",
    "ModelList",
    "ReasoningDelta",
    "Reply",
    "ReplyPart",
    "ReplyResult",
    "SearchResult",
    "ShareInfo",
    "SignInRequired",
    "SnippetPiece",
    "SourceInfo",
    "SourcesPart",
    "TextDelta",
    "error_from_frame",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# History pages can be large (500 messages); the server's own limit is what matters.
MAX_FRAME_BYTES = 64 << 20

RequestId = int
ImageSource = str | os.PathLike[str] | bytes
"""An image to upload: a file's path, or its bytes."""


class ClientConnectionError(ConnectionError):
    """The server cannot be reached, or the connection to it was lost.

    ``url`` is the server's base URL, never the one with the client id.
    """

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.message = message
        self.url = url


class SignInRequired(ClientConnectionError):
    """The server requires signing in: no token was given (``token_given`` False), or the
    token is not a live one (invalid, revoked, or its user removed)."""

    def __init__(self, message: str, *, url: str, token_given: bool) -> None:
        super().__init__(message, url=url)
        self.token_given = token_given


# -- result types (the wire shapes of docs/protocol.md) -------------------------------------


class ConversationInfo(TypedDict):
    """A conversation. ``title_source`` is where its title came from: ``message`` (its
    first message), ``generated`` (the title model), ``user`` (a rename) or ``import``.
    ``pinned``, ``archived`` and ``title_source`` are absent from older servers."""

    id: str
    title: str
    system_prompt: str | None
    model: str | None
    created_at: float
    updated_at: float
    active_message_id: NotRequired[str | None]
    """The last message of the active path (the branch shown and answered from)."""
    pinned: NotRequired[bool]
    archived: NotRequired[bool]
    title_source: NotRequired[str]


class ListedConversation(ConversationInfo):
    streaming_message_id: str | None


class SourceInfo(TypedDict):
    """A web search result; the answer cites it as ``[index]``."""

    index: int
    url: str
    title: str
    site: str
    icon: str


class AttachmentInfo(TypedDict):
    """An image of a user message (the server's re-encoded copy)."""

    id: str
    media_type: str
    name: str
    width: int
    height: int
    bytes: int


class MessageInfo(TypedDict):
    """A message of ``conversation.history``. ``content`` is the answer text; the parts
    (``reasoning``, ``sources``, ``attachments``, ``thinking_ms``) are absent from servers
    older than them."""

    id: str
    role: str
    content: str
    status: str
    model: str | None
    finish_reason: str | None
    usage: dict[str, int | None] | None
    ttft_ms: float | None
    duration_ms: float | None
    error: dict[str, str | None] | None
    created_at: float
    reasoning: NotRequired[str | None]
    sources: NotRequired[list[SourceInfo]]
    attachments: NotRequired[list[AttachmentInfo]]
    thinking_ms: NotRequired[float | None]
    parent_id: NotRequired[str | None]
    """The message this one follows (None for a first message)."""
    siblings: NotRequired[list[str]]
    """The ids of the alternatives at this place (same parent), oldest first, this one
    included: ``siblings.index(id) + 1`` of ``len(siblings)``."""


class ShareInfo(TypedDict):
    """A share link (docs/protocol.md, "Share links"); ``url`` is the page's path."""

    id: str
    url: str
    conversation_id: str
    message_id: str
    title: str
    created_at: float
    expires_at: float | None
    revoked: bool


class ConversationPage(TypedDict):
    conversations: list[ListedConversation]
    has_more: bool


BulkAction = Literal["delete", "archive", "unarchive", "pin", "unpin"]


class BulkResult(TypedDict):
    """What :meth:`Client.bulk` did: the ids done, and those that are not the owner's."""

    action: BulkAction
    conversation_ids: list[str]
    not_found: list[str]


class HistoryPage(TypedDict):
    conversation: ConversationInfo
    messages: list[MessageInfo]
    has_more: bool


class Capabilities(TypedDict):
    """What a model can do: take images (``vision``), think (``thinking``; on unless told
    otherwise with ``thinking_default``; not switchable with ``thinking_fixed``), search
    the web (``search``)."""

    vision: bool
    thinking: bool
    thinking_default: bool
    thinking_fixed: bool
    search: bool


class ModelInfo(TypedDict):
    """A model of ``models``; ``capabilities`` is absent from servers older than it."""

    id: str
    provider: str
    available: bool
    reason: str | None
    capabilities: NotRequired[Capabilities]


class ImportedConversation(TypedDict):
    id: str
    title: str


class ImportResult(TypedDict):
    """The answer to an import: how many conversations were added and skipped."""

    imported: int
    skipped: int
    conversations: list[ImportedConversation]


class ModelList(TypedDict):
    models: list[ModelInfo]
    default: str


class SnippetPiece(TypedDict):
    """A piece of a search result's snippet (plain text, never HTML); ``match`` marks what
    the query matched."""

    text: str
    match: NotRequired[bool]


class SearchResult(TypedDict):
    """A conversation found by :meth:`Client.search`, with its newest matching message
    (``message_id`` None when only the title matched)."""

    conversation: ConversationInfo
    message_id: str | None
    role: str | None
    created_at: float | None
    on_active_path: bool
    """False: the message is on another branch (``conversation.switch`` to it first)."""
    snippet: list[SnippetPiece]


# -- errors from frames ---------------------------------------------------------------------


def _error_classes() -> dict[str, type[LiaotianError]]:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, LiaotianError)
    ]
    # Deeper classes last, so InvalidFrame wins over ProtocolError for "invalid_frame".
    classes.sort(key=lambda cls: len(cls.__mro__))
    return {cls.code: cls for cls in classes}


_ERRORS_BY_CODE = _error_classes()


def error_from_frame(frame: dict[str, Any]) -> LiaotianError:
    """The :mod:`liaotian.errors` exception for an ``error`` frame (or a reply's ``error``).

    The class is chosen by ``code``; an unknown code gives a LiaotianError with that code.
    """
    code = str(frame.get("code") or "internal_error")
    message = str(frame.get("message") or code)
    cls = _ERRORS_BY_CODE.get(code)
    error: LiaotianError
    if cls is None:
        error = LiaotianError(message, code=code)
    elif issubclass(cls, errors.UnsupportedCapability):
        error = cls(message, capability=str(frame.get("capability") or ""))
    else:
        error = cls(message)
    retryable = frame.get("retryable")
    if isinstance(retryable, bool):
        error.retryable = retryable
    retry_after = frame.get("retry_after")
    if isinstance(error, errors.ProviderRateLimited) and isinstance(retry_after, int | float):
        error.retry_after = float(retry_after)
    return error


# -- replies --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer (``reply.delta``)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's thinking (``reply.reasoning``); never part of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class SourcesPart:
    """The web search results of the reply (``reply.sources``), cited as ``[index]``."""

    sources: tuple[SourceInfo, ...]


ReplyPart = TextDelta | ReasoningDelta | SourcesPart
"""What :meth:`Reply.parts` yields. Event types this client does not know are skipped
(their seq still counts), so new kinds of parts never break it."""


@dataclass(frozen=True, slots=True)
class ReplyResult:
    """How a reply ended.

    ``text`` is the answer this :class:`Reply` received: the whole answer, or for a reply
    subscribed after a seq, the part after it (``reasoning`` likewise: None when none came,
    ``sources`` empty when none came). ``status`` is ``completed``, ``cancelled``,
    ``error`` or ``interrupted``; ``error`` is set for the last two. ``usage`` holds
    ``input_tokens``, ``output_tokens`` and, where the provider reports them,
    ``reasoning_tokens`` and ``cached_tokens``. ``thinking_ms``: how long the model
    thought before the answer began (None when it did not think).
    """

    conversation_id: str
    message_id: str
    text: str
    status: str
    model: str | None
    finish_reason: str | None
    usage: dict[str, int] | None
    error: LiaotianError | None
    ttft_ms: float | None
    duration_ms: float | None
    reasoning: str | None = None
    sources: tuple[SourceInfo, ...] = ()
    thinking_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def reasoning_tokens(self) -> int | None:
        """Of the output tokens, those spent thinking (None when not reported)."""
        return (self.usage or {}).get("reasoning_tokens")

    @property
    def cached_tokens(self) -> int | None:
        """Of the input tokens, those served from the provider's cache (None when not
        reported)."""
        return (self.usage or {}).get("cached_tokens")


def _sources_of(value: Any) -> tuple[SourceInfo, ...]:
    """The well-formed sources of a ``sources`` field (anything else is skipped)."""
    if not isinstance(value, list):
        return ()
    found: list[SourceInfo] = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            found.append(
                SourceInfo(
                    index=int(item.get("index") or len(found) + 1),
                    url=item["url"],
                    title=str(item.get("title") or ""),
                    site=str(item.get("site") or ""),
                    icon=str(item.get("icon") or ""),
                )
            )
    return tuple(found)


def _strings(value: Any) -> list[str]:
    """The strings of a list field (anything else: empty)."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


class Reply:
    """One streaming reply, fed by the client's reader task.

    ``async for text in reply`` yields its answer text from the first delta this object
    received, and stops after ``reply.done`` (each ``async for`` starts from the beginning
    again); :meth:`parts` yields every part (thinking, sources, text) the same way.
    :attr:`last_seq` is the seq of the last event received, whatever its kind: pass it to
    :meth:`Client.subscribe` on a new connection to get exactly the rest.

    If the connection drops first, iterating and :meth:`result` raise ClientConnectionError.
    """

    def __init__(self, client: Client, conversation_id: str, message_id: str, after_seq: int):
        self._client = client
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.last_seq = after_seq
        self.model: str | None = None
        self.title: str | None = None
        self.user_message_id: str | None = None
        self.client_message_id: str | None = None
        self.user_attachments: list[AttachmentInfo] = []
        """The images of the user's message (from ``reply.started``)."""
        self.thinking: bool | None = None
        """Whether the model was asked to think (None: a model that cannot)."""
        self.search: bool = False
        """Whether the model was asked to search the web."""
        self.replaces: list[str] = []
        """Message ids this reply's regenerate / edit took off the active path."""
        self.user_parent_id: str | None = None
        """The message the user message follows (None for a first message)."""
        self.user_siblings: list[str] = []
        self.reply_siblings: list[str] = []
        """The alternatives to the user message and to this reply (ids, oldest first, each
        included)."""
        self.replaced = False
        """True if the server sent the reply again from its start after this object had
        received some of it (a subscription after a seq whose log was rebuilt): its parts
        were replaced, and iterators skip what they had already yielded (see
        docs/protocol.md, "Following and resuming a reply")."""
        self._parts: list[ReplyPart] = []
        self._generation = 0  # bumped when the parts are replaced
        self._done: dict[str, Any] | None = None
        self._exception: BaseException | None = None
        self._changed: asyncio.Future[None] | None = None
        # Set while a chat.subscribe for this object awaits its confirmation.
        self._confirmation: asyncio.Future[Any] | None = None
        self._wait_for_request_id: RequestId | None = None

    def __repr__(self) -> str:
        state = "done" if self.done else "streaming"
        return f"<Reply {self.message_id} {state} last_seq={self.last_seq}>"

    @property
    def text(self) -> str:
        """The answer text received so far."""
        return "".join(part.text for part in self._parts if isinstance(part, TextDelta))

    @property
    def reasoning(self) -> str | None:
        """The thinking received so far (None when none came)."""
        pieces = [part.text for part in self._parts if isinstance(part, ReasoningDelta)]
        return "".join(pieces) if pieces else None

    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        """The web sources received so far."""
        return tuple(
            source
            for part in self._parts
            if isinstance(part, SourcesPart)
            for source in part.sources
        )

    @property
    def done(self) -> bool:
        """True once ``reply.done`` arrived or the connection failed."""
        return self._done is not None or self._exception is not None

    @property
    def status(self) -> str:
        """``streaming`` until the reply ends, then its final status."""
        if self._done is None:
            return "streaming"
        return str(self._done.get("status"))

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        async for part in self.parts():
            if isinstance(part, TextDelta):
                yield part.text

    async def parts(self) -> AsyncIterator[ReplyPart]:
        """Every part in the order the server sent it: :class:`ReasoningDelta`,
        :class:`SourcesPart`, :class:`TextDelta`; stops after ``reply.done``.

        Merged deltas (docs/protocol.md) come as one part. If the server sends the reply
        again from its start (:attr:`replaced`), what this iterator already yielded is not
        yielded again: the text and thinking go on from where they were.
        """
        cursor = 0
        generation = self._generation
        yielded = {TextDelta: 0, ReasoningDelta: 0}  # characters, per kind
        skip = dict.fromkeys(yielded, 0)
        sources_yielded = skip_sources = 0
        while True:
            if generation != self._generation:
                # Replaced from the start: skip again what was already yielded.
                generation, cursor = self._generation, 0
                skip, skip_sources = dict(yielded), sources_yielded
            while cursor < len(self._parts) and generation == self._generation:
                part = self._parts[cursor]
                cursor += 1
                if isinstance(part, SourcesPart):
                    if skip_sources:
                        skip_sources -= 1
                        continue
                    sources_yielded += 1
                    yield part
                    continue
                kind = type(part)
                dropped = min(skip[kind], len(part.text))
                if dropped:
                    skip[kind] -= dropped
                    part = kind(part.text[dropped:])
                if part.text:
                    yielded[kind] += len(part.text)
                    yield part
            if generation != self._generation:
                continue
            if self._exception is not None:
                raise self._exception
            if self._done is not None:
                return
            await self._wait()

    async def result(self) -> ReplyResult:
        """Wait for ``reply.done``; raises ClientConnectionError if the connection drops."""
        while not self.done:
            await self._wait()
        if self._exception is not None:
            raise self._exception
        done = self._done
        assert done is not None
        error = done.get("error")
        return ReplyResult(
            conversation_id=self.conversation_id,
            message_id=self.message_id,
            text=self.text,
            status=str(done.get("status")),
            model=self.model,
            finish_reason=done.get("finish_reason"),
            usage=done.get("usage"),
            error=error_from_frame(error) if isinstance(error, dict) else None,
            ttft_ms=done.get("ttft_ms"),
            duration_ms=done.get("duration_ms"),
            reasoning=self.reasoning,
            sources=self.sources,
            thinking_ms=done.get("thinking_ms"),
        )

    async def cancel(self) -> bool:
        """Ask the server to cancel this reply (it ends with status ``cancelled``).

        Returns False if the reply had already finished. The ``reply.done`` that confirms
        the cancel arrives like any other event: await :meth:`result` for it.
        """
        if self.done:
            return False
        try:
            await self._client.cancel(message_id=self.message_id)
        except errors.NotFound:
            return False
        return True

    # -- fed by the client's reader --------------------------------------------------------

    def _feed(self, frame: dict[str, Any]) -> bool:
        """Take one reply frame; False if it is a duplicate (seq already seen) or ignored."""
        if self.done:
            return False
        seq = frame.get("seq")
        if self._wait_for_request_id is not None:
            # A subscription ignores frames of an earlier forwarder of the same reply
            # until the server's answer (it carries the request id) arrives.
            if frame.get("id") != self._wait_for_request_id:
                return False
            self._wait_for_request_id = None
            if seq == 0 and self.last_seq >= 0:
                # The server sent the reply from its start (a log rebuilt from the
                # database has other seqs): replace what the caller had, not append.
                self.last_seq = -1
                self.replaced = True
                self._parts = []
                self._generation += 1
        if not isinstance(seq, int) or seq <= self.last_seq:
            return False
        # Every event advances the seq, whatever its kind (known or not): resuming after
        # it is then exact for all parts.
        self.last_seq = seq
        frame_type = frame.get("type")
        text = frame.get("text")
        if frame_type == "reply.started":
            self.model = frame.get("model")
            self.title = frame.get("title")
            self.user_message_id = frame.get("user_message_id")
            self.client_message_id = frame.get("client_message_id")
            attachments = frame.get("user_attachments")
            self.user_attachments = list(attachments) if isinstance(attachments, list) else []
            thinking = frame.get("thinking")
            self.thinking = thinking if isinstance(thinking, bool) else None
            self.search = frame.get("search") is True
            self.replaces = _strings(frame.get("replaces"))
            parent = frame.get("user_parent_id")
            self.user_parent_id = parent if isinstance(parent, str) else None
            self.user_siblings = _strings(frame.get("user_siblings"))
            self.reply_siblings = _strings(frame.get("reply_siblings"))
        elif frame_type == "reply.delta":
            if isinstance(text, str) and text:
                self._parts.append(TextDelta(text))
        elif frame_type == "reply.reasoning":
            if isinstance(text, str) and text:
                self._parts.append(ReasoningDelta(text))
        elif frame_type == "reply.sources":
            sources = _sources_of(frame.get("sources"))
            if sources:
                self._parts.append(SourcesPart(sources))
        elif frame_type == "reply.done":
            self._done = frame
        self._confirm()
        self._wake()
        return True

    def _caught_up(self, ack: dict[str, Any]) -> None:
        """The server's ack: the reply ended at or before ``last_seq``; no event follows."""
        last_seq = ack.get("last_seq")
        self._wait_for_request_id = None
        self._done = {"type": "reply.done", "status": "caught_up", "seq": last_seq}
        self._confirm()
        self._wake()

    def _fail(self, exception: BaseException) -> None:
        if self.done:
            return
        self._exception = exception
        confirmation, self._confirmation = self._confirmation, None
        if confirmation is not None and not confirmation.done():
            confirmation.set_exception(exception)
        self._wake()

    def _confirm(self) -> None:
        confirmation, self._confirmation = self._confirmation, None
        if confirmation is not None and not confirmation.done():
            confirmation.set_result(self)

    def _wake(self) -> None:
        waiter, self._changed = self._changed, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        # Shielded: one cancelled waiter must not cancel the others sharing the future.
        await asyncio.shield(self._changed)


# -- the client -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    kind: Literal["request", "send", "subscribe"]
    reply: Reply | None = None
    frame: dict[str, Any] | None = None
    """What was sent; a send is sent again after a reconnect (its client_message_id makes
    that safe)."""


RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def ws_url(server: str) -> str:
    """``ws://host:port/ws`` for a server base URL (``ws``, ``wss``, ``http`` or ``https``)."""
    parts = urlsplit(server.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a server URL: {server!r} (expected ws://HOST:PORT)")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Client:
    """A protocol-v1 connection to a liaotian server, used as an async context manager.

    ``server`` is the base URL (``ws://127.0.0.1:8011``, ``http://...`` or the ``/ws`` URL
    itself). ``client_id`` identifies the owner: every connection with the same id sees
    the same conversations. ``request_timeout`` bounds the wait for each answer
    (None: no bound); a reply's own stream has no timeout.

    ``token`` (from ``liaotian token create``) signs in on a server that requires accounts;
    the owner is then its user, and ``client_id`` is ignored by the server.

    If the connection drops, the client reconnects by itself (backing off, for up to
    ``reconnect_for`` seconds; 0 disables it) and resumes every unfinished reply from the
    last seq it received: iterating a Reply just goes on, with no gap and no duplicate.
    Sends in flight are sent again with their ``client_message_id`` (one is generated for
    every send), so the server starts each reply once. Other requests in flight fail with
    ClientConnectionError. If reconnecting fails, everything fails with it.
    """

    def __init__(
        self,
        server: str,
        *,
        client_id: str,
        request_timeout: float | None = 30.0,
        open_timeout: float = 10.0,
        follow_other_replies: bool = False,
        reconnect_for: float = 60.0,
        token: str | None = None,
    ) -> None:
        if not CLIENT_ID.match(client_id):
            raise ValueError("client_id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        self.server = server
        self.url = ws_url(server)
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.open_timeout = open_timeout
        self.hello: dict[str, Any] = {}
        self.last_error: LiaotianError | None = None
        """The last ``error`` frame that answered no request (normally None)."""
        self._follow_others = follow_other_replies
        self._others: asyncio.Queue[Reply | None] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[RequestId, _Pending] = {}
        self._replies: dict[str, Reply] = {}
        self._lost: ClientConnectionError | None = None
        self.reconnect_for = reconnect_for
        self._headers = {"Authorization": f"Bearer {token}"} if token else None
        self._token_given = bool(token)
        self.reconnects = 0
        """How many times the connection was re-established."""
        self._closing = False
        self._connected = asyncio.Event()
        self._reconnecting: asyncio.Task[None] | None = None

    # -- connecting ------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and read ``hello``; raises ClientConnectionError."""
        if self._ws is not None:
            raise RuntimeError("the client is already connected")
        await self._open()
        assert self._ws is not None
        self._connected.set()
        self._reader = asyncio.create_task(self._read(self._ws), name="liaotian-client-reader")

    async def _open(self) -> None:
        address = f"{self.url}?{urlencode({'client_id': self.client_id})}"
        try:
            async with asyncio.timeout(self.open_timeout):
                self._ws = await connect(
                    address,
                    additional_headers=self._headers,
                    open_timeout=None,
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                )
                hello = orjson.loads(await self._ws.recv(decode=False))
        except TimeoutError:
            await self._abort()
            raise self._unreachable(f"no answer within {self.open_timeout:g} s") from None
        except InvalidStatus as exc:
            await self._abort()
            if exc.response.status_code == 403:
                raise await self._refused() from None
            raise self._unreachable(_describe_connect_error(exc)) from None
        except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
            await self._abort()
            raise self._unreachable(_describe_connect_error(exc)) from None
        except orjson.JSONDecodeError:
            await self._abort()
            raise self._unreachable("the server's first frame is not JSON") from None
        if isinstance(hello, dict) and hello.get("type") == "error":
            await self._abort()  # refused after accept (too many connections)
            raise self._unreachable(f"the server refused the connection: {hello.get('message')}")
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await self._abort()
            raise self._unreachable("the server did not say hello (is it a liaotian server?)")
        if hello.get("protocol") != PROTOCOL_VERSION:
            await self._abort()
            raise self._unreachable(
                f"the server speaks protocol {hello.get('protocol')}, "
                f"this client {PROTOCOL_VERSION}"
            )
        self.hello = hello

    async def close(self) -> None:
        """Close the connection. Unfinished calls and replies raise ClientConnectionError.

        Replies go on on the server (a disconnect is not a cancel).
        """
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        self._connection_lost(
            ClientConnectionError("the client closed the connection", url=self.server)
        )
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _abort(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None

    async def _refused(self) -> ClientConnectionError:
        """Why the server refused the handshake with HTTP 403.

        The server closes such a handshake before accepting it, so the reason it gives
        (authentication required, origin or host not allowed) never reaches the client:
        ``GET /auth/me`` with the same credential and ``Host`` tells them apart.
        """
        me = await _probe_me(self.url, self._headers, self.open_timeout)
        if me is not None and me.get("required") is True and me.get("user") is None:
            if self._token_given:
                message = (
                    f"liaotian at {self.server} does not accept the token: it is invalid or revoked"
                )
            else:
                message = f"liaotian at {self.server} requires signing in, and no token was given"
            return SignInRequired(message, url=self.server, token_given=self._token_given)
        if me is not None and me.get("error", {}).get("code") == "host_not_allowed":
            return self._unreachable(
                "the server does not answer to this host name (its operator can add it to "
                "allowed_hosts)"
            )
        return self._unreachable(
            "the server refused the connection (HTTP 403: its origin or host check, or a "
            "proxy in front of it)"
        )

    def _unreachable(self, reason: str) -> ClientConnectionError:
        return ClientConnectionError(
            f"cannot reach liaotian at {self.server}: {reason}", url=self.server
        )

    @property
    def closed(self) -> bool:
        return self._lost is not None

    # -- requests --------------------------------------------------------------------------

    async def send(
        self,
        message: str,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        stream: bool = True,
        system_prompt: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        client_message_id: str | None = None,
        thinking: bool | None = None,
        thinking_budget: int | None = None,
        search: bool | None = None,
        attachments: Sequence[str] | None = None,
        images: Sequence[ImageSource] | None = None,
    ) -> Reply:
        """Send a message; returns its :class:`Reply` once the server has started it.

        Without ``conversation_id`` a new conversation is created (``reply.conversation_id``).
        Raises ModelNotFound, ProviderNotConfigured, NotFound, ConversationBusy,
        UnsupportedCapability (``.capability``: ``vision``, ``thinking``, ``search``), ...
        A ``client_message_id`` makes the send safe to repeat: the same reply comes back.

        ``thinking`` asks the model to think (True) or not (False; None: its default), with
        at most ``thinking_budget`` tokens; ``search`` lets it search the web.
        ``attachments`` are ids of uploaded images; ``images`` (file paths or bytes) are
        uploaded first with :meth:`upload_image` and sent after them (its errors raise here,
        before anything is sent). With images, ``message`` may be empty.
        """
        frame: dict[str, Any] = {"type": "chat.send", "message": message, "stream": stream}
        optional = {
            "conversation_id": conversation_id,
            "model": model,
            "system_prompt": system_prompt,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "client_message_id": client_message_id,
            **await self._reply_options(thinking, thinking_budget, search, attachments, images),
        }
        frame.update({key: value for key, value in optional.items() if value is not None})
        frame.setdefault("client_message_id", uuid.uuid4().hex)
        reply: Reply = await self._call(frame, _Pending(self._future(), "send", frame=frame))
        return reply

    async def regenerate(
        self,
        conversation_id: str,
        *,
        message_id: str | None = None,
        model: str | None = None,
        stream: bool = True,
        temperature: float | None = None,
        max_tokens: int | None = None,
        thinking: bool | None = None,
        thinking_budget: int | None = None,
        search: bool | None = None,
    ) -> Reply:
        """Give an answer again: a new answer beside ``message_id`` (default: the active
        path's last answer), which stays; the new answer's branch becomes the active path
        (see :meth:`switch_branch` to go back). Raises NotFound for an unknown answer.

        ``thinking``, ``thinking_budget`` and ``search`` as for :meth:`send`.
        """
        frame: dict[str, Any] = {
            "type": "chat.regenerate",
            "conversation_id": conversation_id,
            "stream": stream,
        }
        optional = {
            "message_id": message_id,
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
            **await self._reply_options(thinking, thinking_budget, search, None, None),
        }
        frame.update({key: value for key, value in optional.items() if value is not None})
        reply: Reply = await self._call(frame, _Pending(self._future(), "send"))
        return reply

    async def edit(
        self,
        conversation_id: str,
        message_id: str,
        message: str,
        *,
        model: str | None = None,
        stream: bool = True,
        thinking: bool | None = None,
        thinking_budget: int | None = None,
        search: bool | None = None,
        attachments: Sequence[str] | None = None,
        images: Sequence[ImageSource] | None = None,
    ) -> Reply:
        """Edit user message ``message_id``: ``message`` goes beside it as a new branch,
        answered; the old branch stays (see :meth:`switch_branch`).

        The options are those of :meth:`send`; the edited message keeps no image it does not
        list again (in ``attachments`` or ``images``).
        """
        frame: dict[str, Any] = {
            "type": "chat.edit",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "message": message,
            "stream": stream,
        }
        optional = {
            "model": model,
            **await self._reply_options(thinking, thinking_budget, search, attachments, images),
        }
        frame.update({key: value for key, value in optional.items() if value is not None})
        reply: Reply = await self._call(frame, _Pending(self._future(), "send"))
        return reply

    async def _reply_options(
        self,
        thinking: bool | None,
        thinking_budget: int | None,
        search: bool | None,
        attachments: Sequence[str] | None,
        images: Sequence[ImageSource] | None,
    ) -> dict[str, Any]:
        """The frame fields of a reply's options (None: left out); uploads ``images``."""
        ids = list(attachments or ())
        for image in images or ():
            uploaded = await self.upload_image(image)
            ids.append(str(uploaded["id"]))
        return {
            "thinking": thinking,
            "thinking_budget": thinking_budget,
            "search": search,
            "attachments": ids if attachments is not None or images else None,
        }

    async def subscribe(self, message_id: str, after_seq: int = -1) -> Reply:
        """Follow a reply (of this owner, from any connection) from after ``after_seq``.

        Returns a new :class:`Reply` receiving exactly the events after ``after_seq``, once
        the server has sent the first of them. Raises NotFound for an unknown reply. This
        object replaces any earlier Reply of this client for the same message; that one
        fails with a LiaotianError (code ``superseded``). If the reply had already ended at
        or before ``after_seq``, the Reply returned is done at once, with status
        ``caught_up`` and no text.
        """
        reply = Reply(self, "", message_id, after_seq)
        pending = _Pending(self._future(), "subscribe", reply)
        reply._confirmation = pending.future
        subscription: Reply = await self._call(
            {"type": "chat.subscribe", "message_id": message_id, "after_seq": after_seq},
            pending,
        )
        return subscription

    async def cancel(
        self, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        """Cancel a streaming reply by message or conversation; returns the ids cancelled.

        Raises NotFound when nothing of this owner is streaming there. Each cancelled reply
        then ends with a ``reply.done`` of status ``cancelled``.
        """
        if message_id is None and conversation_id is None:
            raise ValueError("cancel needs message_id or conversation_id")
        frame: dict[str, Any] = {"type": "chat.cancel"}
        if message_id is not None:
            frame["message_id"] = message_id
        if conversation_id is not None:
            frame["conversation_id"] = conversation_id
        answer = await self._request(frame, "ack")
        return [str(item) for item in answer.get("message_ids", [])]

    async def conversations(
        self,
        limit: int = 50,
        before: str | None = None,
        query: str | None = None,
        *,
        archived: bool = False,
    ) -> ConversationPage:
        """The owner's conversations, pinned first, then most recently updated first
        (titles containing ``query`` only, when given); the archived ones instead with
        ``archived=True``. ``before``: the last id of the previous page."""
        frame: dict[str, Any] = {"type": "conversations.list", "limit": limit}
        if before is not None:
            frame["before"] = before
        if query is not None:
            frame["query"] = query
        if archived:
            frame["archived"] = True
        return cast(ConversationPage, await self._request(frame, "conversations"))

    async def history(
        self, conversation_id: str, limit: int = 100, before: str | None = None
    ) -> HistoryPage:
        """A conversation and its messages, oldest first. Raises NotFound."""
        frame: dict[str, Any] = {
            "type": "conversation.history",
            "conversation_id": conversation_id,
            "limit": limit,
        }
        if before is not None:
            frame["before"] = before
        return cast(HistoryPage, await self._request(frame, "conversation.history"))

    async def rename(self, conversation_id: str, title: str) -> ConversationInfo:
        """Rename a conversation; returns it as updated. Raises NotFound."""
        answer = await self._request(
            {"type": "conversation.rename", "conversation_id": conversation_id, "title": title},
            "conversation.updated",
        )
        return cast(ConversationInfo, answer["conversation"])

    async def switch_branch(self, conversation_id: str, message_id: str) -> ConversationInfo:
        """Make the branch through ``message_id`` (any message of the conversation) the
        active path, down to its newest leaf; returns the conversation with its new
        ``active_message_id``. Raises NotFound, and ConversationBusy while a reply streams
        in the conversation. The owner's other connections are told."""
        answer = await self._request(
            {
                "type": "conversation.switch",
                "conversation_id": conversation_id,
                "message_id": message_id,
            },
            "conversation.updated",
        )
        return cast(ConversationInfo, answer["conversation"])

    async def update_conversation(
        self, conversation_id: str, *, pinned: bool | None = None, archived: bool | None = None
    ) -> ConversationInfo:
        """Pin or unpin, archive or restore a conversation (at least one of them); returns
        it as updated. Raises NotFound, or InvalidFrame when neither is given."""
        frame: dict[str, Any] = {"type": "conversation.update", "conversation_id": conversation_id}
        if pinned is not None:
            frame["pinned"] = pinned
        if archived is not None:
            frame["archived"] = archived
        answer = await self._request(frame, "conversation.updated")
        return cast(ConversationInfo, answer["conversation"])

    async def pin(self, conversation_id: str, pinned: bool = True) -> ConversationInfo:
        """Pin a conversation to the top of the list (``pinned=False``: unpin it)."""
        return await self.update_conversation(conversation_id, pinned=pinned)

    async def archive(self, conversation_id: str, archived: bool = True) -> ConversationInfo:
        """Archive a conversation: left out of the list, still opened and searched
        (``archived=False``: restore it)."""
        return await self.update_conversation(conversation_id, archived=archived)

    async def bulk(self, action: BulkAction, conversation_ids: Sequence[str]) -> BulkResult:
        """Apply ``action`` to many conversations (1 to 200) in one transaction. The ids
        that are not the owner's are listed in ``not_found``, not raised."""
        frame = {
            "type": "conversations.bulk",
            "action": action,
            "conversation_ids": list(conversation_ids),
        }
        return cast(BulkResult, await self._request(frame, "conversations.bulk"))

    async def delete(self, conversation_id: str) -> None:
        """Delete a conversation (cancelling its streaming reply). Raises NotFound."""
        await self._request(
            {"type": "conversation.delete", "conversation_id": conversation_id},
            "conversation.deleted",
        )

    async def export(self, conversation_id: str, *, tree: bool = False) -> dict[str, Any]:
        """The conversation in liaotian's export format (docs/protocol.md): its active path,
        or with ``tree`` every branch. Raises NotFound."""
        answer = await self._request(
            {"type": "conversation.export", "conversation_id": conversation_id, "tree": tree},
            "conversation.export",
        )
        return cast(dict[str, Any], answer["export"])

    async def share(
        self,
        conversation_id: str,
        message_id: str | None = None,
        expires_in: int | None = None,
    ) -> ShareInfo:
        """Share the conversation's active path up to ``message_id`` (default: its last
        message) as a read-only snapshot, for ``expires_in`` seconds (60 to a year; None:
        until revoked). Raises NotFound, or ShareLinksDisabled when the server has them off.
        :meth:`share_url` gives the link to send."""
        frame: dict[str, Any] = {"type": "share.create", "conversation_id": conversation_id}
        if message_id is not None:
            frame["message_id"] = message_id
        if expires_in is not None:
            frame["expires_in"] = expires_in
        answer = await self._request(frame, "share")
        return cast(ShareInfo, answer["share"])

    async def shares(self, conversation_id: str | None = None) -> list[ShareInfo]:
        """The owner's shares not revoked, newest first (only the conversation's, if given)."""
        frame: dict[str, Any] = {"type": "shares.list"}
        if conversation_id is not None:
            frame["conversation_id"] = conversation_id
        answer = await self._request(frame, "shares")
        return cast(list[ShareInfo], answer["shares"])

    async def revoke_share(self, share_id: str) -> ShareInfo:
        """Revoke one of the owner's shares: its link answers 404 from then on. Raises
        NotFound."""
        answer = await self._request({"type": "share.revoke", "share_id": share_id}, "share")
        return cast(ShareInfo, answer["share"])

    async def copy_share(self, share_id: str) -> ConversationInfo:
        """Continue a share (anyone's) as a new conversation of this owner's; returns it.
        Raises NotFound for an unknown, revoked or expired share."""
        answer = await self._request(
            {"type": "share.copy", "share_id": share_id}, "conversation.updated"
        )
        return cast(ConversationInfo, answer["conversation"])

    def share_url(self, share: ShareInfo) -> str:
        """The full link of ``share`` on this client's server (``http(s)://host/s/ID``)."""
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        base = parts.path[: -len("/ws")] if parts.path.endswith("/ws") else parts.path
        return urlunsplit((scheme, parts.netloc, base + share["url"], "", ""))

    async def search(self, query: str, limit: int = 20) -> list[SearchResult]:
        """The owner's conversations whose title or messages (every branch, archived ones
        too) contain every word of ``query``, best first, at most ``limit`` (1-50).

        Words match by prefix in any case; Chinese, Japanese and Korean match as written
        (two characters find a two-character word). Raises InvalidFrame for an empty or
        over-long query."""
        answer = await self._request(
            {"type": "search", "query": query, "limit": limit}, "search.results"
        )
        return cast(list[SearchResult], answer["results"])

    async def models(self) -> ModelList:
        """The models the server knows, with availability, and its default model."""
        return cast(ModelList, await self._request({"type": "models.list"}, "models"))

    async def ping(self) -> float:
        """Round trip to the server; returns the time it took, in seconds."""
        started = time.perf_counter()
        await self._request({"type": "ping"}, "pong")
        return time.perf_counter() - started

    async def other_replies(self) -> AsyncIterator[Reply]:
        """Replies that the owner's other connections start, as they start.

        Needs ``follow_other_replies=True``; ends when the connection closes.
        """
        if not self._follow_others:
            raise RuntimeError("create the Client with follow_other_replies=True")
        while (reply := await self._others.get()) is not None:
            yield reply

    # -- plumbing ----------------------------------------------------------------------------

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _request(self, frame: dict[str, Any], answer_type: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call(frame, _Pending(self._future(), "request"))
        if answer.get("type") != answer_type:
            raise LiaotianError(
                f"expected a {answer_type!r} frame, the server sent {answer.get('type')!r}",
                code="unexpected_frame",
            )
        return {key: value for key, value in answer.items() if key not in ("type", "id")}

    async def _call(self, frame: dict[str, Any], pending: _Pending) -> Any:
        if self._lost is not None:
            raise self._lost
        if self._ws is None and self._reconnecting is None:
            raise RuntimeError("the client is not connected: use 'async with Client(...)'")
        if not self._connected.is_set():
            async with asyncio.timeout(self.reconnect_for + self.open_timeout):
                await self._connected.wait()
            if self._lost is not None:
                raise self._lost
        assert self._ws is not None
        request_id = next(self._ids)
        frame["id"] = request_id
        self._pending[request_id] = pending
        if pending.reply is not None:
            # The server's first frame of the subscription carries our id; frames of the
            # same reply before it come from an earlier forwarder and could overlap.
            pending.reply._wait_for_request_id = request_id
            self._route(pending.reply)
        try:
            try:
                await self._ws.send(orjson.dumps(frame), text=True)
            except ConnectionClosed as exc:
                if pending.kind == "request" or not self._may_reconnect():
                    raise self._lost or self._closed_error(exc) from None
                # A send or subscribe is sent again once the connection is back.
            async with asyncio.timeout(self.request_timeout):
                return await pending.future
        finally:
            self._pending.pop(request_id, None)
            reply = pending.reply
            if reply is not None and not pending.future.done():
                self._unroute(reply)  # timed out or cancelled: stop feeding it

    def _route(self, reply: Reply) -> None:
        previous = self._replies.get(reply.message_id)
        self._replies[reply.message_id] = reply
        if previous is not None and previous is not reply:
            previous._fail(
                LiaotianError(
                    f"a newer send or subscribe took over reply {reply.message_id}",
                    code="superseded",
                )
            )

    def _unroute(self, reply: Reply) -> None:
        if self._replies.get(reply.message_id) is reply:
            del self._replies[reply.message_id]

    async def _read(self, ws: ClientConnection) -> None:
        reason: ClientConnectionError
        try:
            while True:
                data = await ws.recv(decode=False)
                try:
                    frame = orjson.loads(data)
                except orjson.JSONDecodeError:
                    log.warning("ignoring a frame that is not JSON: %.80r", data)
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame)
        except ConnectionClosed as exc:
            reason = self._closed_error(exc)
        except asyncio.CancelledError:
            reason = ClientConnectionError("the client closed the connection", url=self.server)
            raise
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("the client's reader failed")
            reason = ClientConnectionError(f"the client's reader failed: {exc!r}", url=self.server)
        finally:
            if self._may_reconnect() and self._lost is None:
                self._start_reconnecting(reason)
            else:
                self._connection_lost(reason)

    # -- reconnecting ------------------------------------------------------------------------

    def _may_reconnect(self) -> bool:
        return self.reconnect_for > 0 and not self._closing

    def _start_reconnecting(self, reason: ClientConnectionError) -> None:
        self._connected.clear()
        self._ws = None
        for request_id, pending in list(self._pending.items()):
            if pending.kind == "request" and not pending.future.done():
                pending.future.set_exception(reason)
                del self._pending[request_id]
        self._reconnecting = asyncio.create_task(
            self._reconnect(reason), name="liaotian-client-reconnect"
        )

    async def _reconnect(self, reason: ClientConnectionError) -> None:
        """Reconnect with backoff, then resume every unfinished reply and resend sends."""
        deadline = time.monotonic() + self.reconnect_for
        attempt = 0
        while True:
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._open()
                break
            except ClientConnectionError as error:
                if isinstance(error, SignInRequired) or time.monotonic() + delay > deadline:
                    self._reconnecting = None
                    self._connection_lost(error)
                    return
        ws = self._ws
        assert ws is not None
        self.reconnects += 1
        log.info("reconnected to %s (attempt %d) after: %s", self.server, attempt, reason)
        self._reader = asyncio.create_task(self._read(ws), name="liaotian-client-reader")
        self._reconnecting = None
        try:
            await self._resume(ws)
        except ConnectionClosed:
            return  # the reader saw it too and reconnects again
        self._connected.set()

    def _resumed(self, request_id: RequestId, reply: Reply, future: asyncio.Future[Any]) -> None:
        """A resuming subscription was answered: forget it; fail the reply if refused."""
        self._pending.pop(request_id, None)
        if not future.cancelled() and future.exception() is not None:
            reply._fail(future.exception() or LiaotianError("resume failed"))

    async def _resume(self, ws: ClientConnection) -> None:
        for request_id, pending in list(self._pending.items()):
            if pending.kind == "send" and pending.frame is not None and not pending.future.done():
                await ws.send(orjson.dumps({**pending.frame, "id": request_id}), text=True)
        for reply in list(self._replies.values()):
            if reply.done:
                continue
            request_id = next(self._ids)
            reply._wait_for_request_id = request_id
            pending = _Pending(self._future(), "subscribe", reply)
            self._pending[request_id] = pending
            pending.future.add_done_callback(partial(self._resumed, request_id, reply))
            frame = {
                "type": "chat.subscribe",
                "id": request_id,
                "message_id": reply.message_id,
                "after_seq": reply.last_seq,
            }
            await ws.send(orjson.dumps(frame), text=True)

    def _closed_error(self, exc: ConnectionClosed) -> ClientConnectionError:
        if exc.rcvd is not None:
            detail = f"the server closed the connection (code {exc.rcvd.code}"
            detail += f": {exc.rcvd.reason})" if exc.rcvd.reason else ")"
        elif exc.sent is not None:
            detail = "the connection was closed"
        else:
            detail = "the connection was lost"
        return ClientConnectionError(f"liaotian at {self.server}: {detail}", url=self.server)

    def _connection_lost(self, reason: ClientConnectionError) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(reason)
        for reply in list(self._replies.values()):
            reply._fail(reason)
        self._replies.clear()
        self._others.put_nowait(None)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        frame_type = frame.get("type")
        request_id = frame.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if isinstance(frame_type, str) and frame_type.startswith("reply."):
            self._dispatch_reply_event(frame, pending)
        elif frame_type == "error":
            error = error_from_frame(frame)
            if pending is None:
                self.last_error = error
                log.warning("liaotian server error [%s]: %s", error.code, error.message)
            elif not pending.future.done():
                if pending.reply is not None:
                    self._unroute(pending.reply)
                pending.future.set_exception(error)
        elif (
            frame_type == "ack"
            and pending is not None
            and pending.kind == "subscribe"
            and pending.reply is not None
        ):
            # The reply had already ended at or before after_seq: nothing more will come.
            pending.reply._caught_up(frame)
        elif pending is not None and not pending.future.done():
            pending.future.set_result(frame)

    def _dispatch_reply_event(self, frame: dict[str, Any], pending: _Pending | None) -> None:
        message_id = frame.get("message_id")
        if not isinstance(message_id, str):
            return
        if pending is not None and pending.kind == "send" and not pending.future.done():
            started = Reply(self, str(frame.get("conversation_id")), message_id, -1)
            self._route(started)
            pending.future.set_result(started)
        reply = self._replies.get(message_id)
        if reply is None:
            if frame.get("type") != "reply.started" or not self._follow_others:
                return
            reply = Reply(self, str(frame.get("conversation_id")), message_id, -1)
            self._route(reply)
            self._others.put_nowait(reply)
        if not reply.conversation_id:
            reply.conversation_id = str(frame.get("conversation_id"))
        reply._feed(frame)
        if reply.done:
            self._unroute(reply)

    async def upload_image(
        self, image: str | os.PathLike[str] | bytes, *, name: str | None = None
    ) -> dict[str, Any]:
        """Upload an image (a file's path, or its bytes) for this client's owner.

        Returns ``{id, media_type, name, width, height, bytes}`` (docs/api.md); the ``id``
        goes in a message's ``attachments``. Needs no open connection: it is one HTTP
        request beside the WebSocket URL, with the same token and client id. Raises what
        the server answers (UnsupportedMediaType, InvalidImage, AttachmentTooLarge,
        RateLimited, ...), SignInRequired, or ClientConnectionError.
        """
        # Imported here, as in _probe_me: only clients that upload need them.
        import mimetypes
        from pathlib import Path

        import aiohttp

        if isinstance(image, bytes):
            data, name = image, name or "image"
        else:
            path = Path(image)
            data = await asyncio.to_thread(path.read_bytes)
            name = name or path.name
        guessed = mimetypes.guess_type(name)[0] or ""
        content_type = guessed if guessed.startswith("image/") else "application/octet-stream"
        parts = urlsplit(self.url)
        query = urlencode({"client_id": self.client_id, "name": name})
        url = urlunsplit(
            (
                "https" if parts.scheme == "wss" else "http",
                parts.netloc,
                parts.path.removesuffix("/ws") + "/attachments",
                query,
                "",
            )
        )
        headers = {**(self._headers or {}), "Content-Type": content_type}
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.request_timeout)
                ) as session,
                session.post(url, data=data, headers=headers, allow_redirects=False) as response,
            ):
                status = response.status
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self._unreachable(f"the upload failed: {exc or type(exc).__name__}") from None
        if status == 201 and isinstance(body, dict):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if status == 401:
            raise SignInRequired(
                f"liaotian at {self.server} requires signing in to upload",
                url=self.server,
                token_given=self._token_given,
            )
        if isinstance(error, dict):
            raise error_from_frame(error)
        raise self._unreachable(f"the upload got HTTP {status}")

    async def import_file(self, source: str | os.PathLike[str] | bytes) -> ImportResult:
        """Import liaotian's export or a ChatGPT ``conversations.json`` (a file's path, or
        its bytes) into this client's owner's conversations; importing again adds nothing.

        Returns ``{imported, skipped, conversations: [{id, title}]}`` (docs/api.md). Needs
        no open connection: it is one HTTP request beside the WebSocket URL, with the same
        token and client id. Raises what the server answers (InvalidImport naming what is
        wrong, ImportTooLarge, RateLimited, ...), SignInRequired, or ClientConnectionError.
        """
        from pathlib import Path

        if isinstance(source, bytes):
            data = source
        else:
            data = await asyncio.to_thread(Path(source).read_bytes)
        status, body = await self._post(
            "/conversations/import", data, "application/json", what="the import"
        )
        if status == 200 and isinstance(body, dict):
            return cast(ImportResult, body)
        raise self._http_error(status, body, "import")

    async def _post(
        self,
        path: str,
        data: bytes,
        content_type: str,
        *,
        what: str,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST ``data`` to ``path`` beside the WebSocket URL: (status, JSON body)."""
        import aiohttp  # only clients that post need it

        parts = urlsplit(self.url)
        url = urlunsplit(
            (
                "https" if parts.scheme == "wss" else "http",
                parts.netloc,
                parts.path.removesuffix("/ws") + path,
                urlencode({"client_id": self.client_id, **(query or {})}),
                "",
            )
        )
        headers = {**(self._headers or {}), "Content-Type": content_type}
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.request_timeout)
                ) as session,
                session.post(url, data=data, headers=headers, allow_redirects=False) as response,
            ):
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self._unreachable(f"{what} failed: {exc or type(exc).__name__}") from None

    def _http_error(self, status: int, body: Any, action: str) -> Exception:
        """The exception for an HTTP route's refusal (``{"error": {code, message}}``)."""
        error = body.get("error") if isinstance(body, dict) else None
        if status == 401:
            return SignInRequired(
                f"liaotian at {self.server} requires signing in to {action}",
                url=self.server,
                token_given=self._token_given,
            )
        if isinstance(error, dict):
            return error_from_frame(error)
        return self._unreachable(f"the {action} got HTTP {status}")


async def _probe_me(
    url: str, headers: dict[str, str] | None, seconds: float
) -> dict[str, Any] | None:
    """The JSON of ``GET /auth/me`` beside the WebSocket ``url`` (with ``headers``), or None
    when it cannot be had (not a liaotian server, unreachable, not JSON)."""
    import aiohttp  # only on this rare path

    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    me = urlunsplit((scheme, parts.netloc, parts.path.removesuffix("/ws") + "/auth/me", "", ""))
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(me, headers=headers or {}, allow_redirects=False) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 404:
            return "HTTP 404: no WebSocket endpoint there (is it a liaotian server?)"
        return f"HTTP {status} instead of a WebSocket handshake"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ConnectionClosed):
        return "the server closed the connection during the handshake"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
