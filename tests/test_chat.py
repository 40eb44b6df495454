"""Protocol v1 at /ws against a real server and the fake upstream."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import connect as connect_ws
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from liaotian.backplane import ConversationChange, Notice, OwnerBus
from liaotian.engine import SendOptions, derived_conversation_id
from liaotian.replies.status import ReplyStatus
from liaotian.store.repository import NewReply, Partial
from liaotian.transport import Flag, LeanWebSocketProtocol, Mailbox, text_frame
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, expected_reply
from tests.server_harness import RunningServer, reply_finished, run_server
from tests.wsclient import Frame, RawClient, of_type, reply_text


async def connect(server: RunningServer, owner: str = "alice") -> RawClient:
    client = await RawClient.open(f"{server.ws_url}?client_id={owner}")
    hello = await client.recv()
    assert hello["type"] == "hello"
    return client


async def start(client: RawClient, message: str, **fields: object) -> Frame:
    """Send a message; return its reply.started (or the error frame)."""
    await client.send({"type": "chat.send", "id": "send", "message": message, **fields})
    frames = await client.until(
        lambda f: f.get("id") == "send" and f["type"] in ("reply.started", "error")
    )
    return frames[-1]


async def chat(client: RawClient, message: str, **fields: object) -> list[Frame]:
    """Send a message and return its frames from reply.started to reply.done."""
    started = await start(client, message, **fields)
    if started["type"] == "error":
        return [started]
    return [started, *await client.until(of_type("reply.done", message_id=started["message_id"]))]


async def until_done(client: RawClient, count: int) -> list[Frame]:
    """Every frame until ``count`` reply.done frames have arrived."""
    frames: list[Frame] = []
    finished = 0
    while finished < count:
        frame = await client.recv()
        frames.append(frame)
        finished += frame["type"] == "reply.done"
    return frames


async def test_hello_names_owner_protocol_and_default_model(server: RunningServer) -> None:
    """The first frame says who the owner is and which model answers by default."""
    client = await RawClient.open(f"{server.ws_url}?client_id=alice")
    hello = await client.recv()
    assert (hello["protocol"], hello["owner"], hello["default_model"]) == (1, "alice", "qwen-plus")
    await client.close()


async def test_reply_streams_exact_text_with_counting_seq(server: RunningServer) -> None:
    """started, deltas and done share ids; seq counts up from 0; the text is exact."""
    client = await connect(server)
    frames = await chat(client, "tell me something")
    started, done = frames[0], frames[-1]
    assert started["type"] == "reply.started"
    assert done["status"] == "completed"
    seqs = [frame["seq"] for frame in frames]
    assert seqs[0] == 0
    assert seqs == sorted(set(seqs))
    assert {frame["message_id"] for frame in frames} == {started["message_id"]}
    assert reply_text(frames) == expected_reply("tell me something")
    assert done["usage"]["output_tokens"] > 0
    assert done["finish_reason"] == "stop"
    assert done["ttft_ms"] is not None
    await client.close()


async def test_openai_compatible_models_answer_too(server: RunningServer) -> None:
    """A model discovered from the OpenAI-compatible endpoint streams through the same engine."""
    client = await connect(server)
    frames = await chat(client, "via openai", model="fake-chat")
    assert frames[-1]["status"] == "completed"
    assert reply_text(frames) == expected_reply("via openai")
    await client.close()


async def test_many_conversations_stream_over_one_connection(server: RunningServer) -> None:
    """Five replies in five conversations interleave on one socket, each text exact."""
    client = await connect(server)
    prompts = [f"conversation {n} [delay=5]" for n in range(5)]
    for n, prompt in enumerate(prompts):
        await client.send({"type": "chat.send", "id": n, "message": prompt})
    frames = await until_done(client, 5)
    started = {f["id"]: f["message_id"] for f in frames if f["type"] == "reply.started"}
    assert len({f["conversation_id"] for f in frames}) == 5
    for n, prompt in enumerate(prompts):
        assert reply_text(frames, started[n]) == expected_reply(prompt)
    await client.close()


async def test_a_second_send_while_streaming_is_refused_as_busy(server: RunningServer) -> None:
    """One reply at a time per conversation: the second send gets conversation_busy."""
    client = await connect(server)
    started = await start(client, "slow [tokens=50] [delay=20]")
    error = await start(client, "me too", conversation_id=started["conversation_id"])
    assert error["type"] == "error"
    assert error["code"] == "conversation_busy"
    assert error["retryable"] is True
    await client.close()


async def test_cancel_before_the_first_token_closes_the_upstream(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """Cancelling while the provider has sent nothing closes its stream before it answers."""
    client = await connect(server)
    started = await start(client, "thinking [first_delay=10000]")
    await fake.wait_for(lambda stats: stats.streams_open >= 1)
    await client.send({"type": "chat.cancel", "id": "c", "message_id": started["message_id"]})
    frames = await client.until(of_type("reply.done", message_id=started["message_id"]))
    assert any(f["type"] == "ack" and f["id"] == "c" for f in frames)
    assert frames[-1]["status"] == "cancelled"
    # A disconnect counts only if it comes before the scripted answer (10 s away) ends, so
    # the bound is the reply's own length, not a guess at how fast a loaded machine is.
    await fake.wait_for(lambda stats: stats.disconnects >= 1)
    await client.close()


async def test_cancel_mid_answer_keeps_the_text_and_the_conversation_goes_on(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A cancelled reply keeps its partial text, marked cancelled; the next send works."""
    client = await connect(server)
    started = await start(client, "count [tokens=500] [delay=10]")
    message_id, conversation_id = started["message_id"], started["conversation_id"]
    seen = await client.until(of_type("reply.delta"))
    await client.send({"type": "chat.cancel", "conversation_id": conversation_id})
    seen += await client.until(of_type("reply.done", message_id=message_id))
    assert seen[-1]["status"] == "cancelled"
    await fake.wait_for(lambda stats: stats.disconnects >= 1)  # before the 5 s reply ended
    stored = await server.services.store.reply_status("alice", message_id)
    assert stored is not None
    assert stored.status == "cancelled"
    assert stored.content == reply_text(seen)
    frames = await chat(client, "and now?", conversation_id=conversation_id)
    assert frames[-1]["status"] == "completed"
    await client.close()


