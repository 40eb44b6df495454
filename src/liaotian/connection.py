"""One protocol-v1 WebSocket connection: read frames, dispatch them, forward reply events.

The connection follows every reply its owner starts (from any connection), so two tabs of
one owner see the same answers. Closing it stops the forwarding only; replies go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, ClassVar

from starlette.websockets import WebSocketDisconnect

from liaotian import __version__, protocol
from liaotian.backplane import ConversationChange, Notice, OwnerBus
from liaotian.engine import SendOptions
from liaotian.errors import InvalidFrame, LiaotianError, ShareLinksDisabled
from liaotian.protocol import (
    BulkConversations,
    CancelReply,
    Command,
    CopyShare,
    CreateShare,
    DeleteConversation,
    EditMessage,
    ExportConversation,
    GetHistory,
    ListConversations,
    ListModels,
    ListShares,
    Ping,
    RegenerateReply,
    RenameConversation,
    RevokeShare,
    SearchMessages,
    SendMessage,
    SubscribeReply,
    SwitchBranch,
    UpdateConversation,
)
from liaotian.replies.log import ReplyLog
from liaotian.services import Services
from liaotian.store.portability import PortabilityStore
from liaotian.store.repository import new_id
from liaotian.transport import ClientSocket

log = logging.getLogger(__name__)


class Connection(OwnerBus.Listener):
    """A protocol-v1 session for ``owner`` on one WebSocket.

    An idle connection holds no task of its own: the owner's notices arrive by callback
    (:meth:`notify`), and a task exists only per reply being forwarded.
    """

    __slots__ = ("_changes", "_forwarders", "_side_tasks", "owner", "services", "socket")

    _HANDLERS: ClassVar[dict[type[Any], Callable[[Connection, Any], Awaitable[None]]]]
    """The handler of each command type (filled in below the class)."""
    _BESIDE: ClassVar[frozenset[type[Any]]]
    """Commands handled in a task of their own, beside the read loop."""

    def __init__(self, socket: ClientSocket, services: Services, owner: str) -> None:
        self.socket = socket
        self.services = services
        self.owner = owner
        self._forwarders: dict[str, asyncio.Task[None]] = {}
        self._changes: set[asyncio.Task[None]] | None = None
        """Sends of conversation changes in flight (rare: made on first use)."""
        self._side_tasks: set[asyncio.Task[None]] | None = None
        """Frames handled beside the read loop (cancels: made on first use)."""

    async def run(self) -> None:
        """Serve until the client disconnects. Never raises for bad client input."""
        engine = self.services.engine
        settings = self.services.settings
        socket = self.socket
        engine.subscribe(self.owner, self)
        try:
            await socket.send(
                protocol.build_hello(self.owner, self.services.providers.default_model, __version__)
            )
            socket.watch_idle(settings.idle_timeout, self._busy)
            while True:
                data = await socket.next_frame()
                if data is None:
                    return
                if isinstance(data, bytes):
                    await socket.send(
                        protocol.build_error(InvalidFrame("binary frames are not supported"))
                    )
                    continue
                await self._handle(data)
        except WebSocketDisconnect:
            return
        finally:
            engine.unsubscribe(self.owner, self)
            tasks = [*self._forwarders.values(), *(self._changes or ())]
            for task in tasks:
                task.cancel()
            # A cancel sent just before leaving still counts: let it finish (it is bounded).
            await asyncio.gather(*tasks, *(self._side_tasks or ()), return_exceptions=True)

    def _busy(self) -> bool:
        return bool(self._forwarders)

    async def _handle(self, data: str) -> None:
        settings = self.services.settings
        try:
            command: Command = protocol.parse_frame(
                data,
                max_bytes=settings.max_frame_bytes,
                max_message_chars=settings.max_message_chars,
            )
        except LiaotianError as error:
            await self.socket.send(protocol.build_error(error, protocol.request_id_of(data)))
            return
        if type(command) in self._BESIDE:
            # May wait on another process: never in the read loop, so pings and other
            # frames are answered meanwhile.
            if self._side_tasks is None:
                self._side_tasks = set()
            task = asyncio.create_task(self._dispatch(command))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)
            return
        await self._dispatch(command)

    async def _dispatch(self, command: Command) -> None:
        """Run the command's handler; errors become error frames (never raised)."""
        try:
            await self._HANDLERS[type(command)](self, command)
        except WebSocketDisconnect:
            return
        except LiaotianError as error:
            await self.socket.send(protocol.build_error(error, command.id))
        except Exception:
            log.exception("failed to handle a %s frame", type(command).__name__)
            internal = LiaotianError("the server failed to handle this frame")
            await self.socket.send(protocol.build_error(internal, command.id))

    # -- following replies ---------------------------------------------------------------

    def notify(self, notice: Notice) -> None:
        """A new reply of the owner (forward it) or a conversation change (tell the client,
        unless this connection made it)."""
        if isinstance(notice, ConversationChange):
            if notice.origin is not self:
                if self._changes is None:
                    self._changes = set()
                task = asyncio.create_task(self._send_quietly(_change_frame(notice, None)))
                self._changes.add(task)
                task.add_done_callback(self._changes.discard)
        elif notice.key.message_id not in self._forwarders:
            self._start_forwarding(notice, after_seq=-1)

    async def _send_quietly(self, frame: bytes) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.socket.send(frame)

    def _start_forwarding(
        self, reply_log: ReplyLog, *, after_seq: int, request_id: str | int | None = None
    ) -> None:
        message_id = reply_log.key.message_id
        previous = self._forwarders.pop(message_id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._forward(reply_log, after_seq, request_id))
        self._forwarders[message_id] = task
        task.add_done_callback(lambda done: self._forgotten(message_id, done))

    def _forgotten(self, message_id: str, task: asyncio.Task[None]) -> None:
        if self._forwarders.get(message_id) is task:
            del self._forwarders[message_id]

    async def _forward(
        self, reply_log: ReplyLog, after_seq: int, request_id: str | int | None
    ) -> None:
        """Send the reply's events after ``after_seq``, each batch's deltas as one frame."""
        key = reply_log.key
        conversation_id, message_id = key.conversation_id, key.message_id
        send = self.socket.send
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            async for batch in reply_log.follow(after_seq, merge=True):
                for event in batch:
                    await send(
                        protocol.build_reply_event(conversation_id, message_id, event, request_id)
                    )
                    request_id = None

    # -- handlers ------------------------------------------------------------------------

    async def _send_message(self, command: SendMessage) -> None:
        await self.services.guards.check_message(self.owner)
        options = _options(command, command.message, command.conversation_id)
        options = replace(options, client_message_id=command.client_message_id)
        reply_log = await self.services.engine.send(self.owner, options)
        self._start_forwarding(reply_log, after_seq=-1, request_id=command.id)

    async def _regenerate(self, command: RegenerateReply) -> None:
        await self.services.guards.check_message(self.owner)
        options = _options(command, "", command.conversation_id)
        options = replace(options, regenerate_message_id=command.message_id)
        reply_log = await self.services.engine.regenerate(self.owner, options)
        self._start_forwarding(reply_log, after_seq=-1, request_id=command.id)

    async def _edit(self, command: EditMessage) -> None:
        await self.services.guards.check_message(self.owner)
        options = _options(command, command.message, command.conversation_id)
        options = replace(options, edit_message_id=command.message_id)
        reply_log = await self.services.engine.send(self.owner, options)
        self._start_forwarding(reply_log, after_seq=-1, request_id=command.id)

    async def _cancel(self, command: CancelReply) -> None:
        if command.message_id is None and command.conversation_id is None:
            raise InvalidFrame("chat.cancel needs message_id or conversation_id")
        cancelled = await self.services.engine.cancel(
            self.owner, message_id=command.message_id, conversation_id=command.conversation_id
        )
        # Quietly: the client may have left right after asking (the cancel still counts).
        await self._send_quietly(
            protocol.build_result("ack", command.id, request="chat.cancel", message_ids=cancelled)
        )

    async def _subscribe(self, command: SubscribeReply) -> None:
        reply_log = await self.services.engine.replay(self.owner, command.message_id)
        # Sent whole, from the reply.started that tells the client to start the text over,
        # when seqs cannot be trusted to line up: a rebuilt log has other seqs, and while
        # this connection is already forwarding the reply (as a follower of its owner),
        # frames on their way could overlap the merged deltas answering here.
        restart = reply_log.rebuilt or command.message_id in self._forwarders
        after_seq = -1 if restart else command.after_seq
        if reply_log.done and after_seq >= reply_log.next_seq - 1:
            await self.socket.send(
                protocol.build_result(
                    "ack",
                    command.id,
                    request="chat.subscribe",
                    message_id=command.message_id,
                    last_seq=reply_log.next_seq - 1,
                )
            )
            return
        self._start_forwarding(reply_log, after_seq=after_seq, request_id=command.id)

    async def _list_conversations(self, command: ListConversations) -> None:
        conversations, has_more = await self.services.store.list_conversations(
            self.owner,
            limit=command.limit,
            before=command.before,
            title_query=command.query,
            archived=command.archived,
        )
        engine = self.services.engine
        items = []
        for conversation in conversations:
            wire = conversation.to_wire()
            wire["streaming_message_id"] = await engine.streaming_in(self.owner, conversation.id)
            items.append(wire)
        await self.socket.send(
            protocol.build_result(
                "conversations", command.id, conversations=items, has_more=has_more
            )
        )

    async def _history(self, command: GetHistory) -> None:
        store = self.services.store
        conversation = await store.get_conversation(self.owner, command.conversation_id)
        messages, has_more = await store.history(
            self.owner, command.conversation_id, limit=command.limit, before=command.before
        )
        await self.socket.send(
            protocol.build_result(
                "conversation.history",
                command.id,
                conversation=conversation.to_wire(),
                messages=[message.to_wire() for message in messages],
                has_more=has_more,
            )
        )

    async def _rename(self, command: RenameConversation) -> None:
        title = " ".join(command.title.split())
        if not title:
            raise InvalidFrame("title is empty")
        change = await self.services.engine.rename_conversation(
            self.owner,
            command.conversation_id,
            title[: self.services.settings.max_title_chars],
            origin=self,
        )
        await self.socket.send(_change_frame(change, command.id))

    async def _delete(self, command: DeleteConversation) -> None:
        change = await self.services.engine.delete_conversation(
            self.owner, command.conversation_id, origin=self
        )
        await self.socket.send(_change_frame(change, command.id))

    # -- branches ------------------------------------------------------------------------

    async def _switch(self, command: SwitchBranch) -> None:
        change = await self.services.engine.switch_branch(
            self.owner, command.conversation_id, command.message_id, origin=self
        )
        await self.socket.send(_change_frame(change, command.id))

    # -- managing conversations --------------------------------------------------------

    async def _update(self, command: UpdateConversation) -> None:
        if command.pinned is None and command.archived is None:
            raise InvalidFrame("conversation.update needs pinned or archived (or both)")
        change = await self.services.engine.update_conversation(
            self.owner,
            command.conversation_id,
            pinned=command.pinned,
            archived=command.archived,
            origin=self,
        )
        await self.socket.send(_change_frame(change, command.id))

    async def _bulk(self, command: BulkConversations) -> None:
        done, not_found = await self.services.engine.bulk(
            self.owner, command.action, command.conversation_ids, origin=self
        )
        await self.socket.send(
            protocol.build_result(
                "conversations.bulk",
                command.id,
                action=command.action,
                conversation_ids=done,
                not_found=not_found,
            )
        )

    async def _export(self, command: ExportConversation) -> None:
        export = await PortabilityStore(self.services.store.database).export(
            self.owner, command.conversation_id, tree=command.tree
        )
        await self.socket.send(
            protocol.build_result("conversation.export", command.id, export=export)
        )

    # -- search ------------------------------------------------------------------------

    async def _search(self, command: SearchMessages) -> None:
        await self.services.guards.check_search(self.owner)
        found = await self.services.store.search(self.owner, command.query, limit=command.limit)
        await self.socket.send(
            protocol.build_result(
                "search.results",
                command.id,
                query=command.query,
                results=[result.to_wire() for result in found],
            )
        )

    # -- share links -------------------------------------------------------------------

    def _check_shares_on(self) -> None:
        if not self.services.settings.share_links:
            raise ShareLinksDisabled("share links are off on this server (share_links = false)")

    async def _create_share(self, command: CreateShare) -> None:
        self._check_shares_on()
        share = await self.services.shares.create(
            self.owner,
            command.conversation_id,
            message_id=command.message_id,
            expires_in=command.expires_in,
        )
        await self.socket.send(protocol.build_result("share", command.id, share=share.to_wire()))

    async def _list_shares(self, command: ListShares) -> None:
        self._check_shares_on()
        shares = await self.services.shares.list(self.owner, command.conversation_id)
        await self.socket.send(
            protocol.build_result(
                "shares", command.id, shares=[share.to_wire() for share in shares]
            )
        )

    async def _revoke_share(self, command: RevokeShare) -> None:
        self._check_shares_on()
        share = await self.services.shares.revoke(self.owner, command.share_id)
        await self.socket.send(protocol.build_result("share", command.id, share=share.to_wire()))

    async def _copy_share(self, command: CopyShare) -> None:
        self._check_shares_on()
        conversation = await self.services.shares.copy(
            self.owner, command.share_id, conversation_id=new_id()
        )
        change = self.services.engine.announce_conversation(self.owner, conversation, origin=self)
        await self.socket.send(_change_frame(change, command.id))

    async def _models(self, command: ListModels) -> None:
        await self.socket.send(
            protocol.build_result(
                "models",
                command.id,
                models=[
                    model.to_wire()
                    for model in await self.services.engine.allowed_models(self.owner)
                ],
                default=self.services.providers.default_model,
            )
        )

    async def _ping(self, command: Ping) -> None:
        await self.socket.send(protocol.build_result("pong", command.id))


