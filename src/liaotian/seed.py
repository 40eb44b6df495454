"""The seed's protocol, kept working: ``/ws/chat/{client_id}``.

Requests are the seed's ``{"message", "stream", "model", "session_id"?}`` and the message
(or whole frame) ``cancel``. Answers are the seed's frames
``{session_id, message_id, message, timestamp, status}`` with status ``running`` (one per
chunk), then ``completed`` (message null), ``cancelled`` or ``error``. The session id is the
conversation id, so seed sessions are ordinary conversations of the owner ``client_id``.

This is an adapter onto :class:`~liaotian.engine.ChatEngine`, not a second engine; the
parsing and frame building here do no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.websockets import WebSocketDisconnect

from liaotian.engine import SendOptions
from liaotian.errors import (
    EmptyMessage,
    FrameTooLarge,
    InvalidFrame,
    InvalidJson,
    LiaotianError,
    NotFound,
)
from liaotian.protocol import check_message_text, load_json
from liaotian.replies.log import Delta, Done, ReplyLog
from liaotian.replies.status import ReplyStatus
from liaotian.services import Services
from liaotian.store.repository import new_id
from liaotian.transport import ClientSocket

log = logging.getLogger(__name__)

CANCELLED_TEXT = "会话已取消"
INVALID_JSON_TEXT = "无效的JSON格式"
SESSION_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")


@dataclass(frozen=True, slots=True)
class SeedChat:
    message: str
    stream: bool
    model: str | None
    session_id: str | None


@dataclass(frozen=True, slots=True)
class SeedCancel:
    session_id: str | None


def parse_seed_frame(data: str, *, max_bytes: int, max_message_chars: int) -> SeedChat | SeedCancel:
    """Parse a seed request. Raises ProtocolError subclasses with the seed's wording."""
    if len(data) > max_bytes:
        raise FrameTooLarge(f"frame is larger than {max_bytes} bytes")
    if data.strip() == "cancel":
        return SeedCancel(session_id=None)
    try:
        raw = load_json(data)
    except InvalidJson:
        raise InvalidJson(INVALID_JSON_TEXT) from None
    if not isinstance(raw, dict):
        raise InvalidFrame("请求必须是JSON对象 (the request must be a JSON object)")
    session_id = raw.get("session_id")
    if session_id is not None and not _valid_session_id(session_id):
        raise InvalidFrame("session_id 必须是字符串 (session_id must be a short id string)")
    message = raw.get("message", "")
    if not isinstance(message, str):
        raise InvalidFrame("message 必须是字符串 (message must be a string)")
    if message.strip() == "cancel":
        return SeedCancel(session_id=session_id)
    stream = raw.get("stream", True)
    if not isinstance(stream, bool):
        raise InvalidFrame("stream 必须是布尔值 (stream must be true or false)")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not 0 < len(model) <= 200):
        raise InvalidFrame("model 必须是字符串 (model must be a string)")
    try:
        check_message_text(message, max_message_chars)
    except EmptyMessage:
        raise EmptyMessage("消息为空 (message is empty)") from None
    return SeedChat(message=message, stream=stream, model=model or None, session_id=session_id)


def _valid_session_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and all(char in SESSION_ID_CHARS for char in value)
    )


def seed_frame(session_id: str | None, message_id: str, message: str | None, status: str) -> str:
    """One seed answer frame, exactly the seed's shape."""
    return orjson.dumps(
        {
            "session_id": session_id,
            "message_id": message_id,
            "message": message,
            "timestamp": time.time(),
            "status": status,
        }
    ).decode()