async def test_disconnect_does_not_cancel_and_the_reply_is_saved(server: RunningServer) -> None:
    """Closing the socket mid-reply lets the reply finish and be stored completed."""
    client = await connect(server)
    prompt = "keep going [tokens=30] [delay=10]"
    started = await start(client, prompt)
    await client.close()
    await reply_finished(server, "alice", started["message_id"])
    stored = await server.services.store.reply_status("alice", started["message_id"])
    assert stored is not None
    assert stored.content == "".join(f"t{n} " for n in range(30))


async def test_partial_text_is_checkpointed_while_streaming(server: RunningServer) -> None:
    """While a reply streams, its text so far is in the database (not only at the end)."""
    client = await connect(server)
    started = await start(client, "slowly [tokens=2000] [delay=10]")  # cancelled below
    store = server.services.store
    async with asyncio.timeout(5):
        while True:
            info = await store.reply_status("alice", started["message_id"])
            assert info is not None
            if info.content:
                break
            await asyncio.sleep(0.02)
    assert info.status == "streaming"
    assert info.content.startswith("t0 ")
    await client.send({"type": "chat.cancel", "message_id": started["message_id"]})
    await client.close()


async def test_subscribe_after_a_seq_gets_exactly_the_rest(server: RunningServer) -> None:
    """A new connection subscribing after seq N gets every later event once, in order."""
    first = await connect(server)
    prompt = "resume me [tokens=40] [delay=10]"
    started = await start(first, prompt)
    frames = [started, *await first.until(lambda f: f["type"] == "reply.delta" and f["seq"] >= 5)]
    last_seq = frames[-1]["seq"]
    await first.close()

    second = await connect(server)
    await second.send(
        {
            "type": "chat.subscribe",
            "id": "s",
            "message_id": started["message_id"],
            "after_seq": last_seq,
        }
    )
    rest = await second.until(of_type("reply.done", message_id=started["message_id"]))
    assert rest[0]["id"] == "s"
    assert rest[0]["seq"] > last_seq
    assert reply_text(frames) + reply_text(rest) == "".join(f"t{n} " for n in range(40))
    await second.close()


async def test_subscribe_to_a_finished_reply_after_restart_rebuilds_it(
    make_settings: SettingsFactory,
) -> None:
    """After a restart a reply is rebuilt from the database and sent whole, whatever after_seq."""
    settings = make_settings()
    async with run_server(settings) as first_server:
        client = await connect(first_server)
        frames = await chat(client, "durable")
        await client.close()
    async with run_server(settings) as second_server:
        client = await connect(second_server)
        await client.send(
            {"type": "chat.subscribe", "message_id": frames[0]["message_id"], "after_seq": 3}
        )
        replay = await client.until(of_type("reply.done"))
        assert replay[0]["type"] == "reply.started"  # rebuilt: sent whole, from the start
        assert reply_text(replay) == expected_reply("durable")
        assert replay[-1]["status"] == "completed"
        await client.close()


