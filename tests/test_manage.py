"""Managing conversations: pin, archive and bulk actions (docs/protocol.md, "Managing
conversations"), against a real server and the fake upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liaotian.client import Client
from liaotian.errors import InvalidFrame, NotFound
from tests.cluster import run_cluster
from tests.conftest import fresh_postgres_database
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer
from tests.test_attachments import claim, fetch, png, upload
from tests.test_chat import chat, connect, start
from tests.test_chat_cli import run_cli, server_url
from tests.test_scaleout import connect as cluster_connect
from tests.wsclient import Frame, RawClient, of_type


async def new_conversations(client: RawClient, count: int, prefix: str = "topic") -> list[str]:
    """``count`` new conversations, oldest first."""
    return [(await chat(client, f"{prefix} {n}"))[0]["conversation_id"] for n in range(count)]


async def request(client: RawClient, frame: Frame, answer: str) -> Frame:
    """Send ``frame`` (id ``req``) and return its answer of type ``answer`` (or its error)."""
    await client.send({**frame, "id": "req"})
    frames = await client.until(lambda f: f.get("id") == "req" and f["type"] in (answer, "error"))
    return frames[-1]


async def listed(client: RawClient, **fields: Any) -> list[str]:
    """The ids ``conversations.list`` gives with ``fields``."""
    page = await request(client, {"type": "conversations.list", **fields}, "conversations")
    return [c["id"] for c in page["conversations"]]


async def update(client: RawClient, conversation_id: str, **fields: bool) -> Frame:
    return await request(
        client,
        {"type": "conversation.update", "conversation_id": conversation_id, **fields},
        "conversation.updated",
    )


async def bulk(client: RawClient, action: str, ids: list[str]) -> Frame:
    return await request(
        client,
        {"type": "conversations.bulk", "action": action, "conversation_ids": ids},
        "conversations.bulk",
    )


async def until_all(
    client: RawClient, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], Frame]:
    """Frames until one of each ``(type, key)`` wanted has come, in any order; a frame's key
    is its request id, else its message_id, else its conversation_id."""
    seen: dict[tuple[str, str], Frame] = {}
    while not wanted <= seen.keys():
        frame = await client.recv()
        key = frame.get("id") or frame.get("message_id") or frame.get("conversation_id")
        seen.setdefault((frame["type"], str(key)), frame)
    return seen


async def test_pinned_conversations_come_first_then_newest(server: RunningServer) -> None:
    """A pinned conversation leads the list, the others follow newest first."""
    client = await connect(server)
    one, two, three = await new_conversations(client, 3)
    updated = await update(client, one, pinned=True)
    assert updated["conversation"]["pinned"] is True
    assert await listed(client) == [one, three, two]
    await update(client, one, pinned=False)
    assert await listed(client) == [three, two, one]
    await client.close()


async def test_paging_with_pins_gives_every_conversation_once_in_order(
    server: RunningServer,
) -> None:
    """Pages of 2 with ``before`` walk across pinned and unpinned ones without gap or repeat."""
    client = await connect(server)
    ids = await new_conversations(client, 7)
    for conversation_id in (ids[1], ids[4], ids[5]):
        await update(client, conversation_id, pinned=True)
    whole = await listed(client, limit=200)
    assert whole == [ids[5], ids[4], ids[1], ids[6], ids[3], ids[2], ids[0]]
    pages: list[str] = []
    before: str | None = None
    while True:
        fields: dict[str, Any] = {"limit": 2} if before is None else {"limit": 2, "before": before}
        page = await request(client, {"type": "conversations.list", **fields}, "conversations")
        pages += [c["id"] for c in page["conversations"]]
        if not page["has_more"]:
            break
        before = pages[-1]
    assert pages == whole
    await client.close()


async def test_an_archived_conversation_is_hidden_then_restored(server: RunningServer) -> None:
    """Archived: out of the list, in the archived list; restored: back in its place."""
    client = await connect(server)
    one, two = await new_conversations(client, 2)
    archived = await update(client, one, archived=True)
    assert archived["conversation"]["archived"] is True
    assert await listed(client) == [two]
    assert await listed(client, archived=True) == [one]
    await update(client, one, archived=False)
    assert await listed(client) == [two, one]
    assert await listed(client, archived=True) == []
    await client.close()


async def test_an_archived_conversation_still_opens_and_goes_on(server: RunningServer) -> None:
    """History of an archived conversation is served, and it can be answered in."""
    client = await connect(server)
    [conversation_id] = await new_conversations(client, 1)
    await update(client, conversation_id, archived=True)
    history = await request(
        client,
        {"type": "conversation.history", "conversation_id": conversation_id},
        "conversation.history",
    )
    assert history["conversation"]["archived"] is True
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    frames = await chat(client, "more", conversation_id=conversation_id)
    assert frames[-1]["status"] == "completed"
    await client.close()


async def test_update_without_a_field_is_an_invalid_frame(server: RunningServer) -> None:
    """conversation.update needs pinned or archived; the connection goes on."""
    client = await connect(server)
    [conversation_id] = await new_conversations(client, 1)
    error = await update(client, conversation_id)
    assert (error["type"], error["code"]) == ("error", "invalid_frame")
    assert await listed(client) == [conversation_id]
    await client.close()


async def test_update_of_another_owners_conversation_is_not_found(server: RunningServer) -> None:
    """bob cannot pin or archive alice's conversation: not_found, and nothing changes."""
    alice = await connect(server)
    [conversation_id] = await new_conversations(alice, 1)
    bob = await connect(server, owner="bob")
    error = await update(bob, conversation_id, pinned=True, archived=True)
    assert (error["type"], error["code"]) == ("error", "not_found")
    unknown = await update(bob, "no-such-conversation", pinned=True)
    assert (unknown["type"], unknown["code"]) == ("error", "not_found")
    page = await request(alice, {"type": "conversations.list"}, "conversations")
    [conversation] = page["conversations"]
    assert (conversation["pinned"], conversation["archived"]) == (False, False)
    await alice.close()
    await bob.close()


