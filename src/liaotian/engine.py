"""The chat engine: starts replies, runs them to an outcome, cancels them.

A reply belongs to the server, not to the connection that asked for it: it runs in a task
owned by the engine, so a disconnect never stops it. Its events go to a :class:`ReplyLog`
that any connection of the same owner can follow. Its text is saved by the
:class:`Checkpointer` every ``checkpoint_interval`` seconds while it streams, and once more
with its outcome at the end.

Guarantees:

* one reply at a time per conversation (a second ``send`` gets ConversationBusy);
* a send repeated with the same ``client_message_id`` returns the first reply;
* :meth:`ChatEngine.cancel` stops the provider (its HTTP stream is closed, the local model
  stops between tokens) and the reply ends ``cancelled`` with the text so far;
* :meth:`ChatEngine.shutdown` ends running replies ``interrupted``, text saved, including
  those whose start was still being stored when it began: every reply ends with an outcome;
* the final write is retried; a reply whose outcome could not be saved says so in its
  ``done`` event (error ``not_saved``) instead of claiming an outcome the database lacks.

The engine shares replies, notices and cancels with other processes only through its
:class:`~liaotian.backplane.base.Backplane`; connections talk only to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from liaotian import logs
from liaotian.backplane import Backplane, ConversationChange, OwnerBus
from liaotian.errors import (
    ConversationBusy,
    LiaotianError,
    NotFound,
    ProviderError,
    ProviderTimeout,
    QuotaExceeded,
    RequestError,
    ShuttingDown,
    StoreConflict,
    StoreError,
    TooManyReplies,
    UnsupportedCapability,
)
from liaotian.metrics import Metrics
from liaotian.providers import (
    Capabilities,
    ChatMessage,
    ChatRequest,
    Finish,
    ImagePart,
    ModelInfo,
    Provider,
    ProviderRegistry,
    Reasoning,
    Sources,
)
from liaotian.quotas import Quotas
from liaotian.replies.log import (
    Delta,
    Done,
    ReasoningDelta,
    ReplyKey,
    ReplyLog,
    SourcesFound,
    Started,
)
from liaotian.replies.replay import finish_from_message
from liaotian.replies.status import ReplyStatus
from liaotian.settings import Settings
from liaotian.store import ConversationInfo, ReplyOutcome, Store
from liaotian.store.repository import BegunReply, ContextMessage, NewReply, Partial, new_id
from liaotian.store.usage import LedgerPolicy, UsageBook, UsageEntry
from liaotian.titles import TitleJob, Titler

log = logging.getLogger(__name__)

UNKEPT_PREFIX = "unkept-"
"""How the id of an ephemeral reply's conversation begins (:meth:`ChatEngine.unkept`)."""
FINAL_WRITE_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Seconds between attempts at a reply's final write (within ``final_write_timeout``)."""
NOT_SAVED_MESSAGE = (
    "this answer could not be saved (the database failed); it is shown here but may be "
    "missing or incomplete after a reload"
)


@dataclass(frozen=True, slots=True)
class SendOptions:
    """A user's message and how to answer it."""

    message: str
    conversation_id: str | None = None
    model: str | None = None
    stream: bool = True
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    client_message_id: str | None = None
    edit_message_id: str | None = None
    """Edit: the new user message goes beside this one (a new branch)."""
    regenerate: bool = False
    """Answer a user message again, beside its earlier answers (``message`` is ignored)."""
    regenerate_message_id: str | None = None
    """Regenerate: the answer to give again (None: the active path's last)."""
    create_missing_conversation: bool = False
    """Seed protocol: an unknown ``session_id`` names a new conversation instead of NotFound."""
    thinking: bool | None = None
    """Think before answering (None: the model's default)."""
    thinking_budget: int | None = None
    search: bool | None = None
    """Search the web (None: off)."""
    attachments: tuple[str, ...] = ()
    """Ids of the owner's uploaded images the message shows."""
    after_message_id: str | None = None
    """The message goes below this one (a new branch when it is not the active leaf)."""
    prior: tuple[tuple[str, str], ...] = ()
    """``(role, text)`` earlier turns the client gives whole, stored before the message
    (the OpenAI-compatible API); with them the model sees the whole given context."""
    ephemeral: bool = False
    """Not kept: the conversation (created archived) is deleted once the reply has ended,
    and the reply is not announced to the owner's connections nor copied for resuming
    (the OpenAI-compatible API's ``store: false``). No title is generated."""


@dataclass(eq=False, slots=True)
class _PendingStart:
    """A reply start being stored, and whether its caller is still there to announce it."""

    log: asyncio.Future[ReplyLog | None]
    caller_gone: bool = False
    announced: bool = False
    quiet: bool = False
    """An ephemeral reply: never announced."""