async def test_subscribe_after_the_last_seq_is_acknowledged(server: RunningServer) -> None:
    """A client that saw the whole reply and subscribes again gets an ack, nothing more."""
    client = await connect(server)
    frames = await chat(client, "seen it all")
    done = frames[-1]
    await client.send(
        {
            "type": "chat.subscribe",
            "id": "again",
            "message_id": done["message_id"],
            "after_seq": done["seq"],
        }
    )
    ack = await client.recv()
    assert (ack["type"], ack["id"], ack["last_seq"]) == ("ack", "again", done["seq"])
    await client.close()


async def test_two_connections_of_one_owner_both_see_a_reply(server: RunningServer) -> None:
    """A reply started in one tab streams to the other tab of the same owner too."""
    sender = await connect(server)
    watcher = await connect(server)
    stranger = await connect(server, owner="bob")
    frames = await chat(sender, "for both tabs")
    watched = await watcher.until(of_type("reply.done"))
    assert reply_text(watched) == reply_text(frames) == expected_reply("for both tabs")
    await stranger.send({"type": "ping", "id": "p"})
    assert (await stranger.recv())["type"] == "pong"  # nothing of alice's arrived before it
    for client in (sender, watcher, stranger):
        await client.close()


async def test_same_client_message_id_starts_one_reply(server: RunningServer) -> None:
    """A send retried with the same client_message_id returns the first reply."""
    client = await connect(server)
    first = await chat(client, "only once", client_message_id="msg-1")
    conversation_id = first[0]["conversation_id"]
    again = await chat(
        client, "only once", client_message_id="msg-1", conversation_id=conversation_id
    )
    assert again[0]["message_id"] == first[0]["message_id"]
    await client.send(
        {"type": "conversation.history", "id": "h", "conversation_id": conversation_id}
    )
    history = await client.until(of_type("conversation.history"))
    assert len(history[-1]["messages"]) == 2
    await client.close()


async def test_a_retried_send_leaves_the_conversation_free(server: RunningServer) -> None:
    """After a retry answered with the earlier reply, the next message is answered."""
    client = await connect(server)
    first = await chat(client, "once", client_message_id="retry-1")
    conversation_id = first[0]["conversation_id"]
    await chat(client, "once", client_message_id="retry-1", conversation_id=conversation_id)
    after = await chat(client, "next", conversation_id=conversation_id)
    assert after[-1]["status"] == "completed"
    assert reply_text(after) == expected_reply("next")
    await client.close()


async def test_a_send_whose_caller_is_cancelled_is_still_answered(server: RunningServer) -> None:
    """Cancelling the task that sent a message while it is being stored does not leave a
    stored reply that nobody runs: the reply completes and the conversation stays usable."""
    engine = server.services.engine
    client = await connect(server)  # another connection of the owner sees the reply
    sending = asyncio.create_task(
        engine.send("alice", SendOptions(message="[tokens=5] orphan", client_message_id="o-1"))
    )
    await asyncio.sleep(0)  # it runs until it awaits the stored transaction; then cancel
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    frames = await client.until(lambda f: f["type"] == "reply.done")
    assert frames[0]["type"] == "reply.started"
    assert frames[-1]["status"] == "completed"
    conversation_id = derived_conversation_id("alice", "o-1")
    assert frames[-1]["conversation_id"] == conversation_id
    after = await chat(client, "next", conversation_id=conversation_id)
    assert after[-1]["status"] == "completed"
    await client.close()


async def test_retried_first_message_does_not_open_a_second_conversation(
    server: RunningServer,
) -> None:
    """Retrying a new conversation's first send (same client_message_id) returns its reply."""
    client = await connect(server)
    first = await chat(client, "hello again", client_message_id="first-1")
    again = await chat(client, "hello again", client_message_id="first-1")
    assert again[0]["message_id"] == first[0]["message_id"]
    assert again[0]["conversation_id"] == first[0]["conversation_id"]
    await client.send({"type": "conversations.list"})
    listed = (await client.until(of_type("conversations")))[-1]["conversations"]
    assert len(listed) == 1
    await client.close()


async def test_history_lists_and_pages_messages(server: RunningServer) -> None:
    """History returns messages oldest first, newest page first, with outcomes."""
    client = await connect(server)
    frames = await chat(client, "first")
    conversation_id = frames[0]["conversation_id"]
    for n in range(2):
        await chat(client, f"more {n}", conversation_id=conversation_id)
    await client.send(
        {"type": "conversation.history", "conversation_id": conversation_id, "limit": 4}
    )
    page = (await client.until(of_type("conversation.history")))[-1]
    assert page["has_more"] is True
    assert [m["content"] for m in page["messages"]][::2] == ["more 0", "more 1"]
    assert page["messages"][-1]["status"] == "completed"
    assert page["messages"][-1]["usage"]["output_tokens"] > 0
    await client.send(
        {
            "type": "conversation.history",
            "conversation_id": conversation_id,
            "limit": 4,
            "before": page["messages"][0]["id"],
        }
    )
    older = (await client.until(of_type("conversation.history")))[-1]
    assert older["has_more"] is False
    assert [m["content"] for m in older["messages"]] == ["first", expected_reply("first")]
    await client.close()