Connection._BESIDE = frozenset({CancelReply})
Connection._HANDLERS = {
    SendMessage: Connection._send_message,
    RegenerateReply: Connection._regenerate,
    EditMessage: Connection._edit,
    CancelReply: Connection._cancel,
    SubscribeReply: Connection._subscribe,
    ListConversations: Connection._list_conversations,
    GetHistory: Connection._history,
    RenameConversation: Connection._rename,
    DeleteConversation: Connection._delete,
    SwitchBranch: Connection._switch,
    UpdateConversation: Connection._update,
    BulkConversations: Connection._bulk,
    ExportConversation: Connection._export,
    SearchMessages: Connection._search,
    CreateShare: Connection._create_share,
    ListShares: Connection._list_shares,
    RevokeShare: Connection._revoke_share,
    CopyShare: Connection._copy_share,
    ListModels: Connection._models,
    Ping: Connection._ping,
}


def _options(
    command: SendMessage | RegenerateReply | EditMessage,
    message: str,
    conversation_id: str | None,
) -> SendOptions:
    return SendOptions(
        message=message,
        conversation_id=conversation_id,
        model=command.model,
        stream=command.stream,
        system_prompt=command.system_prompt,
        temperature=command.temperature,
        max_tokens=command.max_tokens,
        thinking=command.thinking,
        thinking_budget=command.thinking_budget,
        search=command.search,
        attachments=() if isinstance(command, RegenerateReply) else tuple(command.attachments),
    )


def _change_frame(change: ConversationChange, request_id: str | int | None) -> bytes:
    if change.conversation is None:
        return protocol.build_result(
            "conversation.deleted", request_id, conversation_id=change.conversation_id
        )
    return protocol.build_result(
        "conversation.updated", request_id, conversation=change.conversation
    )
