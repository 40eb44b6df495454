"""Conversations as trees: regenerate and edit add branches, conversation.switch picks one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

from liaotian.client import Client
from tests.cluster import Cluster, run_cluster
from tests.conftest import fresh_postgres_database
from tests.fake_upstream import FakeUpstream, expected_reply
from tests.server_harness import RunningServer
from tests.test_chat import chat, connect, start, start_frame
from tests.wsclient import Frame, RawClient, follow_text, of_type, reply_text


async def regenerate(client: RawClient, conversation_id: str, **fields: object) -> list[Frame]:
    """chat.regenerate; its frames from reply.started to reply.done (or the error)."""
    frame = {"type": "chat.regenerate", "id": "re", "conversation_id": conversation_id}
    started = await start_frame(client, {**frame, **fields})
    if started["type"] == "error":
        return [started]
    return [started, *await client.until(of_type("reply.done", message_id=started["message_id"]))]


async def edit(client: RawClient, conversation_id: str, message_id: str, text: str) -> list[Frame]:
    """chat.edit; its frames from reply.started to reply.done (or the error)."""
    frame = {
        "type": "chat.edit",
        "id": "ed",
        "conversation_id": conversation_id,
        "message_id": message_id,
        "message": text,
    }
    started = await start_frame(client, frame)
    if started["type"] == "error":
        return [started]
    return [started, *await client.until(of_type("reply.done", message_id=started["message_id"]))]


async def switch(client: RawClient, conversation_id: str, message_id: str) -> Frame:
    """conversation.switch; its answer (conversation.updated or error)."""
    frame = {
        "type": "conversation.switch",
        "id": "sw",
        "conversation_id": conversation_id,
        "message_id": message_id,
    }
    return await start_frame(client, frame)


async def history(client: RawClient, conversation_id: str, **fields: object) -> Frame:
    frame = {"type": "conversation.history", "id": "h", "conversation_id": conversation_id}
    return await start_frame(client, {**frame, **fields})


async def three_answers(client: RawClient) -> tuple[str, list[Frame]]:
    """A conversation whose one question was answered three times; its id and the three
    reply.started frames."""
    first = await chat(client, "question")
    conversation_id = first[0]["conversation_id"]
    second = await regenerate(client, conversation_id)
    third = await regenerate(client, conversation_id)
    return conversation_id, [first[0], second[0], third[0]]


async def test_regenerating_twice_keeps_three_sibling_answers(server: RunningServer) -> None:
    """Two regenerates leave three answers side by side; the last is the active path's."""
    client = await connect(server)
    conversation_id, started = await three_answers(client)
    answers = [frame["message_id"] for frame in started]
    assert started[2]["reply_siblings"] == answers
    assert started[2]["replaces"] == [answers[1]]
    assert started[2]["user_message_id"] == started[0]["user_message_id"]
    assert started[2]["user_siblings"] == [started[0]["user_message_id"]]
    assert started[2]["user_parent_id"] is None
    page = await history(client, conversation_id)
    assert page["conversation"]["active_message_id"] == answers[2]
    messages = page["messages"]
    assert [m["id"] for m in messages] == [started[0]["user_message_id"], answers[2]]
    assert messages[1]["siblings"] == answers
    assert messages[1]["parent_id"] == messages[0]["id"]
    await client.close()


async def test_switch_flips_between_the_answers(server: RunningServer) -> None:
    """conversation.switch makes another answer active; history shows it."""
    client = await connect(server)
    conversation_id, started = await three_answers(client)
    answers = [frame["message_id"] for frame in started]
    for answer in (answers[0], answers[2], answers[1]):
        updated = await switch(client, conversation_id, answer)
        assert updated["type"] == "conversation.updated"
        assert updated["conversation"]["active_message_id"] == answer
        page = await history(client, conversation_id)
        assert page["messages"][-1]["id"] == answer
    await client.close()