async def test_conversations_list_rename_and_delete(server: RunningServer) -> None:
    """Conversations are listed newest first, titled, renamed and deleted."""
    client = await connect(server)
    one = (await chat(client, "The first topic"))[0]["conversation_id"]
    two = (await chat(client, "The second topic"))[0]["conversation_id"]
    await client.send({"type": "conversations.list", "id": 1})
    listed = (await client.until(of_type("conversations")))[-1]["conversations"]
    assert [(c["id"], c["title"]) for c in listed] == [
        (two, "The second topic"),
        (one, "The first topic"),
    ]
    await client.send({"type": "conversation.rename", "conversation_id": one, "title": " Renamed "})
    updated = (await client.until(of_type("conversation.updated")))[-1]
    assert updated["conversation"]["title"] == "Renamed"
    await client.send({"type": "conversation.delete", "conversation_id": two})
    await client.until(of_type("conversation.deleted", conversation_id=two))
    await client.send({"type": "conversation.history", "id": "gone", "conversation_id": two})
    error = (await client.until(of_type("error")))[-1]
    assert (error["id"], error["code"]) == ("gone", "not_found")
    await client.close()


async def test_another_owner_gets_not_found_for_everything(server: RunningServer) -> None:
    """bob can read, rename, delete, cancel or follow none of alice's things."""
    alice = await connect(server)
    started = await start(alice, "private [tokens=100] [delay=10]")
    conversation_id, message_id = started["conversation_id"], started["message_id"]
    bob = await connect(server, owner="bob")
    attempts: list[Frame] = [
        {"type": "conversation.history", "conversation_id": conversation_id},
        {"type": "conversation.rename", "conversation_id": conversation_id, "title": "x"},
        {"type": "conversation.delete", "conversation_id": conversation_id},
        {"type": "chat.cancel", "message_id": message_id},
        {"type": "chat.cancel", "conversation_id": conversation_id},
        {"type": "chat.subscribe", "message_id": message_id},
        {"type": "chat.send", "message": "hi", "conversation_id": conversation_id},
    ]
    for n, attempt in enumerate(attempts):
        await bob.send({**attempt, "id": n})
        reply = await bob.recv()
        assert (reply["type"], reply["code"], reply["id"]) == ("error", "not_found", n)
    await bob.send({"type": "conversations.list"})
    assert (await bob.recv())["conversations"] == []
    done = await alice.until(of_type("reply.done", message_id=message_id))
    assert done[-1]["status"] == "completed"
    await alice.close()
    await bob.close()


async def test_bad_frames_get_typed_errors_and_the_connection_lives(server: RunningServer) -> None:
    """Invalid JSON, wrong types, unknown types, empty and oversized messages: errors only."""
    client = await connect(server)
    cases: list[tuple[str | bytes, str]] = [
        ("{nope", "invalid_json"),
        ('{"type": "chat.send", "message": 3}', "invalid_frame"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "chat.send", "message": "  "}', "empty_message"),
        ('{"type": "chat.send", "message": "' + "x" * 40_000 + '"}', "message_too_long"),
        ('{"type": "ping", "pad": "' + "x" * 1_100_000 + '"}', "frame_too_large"),
        (b"\x00\x01binary", "invalid_frame"),
        ('{"type": "chat.cancel"}', "invalid_frame"),
    ]
    for data, code in cases:
        await client.send(data)
        error = await client.recv()
        assert (error["type"], error["code"]) == ("error", code)
    frames = await chat(client, "still fine")
    assert reply_text(frames) == expected_reply("still fine")
    await client.send({"type": "conversations.list"})
    listed = (await client.until(of_type("conversations")))[-1]["conversations"]
    assert [c["title"] for c in listed] == ["still fine"]  # nothing half-written
    await client.close()


async def test_unknown_and_unconfigured_models_get_errors_that_say_what_to_do(
    make_settings: SettingsFactory,
) -> None:
    """No provider: model_not_found; no key: provider_not_configured naming the variable."""
    async with run_server(make_settings(dashscope_api_key=None)) as server:
        client = await connect(server)
        error = await start(client, "hi", model="qwen3-max")
        assert error["code"] == "provider_not_configured"
        assert error["message"] == "qwen3-max needs DASHSCOPE_API_KEY on the server"
        error = await start(client, "hi", model="gpt-17")
        assert error["code"] == "model_not_found"
        assert "gpt-17" in error["message"]
        await client.send({"type": "models.list"})
        models = {m["id"]: m for m in (await client.until(of_type("models")))[-1]["models"]}
        assert models["qwen3-max"]["available"] is False
        assert models["fake-chat"]["available"] is True
        await client.close()