@dataclass(eq=False)
class RunningReply:
    """A reply being generated in this process."""

    log: ReplyLog
    started_at: float
    seq_saved: int = 1
    """The log's ``next_seq`` when the text was last saved (1: nothing to save yet)."""
    first_token_at: float | None = None
    """When the first part (reasoning or text) arrived."""
    thinking_started_at: float | None = None
    thinking_ended_at: float | None = None
    """When the first reasoning part arrived, and the first text part after it."""
    cancel_requested: bool = False
    pump: asyncio.Task[Finish | None] | None = None
    title: TitleJob | None = None
    """Set on the first answer of a conversation still titled from its first message: once
    the answer completes, the conversation gets a generated title."""
    images: tuple[tuple[int, tuple[str, ...]], ...] = ()
    """Images to load before calling the provider: (message index, attachment ids)."""
    ephemeral: bool = False
    """Its conversation is deleted once it has ended (:attr:`SendOptions.ephemeral`)."""
    model_id: str = ""
    provider: str = ""
    request: ChatRequest | None = None
    """What the model was sent: the ledger estimates the input from it when the provider
    did not count (read once, at the end)."""

    @property
    def key(self) -> ReplyKey:
        return self.log.key

    def content(self) -> str:
        return self.log.text

    def partial(self) -> Partial:
        """What a checkpoint saves."""
        log_ = self.log
        return Partial(log_.key.message_id, log_.text, log_.reasoning or None, log_.sources)

    def thinking_ms(self, now: float) -> float | None:
        """How long the model thought (until the answer began, or ``now``), or None."""
        if self.thinking_started_at is None:
            return None
        ended = self.thinking_ended_at if self.thinking_ended_at is not None else now
        return round((ended - self.thinking_started_at) * 1000, 1)

    @property
    def deltas(self) -> int:
        """How many deltas were appended (the log's events less ``started`` and ``done``)."""
        return self.log.next_seq - 1 - (1 if self.log.done else 0)


def _busy_error(conversation_id: str) -> ConversationBusy:
    return ConversationBusy(
        f"a reply is already streaming in conversation {conversation_id}; "
        "wait for it to finish or cancel it"
    )


def _shutting_down() -> ShuttingDown:
    return ShuttingDown("the server is shutting down; send again (another server answers)")


def derived_conversation_id(owner: str, client_message_id: str) -> str:
    """The conversation id of a new conversation opened by ``client_message_id``."""
    return hashlib.sha256(f"{owner}\0{client_message_id}".encode()).hexdigest()[:32]


def check_capabilities(model: ModelInfo, options: SendOptions) -> None:
    """Raise UnsupportedCapability when ``options`` ask ``model`` for what it cannot do."""
    capabilities = model.capabilities
    if options.attachments and not capabilities.vision:
        raise UnsupportedCapability(
            f"{model.id} cannot read images; pick a model that can (vision) or send text only",
            capability="vision",
        )
    if (options.thinking or options.thinking_budget is not None) and not capabilities.thinking:
        raise UnsupportedCapability(
            f"{model.id} cannot think before answering", capability="thinking"
        )
    if (
        options.thinking is not None
        and capabilities.thinking_fixed
        and options.thinking != capabilities.thinking_default
    ):
        state = "on" if capabilities.thinking_default else "off"
        raise UnsupportedCapability(
            f"{model.id} always has thinking {state}; it cannot be switched", capability="thinking"
        )
    if options.search and not capabilities.search:
        raise UnsupportedCapability(f"{model.id} cannot search the web", capability="search")


