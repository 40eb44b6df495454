"""The seed's protocol at /ws/chat/{client_id}: its frames, fixed of its defects."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, expected_reply
from tests.server_harness import RunningServer, reply_finished, run_server
from tests.wsclient import Frame, RawClient

SEED_KEYS = {"session_id", "message_id", "message", "timestamp", "status"}


def finished(frame: Frame) -> bool:
    return frame["status"] in ("completed", "error", "cancelled")


def running_text(frames: list[Frame]) -> str:
    return "".join(frame["message"] for frame in frames if frame["status"] == "running")


async def ask(client: RawClient, message: str, **fields: object) -> list[Frame]:
    await client.send({"message": message, "stream": True, "model": "qwen-plus", **fields})
    return await client.until(finished)


async def test_answer_streams_in_the_seeds_frames(server: RunningServer) -> None:
    """running frames carry the chunks, then one completed frame with message null."""
    client = await RawClient.open(server.seed_url("client_1"))
    frames = await ask(client, "hello there")
    assert all(set(frame) == SEED_KEYS for frame in frames)
    assert running_text(frames) == expected_reply("hello there")
    assert frames[-1]["status"] == "completed"
    assert frames[-1]["message"] is None
    assert len({frame["session_id"] for frame in frames}) == 1
    await client.close()


async def test_two_hundred_clients_at_once_all_get_their_exact_answer(
    server: RunningServer,
) -> None:
    """200 seed clients connected together each receive exactly their own answer."""
    clients = await asyncio.gather(
        *(RawClient.open(server.seed_url(f"client_{n}")) for n in range(200))
    )
    results = await asyncio.gather(
        *(ask(client, f"question number {n} [delay=5]") for n, client in enumerate(clients))
    )
    for n, frames in enumerate(results):
        assert frames[-1]["status"] == "completed", frames[-1]
        assert running_text(frames) == expected_reply(f"question number {n} [delay=5]")
    await asyncio.gather(*(client.close() for client in clients))


async def test_non_streaming_answer_is_one_running_frame(server: RunningServer) -> None:
    """stream false gives the whole answer in one running frame, then completed."""
    client = await RawClient.open(server.seed_url("client_ns"))
    frames = await ask(client, "all at once", stream=False)
    assert [frame["status"] for frame in frames] == ["running", "completed"]
    assert frames[0]["message"] == expected_reply("all at once")
    await client.close()


async def test_malformed_json_gets_an_error_frame_and_the_connection_lives(
    server: RunningServer,
) -> None:
    """Invalid JSON is answered with the seed's error text; the next message still works."""
    client = await RawClient.open(server.seed_url("client_bad"))
    await client.send("{this is not json")
    error = await client.recv()
    assert error["status"] == "error"
    assert error["message"] == "无效的JSON格式"
    frames = await ask(client, "still here")
    assert running_text(frames) == expected_reply("still here")
    await client.close()


async def test_wrong_types_get_an_error_frame(server: RunningServer) -> None:
    """A message that is not a string, or an empty one, is refused with an error frame."""
    client = await RawClient.open(server.seed_url("client_types"))
    for bad in ({"message": 42}, {"message": "   "}, {"message": "x", "stream": "yes"}, [1, 2]):
        await client.send(orjson.dumps(bad).decode())
        assert (await client.recv())["status"] == "error"
    frames = await ask(client, "fine")
    assert frames[-1]["status"] == "completed"
    await client.close()