async def test_provider_failures_end_the_reply_with_a_stable_code(server: RunningServer) -> None:
    """429, 500, a dropped stream and an in-stream error each end as error with their code."""
    client = await connect(server)
    expectations = {
        "[fault=429] [retry_after=0]": "provider_rate_limited",
        "[fault=500]": "provider_unavailable",
        "[fault=stream_error]": "provider_bad_request",
        "[fault=drop_after=3] [tokens=10]": "provider_interrupted",
    }
    for prompt, code in expectations.items():
        frames = await chat(client, prompt)
        assert frames[-1]["status"] == "error", prompt
        assert frames[-1]["error"]["code"] == code, prompt
    stored = await server.services.store.reply_status("alice", frames[0]["message_id"])
    assert stored is not None
    assert stored.content == "t0 t1 t2 "  # the text before the drop is kept
    await client.close()


async def test_system_prompt_and_history_reach_the_model(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """The system prompt goes first, then the earlier turns, then the new message."""
    client = await connect(server)
    frames = await chat(client, "one", system_prompt="You are terse.")
    await chat(client, "two", conversation_id=frames[0]["conversation_id"])
    sent = fake.requests[-1].body["input"]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "You are terse."),
        ("user", "one"),
        ("assistant", expected_reply("one")),
        ("user", "two"),
    ]
    await client.close()


async def test_history_window_keeps_the_last_messages(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """With history_messages=2 only the last two stored messages go to the model."""
    async with run_server(make_settings(history_messages=2)) as server:
        client = await connect(server)
        frames = await chat(client, "a")
        conversation_id = frames[0]["conversation_id"]
        await chat(client, "b", conversation_id=conversation_id)
        await chat(client, "c", conversation_id=conversation_id)
        sent = fake.requests[-1].body["input"]["messages"]
        assert [m["content"] for m in sent] == ["b", expected_reply("b"), "c"]
        await client.close()


async def test_missing_client_id_is_refused_at_the_handshake(server: RunningServer) -> None:
    """Without a client id the WebSocket is never accepted."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.ws_url)
        assert refused.value.status == 403


async def test_health_and_readiness(server: RunningServer) -> None:
    """/healthz answers; /readyz reports the database and the providers."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.http_url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{server.http_url}/readyz") as response:
            body = await response.json()
            assert response.status == 200
            assert body["checks"]["database"] == "ok"
            assert set(body["checks"]["providers"]) >= {"dashscope", "openai"}


async def test_page_is_served_with_a_strict_content_security_policy(server: RunningServer) -> None:
    """/ serves the page; the CSP allows no inline script and no other origin."""
    async with aiohttp.ClientSession() as session, session.get(f"{server.http_url}/") as response:
        assert response.status == 200
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        scripts = re.findall(r"<script[^>]*>", await response.text())
        assert scripts
        assert all(" src=" in tag for tag in scripts)  # no inline script


async def test_replies_left_streaming_by_a_crash_are_marked_interrupted(
    make_settings: SettingsFactory,
) -> None:
    """A reply still 'streaming' in the database at start-up becomes interrupted, text kept."""
    settings = make_settings()
    async with run_server(settings) as server:
        store = server.services.store
        begun = await store.begin_reply(
            NewReply(
                owner="alice",
                conversation_id="crash",
                message="q",
                model="qwen-plus",
                history_messages=10,
                history_chars=1000,
                create=True,
            )
        )
        reply_id = begun.reply_id
        await store.checkpoint([Partial(reply_id, "partial text")])
    # The first server stopped cleanly, but it never ran that reply: to it, the row is a
    # leftover exactly like one a killed process leaves.
    async with run_server(settings) as server:
        info = await server.services.store.reply_status("alice", reply_id)
        assert info is not None
        assert (info.status, info.content) == (ReplyStatus.INTERRUPTED.value, "partial text")


