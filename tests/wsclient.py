"""A raw WebSocket test client: send JSON frames, wait for frames matching a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

Frame = dict[str, Any]
TIMEOUT = 20.0


class RawClient:
    """One WebSocket connection that speaks JSON frames; every wait has a timeout."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, url: str) -> RawClient:
        return cls(await connect(url, max_size=None, compression=None))

    async def send(self, frame: Frame | str | bytes) -> None:
        if isinstance(frame, dict):
            await self.connection.send(orjson.dumps(frame).decode())
        else:
            await self.connection.send(frame)

    async def recv(self, within: float = TIMEOUT) -> Frame:
        data = await asyncio.wait_for(self.connection.recv(), within)
        frame: Frame = orjson.loads(data)
        return frame

    async def until(self, done: Callable[[Frame], bool], within: float = TIMEOUT) -> list[Frame]:
        """Every frame received up to and including the first one for which ``done`` is true."""
        frames: list[Frame] = []
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv(within)
                frames.append(frame)
                if done(frame):
                    return frames

    async def close(self) -> None:
        await self.connection.close()


def of_type(frame_type: str, **fields: Any) -> Callable[[Frame], bool]:
    """A condition: the frame has this type and these field values."""
    return lambda frame: (
        frame.get("type") == frame_type
        and all(frame.get(key) == value for key, value in fields.items())
    )


def reply_text(frames: list[Frame], message_id: str | None = None) -> str:
    return "".join(
        frame["text"]
        for frame in frames
        if frame.get("type") == "reply.delta"
        and (message_id is None or frame["message_id"] == message_id)
    )


def follow_text(frames: list[Frame], message_id: str, text: str = "", last_seq: int = -1) -> str:
    """A reply's text as a client following docs/protocol.md builds it from ``frames``.

    Starting from what it had (``text`` up to ``last_seq``): a ``reply.started`` starts the
    text over, a delta whose seq was already seen is dropped, any other delta is appended.
    """
    for frame in frames:
        if frame.get("message_id") != message_id:
            continue
        if frame["type"] == "reply.started":
            text, last_seq = "", 0
        elif frame["type"] == "reply.delta" and frame["seq"] > last_seq:
            text, last_seq = text + frame["text"], frame["seq"]
    return text


def follow_parts(
    frames: list[Frame],
    message_id: str,
    parts: dict[str, Any] | None = None,
    last_seq: int = -1,
) -> tuple[dict[str, Any], int]:
    """A reply's parts (``reasoning``, ``sources``, ``text``) as a client following
    docs/protocol.md builds them from ``frames``, starting from ``parts`` up to ``last_seq``.

    A ``reply.started`` starts every part over; a part event whose seq was already seen is
    dropped; any other is added. Returns the parts and the last seq seen.
    """
    parts = dict(parts or {"reasoning": "", "sources": [], "text": ""})
    for frame in frames:
        if frame.get("message_id") != message_id:
            continue
        kind = frame["type"]
        if kind == "reply.started":
            parts, last_seq = {"reasoning": "", "sources": [], "text": ""}, 0
            continue
        if kind not in ("reply.delta", "reply.reasoning", "reply.sources", "reply.done"):
            continue
        if frame["seq"] <= last_seq:
            continue
        last_seq = frame["seq"]
        if kind == "reply.delta":
            parts["text"] += frame["text"]
        elif kind == "reply.reasoning":
            parts["reasoning"] += frame["text"]
        elif kind == "reply.sources":
            parts["sources"] = frame["sources"]
    return parts, last_seq