async def test_cancel_stops_the_upstream_and_keeps_the_partial_answer(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """The cancel message ends the reply at once, closes the upstream and stores the text."""
    client = await RawClient.open(server.seed_url("client_cancel"))
    await client.send({"message": "long one [tokens=500] [delay=20]", "model": "qwen-plus"})
    first = await client.recv()
    assert first["status"] == "running"
    session_id = first["session_id"]
    await client.send({"message": "cancel", "session_id": session_id})
    frames = await client.until(lambda frame: frame["status"] == "cancelled")
    assert frames[-1]["message"] == "会话已取消"
    await fake.wait_for(lambda stats: stats.disconnects >= 1)  # before the 10 s reply ended
    await reply_finished(server, "client_cancel", first["message_id"])
    history, _ = await server.services.store.history("client_cancel", session_id, limit=10)
    reply = history[-1]
    assert reply.status == "cancelled"
    seen = running_text([first, *frames])
    assert reply.content.startswith(seen)
    assert seen.startswith("t0 ")
    # The conversation goes on normally after a cancel.
    frames = await ask(client, "after cancel", session_id=session_id)
    assert running_text(frames) == expected_reply("after cancel")
    await client.close()


async def test_unknown_model_gets_an_error_that_names_it(server: RunningServer) -> None:
    """A model nobody serves is refused with an error frame naming it."""
    client = await RawClient.open(server.seed_url("client_model"))
    frames = await ask(client, "hi", model="no-such-model")
    assert frames[-1]["status"] == "error"
    assert "no-such-model" in frames[-1]["message"]
    await client.close()


async def test_reconnect_with_the_same_session_continues_with_history(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A new connection with the same client and session id sends the history to the model."""
    first = await RawClient.open(server.seed_url("client_again"))
    frames = await ask(first, "remember the word apple")
    session_id = frames[0]["session_id"]
    await first.close()

    second = await RawClient.open(server.seed_url("client_again"))
    frames = await ask(second, "what was the word?", session_id=session_id)
    assert frames[-1]["status"] == "completed"
    sent = fake.requests[-1].body["input"]["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "remember the word apple"
    assert sent[1]["content"] == expected_reply("remember the word apple")
    await second.close()


async def test_history_survives_a_server_restart(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """After a restart on the same database, a session continues with its history."""
    settings = make_settings()
    async with run_server(settings) as first_server:
        client = await RawClient.open(first_server.seed_url("client_restart"))
        frames = await ask(client, "before the restart")
        session_id = frames[0]["session_id"]
        await client.close()
    async with run_server(settings) as second_server:
        client = await RawClient.open(second_server.seed_url("client_restart"))
        await ask(client, "after the restart", session_id=session_id)
        sent = fake.requests[-1].body["input"]["messages"]
        assert [message["content"] for message in sent] == [
            "before the restart",
            expected_reply("before the restart"),
            "after the restart",
        ]
        await client.close()


async def test_other_clients_cannot_use_a_session_id(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """Another client naming someone's session id gets a fresh conversation, not theirs."""
    owner = await RawClient.open(server.seed_url("client_owner"))
    frames = await ask(owner, "my secret is 42")
    session_id = frames[0]["session_id"]
    intruder = await RawClient.open(server.seed_url("client_intruder"))
    await ask(intruder, "what is the secret?", session_id=session_id)
    sent = fake.requests[-1].body["input"]["messages"]
    assert [message["content"] for message in sent] == ["what is the secret?"]
    await owner.close()
    await intruder.close()


async def test_disconnect_does_not_cancel_the_answer(server: RunningServer) -> None:
    """A client that leaves mid-answer finds the whole answer stored, completed."""
    client = await RawClient.open(server.seed_url("client_leaves"))
    prompt = "a long answer [tokens=40] [delay=10]"
    await client.send({"message": prompt, "model": "qwen-plus"})
    first = await client.recv()
    await client.close()
    await reply_finished(server, "client_leaves", first["message_id"])
    history, _ = await server.services.store.history("client_leaves", first["session_id"], limit=5)
    assert history[-1].content == expected_reply(prompt)


async def test_idle_seed_connections_are_closed(make_settings: SettingsFactory) -> None:
    """A seed connection silent for idle_timeout is closed with 1000, as v1 ones are."""
    async with run_server(make_settings(idle_timeout=0.3)) as server:
        client = await RawClient.open(server.seed_url("idler"))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.connection.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle timeout")


async def test_seed_handshakes_are_checked_like_v1_ones(make_settings: SettingsFactory) -> None:
    """The seed's path refuses other origins (403) and connections over the owner's cap."""
    async with run_server(make_settings(max_connections_per_owner=1)) as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                server.seed_url("victim"), additional_headers={"Origin": "http://evil.example"}
            )
        assert refused.value.response.status_code == 403
        first = await RawClient.open(server.seed_url("capped"))
        second = await RawClient.open(server.seed_url("capped"))
        error = await second.recv()
        assert error["status"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(second.connection.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        frames = await ask(first, "still served")
        assert running_text(frames) == expected_reply("still served")
        await first.close()