async def test_another_connection_of_the_owner_sees_the_update(server: RunningServer) -> None:
    """The owner's other tab gets conversation.updated (without an id); another owner not."""
    first = await connect(server)
    [conversation_id] = await new_conversations(first, 1)
    second = await connect(server)
    bob = await connect(server, owner="bob")
    await update(first, conversation_id, pinned=True)
    seen = (await second.until(of_type("conversation.updated")))[-1]
    assert "id" not in seen
    assert (seen["conversation"]["id"], seen["conversation"]["pinned"]) == (conversation_id, True)
    await bob.send({"type": "ping", "id": "p"})
    assert [f["type"] for f in await bob.until(of_type("pong"))] == ["pong"]
    for client in (first, second, bob):
        await client.close()


async def test_bulk_acts_on_own_conversations_and_reports_the_rest_not_found(
    server: RunningServer,
) -> None:
    """Others' ids and unknown ids are reported alike in not_found and left alone."""
    alice = await connect(server)
    one, two = await new_conversations(alice, 2)
    bob = await connect(server, owner="bob")
    [bobs] = await new_conversations(bob, 1)
    answer = await bulk(alice, "archive", [two, bobs, "unknown-id", one, two])
    assert answer["action"] == "archive"
    assert answer["conversation_ids"] == [two, one]
    assert answer["not_found"] == [bobs, "unknown-id"]
    assert await listed(alice) == []
    assert await listed(alice, archived=True) == [two, one]
    assert await listed(bob) == [bobs]
    await alice.close()
    await bob.close()