async def test_regenerate_answers_the_last_message_again(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """chat.regenerate streams a new answer to the same question; the last answer leaves the
    active path (it stays as a sibling, see tests/test_branches.py)."""
    client = await connect(server)
    first = await chat(client, "first question")
    conversation_id = first[0]["conversation_id"]
    second = await chat(client, "second question", conversation_id=conversation_id)
    await client.send({"type": "chat.regenerate", "id": "re", "conversation_id": conversation_id})
    started = (await client.until(of_type("reply.started", id="re")))[-1]
    assert started["user_message"] == "second question"
    assert started["replaces"] == [second[0]["message_id"]]
    assert started["user_message_id"] == second[0]["user_message_id"]
    await client.until(of_type("reply.done", message_id=started["message_id"]))
    sent = fake.requests[-1].body["input"]["messages"]
    assert [m["content"] for m in sent] == [
        "first question",
        expected_reply("first question"),
        "second question",
    ]
    await client.send({"type": "conversation.history", "conversation_id": conversation_id})
    messages = (await client.until(of_type("conversation.history")))[-1]["messages"]
    assert [m["id"] for m in messages][-1] == started["message_id"]
    assert len(messages) == 4
    await client.close()


async def test_edit_takes_a_message_and_what_followed_off_the_active_path(
    server: RunningServer,
) -> None:
    """chat.edit answers the new text; the edited message and every later one leave the
    active path (they stay on their branch, see tests/test_branches.py)."""
    client = await connect(server)
    first = await chat(client, "original")
    conversation_id = first[0]["conversation_id"]
    await chat(client, "follow-up", conversation_id=conversation_id)
    edited = await start_frame(
        client,
        {
            "type": "chat.edit",
            "id": "ed",
            "conversation_id": conversation_id,
            "message_id": first[0]["user_message_id"],
            "message": "edited",
        },
    )
    assert len(edited["replaces"]) == 4
    done = await client.until(of_type("reply.done", message_id=edited["message_id"]))
    assert reply_text(done) == expected_reply("edited")
    await client.send({"type": "conversation.history", "conversation_id": conversation_id})
    messages = (await client.until(of_type("conversation.history")))[-1]["messages"]
    assert [m["content"] for m in messages] == ["edited", expected_reply("edited")]
    await client.close()


async def start_frame(client: RawClient, frame: Frame) -> Frame:
    await client.send(frame)
    return (await client.until(lambda f: f.get("id") == frame["id"]))[-1]


async def test_edit_of_an_assistant_message_is_not_found(server: RunningServer) -> None:
    """Only user messages can be edited; anything else is not_found and nothing changes."""
    client = await connect(server)
    first = await chat(client, "keep me")
    error = await start_frame(
        client,
        {
            "type": "chat.edit",
            "id": "bad",
            "conversation_id": first[0]["conversation_id"],
            "message_id": first[0]["message_id"],
            "message": "nope",
        },
    )
    assert (error["type"], error["code"]) == ("error", "not_found")
    await client.close()


async def test_search_finds_conversations_by_title(server: RunningServer) -> None:
    """conversations.list with query keeps the titles containing it, in any case."""
    client = await connect(server)
    await chat(client, "Recipe for dumplings")
    await chat(client, "Weather tomorrow")
    await chat(client, "100% sure_thing")
    for query, titles in (
        ("DUMPLING", ["Recipe for dumplings"]),
        ("%", ["100% sure_thing"]),
        ("_", ["100% sure_thing"]),
        ("nothing", []),
    ):
        await client.send({"type": "conversations.list", "query": query})
        listed = (await client.until(of_type("conversations")))[-1]["conversations"]
        assert [c["title"] for c in listed] == titles, query
    await client.close()


async def test_renames_and_deletes_reach_the_owners_other_tabs(server: RunningServer) -> None:
    """Another connection of the owner is told of a rename and a delete, without an id."""
    tab_one = await connect(server)
    tab_two = await connect(server)
    frames = await chat(tab_one, "shared")
    await tab_two.until(of_type("reply.done"))
    conversation_id = frames[0]["conversation_id"]
    await tab_one.send(
        {"type": "conversation.rename", "id": 1, "conversation_id": conversation_id, "title": "New"}
    )
    updated = (await tab_two.until(of_type("conversation.updated")))[-1]
    assert "id" not in updated
    assert updated["conversation"]["title"] == "New"
    await tab_one.send({"type": "conversation.delete", "id": 2, "conversation_id": conversation_id})
    deleted = (await tab_two.until(of_type("conversation.deleted")))[-1]
    assert deleted["conversation_id"] == conversation_id
    for tab in (tab_one, tab_two):
        await tab.close()


@pytest.mark.parametrize("cut_after", [0, 1, 5, 19, 20, 21])
async def test_resume_after_a_cut_at_any_point_is_exact(
    server: RunningServer, cut_after: int
) -> None:
    """Cut after seq N (0 = started only … 21 = done seen): resuming gives exactly the rest."""
    prompt = "[tokens=20] [delay=5]"
    first = await connect(server)
    started = await start(first, prompt)
    seen = [started]
    if cut_after > 0:
        seen += await first.until(lambda f: f["seq"] >= cut_after)
    await first.close()
    second = await connect(server)
    await second.send(
        {
            "type": "chat.subscribe",
            "id": "r",
            "message_id": started["message_id"],
            "after_seq": seen[-1]["seq"],
        }
    )
    rest = await second.until(lambda f: f.get("id") == "r" or f["type"] == "reply.done")
    if rest[-1]["type"] == "ack":  # the done event had been seen already
        assert seen[-1]["type"] == "reply.done"
    elif rest[-1]["type"] != "reply.done":
        rest += await second.until(of_type("reply.done"))
    assert reply_text(seen) + reply_text(rest) == "".join(f"t{n} " for n in range(20))
    seqs = [frame["seq"] for frame in seen + rest if "seq" in frame]
    assert seqs == sorted(set(seqs))  # nothing twice
    await second.close()


async def test_resume_when_cut_before_the_first_event(server: RunningServer) -> None:
    """A client that never saw reply.started resends with its client_message_id: same reply."""
    first = await connect(server)
    await first.send(
        {"type": "chat.send", "message": "[tokens=10] [delay=5]", "client_message_id": "c-1"}
    )
    await first.close()  # before reading anything
    second = await connect(server)
    frames = await chat(second, "[tokens=10] [delay=5]", client_message_id="c-1")
    assert reply_text(frames) == "".join(f"t{n} " for n in range(10))
    await second.send({"type": "conversations.list"})
    listed = (await second.until(of_type("conversations")))[-1]["conversations"]
    assert len(listed) == 1  # one conversation, one reply
    await second.close()


async def test_resume_during_a_cancel_ends_cancelled_with_the_exact_text(
    server: RunningServer,
) -> None:
    """Cancel then drop at once: resuming shows the text up to the cancel, then cancelled."""
    first = await connect(server)
    started = await start(first, "[tokens=300] [delay=10]")
    seen = [started, *await first.until(lambda f: f["seq"] >= 3)]
    await first.send({"type": "chat.cancel", "message_id": started["message_id"]})
    await first.close()
    second = await connect(server)
    await second.send(
        {
            "type": "chat.subscribe",
            "message_id": started["message_id"],
            "after_seq": seen[-1]["seq"],
        }
    )
    rest = await second.until(of_type("reply.done"))
    assert rest[-1]["status"] == "cancelled"
    stored = await server.services.store.reply_status("alice", started["message_id"])
    assert stored is not None
    assert reply_text(seen) + reply_text(rest) == stored.content
    await second.close()


async def test_invalid_utf8_text_closes_with_1007_and_others_go_on(server: RunningServer) -> None:
    """A text frame that is not UTF-8 closes that connection with 1007; others are unaffected."""
    bystander = await connect(server, owner="bob")
    client = await connect(server)
    await client.connection.send(b'{"type": "ping", "x": "\xff\xfe"}', text=True)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.connection.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1007
    frames = await chat(bystander, "unaffected")
    assert reply_text(frames) == expected_reply("unaffected")
    await bystander.close()


async def test_a_fragmented_frame_is_read_whole(server: RunningServer) -> None:
    """A message sent in several WebSocket fragments is one frame to the server."""
    client = await connect(server)
    parts = ['{"type": "chat.send", ', '"id": "frag", "message": ', '"in pieces"}']
    await client.connection.send(iter(parts))
    frames = await client.until(of_type("reply.done"))
    assert reply_text(frames) == expected_reply("in pieces")
    await client.close()


async def test_frames_of_every_length_arrive_whole(server: RunningServer) -> None:
    """Frames under 126 bytes, up to 64 KiB and beyond (each its own length encoding)
    arrive whole, their lengths counted in UTF-8 bytes."""
    client = await connect(server)
    message = "汉字" * 5_000  # 30,000 bytes in UTF-8
    started = await start(client, message)
    assert started["user_message"] == message
    await client.until(of_type("reply.done"))
    conversation_id = started["conversation_id"]
    for _ in range(2):
        await start(client, message, conversation_id=conversation_id)
        await client.until(of_type("reply.done"))
    await client.send({"type": "conversation.history", "conversation_id": conversation_id})
    history = (await client.until(of_type("conversation.history")))[-1]
    assert [m["content"] for m in history["messages"]][::2] == [message] * 3
    await client.send({"type": "ping", "id": "p"})
    assert (await client.until(of_type("pong")))[-1]["id"] == "p"
    await client.close()


async def test_other_websocket_paths_are_refused(server: RunningServer) -> None:
    """Only /ws and /ws/chat/{client_id} take WebSockets; other paths are refused (403)."""
    base = f"ws://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        for path in ("/ws/other", "/ws/chat/", "/ws/chat/a/b", "/wss"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{base}{path}?client_id=alice")
            assert refused.value.status == 403, path