async def test_edit_adds_a_sibling_user_message_and_keeps_the_old_branch(
    server: RunningServer,
) -> None:
    """An edit answers the new text beside the old one; switching back shows the old branch
    whole, down to its last answer."""
    client = await connect(server)
    first = await chat(client, "original")
    conversation_id = first[0]["conversation_id"]
    second = await chat(client, "follow-up", conversation_id=conversation_id)
    original_id = first[0]["user_message_id"]
    edited = await edit(client, conversation_id, original_id, "edited")
    started = edited[0]
    assert started["replaces"] == [
        original_id,
        first[0]["message_id"],
        second[0]["user_message_id"],
        second[0]["message_id"],
    ]
    assert started["user_siblings"] == [original_id, started["user_message_id"]]
    assert started["reply_siblings"] == [started["message_id"]]
    assert reply_text(edited) == expected_reply("edited")
    page = await history(client, conversation_id)
    assert [m["content"] for m in page["messages"]] == ["edited", expected_reply("edited")]
    assert page["messages"][0]["siblings"] == [original_id, started["user_message_id"]]
    updated = await switch(client, conversation_id, original_id)
    assert updated["conversation"]["active_message_id"] == second[0]["message_id"]
    page = await history(client, conversation_id)
    assert [m["content"] for m in page["messages"]] == [
        "original",
        expected_reply("original"),
        "follow-up",
        expected_reply("follow-up"),
    ]
    await client.close()


async def test_edit_of_a_later_message_keeps_what_came_before(server: RunningServer) -> None:
    """Editing the second question keeps the first exchange; the model sees it."""
    client = await connect(server)
    first = await chat(client, "one")
    conversation_id = first[0]["conversation_id"]
    second = await chat(client, "two", conversation_id=conversation_id)
    edited = await edit(client, conversation_id, second[0]["user_message_id"], "two again")
    assert edited[0]["user_parent_id"] == first[0]["message_id"]
    assert edited[0]["replaces"] == [second[0]["user_message_id"], second[0]["message_id"]]
    page = await history(client, conversation_id)
    assert [m["content"] for m in page["messages"]] == [
        "one",
        expected_reply("one"),
        "two again",
        expected_reply("two again"),
    ]
    await client.close()


