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
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from liaotian import __version__, protocol
from liaotian.engine import SendOptions
from liaotian.errors import InvalidFrame, LiaotianError, NotFound
from liaotian.events import ConversationChange, Delta, Notice, ReplyEvent, ReplyLog
from liaotian.protocol import (
    CancelReply,
    Command,
    DeleteConversation,
    EditMessage,
    GetHistory,
    ListConversations,
    ListModels,
    Ping,
    RegenerateReply,
    RenameConversation,
    SendMessage,
    SubscribeReply,
)
from liaotian.services import Services
from liaotian.transport import next_frame

log = logging.getLogger(__name__)


def merge_events(events: list[ReplyEvent]) -> list[ReplyEvent]:
    """Join runs of deltas into one (keeping the last seq): fewer frames for a slow socket."""
    merged: list[ReplyEvent] = []
    pending: list[Delta] = []
    for event in events:
        if isinstance(event, Delta):
            pending.append(event)
            continue
        if pending:
            merged.append(_join(pending))
            pending = []
        merged.append(event)
    if pending:
        merged.append(_join(pending))
    return merged


def _join(deltas: list[Delta]) -> Delta:
    if len(deltas) == 1:
        return deltas[0]
    return Delta(seq=deltas[-1].seq, text="".join(delta.text for delta in deltas))


