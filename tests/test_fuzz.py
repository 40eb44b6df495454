"""Hostile frames against a live server: typed errors only, and nothing breaks or half-writes.

The server runs once, on its own thread and event loop, so hypothesis can drive it with a
plain synchronous WebSocket client, example after example.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from liaotian.protocol import FRAME_TYPES
from liaotian.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer, run_server

ANSWERS = {
    "chat.send": {"reply.started", "error"},
    "chat.regenerate": {"reply.started", "error"},
    "chat.edit": {"reply.started", "error"},
    "chat.cancel": {"ack", "error"},
    "chat.subscribe": {"reply.started", "reply.delta", "reply.done", "ack", "error"},
    "conversations.list": {"conversations", "error"},
    "conversation.history": {"conversation.history", "error"},
    "conversation.rename": {"conversation.updated", "error"},
    "conversation.delete": {"conversation.deleted", "error"},
    "conversation.switch": {"conversation.updated", "error"},
    "share.create": {"share", "error"},
    "shares.list": {"shares", "error"},
    "share.revoke": {"share", "error"},
    "share.copy": {"conversation.updated", "error"},
    "models.list": {"models", "error"},
    "ping": {"pong", "error"},
}

hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=200),
    st.text(alphabet="\x00\ud7ff\u202e<>'\"&;/\\", max_size=50),
    st.sampled_from(["", " ", "../../etc/passwd", "a" * 5000, "qwen3-max", "<script>x</script>"]),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(min_value=0, max_value=2**31), max_size=3),
)
FIELDS = (
    "message", "conversation_id", "message_id", "model", "stream", "system_prompt",
    "temperature", "max_tokens", "client_message_id", "after_seq", "limit", "before",
    "title", "query", "extra",
)  # fmt: skip
frames = st.builds(
    lambda frame_type, fields: {"type": frame_type, **fields},
    st.sampled_from([*FRAME_TYPES, "nope", ""]),
    st.dictionaries(st.sampled_from(FIELDS), hostile, max_size=5),
)


class ThreadedServer:
    """The app and the fake upstream on a background event loop."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop = asyncio.Event()
        self.server: RunningServer | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        try:
            async with FakeUpstream(api_key="k") as fake:
                settings = Settings(
                    database_url=f"sqlite+aiosqlite:///{self.database}",
                    local_enabled=False,
                    dashscope_api_key="k",
                    dashscope_base_url=fake.dashscope_base_url,
                    default_model="qwen-plus",
                    messages_per_minute=100_000,
                    max_replies_per_owner=100_000,
                    shutdown_grace=0,
                )
                async with run_server(settings) as server:
                    self.server = server
                    self.ready.set()
                    await self.stop.wait()
        except BaseException as error:
            self.error = error
            self.ready.set()

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None or self.server is None:
            raise RuntimeError("the server did not start") from self.error
        return self

    @property
    def running(self) -> RunningServer:
        assert self.server is not None
        return self.server

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    with ThreadedServer(tmp_path_factory.mktemp("fuzz") / "fuzz.db") as server:
        yield server


@pytest.fixture(scope="module")
def socket(live: ThreadedServer) -> Iterator[ClientConnection]:
    with connect(f"{live.running.ws_url}?client_id=fuzzer", max_size=None) as connection:
        assert orjson.loads(connection.recv(10))["type"] == "hello"
        yield connection


def answer_to(connection: ClientConnection, request_id: int) -> dict[str, Any]:
    """The first frame answering ``request_id`` (other frames, e.g. deltas, are skipped)."""
    while True:
        frame: dict[str, Any] = orjson.loads(connection.recv(10))
        if frame.get("id") == request_id:
            return frame


counter = iter(range(10**9))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=frames)
def test_any_frame_gets_its_answer_or_a_typed_error(
    socket: ClientConnection, frame: dict[str, Any]
) -> None:
    """Every frame, however hostile, is answered by its own type's answer or an error."""
    request_id = next(counter)
    socket.send(orjson.dumps({**frame, "id": request_id}).decode())
    answer = answer_to(socket, request_id)
    expected = ANSWERS.get(frame["type"], {"error"})
    assert answer["type"] in expected, (frame, answer)
    if answer["type"] == "error":
        assert isinstance(answer["code"], str)
        assert isinstance(answer["message"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_garbage_gets_an_error_and_the_connection_lives(
    socket: ClientConnection, data: bytes | str
) -> None:
    """Non-JSON text and binary frames get an error frame; the next ping still works."""
    socket.send(data)
    request_id = next(counter)
    socket.send(orjson.dumps({"type": "ping", "id": request_id}).decode())
    while True:
        frame = orjson.loads(socket.recv(10))
        if frame.get("id") == request_id:
            assert frame["type"] == "pong"
            return


def test_after_the_fuzzing_others_chat_and_nothing_is_half_written(
    live: ThreadedServer, socket: ClientConnection
) -> None:
    """Another client chats normally; no stored user message lacks its answer."""
    with connect(f"{live.running.ws_url}?client_id=bystander") as other:
        other.recv(10)
        other.send(orjson.dumps({"type": "chat.send", "id": 1, "message": "hello"}).decode())
        while (frame := orjson.loads(other.recv(10)))["type"] != "reply.done":
            pass
        assert frame["status"] == "completed"

    async def check() -> list[tuple[str, str]]:
        store = live.running.services.store
        conversations, _ = await store.list_conversations("fuzzer", limit=200)
        pairs = []
        for conversation in conversations:
            messages, _ = await store.history("fuzzer", conversation.id, limit=500)
            roles = "".join(m.role[0] for m in messages)
            pairs.append((conversation.id, roles))
        return pairs

    future = asyncio.run_coroutine_threadsafe(check(), live.loop)
    for conversation_id, roles in future.result(30):
        assert roles.replace("ua", "") == "", (conversation_id, roles)