class SeedConnection:
    """A seed-protocol session for owner ``client_id`` on one WebSocket."""

    __slots__ = ("_cancels", "_forwarders", "owner", "services", "socket")

    def __init__(self, socket: ClientSocket, services: Services, client_id: str) -> None:
        self.socket = socket
        self.services = services
        self.owner = client_id
        self._forwarders: dict[str, asyncio.Task[None]] = {}
        self._cancels: set[asyncio.Task[None]] = set()
        """Cancels being handled beside the read loop (they may wait on another process)."""

    async def send(self, frame: str) -> None:
        await self.socket.send_text(frame)

    async def run(self) -> None:
        """Serve until the client disconnects. Replies started here go on afterwards."""
        socket = self.socket
        socket.watch_idle(self.services.settings.idle_timeout, self._busy)
        try:
            while True:
                data = await socket.next_frame()
                if data is None:
                    return
                if isinstance(data, bytes):
                    await self.send(
                        seed_frame(
                            None,
                            new_id(),
                            "不支持二进制帧 (binary frames are not supported)",
                            "error",
                        )
                    )
                    continue
                await self._handle(data)
        except WebSocketDisconnect:
            return
        finally:
            forwarders = list(self._forwarders.values())
            for task in forwarders:
                task.cancel()
            # A cancel sent just before leaving still counts: let it finish (it is bounded).
            await asyncio.gather(*forwarders, *self._cancels, return_exceptions=True)

    def _busy(self) -> bool:
        return bool(self._forwarders)

    async def _handle(self, data: str) -> None:
        settings = self.services.settings
        try:
            request = parse_seed_frame(
                data,
                max_bytes=settings.max_frame_bytes,
                max_message_chars=settings.max_message_chars,
            )
        except LiaotianError as error:
            await self.send(seed_frame(_session_of(data), new_id(), error.message, "error"))
            return
        if isinstance(request, SeedCancel):
            # May wait on another process: beside the read loop, never in it.
            task = asyncio.create_task(self._answering(self._cancel(request), data))
            self._cancels.add(task)
            task.add_done_callback(self._cancels.discard)
        else:
            await self._answering(self._chat(request), data)

    async def _answering(self, handling: Awaitable[None], data: str) -> None:
        """Await ``handling``; its errors become the seed's error frames (never raised)."""
        try:
            await handling
        except WebSocketDisconnect:
            return
        except LiaotianError as error:
            session_id = _session_of(data)
            await self.send(seed_frame(session_id, new_id(), error.message, "error"))
        except Exception:
            log.exception("failed to handle a seed frame")
            await self.send(seed_frame(None, new_id(), "处理消息时出错 (internal error)", "error"))

    async def _chat(self, request: SeedChat) -> None:
        await self.services.guards.check_message(self.owner)
        session_id = request.session_id or new_id()
        reply_log = await self.services.engine.send(
            self.owner,
            SendOptions(
                message=request.message,
                conversation_id=session_id,
                model=request.model,
                stream=request.stream,
                create_missing_conversation=True,
            ),
        )
        message_id = reply_log.key.message_id
        task = asyncio.create_task(self._forward(reply_log))
        self._forwarders[message_id] = task
        task.add_done_callback(lambda _: self._forwarders.pop(message_id, None))

    async def _cancel(self, request: SeedCancel) -> None:
        engine = self.services.engine
        sessions = (
            [request.session_id]
            if request.session_id
            else [log_.key.conversation_id for log_ in self._live_logs()]
        )
        for session_id in sessions:
            with contextlib.suppress(NotFound):
                for message_id in await engine.cancel(self.owner, conversation_id=session_id):
                    forwarder = self._forwarders.pop(message_id, None)
                    if forwarder is not None:
                        forwarder.cancel()
        # The seed confirms a cancel whether or not anything was running.
        reply_session = request.session_id or (sessions[0] if sessions else None)
        # Quietly: the client may have left right after asking (the cancel still counts).
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.send(seed_frame(reply_session, new_id(), CANCELLED_TEXT, "cancelled"))

    def _live_logs(self) -> list[ReplyLog]:
        logs = []
        for message_id in list(self._forwarders):
            reply_log = self.services.engine.live_log(self.owner, message_id)
            if reply_log is not None and not reply_log.done:
                logs.append(reply_log)
        return logs

    async def _forward(self, reply_log: ReplyLog) -> None:
        key = reply_log.key
        session_id, message_id = key.conversation_id, key.message_id
        send = self.socket.send_text
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            async for batch in reply_log.follow(merge=True):
                text = "".join(event.text for event in batch if isinstance(event, Delta))
                if text:
                    await send(seed_frame(session_id, message_id, text, "running"))
                done = batch[-1]
                if isinstance(done, Done):
                    await self._send_done(session_id, message_id, done)

    async def _send_done(self, session_id: str, message_id: str, done: Done) -> None:
        if done.error is not None and done.error.get("code") == "not_saved":
            # The seed has no other way to say the answer was not kept.
            await self.send(seed_frame(session_id, message_id, done.error["message"], "error"))
        elif done.status == ReplyStatus.COMPLETED:
            await self.send(seed_frame(session_id, message_id, None, "completed"))
        elif done.status == ReplyStatus.CANCELLED:
            await self.send(seed_frame(session_id, message_id, CANCELLED_TEXT, "cancelled"))
        else:
            error = done.error or {}
            text = str(error.get("message") or "处理消息时出错")
            await self.send(seed_frame(session_id, message_id, text, "error"))


def _session_of(data: str) -> str | None:
    with contextlib.suppress(orjson.JSONDecodeError):
        raw = orjson.loads(data)
        if isinstance(raw, dict) and _valid_session_id(raw.get("session_id")):
            session_id: str = raw["session_id"]
            return session_id
    return None