def test_owner_bus_calls_the_owners_listeners_until_they_unsubscribe() -> None:
    """publish calls each listener of that owner, in order, and no one else's."""

    class Heard(OwnerBus.Listener):
        def __init__(self, name: str, log: list[tuple[str, object]]) -> None:
            self.name, self.log = name, log

        def notify(self, notice: Notice) -> None:
            self.log.append((self.name, notice))

    heard: list[tuple[str, object]] = []
    bus = OwnerBus()
    first, second, other = Heard("first", heard), Heard("second", heard), Heard("other", heard)
    bus.subscribe("alice", first)
    bus.subscribe("alice", second)
    bus.subscribe("bob", other)
    change = ConversationChange("c1", None)
    bus.publish("alice", change)
    assert heard == [("first", change), ("second", change)]
    bus.unsubscribe("alice", first)
    bus.unsubscribe("alice", second)
    bus.unsubscribe("alice", second)  # twice is harmless
    assert not bus.has_listeners("alice")
    assert bus.has_listeners("bob")
    heard.clear()
    bus.publish("alice", change)
    assert heard == []


# -- the transport: LeanWebSocketProtocol -------------------------------------------------


@asynccontextmanager
async def lean_server(app: ASGIApp) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """``app`` behind uvicorn with LeanWebSocketProtocol on a free port: (url, server)."""
    config = uvicorn.Config(
        app,
        ws=LeanWebSocketProtocol,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start-up")
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/", server
    finally:
        server.should_exit = True
        await task
        sock.close()


def test_text_frames_are_framed_as_websockets_frames_them() -> None:
    """text_frame gives websockets' own bytes for every length encoding."""
    for size in (0, 1, 125, 126, 65_535, 65_536, 70_000):
        payload = b"x" * size
        expected = WsFrame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
        assert text_frame(payload) == expected, size


async def test_lean_protocol_sends_in_order_through_back_pressure() -> None:
    """Text (every length) and binary frames arrive whole and in order, also when the
    client reads slower than the server writes; the handshake is not kept after accept."""
    sizes = [10, 200, 70_000] * 300  # ~21 MB: more than the socket buffers hold
    paused = asyncio.Event()
    kept: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        (protocol,) = server.server_state.connections
        assert isinstance(protocol, LeanWebSocketProtocol)
        kept.append(hasattr(protocol, "request") or hasattr(protocol, "response"))
        for index, size in enumerate(sizes):
            if not protocol.writable.is_set():
                paused.set()
            await send({"type": "websocket.send", "text": f"{index:06}" + "汉" * size})
        await send({"type": "websocket.send", "bytes": b"\x00end"})
        await receive()

    async with lean_server(app) as (url, server), connect_ws(url, max_size=None) as client:
        await asyncio.wait_for(paused.wait(), 20)  # the client has not read anything yet
        for index, size in enumerate(sizes):
            frame = await asyncio.wait_for(client.recv(), 20)
            assert frame == f"{index:06}" + "汉" * size
        assert await asyncio.wait_for(client.recv(), 20) == b"\x00end"
    assert kept == [False]


async def test_lean_protocol_refuses_sends_after_a_close() -> None:
    """After the client leaves a send raises OSError; after the app closes, RuntimeError."""
    outcomes: list[str] = []
    both = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await session(receive, send)
        finally:
            if len(outcomes) == 2:
                both.set()

    async def session(receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        message = await receive()
        if message["type"] == "websocket.disconnect":  # the client left
            try:
                await send({"type": "websocket.send", "text": "late"})
            except OSError:
                outcomes.append("OSError")
            return
        await send({"type": "websocket.close", "code": 4000})
        try:
            await send({"type": "websocket.send", "text": "after close"})
        except RuntimeError:
            outcomes.append("RuntimeError")

    async with lean_server(app) as (url, _):
        async with connect_ws(url) as leaving:
            assert await leaving.recv() == "hello"
        async with connect_ws(url) as staying:
            assert await staying.recv() == "hello"
            await staying.send("close, please")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(staying.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4000
        await asyncio.wait_for(both.wait(), 5)
    assert sorted(outcomes) == ["OSError", "RuntimeError"]


async def test_mailbox_and_flag_wake_their_waiters() -> None:
    """Mailbox.get waits for an item and a cancelled get loses none; Flag.wait waits for set."""
    mailbox: Mailbox[int] = Mailbox()
    cancelled = asyncio.create_task(mailbox.get())
    getter = asyncio.create_task(mailbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    mailbox.put_nowait(1)
    mailbox.put_nowait(2)
    assert await asyncio.wait_for(getter, 1) == 1
    assert not mailbox.empty()
    assert await mailbox.get() == 2
    assert mailbox.empty()
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True]
    assert await flag.wait() is True