async def test_bulk_delete_spares_another_owners_conversations(server: RunningServer) -> None:
    """bob's bulk delete of alice's ids deletes nothing and says not_found."""
    alice = await connect(server)
    [conversation_id] = await new_conversations(alice, 1)
    bob = await connect(server, owner="bob")
    answer = await bulk(bob, "delete", [conversation_id])
    assert (answer["conversation_ids"], answer["not_found"]) == ([], [conversation_id])
    assert await listed(alice) == [conversation_id]
    await alice.close()
    await bob.close()


async def test_bulk_delete_removes_them_and_tells_other_tabs_each(server: RunningServer) -> None:
    """Deleted with their messages; the other tab gets one conversation.deleted per id."""
    first = await connect(server)
    answered = (await chat(first, "remember me"))[0]
    one = answered["conversation_id"]
    two, kept = await new_conversations(first, 2)
    second = await connect(server)
    answer = await bulk(first, "delete", [one, two])
    assert answer["conversation_ids"] == [one, two]
    deleted = [
        frame["conversation_id"]
        for frame in await second.until(of_type("conversation.deleted", conversation_id=two))
        if frame["type"] == "conversation.deleted"
    ]
    assert deleted == [one, two]
    assert await listed(first) == [kept]
    history = await request(
        first, {"type": "conversation.history", "conversation_id": one}, "conversation.history"
    )
    assert (history["type"], history["code"]) == ("error", "not_found")
    store = server.services.store
    assert await store.find_message("alice", answered["message_id"]) is None
    assert await store.find_message("alice", answered["user_message_id"]) is None
    await first.close()
    await second.close()


async def test_bulk_pin_tells_other_tabs_once_per_conversation(server: RunningServer) -> None:
    """Pinning two at once: the other tab gets two conversation.updated, both pinned."""
    first = await connect(server)
    one, two = await new_conversations(first, 2)
    second = await connect(server)
    answer = await bulk(first, "pin", [one, two])
    assert answer["conversation_ids"] == [one, two]
    frames = await second.until(
        lambda f: f["type"] == "conversation.updated" and f["conversation"]["id"] == two
    )
    updates = [f["conversation"] for f in frames if f["type"] == "conversation.updated"]
    assert [(c["id"], c["pinned"]) for c in updates] == [(one, True), (two, True)]
    assert (await bulk(first, "unpin", [one]))["conversation_ids"] == [one]
    assert await listed(first) == [two, one]
    await first.close()
    await second.close()


async def test_bulk_delete_cancels_a_streaming_reply_first(
    server: RunningServer, fake: FakeUpstream
) -> None:
    """A reply streaming in a conversation deleted in bulk ends cancelled, upstream closed."""
    client = await connect(server)
    [idle] = await new_conversations(client, 1)
    started = await start(client, "long [tokens=500] [delay=10]")
    await client.until(of_type("reply.delta", message_id=started["message_id"]))
    doomed = [started["conversation_id"], idle]
    await client.send(
        {"type": "conversations.bulk", "id": "b", "action": "delete", "conversation_ids": doomed}
    )
    # The answer and the reply's end are sent by different tasks: in any order.
    seen = await until_all(
        client, {("conversations.bulk", "b"), ("reply.done", started["message_id"])}
    )
    assert seen[("conversations.bulk", "b")]["conversation_ids"] == doomed
    assert seen[("reply.done", started["message_id"])]["status"] == "cancelled"
    await fake.wait_for(lambda stats: stats.disconnects >= 1)
    assert await listed(client) == []
    assert await server.services.store.find_message("alice", started["message_id"]) is None
    await client.close()


async def test_bulk_with_a_bad_action_is_an_invalid_frame(server: RunningServer) -> None:
    """An unknown action or an empty id list is refused before anything is done."""
    client = await connect(server)
    [conversation_id] = await new_conversations(client, 1)
    for action, ids in (("explode", [conversation_id]), ("delete", [])):
        error = await bulk(client, action, ids)
        assert (error["type"], error["code"]) == ("error", "invalid_frame")
    assert await listed(client) == [conversation_id]
    await client.close()