class Sender:
    """Serialises sends from several tasks onto one WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._lock = asyncio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self._websocket.send_text(frame.decode())


class Connection:
    """A protocol-v1 session for ``owner`` on one WebSocket."""

    def __init__(self, websocket: WebSocket, services: Services, owner: str) -> None:
        self.websocket = websocket
        self.services = services
        self.owner = owner
        self.sender = Sender(websocket)
        self._forwarders: dict[str, asyncio.Task[None]] = {}
        self._handlers: dict[type[Any], Callable[[Any], Awaitable[None]]] = {
            SendMessage: self._send_message,
            RegenerateReply: self._regenerate,
            EditMessage: self._edit,
            CancelReply: self._cancel,
            SubscribeReply: self._subscribe,
            ListConversations: self._list_conversations,
            GetHistory: self._history,
            RenameConversation: self._rename,
            DeleteConversation: self._delete,
            ListModels: self._models,
            Ping: self._ping,
        }

    async def run(self) -> None:
        """Serve until the client disconnects. Never raises for bad client input."""
        engine = self.services.engine
        settings = self.services.settings
        announcements = engine.bus.subscribe(self.owner)
        follower = asyncio.create_task(self._follow_owner(announcements))
        try:
            await self.sender.send(
                protocol.build_hello(self.owner, settings.effective_default_model, __version__)
            )
            while True:
                data = await next_frame(
                    self.websocket, settings.idle_timeout, lambda: bool(self._forwarders)
                )
                if data is None:
                    return
                if isinstance(data, bytes):
                    await self.sender.send(
                        protocol.build_error(InvalidFrame("binary frames are not supported"))
                    )
                    continue
                await self._handle(data)
        except WebSocketDisconnect:
            return
        finally:
            engine.bus.unsubscribe(self.owner, announcements)
            follower.cancel()
            for task in self._forwarders.values():
                task.cancel()
            await asyncio.gather(follower, *self._forwarders.values(), return_exceptions=True)

    async def _handle(self, data: str) -> None:
        settings = self.services.settings
        try:
            command: Command = protocol.parse_frame(
                data,
                max_bytes=settings.max_frame_bytes,
                max_message_chars=settings.max_message_chars,
            )
        except LiaotianError as error:
            await self.sender.send(protocol.build_error(error, protocol.request_id_of(data)))
            return
        try:
            await self._handlers[type(command)](command)
        except LiaotianError as error:
            await self.sender.send(protocol.build_error(error, command.id))
        except Exception:
            log.exception("failed to handle a %s frame", type(command).__name__)
            internal = LiaotianError("the server failed to handle this frame")
            await self.sender.send(protocol.build_error(internal, command.id))

    # -- following replies ---------------------------------------------------------------

    async def _follow_owner(self, notices: asyncio.Queue[Notice]) -> None:
        while True:
            notice = await notices.get()
            if isinstance(notice, ConversationChange):
                if notice.origin is not self:
                    await self.sender.send(_change_frame(notice, None))
            elif notice.key.message_id not in self._forwarders:
                self._start_forwarding(notice, after_seq=-1)

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
        key = reply_log.key
        first = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            async for batch in reply_log.follow(after_seq):
                for event in merge_events(batch):
                    await self.sender.send(
                        protocol.build_reply_event(
                            key.conversation_id,
                            key.message_id,
                            event,
                            request_id if first else None,
                        )
                    )
                    first = False

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
        reply_log = await self.services.engine.regenerate(self.owner, options)
        self._start_forwarding(reply_log, after_seq=-1, request_id=command.id)

    async def _edit(self, command: EditMessage) -> None:
        await self.services.guards.check_message(self.owner)
        options = _options(command, command.message, command.conversation_id)
        options = replace(options, truncate_from=command.message_id)
        reply_log = await self.services.engine.send(self.owner, options)
        self._start_forwarding(reply_log, after_seq=-1, request_id=command.id)

    async def _cancel(self, command: CancelReply) -> None:
        if command.message_id is None and command.conversation_id is None:
            raise InvalidFrame("chat.cancel needs message_id or conversation_id")
        cancelled = await self.services.engine.cancel(
            self.owner, message_id=command.message_id, conversation_id=command.conversation_id
        )
        await self.sender.send(
            protocol.build_result(
                "ack",
                command.id,
                request="chat.cancel",
                message_ids=cancelled,
            )
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
            await self.sender.send(
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
            self.owner, limit=command.limit, before=command.before, title_query=command.query
        )
        engine = self.services.engine
        items = []
        for conversation in conversations:
            wire = conversation.to_wire()
            wire["streaming_message_id"] = await engine.streaming_in(self.owner, conversation.id)
            items.append(wire)
        await self.sender.send(
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
        await self.sender.send(
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
        conversation = await self.services.store.rename_conversation(
            self.owner, command.conversation_id, title[: self.services.settings.max_title_chars]
        )
        change = ConversationChange(conversation.id, conversation.to_wire(), origin=self)
        await self.sender.send(_change_frame(change, command.id))
        self.services.engine.bus.publish(self.owner, change)
        self.services.engine.backplane.publish_change(self.owner, change)

    async def _delete(self, command: DeleteConversation) -> None:
        engine = self.services.engine
        store = self.services.store
        await store.get_conversation(self.owner, command.conversation_id)
        streaming = await engine.streaming_in(self.owner, command.conversation_id)
        if streaming is not None:
            with contextlib.suppress(NotFound):
                await engine.cancel(self.owner, message_id=streaming)
        await store.delete_conversation(self.owner, command.conversation_id)
        change = ConversationChange(command.conversation_id, None, origin=self)
        await self.sender.send(_change_frame(change, command.id))
        self.services.engine.bus.publish(self.owner, change)
        self.services.engine.backplane.publish_change(self.owner, change)

    async def _models(self, command: ListModels) -> None:
        await self.sender.send(
            protocol.build_result(
                "models",
                command.id,
                models=[model.to_wire() for model in self.services.providers.models()],
                default=self.services.settings.effective_default_model,
            )
        )

    async def _ping(self, command: Ping) -> None:
        await self.sender.send(protocol.build_result("pong", command.id))


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
    )


def _change_frame(change: ConversationChange, request_id: str | int | None) -> bytes:
    if change.conversation is None:
        return protocol.build_result(
            "conversation.deleted", request_id, conversation_id=change.conversation_id
        )
    return protocol.build_result(
        "conversation.updated", request_id, conversation=change.conversation
    )