class Checkpointer:
    """Saves the partial text of every streaming reply, in one batch per interval."""

    def __init__(self, store: Store, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._replies: set[RunningReply] = set()
        self._task: asyncio.Task[None] | None = None

    def track(self, reply: RunningReply) -> None:
        self._replies.add(reply)

    def untrack(self, reply: RunningReply) -> None:
        self._replies.discard(reply)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="liaotian-checkpointer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def flush(self) -> None:
        """Save changed texts; renew the lease of the others (a lease left to expire means
        this process died, and another one marks the reply interrupted)."""
        # Parts are counted, not characters: summing lengths made each flush O(tokens).
        dirty: list[RunningReply] = []
        idle: list[str] = []
        for reply in self._replies:
            if reply.log.next_seq != reply.seq_saved:
                dirty.append(reply)
            else:
                idle.append(reply.key.message_id)
        if dirty:
            saved = [reply.log.next_seq for reply in dirty]
            batch = [reply.partial() for reply in dirty]
            await self._store.checkpoint(batch)
            for reply, parts in zip(dirty, saved, strict=True):
                reply.seq_saved = parts
        await self._store.touch(idle)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:  # the next interval retries; the final write is separate
                log.exception("checkpoint failed")


@dataclass(eq=False, slots=True)
class _Starting:
    """A send of ``owner`` between its quota check and its reply running (or failing)."""

    sends: dict[str, set[int]]
    """Every owner's starting sends, by number (:attr:`ChatEngine._starting`)."""
    owner: str
    number: int
    handed_over: bool = False
    """Released when its reply's start is stored (a callback), not when the send returns."""

    def __post_init__(self) -> None:
        self.sends.setdefault(self.owner, set()).add(self.number)

    def before(self) -> int:
        """How many of the owner's sends came before this one and are starting too."""
        return sum(1 for other in self.sends.get(self.owner, ()) if other < self.number)

    def release(self, _done: object = None) -> None:
        numbers = self.sends.get(self.owner)
        if numbers is not None:
            numbers.discard(self.number)
            if not numbers:
                del self.sends[self.owner]


class ChatEngine:
    """Starts, runs, cancels and finishes replies. One per process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        providers: ProviderRegistry,
        backplane: Backplane,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.backplane = backplane
        self.metrics = metrics
        self.checkpointer = Checkpointer(store, settings.checkpoint_interval)
        self.titles = Titler(settings, store, providers, backplane, metrics)
        self.ledger = LedgerPolicy(settings.prices, self._provider_name)
        store.ledger = self.ledger  # the rows of replies the store marks interrupted itself
        self.quotas = Quotas(settings, UsageBook(store.database))
        self._running: dict[str, RunningReply] = {}
        self._running_per_owner: Counter[str] = Counter()
        self._starting: dict[str, set[int]] = {}
        """Per owner, the numbers of its sends past the model check whose reply is not yet
        counted in ``_running_per_owner``; a send counts those before it as streaming."""
        self._send_numbers = itertools.count()
        self._busy: dict[tuple[str, str], str | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._forgetting: set[asyncio.Task[None]] = set()
        """Deletions of ephemeral conversations: :meth:`shutdown` waits for them."""
        self._storing: set[asyncio.Future[BegunReply]] = set()
        """Reply starts being stored: :meth:`shutdown` waits for them."""
        self._sends_in_flight: dict[tuple[str, str], asyncio.Future[ReplyLog]] = {}
        self._closing = False

    async def start(self) -> None:
        """Start the backplane (which first recovers the replies an earlier stop left
        streaming) and checkpointing, then delete the unkept conversations an earlier
        stop left (none of their replies streams any more)."""
        await self.backplane.start(self.cancel_local)
        self.checkpointer.start()
        # After the recovery: an ephemeral turn whose process died is no longer streaming.
        left = await self.store.delete_idle_with_prefix(UNKEPT_PREFIX)
        if left:
            log.info("deleted %d unkept conversations an earlier stop left", left)

    # -- what connections use ------------------------------------------------------------

    def subscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        """Tell ``listener`` of the owner's new replies and conversation changes, from any
        process, until :meth:`unsubscribe`."""
        self.backplane.subscribe(owner, listener)

    def unsubscribe(self, owner: str, listener: OwnerBus.Listener) -> None:
        self.backplane.unsubscribe(owner, listener)

    def live_log(self, owner: str, message_id: str) -> ReplyLog | None:
        """The log this process holds for the owner's reply, or None."""
        return self.backplane.live_log(owner, message_id)

    @staticmethod
    def unkept(conversation_id: str) -> bool:
        """Whether the conversation is an ephemeral reply's (:attr:`SendOptions.ephemeral`),
        not deleted yet: what must not be shown although the store and the logs still hold
        it. Every process can tell: the id says so."""
        return conversation_id.startswith(UNKEPT_PREFIX)

    async def rename_conversation(
        self, owner: str, conversation_id: str, title: str, *, origin: object = None
    ) -> ConversationChange:
        """Rename and tell the owner's other connections (not ``origin``). Raises NotFound."""
        conversation = await self.store.rename_conversation(owner, conversation_id, title)
        return self.announce_conversation(owner, conversation, origin=origin)

    def announce_conversation(
        self, owner: str, conversation: ConversationInfo, *, origin: object = None
    ) -> ConversationChange:
        """Tell the owner's connections (not ``origin``), in every process, of a
        conversation's new state (stored or changed), so their lists show it."""
        change = ConversationChange(conversation.id, conversation.to_wire(), origin=origin)
        self.backplane.publish_change(owner, change)
        return change

    async def switch_branch(
        self, owner: str, conversation_id: str, message_id: str, *, origin: object = None
    ) -> ConversationChange:
        """Make the branch through ``message_id`` active and tell the owner's other
        connections (not ``origin``), in every process.

        Raises NotFound and ConversationBusy (a reply streams in the conversation, or is
        being started here).
        """
        if (owner, conversation_id) in self._busy:
            raise _busy_error(conversation_id)
        conversation = await self.store.switch_branch(owner, conversation_id, message_id)
        return self.announce_conversation(owner, conversation, origin=origin)

    async def update_conversation(
        self,
        owner: str,
        conversation_id: str,
        *,
        pinned: bool | None = None,
        archived: bool | None = None,
        origin: object = None,
    ) -> ConversationChange:
        """Pin or unpin, archive or restore, and tell the owner's other connections (not
        ``origin``). Raises NotFound."""
        conversation = await self.store.update_conversation(
            owner, conversation_id, pinned=pinned, archived=archived
        )
        return self.announce_conversation(owner, conversation, origin=origin)

    async def bulk(
        self, owner: str, action: str, conversation_ids: list[str], *, origin: object = None
    ) -> tuple[list[str], list[str]]:
        """Apply ``action`` (``delete``, ``archive``, ``unarchive``, ``pin``, ``unpin``) to the
        owner's conversations among ``conversation_ids`` in one transaction, and tell the
        owner's other connections of each (not ``origin``).

        Deleting cancels their streaming replies first, as :meth:`delete_conversation`
        does. Returns the ids done (in the order asked, each once) and those that are not
        the owner's (unknown ones and another owner's alike).
        """
        if action == "delete":
            await self._cancel_streaming_in(owner, set(conversation_ids))
            done, not_found = await self.store.bulk_delete(owner, conversation_ids)
            for conversation_id in done:
                self.backplane.publish_change(
                    owner, ConversationChange(conversation_id, None, origin=origin)
                )
            return done, not_found
        flags = {
            "archive": {"archived": True},
            "unarchive": {"archived": False},
            "pin": {"pinned": True},
            "unpin": {"pinned": False},
        }[action]
        updated, not_found = await self.store.bulk_update(owner, conversation_ids, **flags)
        for conversation in updated:
            self.announce_conversation(owner, conversation, origin=origin)
        return [conversation.id for conversation in updated], not_found

    async def _cancel_streaming_in(self, owner: str, conversation_ids: set[str]) -> None:
        """Cancel the owner's streaming replies in ``conversation_ids`` (in any process)."""
        doomed = [
            reply.key.message_id
            for reply in self._running.values()
            if reply.key.owner == owner and reply.key.conversation_id in conversation_ids
        ]
        local = set(doomed)
        # Elsewhere: the owner streams at most a few replies, so ask about each.
        for message_id in await self.backplane.shared_streaming(owner):
            if message_id in local:
                continue
            found = await self.store.find_message(owner, message_id)
            if found is not None and found[1] in conversation_ids:
                doomed.append(message_id)
        for message_id in doomed:
            with contextlib.suppress(NotFound):
                await self.cancel(owner, message_id=message_id)

    async def delete_conversation(
        self, owner: str, conversation_id: str, *, origin: object = None
    ) -> ConversationChange:
        """Cancel its streaming reply, delete it, and tell the owner's other connections.
        Raises NotFound."""
        await self.store.get_conversation(owner, conversation_id)
        streaming = await self.streaming_in(owner, conversation_id)
        if streaming is not None:
            with contextlib.suppress(NotFound):
                await self.cancel(owner, message_id=streaming)
        await self.store.delete_conversation(owner, conversation_id)
        change = ConversationChange(conversation_id, None, origin=origin)
        self.backplane.publish_change(owner, change)
        return change

    # -- starting ------------------------------------------------------------------------

    async def send(self, owner: str, options: SendOptions) -> ReplyLog:
        """Store the message and start the reply; returns its event log.

        Raises ModelNotFound / ProviderNotConfigured / ModelNotAllowed / QuotaExceeded
        (before anything is stored), NotFound
        (another owner's or unknown conversation) and ConversationBusy. Concurrent sends
        with the same ``client_message_id`` get the same reply.

        The reply belongs to the server: once stored, it is started even if the caller
        was cancelled meanwhile (a stored reply with nobody running it would keep its
        conversation busy).
        """
        if options.client_message_id is None:
            return await self._send(owner, options)
        key = (owner, options.client_message_id)
        in_flight = self._sends_in_flight.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        future: asyncio.Future[ReplyLog] = asyncio.get_running_loop().create_future()
        self._sends_in_flight[key] = future
        try:
            reply_log = await self._send(owner, options)
            future.set_result(reply_log)
            return reply_log
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            del self._sends_in_flight[key]

    async def _send(self, owner: str, options: SendOptions) -> ReplyLog:
        if self._closing:
            raise _shutting_down()
        starting = _Starting(self._starting, owner, next(self._send_numbers))
        try:
            return await self._send_checked(owner, options, starting)
        finally:
            if not starting.handed_over:
                starting.release()

    async def _streaming_or_starting(self, starting: _Starting) -> int:
        """The owner's replies streaming now, and its sends that came before ``starting``
        and are starting too: sends arriving together (several sockets, parallel API
        calls) cannot all pass the ``concurrent_replies`` check of this process."""
        return await self.streaming_count(starting.owner) + starting.before()

    async def _send_checked(
        self, owner: str, options: SendOptions, starting: _Starting
    ) -> ReplyLog:
        model_id = options.model or self.providers.default_model
        provider, model = self.providers.resolve(model_id)
        check_capabilities(model, options)
        policy = await self.quotas.policy(owner)
        self.quotas.check_model(policy, model.id)
        try:
            await self.quotas.check(owner, policy, lambda: self._streaming_or_starting(starting))
        except QuotaExceeded as refusal:
            self.metrics.rejections.labels(str(refusal.quota["limit"])).inc()
            raise
        await self._check_reply_quota(owner)
        new = self._new_reply(owner, options, model_id, provider)

        busy_key = (owner, new.conversation_id)
        if busy_key in self._busy:
            existing = self._existing_for_retry(busy_key, options)
            if existing is not None:
                return existing
            raise _busy_error(new.conversation_id)
        self._busy[busy_key] = options.client_message_id

        if self._closing:  # checked again: no await between here and the start being tracked
            del self._busy[busy_key]
            raise _shutting_down()

        # The reply is started by a callback of the transaction itself, so it starts even
        # if this caller is cancelled meanwhile (a stored reply nobody runs would keep its
        # conversation busy until a restart), and shutdown, which waits for the
        # transactions in flight, finds every reply started by then. It is announced to
        # the owner's connections when this caller resumes (right before the caller's own
        # connection starts forwarding it, so that one does not forward it twice), or at
        # once if the caller is gone.
        storing = asyncio.ensure_future(self.store.begin_reply(new))
        start = _PendingStart(asyncio.get_running_loop().create_future(), quiet=options.ephemeral)
        self._storing.add(storing)
        storing.add_done_callback(
            lambda done: self._stored(done, start, options, model, provider, busy_key)
        )
        # After _stored: by then the reply is counted as running, or has failed.
        storing.add_done_callback(starting.release)
        starting.handed_over = True
        try:
            await asyncio.shield(storing)
            begun = storing.result()
            if begun.earlier:
                return await self._earlier_log(owner, begun.reply_id)
            reply_log = await asyncio.shield(start.log)
        except asyncio.CancelledError:
            start.caller_gone = True
            self._announce(start)
            raise
        except StoreConflict:
            # Either this client_message_id is being stored by another process (a retry:
            # return that reply) or another process is streaming in this conversation.
            if options.client_message_id is not None:
                earlier = await self._earlier_reply(
                    owner, new.conversation_id, options.client_message_id
                )
                if earlier is not None:
                    return earlier
            raise _busy_error(new.conversation_id) from None
        assert reply_log is not None
        self._announce(start)
        return reply_log

    def _stored(
        self,
        storing: asyncio.Future[BegunReply],
        start: _PendingStart,
        options: SendOptions,
        model: ModelInfo,
        provider: Provider,
        busy_key: tuple[str, str],
    ) -> None:
        """When a reply's start is stored: run the reply, or release its conversation."""
        self._storing.discard(storing)
        begun = None if storing.cancelled() or storing.exception() else storing.result()
        if begun is None or begun.earlier:
            self._busy.pop(busy_key, None)
            start.log.set_result(None)
            return
        try:
            reply_log = self._start(begun, options, model, provider, busy_key)
        except BaseException as error:  # pragma: no cover - _start does no I/O
            start.log.set_exception(error)
            raise
        start.log.set_result(reply_log)
        if start.caller_gone:
            self._announce(start)

    def _announce(self, start: _PendingStart) -> None:
        """Tell the owner's connections of the started reply, once (nothing if it did not
        start or has not yet)."""
        log_ = start.log
        if start.quiet or start.announced or not log_.done():
            return
        if log_.cancelled() or log_.exception():
            return
        reply_log = log_.result()
        if reply_log is not None:
            start.announced = True
            self.backplane.publish_reply(reply_log)

    def _start(
        self,
        begun: BegunReply,
        options: SendOptions,
        model: ModelInfo,
        provider: Provider,
        busy_key: tuple[str, str],
    ) -> ReplyLog:
        """Run the stored reply ``begun``: its log and its task (the caller announces it)."""
        conversation = begun.conversation
        owner = busy_key[0]
        capabilities = model.capabilities
        thinking = None
        if capabilities.thinking:
            thinking = (
                capabilities.thinking_default if options.thinking is None else options.thinking
            )
        search = bool(options.search) and capabilities.search
        reply_log = self.backplane.create_log(ReplyKey(owner, conversation.id, begun.reply_id))
        reply_log.append(
            Started(
                seq=0,
                user_message_id=begun.user_message_id,
                model=model.id,
                title=conversation.title,
                created_at=begun.created_at.timestamp(),
                client_message_id=options.client_message_id,
                user_text=begun.user_text,
                replaces=begun.replaces,
                user_attachments=begun.user_attachments,
                thinking=thinking,
                search=search,
                user_parent_id=begun.user_parent_id,
                user_siblings=begun.user_siblings,
                reply_siblings=begun.reply_siblings,
            )
        )
        messages, images = self._model_messages(conversation, begun, capabilities)
        request = ChatRequest(
            model=model.upstream,
            messages=messages,
            stream=options.stream,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            thinking=thinking,
            thinking_budget=options.thinking_budget if thinking else None,
            search=search,
        )
        reply = RunningReply(
            log=reply_log,
            started_at=time.monotonic(),
            images=images,
            ephemeral=options.ephemeral,
            model_id=model.id,
            provider=provider.name,
            request=request,
        )
        if conversation.title_source == "message" and not begun.context and not options.ephemeral:
            reply.title = TitleJob(owner, conversation.id, model.id, begun.user_text)
        self._running[begun.reply_id] = reply
        self._running_per_owner[owner] += 1
        task = asyncio.create_task(self._run(reply, provider, request, busy_key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return reply_log

    def _new_reply(
        self, owner: str, options: SendOptions, model_id: str, provider: Provider
    ) -> NewReply:
        """What to store for ``options``; a new conversation gets its id here.

        The first message of a new conversation, maybe retried, maybe through another
        process at the same moment, has its conversation id derived from the client message
        id, so every attempt lands in the same conversation.
        """
        conversation_id = options.conversation_id
        create = options.create_missing_conversation
        if options.ephemeral:
            if conversation_id is not None or options.client_message_id is not None:
                # Its conversation is deleted when it ends: never an existing one.
                raise RequestError("an unkept turn starts a conversation of its own")
            create, conversation_id = True, UNKEPT_PREFIX + new_id()
        elif conversation_id is None:
            create = True
            conversation_id = (
                new_id()
                if options.client_message_id is None
                else derived_conversation_id(owner, options.client_message_id)
            )
        history_messages = self.settings.history_messages
        history_chars = self.settings.history_max_chars
        # A new conversation is titled from its first user message, which earlier turns
        # given whole may hold.
        opening = next((text for role, text in options.prior if role == "user"), options.message)
        if options.prior:
            # The client chose the context: the model sees all of it (the request's size
            # cap bounds it).
            history_messages = len(options.prior) + 1
            history_chars = sum(len(text) for _, text in options.prior) + len(options.message)
        return NewReply(
            owner=owner,
            conversation_id=conversation_id,
            message=options.message,
            model=model_id,
            history_messages=history_messages,
            history_chars=history_chars,
            create=create,
            title=self.titles.initial_title(opening, model_kind=provider.kind) or "Image",
            client_message_id=options.client_message_id,
            system_prompt=options.system_prompt,
            edit_message_id=options.edit_message_id,
            regenerate=options.regenerate,
            regenerate_message_id=options.regenerate_message_id,
            attachments=options.attachments,
            after_message_id=options.after_message_id,
            prior=options.prior,
            archived=options.ephemeral,
        )

    async def streaming_count(self, owner: str) -> int:
        """How many replies the owner streams now, in every process."""
        local = self._running_per_owner[owner]
        return max(local, len(await self.backplane.shared_streaming(owner)))

    async def allowed_models(self, owner: str) -> list[ModelInfo]:
        """The models the owner's role may use (``role_models``), as listed to it."""
        models = self.providers.models()
        if not self.settings.role_models:
            return models
        policy = await self.quotas.policy(owner)
        allowed = self.quotas.allowed_models(policy.role, [model.id for model in models])
        return [model for model in models if model.id in allowed]

    async def _check_reply_quota(self, owner: str) -> None:
        """Raise TooManyReplies when the owner already streams its maximum of replies."""
        limit = self.settings.max_replies_per_owner
        local = self._running_per_owner[owner]
        if local < limit:  # maybe more in other processes
            local = max(local, len(await self.backplane.shared_streaming(owner)))
        if local >= limit:
            self.metrics.rejections.labels("replies_per_owner").inc()
            raise TooManyReplies(
                f"at most {limit} answers can stream at once; wait for one to finish or cancel one",
                retry_after=1,
            )

    async def regenerate(self, owner: str, options: SendOptions) -> ReplyLog:
        """Give an answer again: a new reply to the user message that
        ``options.regenerate_message_id`` (default: the active path's last answer) answers,
        beside the earlier ones, which stay. The new reply's branch becomes the active path.

        Raises NotFound (no such conversation, or no such answer in it) and what
        :meth:`send` raises.
        """
        if options.conversation_id is None:
            raise NotFound("chat.regenerate needs a conversation_id")
        return await self.send(owner, replace(options, regenerate=True))

    def _existing_for_retry(
        self, busy_key: tuple[str, str], options: SendOptions
    ) -> ReplyLog | None:
        if options.client_message_id is None:
            return None
        if self._busy.get(busy_key) != options.client_message_id:
            return None
        for reply in self._running.values():
            if (reply.key.owner, reply.key.conversation_id) == busy_key:
                return reply.log
        return None

    async def _earlier_reply(
        self, owner: str, conversation_id: str, client_message_id: str
    ) -> ReplyLog | None:
        found = await self.store.find_reply_by_client_id(owner, conversation_id, client_message_id)
        return None if found is None else await self._earlier_log(owner, found[1])

    async def _earlier_log(self, owner: str, reply_id: str) -> ReplyLog:
        existing = self.backplane.live_log(owner, reply_id)
        return existing if existing is not None else await self.replay(owner, reply_id)

    async def replay(self, owner: str, message_id: str) -> ReplyLog:
        """The log of a reply: live here, mirrored from the process that runs it, or rebuilt.

        A rebuilt log (from the database) holds ``started``, one delta with the stored text
        and ``done``. Raises NotFound for another owner's or an unknown reply.
        """
        live = self.backplane.live_log(owner, message_id)
        if live is not None:
            return live
        found = await self.store.find_message(owner, message_id)
        if found is None or found[0].role != "assistant":
            raise NotFound(f"reply {message_id} not found")
        message, conversation_id = found
        key = ReplyKey(owner, conversation_id, message_id)
        mirrored = await self.backplane.replica(key, streaming=message.status == "streaming")
        if mirrored is not None:
            return mirrored
        rebuilt = ReplyLog(key, rebuilt=True)
        finish_from_message(rebuilt, message)
        return rebuilt

    def _model_messages(
        self, conversation: ConversationInfo, begun: BegunReply, capabilities: Capabilities
    ) -> tuple[list[ChatMessage], tuple[tuple[int, tuple[str, ...]], ...]]:
        """The messages the model sees, and which of them show which images.

        Images go only to a vision model, the newest ``history_images`` of them (older
        ones are left out, their text stays); reasoning only to a model whose
        ``reasoning_in_history`` is on.
        """
        turns = [
            *begun.context,
            ContextMessage("user", begun.user_text, None, begun.user_attachments),
        ]
        messages = []
        if conversation.system_prompt:
            messages.append(ChatMessage("system", conversation.system_prompt))
        offset = len(messages)
        images: list[tuple[int, tuple[str, ...]]] = []
        budget = self.settings.history_images if capabilities.vision else 0
        for index in range(len(turns) - 1, -1, -1):
            attachments = turns[index].attachments
            if attachments and budget > 0 and turns[index].role == "user":
                ids = tuple(str(item["id"]) for item in attachments[-budget:])
                budget -= len(ids)
                images.append((offset + index, ids))
        for turn in turns:
            reasoning = turn.reasoning if capabilities.reasoning_in_history else None
            messages.append(ChatMessage(turn.role, turn.content, reasoning=reasoning))
        images.reverse()
        return messages, tuple(images)

    async def _with_images(
        self, owner: str, reply: RunningReply, request: ChatRequest
    ) -> ChatRequest:
        """``request`` with the images its messages show, loaded from the store."""
        wanted = [attachment_id for _, ids in reply.images for attachment_id in ids]
        found = await self.store.load_images(owner, wanted)
        messages = list(request.messages)
        for index, ids in reply.images:
            parts = tuple(ImagePart(*found[i]) for i in ids if i in found)
            messages[index] = replace(messages[index], images=parts)
        return replace(request, messages=messages)

    # -- running -------------------------------------------------------------------------

    async def _run(
        self,
        reply: RunningReply,
        provider: Provider,
        request: ChatRequest,
        busy_key: tuple[str, str],
    ) -> None:
        logs.reply_id.set(reply.key.message_id)
        log.info(
            "reply started",
            extra=logs.fields(
                conversation=reply.key.conversation_id, model=request.model, provider=provider.name
            ),
        )
        self.checkpointer.track(reply)
        reply.pump = asyncio.create_task(self._pump(reply, provider, request))
        outcome: ReplyOutcome
        try:
            await asyncio.wait({reply.pump})
            outcome = self._outcome(reply)
        except asyncio.CancelledError:
            # Shutdown: stop the provider and record what was generated.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            reply.pump.cancel()
            with contextlib.suppress(BaseException):
                await reply.pump
            outcome = self._outcome(reply, interrupted=True)
        finally:
            self.checkpointer.untrack(reply)
        saved = False
        try:
            saved = await self._final_write(reply, outcome)
            if saved and reply.title is not None and outcome.status is ReplyStatus.COMPLETED:
                self.titles.after_first_answer(replace(reply.title, answer=outcome.content))
        finally:
            done = self._done_event(reply, outcome)
            if not saved:
                done = replace(done, error={"code": "not_saved", "message": NOT_SAVED_MESSAGE})
            reply.log.append(done)
            if self._running.pop(reply.key.message_id, None) is not None:
                owner = reply.key.owner
                self._running_per_owner[owner] -= 1
                if not self._running_per_owner[owner]:
                    del self._running_per_owner[owner]
            self._busy.pop(busy_key, None)
            if reply.ephemeral:
                self._forget(reply)
            log.info(
                "reply ended",
                extra=logs.fields(
                    status=outcome.status.value,
                    error=outcome.error_code,
                    ttft_ms=outcome.ttft_ms,
                    duration_ms=outcome.duration_ms,
                    chars=len(outcome.content),
                ),
            )
            self.metrics.reply_ended(
                outcome.status.value,
                deltas=reply.deltas,
                ttft_ms=outcome.ttft_ms,
                duration_ms=outcome.duration_ms,
                error_code=outcome.error_code,
            )

    def _forget(self, reply: RunningReply) -> None:
        """Delete an ephemeral reply's conversation, in the background (a failure leaves
        it archived: logged, not retried)."""
        key = reply.key

        async def delete() -> None:
            try:
                await self.store.delete_conversation(key.owner, key.conversation_id)
            except Exception:  # its id keeps it out of sight; a later start does not retry
                log.exception("could not delete the unkept conversation %s", key.conversation_id)

        task = asyncio.create_task(delete(), name=f"liaotian-forget-{key.message_id}")
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def forget_pending(self) -> None:
        """Return once the unkept conversations of the replies ended so far are deleted."""
        if self._forgetting:
            await asyncio.gather(*self._forgetting, return_exceptions=True)

    async def _final_write(self, reply: RunningReply, outcome: ReplyOutcome) -> bool:
        """Save the outcome, retrying with backoff while the database fails, for up to
        ``final_write_timeout`` seconds; False if it could not be saved (the database then
        holds the last checkpoint, and a restart marks the reply interrupted)."""
        message_id = reply.key.message_id
        deadline = time.monotonic() + self.settings.final_write_timeout
        attempt = 0
        usage = self._usage(reply, outcome)
        while True:
            try:
                await self.store.finish_reply(message_id, outcome, usage)
                return True
            except StoreError as error:
                delay = FINAL_WRITE_DELAYS[min(attempt, len(FINAL_WRITE_DELAYS) - 1)]
                attempt += 1
                delay = min(delay, deadline - time.monotonic())
                if delay <= 0:
                    log.error(
                        "could not save reply %s (%d attempts): %s",
                        message_id,
                        attempt,
                        error.message,
                    )
                    return False
                log.warning(
                    "could not save reply %s (%s); retrying in %.2g s",
                    message_id,
                    error.message,
                    delay,
                )
                await asyncio.sleep(delay)
            except Exception:  # a bug, not an outage: retrying would not help
                log.exception("could not save reply %s", message_id)
                return False

    def _usage(self, reply: RunningReply, outcome: ReplyOutcome) -> UsageEntry:
        """The reply's ledger row (estimated when the provider did not count)."""
        request = reply.request

        def sent() -> str:
            return "" if request is None else "\n".join(m.content for m in request.messages)

        return self.ledger.entry(
            message_id=reply.key.message_id,
            owner=reply.key.owner,
            model=reply.model_id,
            provider=reply.provider,
            status=outcome.status.value,
            counted=(
                outcome.input_tokens,
                outcome.output_tokens,
                outcome.reasoning_tokens,
                outcome.cached_tokens,
            ),
            sent=sent,
            streamed=outcome.content,
            reasoning=outcome.reasoning,
        )

    def _provider_name(self, model_id: str) -> str:
        """The provider serving ``model_id`` ("" when none does any more)."""
        try:
            return self.providers.resolve(model_id)[0].name
        except LiaotianError:
            return ""

    async def _pump(
        self, reply: RunningReply, provider: Provider, request: ChatRequest
    ) -> Finish | None:
        """Move deltas from the provider to the log. Cancelled by :meth:`cancel`."""
        timeout = self.settings.provider_total_timeout
        append = reply.log.append
        # Through the registry, not provider.stream(): retries before the first token, the
        # provider's circuit breaker, the repetition guard.
        stream = None
        try:
            async with asyncio.timeout(timeout):
                if reply.images:
                    request = await self._with_images(reply.key.owner, reply, request)
                stream = self.providers.stream(provider, request)
                async for item in stream:
                    if type(item) is str:
                        if not item:
                            continue
                        if reply.first_token_at is None:
                            reply.first_token_at = time.monotonic()
                        elif (
                            reply.thinking_started_at is not None
                            and reply.thinking_ended_at is None
                        ):
                            reply.thinking_ended_at = time.monotonic()
                        append(Delta(seq=reply.log.next_seq, text=item))
                    elif isinstance(item, Finish):
                        return item
                    elif isinstance(item, Reasoning):
                        if not item.text:
                            continue
                        now = time.monotonic()
                        if reply.first_token_at is None:
                            reply.first_token_at = now
                        if reply.thinking_started_at is None:
                            reply.thinking_started_at = now
                        append(ReasoningDelta(seq=reply.log.next_seq, text=item.text))
                    elif isinstance(item, Sources):
                        sources = tuple(source.to_wire() for source in item.items)
                        append(SourcesFound(seq=reply.log.next_seq, sources=sources))
                    # Other items (tool calls, later) are not parts this engine knows yet.
        except TimeoutError:
            raise ProviderTimeout(f"the reply took longer than {timeout:g} s") from None
        finally:
            # Close the upstream stream now (its connection goes back to the pool), not
            # whenever the generator is collected.
            closing = None if stream is None else getattr(stream, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()
        return None

    def _outcome(self, reply: RunningReply, *, interrupted: bool = False) -> ReplyOutcome:
        pump = reply.pump
        assert pump is not None
        assert pump.done()
        now = time.monotonic()
        ttft = (
            None
            if reply.first_token_at is None
            else round((reply.first_token_at - reply.started_at) * 1000, 1)
        )
        base: dict[str, Any] = {
            "content": reply.content(),
            "reasoning": reply.log.reasoning or None,
            "sources": reply.log.sources,
            "thinking_ms": reply.thinking_ms(now),
            "ttft_ms": ttft,
            "duration_ms": round((now - reply.started_at) * 1000, 1),
        }
        if interrupted:
            return ReplyOutcome(
                status=ReplyStatus.INTERRUPTED,
                error_code="interrupted",
                error_message="the server stopped while this answer was streaming",
                **base,
            )
        if pump.cancelled():
            return ReplyOutcome(status=ReplyStatus.CANCELLED, finish_reason="cancelled", **base)
        error = pump.exception()
        if error is not None:
            if not isinstance(error, LiaotianError):
                log.error("provider failed unexpectedly", exc_info=error)
                error = ProviderError(f"the provider failed: {type(error).__name__}")
            return ReplyOutcome(
                status=ReplyStatus.ERROR,
                error_code=error.code,
                error_message=error.message,
                **base,
            )
        finish = pump.result()
        if finish is None:
            return ReplyOutcome(
                status=ReplyStatus.ERROR,
                error_code="provider_interrupted",
                error_message="the provider ended the answer without finishing it",
                **base,
            )
        return ReplyOutcome(
            status=ReplyStatus.COMPLETED,
            finish_reason=finish.finish_reason,
            input_tokens=finish.usage.input_tokens,
            output_tokens=finish.usage.output_tokens,
            reasoning_tokens=finish.usage.reasoning_tokens,
            cached_tokens=finish.usage.cached_tokens,
            **base,
        )

    @staticmethod
    def _done_event(reply: RunningReply, outcome: ReplyOutcome) -> Done:
        usage = {
            name: value
            for name in ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens")
            if (value := getattr(outcome, name)) is not None
        }
        error = None
        if outcome.error_code is not None:
            error = {"code": outcome.error_code, "message": outcome.error_message}
        return Done(
            seq=reply.log.next_seq,
            status=outcome.status.value,
            finish_reason=outcome.finish_reason,
            usage=usage or None,
            ttft_ms=outcome.ttft_ms,
            duration_ms=outcome.duration_ms,
            error=error,
            thinking_ms=outcome.thinking_ms,
        )

    # -- cancelling ----------------------------------------------------------------------

    async def cancel(
        self, owner: str, *, message_id: str | None = None, conversation_id: str | None = None
    ) -> list[str]:
        """Cancel the owner's streaming reply (by message or conversation id), in any process.

        Returns the ids of the replies cancelled; each ends with a ``cancelled`` done event
        (sent by the process that runs it). Raises NotFound when no streaming reply of this
        owner matches.
        """
        if message_id is None and conversation_id is None:
            raise NotFound("no streaming reply matches")
        local = [
            reply.key.message_id
            for reply in self._running.values()
            if reply.key.owner == owner
            and (message_id is None or reply.key.message_id == message_id)
            and (conversation_id is None or reply.key.conversation_id == conversation_id)
        ]
        if local:
            self.cancel_local(owner, local)
            return local
        remote = await self.backplane.shared_streaming(
            owner, message_id=message_id, conversation_id=conversation_id
        )
        if remote:
            self.backplane.request_cancel(owner, remote)  # delivered in the background
            return remote
        raise NotFound("no streaming reply matches")

    def cancel_local(self, owner: str, message_ids: list[str]) -> list[ReplyLog]:
        """Cancel the replies among ``message_ids`` that run here and belong to ``owner``."""
        cancelled = []
        for message_id in message_ids:
            reply = self._running.get(message_id)
            if reply is None or reply.key.owner != owner:
                continue
            reply.cancel_requested = True
            if reply.pump is not None:
                reply.pump.cancel()
            cancelled.append(reply.log)
        return cancelled

    async def streaming_in(self, owner: str, conversation_id: str) -> str | None:
        """The id of the reply streaming in the conversation (in any process), or None."""
        for reply in self._running.values():
            if reply.key.owner == owner and reply.key.conversation_id == conversation_id:
                return reply.key.message_id
        found = await self.backplane.shared_streaming(owner, conversation_id=conversation_id)
        return found[0] if found else None

    # -- shutdown ------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Start no new reply from now on (sends raise ShuttingDown); running ones go on.
        Called when the server begins to drain its sockets."""
        self._closing = True

    async def shutdown(self, grace: float = 0.0) -> None:
        """Refuse new replies, wait up to ``grace`` s, then interrupt the rest (text saved).

        Replies whose start is still being stored are waited for first (their transaction
        cannot be taken back), so they too run and end with an outcome before this returns.
        Titles being generated are cancelled at once (the conversations keep their titles).
        """
        self._closing = True
        await self.titles.close()
        if self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)
            await asyncio.sleep(0)  # their done callbacks (which start the replies) have run
        tasks = set(self._tasks)
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.forget_pending()
        await self.checkpointer.stop()

    @property
    def running_count(self) -> int:
        return len(self._running)