async def test_bulk_delete_removes_the_conversations_images(server: RunningServer) -> None:
    """An image of a conversation deleted in bulk is gone (404), as with one delete."""
    _, image = await upload(server, png())
    client = await connect(server)
    [conversation_id] = await new_conversations(client, 1)
    await claim(server, "alice", [image["id"]], conversation_id)
    assert (await fetch(server, image["id"]))[0] == 200
    await bulk(client, "delete", [conversation_id])
    assert (await fetch(server, image["id"]))[0] == 404
    await client.close()


async def test_the_python_client_pins_archives_and_acts_in_bulk(server: RunningServer) -> None:
    """Client.pin / archive / update_conversation / bulk and conversations(archived=…)."""
    async with Client(server.http_url, client_id="alice", request_timeout=20) as client:
        ids = []
        for text in ("one", "two", "three"):
            reply = await client.send(text)
            await reply.result()
            ids.append(reply.conversation_id)
        one, two, three = ids
        assert (await client.pin(one))["pinned"] is True
        assert (await client.archive(two))["archived"] is True
        page = await client.conversations()
        assert [c["id"] for c in page["conversations"]] == [one, three]
        archived = await client.conversations(archived=True)
        assert [c["id"] for c in archived["conversations"]] == [two]
        restored = await client.update_conversation(two, archived=False, pinned=True)
        assert (restored["archived"], restored["pinned"]) == (False, True)
        with pytest.raises(InvalidFrame):
            await client.update_conversation(two)
        with pytest.raises(NotFound):
            await client.pin("not-mine")
        done = await client.bulk("delete", [three, "not-mine"])
        assert done == {"action": "delete", "conversation_ids": [three], "not_found": ["not-mine"]}
        page = await client.conversations()
        assert [c["id"] for c in page["conversations"]] == [two, one]


async def test_chat_list_shows_pinned_first_and_leaves_archived_out(
    tmp_path: Path, server: RunningServer
) -> None:
    """`liaotian chat`'s /list: the pinned conversation first, marked; the archived absent."""
    async with Client(server.http_url, client_id="cli") as client:
        ids = []
        for text in ("old pinned topic", "archived topic", "newest topic"):
            reply = await client.send(text)
            await reply.result()
            ids.append(reply.conversation_id)
        await client.pin(ids[0])
        await client.archive(ids[1])
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", stdin="/list\n"
    )
    assert (run.returncode, run.stderr) == (0, "")
    rows = [line for line in run.stdout.splitlines() if "topic" in line]
    assert len(rows) == 2
    assert "pinned old pinned topic" in rows[0]
    assert "newest topic" in rows[1]


@pytest.mark.scaleout
async def test_bulk_across_processes_cancels_and_tells_every_tab(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """Two processes: a bulk delete on B cancels the reply streaming on A, and A's tab is
    told of each conversation."""
    async with (
        fresh_postgres_database() as database_url,
        run_cluster(tmp_path, database_url, fake.dashscope_base_url, count=2) as cluster,
    ):
        a = await cluster_connect(cluster, cluster.servers[0].ws_url)
        b = await cluster_connect(cluster, cluster.servers[1].ws_url)
        [idle] = await new_conversations(a, 1)
        started = await start(a, "long [tokens=500] [delay=10]")
        await a.until(of_type("reply.delta", message_id=started["message_id"]))
        answer = await bulk(b, "delete", [started["conversation_id"], idle])
        assert answer["conversation_ids"] == [started["conversation_id"], idle]
        # The cancel and the notices travel separately: in any order.
        wanted = {("reply.done", started["message_id"])}
        wanted |= {("conversation.deleted", c) for c in (started["conversation_id"], idle)}
        seen = await until_all(a, wanted)
        assert seen[("reply.done", started["message_id"])]["status"] == "cancelled"
        await fake.wait_for(lambda stats: stats.disconnects >= 1)
        await a.close()
        await b.close()