async def test_the_model_sees_only_the_active_path(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """After switching back to the original branch, a new message's context holds that
    branch and nothing of the edited one."""
    client = await connect(server)
    first = await chat(client, "one")
    conversation_id = first[0]["conversation_id"]
    edited = await edit(client, conversation_id, first[0]["user_message_id"], "uno")
    assert fake.requests[-1].body["input"]["messages"][-1]["content"] == "uno"
    assert len(fake.requests[-1].body["input"]["messages"]) == 1
    await switch(client, conversation_id, first[0]["message_id"])
    await chat(client, "next", conversation_id=conversation_id)
    sent = fake.requests[-1].body["input"]["messages"]
    assert [m["content"] for m in sent] == ["one", expected_reply("one"), "next"]
    await switch(client, conversation_id, edited[0]["message_id"])
    await chat(client, "siguiente", conversation_id=conversation_id)
    sent = fake.requests[-1].body["input"]["messages"]
    assert [m["content"] for m in sent] == ["uno", expected_reply("uno"), "siguiente"]
    await client.close()


async def test_regenerate_of_an_earlier_answer_branches_there(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """regenerate with message_id answers that answer's question again, from its context."""
    client = await connect(server)
    first = await chat(client, "one")
    conversation_id = first[0]["conversation_id"]
    second = await chat(client, "two", conversation_id=conversation_id)
    again = await regenerate(client, conversation_id, message_id=first[0]["message_id"])
    started = again[0]
    assert started["user_message_id"] == first[0]["user_message_id"]
    assert started["reply_siblings"] == [first[0]["message_id"], started["message_id"]]
    assert started["replaces"] == [
        first[0]["message_id"],
        second[0]["user_message_id"],
        second[0]["message_id"],
    ]
    assert [m["content"] for m in fake.requests[-1].body["input"]["messages"]] == ["one"]
    await client.close()


async def test_a_switch_reaches_the_owners_other_connections(server: RunningServer) -> None:
    """Another tab of the owner gets conversation.updated (no id) with the new leaf."""
    tab_one = await connect(server)
    tab_two = await connect(server)
    conversation_id, started = await three_answers(tab_one)
    await switch(tab_one, conversation_id, started[0]["message_id"])
    updated = (await tab_two.until(of_type("conversation.updated")))[-1]
    assert "id" not in updated
    assert updated["conversation"]["id"] == conversation_id
    assert updated["conversation"]["active_message_id"] == started[0]["message_id"]
    await tab_one.close()
    await tab_two.close()


async def test_switching_while_a_reply_streams_is_busy(server: RunningServer) -> None:
    """conversation.switch is refused with conversation_busy while a reply streams there,
    and works again once it ended."""
    client = await connect(server)
    first = await chat(client, "question")
    conversation_id = first[0]["conversation_id"]
    slow = await start(client, "slow [tokens=50] [delay=50]", conversation_id=conversation_id)
    error = await switch(client, conversation_id, first[0]["message_id"])
    assert (error["type"], error["code"]) == ("error", "conversation_busy")
    await client.send({"type": "chat.cancel", "id": "c", "message_id": slow["message_id"]})
    await client.until(of_type("reply.done", message_id=slow["message_id"]))
    updated = await switch(client, conversation_id, first[0]["message_id"])
    assert updated["conversation"]["active_message_id"] == slow["message_id"]
    await client.close()


async def test_a_branch_reply_resumes_and_cancels(server: RunningServer) -> None:
    """A regenerated answer streaming on its branch resumes exactly on another connection
    and is cancelled there; the cancelled answer stays on the active path."""
    client = await connect(server)
    first = await chat(client, "slow [tokens=40] [delay=20]")
    conversation_id = first[0]["conversation_id"]
    started = await start_frame(
        client, {"type": "chat.regenerate", "id": "re", "conversation_id": conversation_id}
    )
    message_id = started["message_id"]
    await client.until(of_type("reply.delta", message_id=message_id))
    await client.close()
    other = await connect(server)
    await other.send({"type": "chat.subscribe", "message_id": message_id, "after_seq": 0})
    frames = await other.until(of_type("reply.delta", message_id=message_id))
    await other.send({"type": "chat.cancel", "id": "c", "message_id": message_id})
    frames += await other.until(of_type("reply.done", message_id=message_id))
    assert frames[-1]["status"] == "cancelled"
    page = await history(other, conversation_id)
    last = page["messages"][-1]
    assert (last["id"], last["status"]) == (message_id, "cancelled")
    assert last["siblings"] == [first[0]["message_id"], message_id]
    assert follow_text(frames, message_id, text="", last_seq=0) == last["content"]
    await other.close()


async def test_another_owners_ids_are_not_found(server: RunningServer) -> None:
    """switch, regenerate and edit answer another owner's conversation or message exactly
    like an unknown one."""
    alice = await connect(server, "alice")
    bob = await connect(server, "bob")
    mine = await chat(alice, "alice's")
    theirs = await chat(bob, "bob's")
    conversation_id = mine[0]["conversation_id"]
    for frames in (
        [await switch(alice, theirs[0]["conversation_id"], theirs[0]["message_id"])],
        [await switch(alice, conversation_id, theirs[0]["message_id"])],
        [await switch(alice, conversation_id, "unknown")],
        await regenerate(alice, theirs[0]["conversation_id"]),
        await regenerate(alice, conversation_id, message_id=theirs[0]["message_id"]),
        await regenerate(alice, conversation_id, message_id=mine[0]["user_message_id"]),
        await edit(alice, theirs[0]["conversation_id"], theirs[0]["user_message_id"], "x"),
        await edit(alice, conversation_id, theirs[0]["user_message_id"], "x"),
    ):
        assert (frames[0]["type"], frames[0]["code"]) == ("error", "not_found")
    page = await history(alice, conversation_id)
    assert [m["id"] for m in page["messages"]] == [
        mine[0]["user_message_id"],
        mine[0]["message_id"],
    ]
    await alice.close()
    await bob.close()


async def test_a_retried_send_returns_the_first_reply_after_a_regenerate(
    server: RunningServer,
) -> None:
    """client_message_id still finds the send's first answer when a sibling answer exists."""
    client = await connect(server)
    first = await chat(client, "question", client_message_id="cm-1")
    conversation_id = first[0]["conversation_id"]
    await regenerate(client, conversation_id)
    again = await start(client, "question", client_message_id="cm-1")
    assert again["message_id"] == first[0]["message_id"]
    assert again["conversation_id"] == conversation_id
    page = await history(client, conversation_id)
    assert len(page["messages"]) == 2
    await client.close()


async def test_history_pages_through_the_active_path(server: RunningServer) -> None:
    """Paging with before walks up the active path, leaving other branches out."""
    client = await connect(server)
    first = await chat(client, "one")
    conversation_id = first[0]["conversation_id"]
    await chat(client, "two", conversation_id=conversation_id)
    await regenerate(client, conversation_id)
    await chat(client, "three", conversation_id=conversation_id)
    newest = await history(client, conversation_id, limit=3)
    assert newest["has_more"] is True
    assert [m["content"] for m in newest["messages"]][1:] == ["three", expected_reply("three")]
    older = await history(client, conversation_id, limit=3, before=newest["messages"][0]["id"])
    assert older["has_more"] is False
    assert [m["content"] for m in older["messages"]] == ["one", expected_reply("one"), "two"]
    await client.close()


async def test_the_python_client_switches_and_regenerates_by_id(server: RunningServer) -> None:
    """Client.regenerate(message_id=…) and Client.switch_branch; history has the tree."""
    async with Client(server.http_url, client_id="alice") as client:
        first = await client.send("question")
        await first.result()
        again = await client.regenerate(first.conversation_id, message_id=first.message_id)
        await again.result()
        assert again.reply_siblings == [first.message_id, again.message_id]
        assert again.replaces == [first.message_id]
        conversation = await client.switch_branch(first.conversation_id, first.message_id)
        assert conversation.get("active_message_id") == first.message_id
        page = await client.history(first.conversation_id)
        answer = page["messages"][-1]
        assert answer["id"] == first.message_id
        assert answer.get("siblings") == [first.message_id, again.message_id]
        assert answer.get("parent_id") == page["messages"][0]["id"]


# -- several processes ------------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path, fake: FakeUpstream) -> AsyncIterator[Cluster]:
    async with (
        fresh_postgres_database() as postgres_url,
        run_cluster(tmp_path, postgres_url, fake.dashscope_base_url, count=2) as running,
    ):
        yield running


async def cluster_connect(cluster: Cluster, url: str) -> RawClient:
    client = RawClient(
        await ws_connect(url, additional_headers=cluster.headers, max_size=None, compression=None)
    )
    assert (await client.recv())["type"] == "hello"
    return client


@pytest.mark.scaleout
async def test_a_switch_reaches_a_connection_on_another_process(cluster: Cluster) -> None:
    """The owner's connection to a second process gets the conversation.updated too."""
    a = await cluster_connect(cluster, cluster.servers[0].ws_url)
    b = await cluster_connect(cluster, cluster.servers[1].ws_url)
    conversation_id, started = await three_answers(a)
    updated = await switch(a, conversation_id, started[1]["message_id"])
    assert updated["conversation"]["active_message_id"] == started[1]["message_id"]
    seen = (await b.until(of_type("conversation.updated")))[-1]
    assert seen["conversation"]["active_message_id"] == started[1]["message_id"]
    page = await history(b, conversation_id)
    assert page["messages"][-1]["id"] == started[1]["message_id"]
    await a.close()
    await b.close()
