"""Share links: frames, the public routes, expiry, revocation, isolation and copies."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from multidict import CIMultiDict
from PIL import Image
from sqlalchemy import Table, func, select, update
from websockets.asyncio.client import connect as ws_connect

from liaotian.app import CONTENT_SECURITY_POLICY
from liaotian.client import Client
from liaotian.store import Store, create_engine
from liaotian.store.models import Share, utcnow
from tests.cluster import Cluster, run_cluster
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, expected_reply
from tests.server_harness import RunningServer, run_server
from tests.share_seed import Seeded, add_sibling, seed_conversation
from tests.test_chat import chat, connect
from tests.test_chat_cli import run_cli, server_url
from tests.wsclient import Frame, RawClient

shares = cast(Table, Share.__table__)

TURNS = [
    ("user", "What is WebSocket?"),
    ("assistant", "A **full-duplex** protocol."),
    ("user", "And SSE?"),
    ("assistant", "One-way, server to client."),
]


async def ask(client: RawClient, frame_type: str, **fields: object) -> Frame:
    """Send one frame; return its answer (or its error)."""
    await client.send({"type": frame_type, "id": frame_type, **fields})
    frames = await client.until(lambda f: f.get("id") == frame_type)
    return frames[-1]


async def share(client: RawClient, conversation_id: str, **fields: object) -> dict[str, Any]:
    answer = await ask(client, "share.create", conversation_id=conversation_id, **fields)
    assert answer["type"] == "share", answer
    return cast(dict[str, Any], answer["share"])


async def get(server_url: str, path: str) -> tuple[int, CIMultiDict[str], bytes]:
    """Status, headers (any case) and body of ``GET server_url + path``."""
    async with aiohttp.ClientSession() as session, session.get(server_url + path) as response:
        return response.status, response.headers.copy(), await response.read()


async def snapshot(server: RunningServer, share_id: str) -> dict[str, Any]:
    url = f"{server.http_url}/api/shares/{share_id}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return cast(dict[str, Any], await response.json())


async def seed(server: RunningServer, owner: str = "alice") -> Seeded:
    return await seed_conversation(server.services.store.database, owner, TURNS)


async def test_share_shows_the_active_path_up_to_the_message(server: RunningServer) -> None:
    """The snapshot is the active path up to the message: later messages and other
    branches are absent, and nothing names the owner or a message."""
    seeded = await seed(server)
    await add_sibling(server.services.store.database, seeded.message_ids[1], "assistant", "BRANCH")
    client = await connect(server)
    created = await share(client, seeded.conversation_id, message_id=seeded.message_ids[1])
    assert created["message_id"] == seeded.message_ids[1]
    shown = await snapshot(server, created["id"])
    assert [(m["role"], m["content"]) for m in shown["messages"]] == TURNS[:2]
    assert shown["title"] == "A shared chat"
    text = str(shown)
    for absent in ("BRANCH", "alice", seeded.conversation_id, *seeded.message_ids):
        assert absent not in text
    await client.close()


async def test_a_chat_shares_only_the_branch_it_shows(server: RunningServer) -> None:
    """After an edit (a branch), a share holds the edited branch only — its title too, not
    the title made from the original first message; switched back, a new share holds the
    original branch only."""
    client = await connect(server)
    first = await chat(client, "the original question")
    started = first[0]
    conversation_id = started["conversation_id"]
    edit = await chat(
        client,
        "the edited question",
        type="chat.edit",
        conversation_id=conversation_id,
        message_id=started["user_message_id"],
    )
    assert edit[-1]["status"] == "completed"
    edited = await snapshot(server, (await share(client, conversation_id))["id"])
    assert [m["content"] for m in edited["messages"]] == [
        "the edited question",
        expected_reply("the edited question"),
    ]
    assert edited["title"] == "the edited question"
    switched = await ask(
        client,
        "conversation.switch",
        conversation_id=conversation_id,
        message_id=started["user_message_id"],
    )
    assert switched["type"] == "conversation.updated"
    original = await snapshot(server, (await share(client, conversation_id))["id"])
    assert [m["content"] for m in original["messages"]] == [
        "the original question",
        expected_reply("the original question"),
    ]
    assert original["title"] == "the original question"
    await client.close()


async def test_share_defaults_to_the_end_of_the_active_path(server: RunningServer) -> None:
    """Without message_id the snapshot ends at the active path's last message."""
    seeded = await seed(server)
    client = await connect(server)
    created = await share(client, seeded.conversation_id)
    assert created["message_id"] == seeded.message_ids[-1]
    shown = await snapshot(server, created["id"])
    assert [(m["role"], m["content"]) for m in shown["messages"]] == TURNS
    await client.close()


async def test_share_ids_are_long_random_and_name_their_page(server: RunningServer) -> None:
    """A share id is at least 32 URL-safe random characters; its url is /s/ID."""
    seeded = await seed(server)
    client = await connect(server)
    first = await share(client, seeded.conversation_id)
    second = await share(client, seeded.conversation_id)
    assert len(first["id"]) >= 32
    assert first["id"] != second["id"]
    assert first["url"] == f"/s/{first['id']}"
    assert (first["revoked"], first["expires_at"]) == (False, None)
    await client.close()


async def test_message_off_the_active_path_is_not_found(server: RunningServer) -> None:
    """A message of another branch cannot end a share: not_found."""
    seeded = await seed(server)
    sibling = await add_sibling(
        server.services.store.database, seeded.message_ids[1], "assistant", "x"
    )
    client = await connect(server)
    answer = await ask(
        client, "share.create", conversation_id=seeded.conversation_id, message_id=sibling
    )
    assert answer["code"] == "not_found"
    await client.close()


async def test_a_reply_still_streaming_cannot_be_shared(server: RunningServer) -> None:
    """Sharing up to an answer still being written is conversation_busy (retryable)."""
    seeded = await seed_conversation(
        server.services.store.database,
        "alice",
        [("user", "Q"), {"role": "assistant", "content": "half", "status": "streaming"}],
    )
    client = await connect(server)
    answer = await ask(client, "share.create", conversation_id=seeded.conversation_id)
    assert (answer["code"], answer["retryable"]) == ("conversation_busy", True)
    await client.close()


async def test_the_shared_page_is_served_for_a_live_share(server: RunningServer) -> None:
    """GET /s/ID answers the shared page (HTML, noindex) while the share is live."""
    seeded = await seed(server)
    client = await connect(server)
    created = await share(client, seeded.conversation_id)
    status, headers, body = await get(server.http_url, created["url"])
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'<meta name="robots" content="noindex' in body
    await client.close()


async def test_expired_share_answers_404(server: RunningServer) -> None:
    """Past its expiry a share's page, snapshot and copy are gone (404 / not_found)."""
    seeded = await seed(server)
    client = await connect(server)
    created = await share(client, seeded.conversation_id, expires_in=3600)
    assert created["expires_at"] > created["created_at"]
    assert (await get(server.http_url, f"/api/shares/{created['id']}"))[0] == 200
    past = utcnow() - timedelta(seconds=1)
    await server.services.store.database.run(
        lambda c: c.execute(
            update(shares).where(shares.c.id == created["id"]).values(expires_at=past)
        )
    )
    for path in (created["url"], f"/api/shares/{created['id']}"):
        assert (await get(server.http_url, path))[0] == 404
    answer = await ask(client, "share.copy", share_id=created["id"])
    assert answer["code"] == "not_found"
    await client.close()


async def test_revoked_share_answers_404_and_leaves_the_list(server: RunningServer) -> None:
    """share.revoke answers the share revoked; its URLs then 404 and it leaves the list."""
    seeded = await seed(server)
    client = await connect(server)
    created = await share(client, seeded.conversation_id)
    revoked = await ask(client, "share.revoke", share_id=created["id"])
    assert (revoked["type"], revoked["share"]["revoked"]) == ("share", True)
    not_found_page = await get(server.http_url, "/s/" + "x" * 32)
    revoked_page = await get(server.http_url, created["url"])
    assert revoked_page[0] == 404
    assert revoked_page[2] == not_found_page[2]
    assert (await get(server.http_url, f"/api/shares/{created['id']}"))[0] == 404
    assert (await ask(client, "shares.list"))["shares"] == []
    await client.close()


async def test_list_is_newest_first_and_per_conversation(server: RunningServer) -> None:
    """shares.list gives the owner's shares newest first; conversation_id narrows it."""
    first, second = await seed(server), await seed(server)
    client = await connect(server)
    a = await share(client, first.conversation_id)
    b = await share(client, second.conversation_id)
    c = await share(client, first.conversation_id)
    listed = (await ask(client, "shares.list"))["shares"]
    assert [s["id"] for s in listed] == [c["id"], b["id"], a["id"]]
    narrowed = await ask(client, "shares.list", conversation_id=first.conversation_id)
    assert [s["id"] for s in narrowed["shares"]] == [c["id"], a["id"]]
    await client.close()


async def test_another_owner_cannot_share_list_or_revoke(server: RunningServer) -> None:
    """Bob's frames about Alice's conversation or share are answered as unknown ones."""
    seeded = await seed(server, "alice")
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    created = await share(alice, seeded.conversation_id)
    for frame_type, fields in (
        ("share.create", {"conversation_id": seeded.conversation_id}),
        ("shares.list", {"conversation_id": seeded.conversation_id}),
        ("share.revoke", {"share_id": created["id"]}),
    ):
        answer = await ask(bob, frame_type, **fields)
        assert answer["code"] == "not_found", frame_type
    assert (await ask(bob, "shares.list"))["shares"] == []
    assert (await get(server.http_url, f"/api/shares/{created['id']}"))[0] == 200
    await alice.close()
    await bob.close()


async def test_copy_gives_another_owner_a_conversation_of_their_own(server: RunningServer) -> None:
    """share.copy by another owner makes the snapshot a new conversation of theirs, one
    path whose last message is active; the sharer's conversations are unchanged."""
    seeded = await seed(server, "alice")
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    created = await share(alice, seeded.conversation_id, message_id=seeded.message_ids[1])
    copied = await ask(bob, "share.copy", share_id=created["id"])
    assert copied["type"] == "conversation.updated"
    conversation = copied["conversation"]
    assert conversation["title"] == "A shared chat"
    history = await ask(bob, "conversation.history", conversation_id=conversation["id"])
    messages = history["messages"]
    assert [(m["role"], m["content"]) for m in messages] == TURNS[:2]
    assert conversation["active_message_id"] == messages[-1]["id"]
    assert {m["id"] for m in messages}.isdisjoint(seeded.message_ids)
    listed = await ask(alice, "conversations.list")
    assert [c["id"] for c in listed["conversations"]] == [seeded.conversation_id]
    await alice.close()
    await bob.close()


async def test_copy_is_announced_to_the_callers_other_connections(server: RunningServer) -> None:
    """Another tab of the owner who copied is told of the new conversation."""
    seeded = await seed(server, "alice")
    alice, bob, bob_tab = (
        await connect(server, "alice"),
        await connect(server, "bob"),
        await connect(server, "bob"),
    )
    created = await share(alice, seeded.conversation_id)
    copied = await ask(bob, "share.copy", share_id=created["id"])
    told = await bob_tab.until(lambda f: f["type"] == "conversation.updated")
    assert told[-1]["conversation"]["id"] == copied["conversation"]["id"]
    for client in (alice, bob, bob_tab):
        await client.close()


async def test_deleting_the_conversation_deletes_its_shares(server: RunningServer) -> None:
    """conversation.delete removes its shares (the foreign key cascades): 404 after."""
    seeded = await seed(server)
    client = await connect(server)
    created = await share(client, seeded.conversation_id)
    deleted = await ask(client, "conversation.delete", conversation_id=seeded.conversation_id)
    assert deleted["type"] == "conversation.deleted"
    assert (await get(server.http_url, f"/api/shares/{created['id']}"))[0] == 404
    count = await server.services.store.database.run(
        lambda c: c.scalar(select(func.count()).select_from(shares))
    )
    assert count == 0
    await client.close()


async def test_shared_responses_carry_noindex_csp_and_no_store(server: RunningServer) -> None:
    """The page, the snapshot and a 404 are noindex, never cached, without referrer,
    under the chat page's Content-Security-Policy."""
    seeded = await seed(server)
    client = await connect(server)
    created = await share(client, seeded.conversation_id)
    for path in (created["url"], f"/api/shares/{created['id']}", "/s/unknown", "/api/shares/x"):
        _, headers, _ = await get(server.http_url, path)
        assert headers["X-Robots-Tag"] == "noindex, nofollow", path
        assert headers["Cache-Control"] == "no-store", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
    await client.close()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), "teal").save(buffer, "PNG")
    return buffer.getvalue()


async def upload(server: RunningServer, owner: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.http_url}/attachments",
            params={"client_id": owner, "name": "secret-name.png"},
            data=png(),
            headers={"Content-Type": "image/png"},
        ) as response,
    ):
        assert response.status == 201
        return cast(dict[str, Any], await response.json())


async def test_only_images_the_snapshot_shows_are_served(server: RunningServer) -> None:
    """The snapshot's image is served by the share (no file name in the snapshot); the
    owner's other image is 404 there."""
    shown, other = await upload(server, "alice"), await upload(server, "alice")
    seeded = await seed_conversation(
        server.services.store.database,
        "alice",
        [{"role": "user", "content": "look", "attachments": [shown]}, ("assistant", "nice")],
    )
    client = await connect(server)
    created = await share(client, seeded.conversation_id)
    base = f"/api/shares/{created['id']}/attachments"
    status, headers, body = await get(server.http_url, f"{base}/{shown['id']}")
    assert (status, headers["Content-Type"], headers["X-Robots-Tag"]) == (
        200,
        "image/png",
        "noindex, nofollow",
    )
    assert Image.open(io.BytesIO(body)).size == (30, 20)
    assert (await get(server.http_url, f"{base}/{other['id']}"))[0] == 404
    assert "secret-name" not in str(await snapshot(server, created["id"]))
    await client.close()


async def test_a_copy_gets_its_own_images(server: RunningServer) -> None:
    """A copy's images are the copier's own (served to them, without the file name); the
    sharer's image stays theirs only."""
    image = await upload(server, "alice")
    seeded = await seed_conversation(
        server.services.store.database,
        "alice",
        [{"role": "user", "content": "look", "attachments": [image]}, ("assistant", "nice")],
    )
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    created = await share(alice, seeded.conversation_id)
    copied = await ask(bob, "share.copy", share_id=created["id"])
    history = await ask(bob, "conversation.history", conversation_id=copied["conversation"]["id"])
    (copy,) = history["messages"][0]["attachments"]
    assert copy["id"] != image["id"]
    assert copy["name"] == ""
    assert (await get(server.http_url, f"/attachments/{copy['id']}?client_id=bob"))[0] == 200
    assert (await get(server.http_url, f"/attachments/{image['id']}?client_id=bob"))[0] == 404
    await alice.close()
    await bob.close()


async def test_share_links_off_refuses_frames_and_404s_urls(
    make_settings: SettingsFactory,
) -> None:
    """With share_links = false every share frame is share_links_disabled and a share made
    before answers 404."""
    async with run_server(make_settings()) as server:
        seeded = await seed(server)
        client = await connect(server)
        created = await share(client, seeded.conversation_id)
        await client.close()
    async with run_server(make_settings(share_links=False)) as server:
        client = await connect(server)
        for frame_type, fields in (
            ("share.create", {"conversation_id": seeded.conversation_id}),
            ("shares.list", {}),
            ("share.revoke", {"share_id": created["id"]}),
            ("share.copy", {"share_id": created["id"]}),
        ):
            answer = await ask(client, frame_type, **fields)
            assert answer["code"] == "share_links_disabled", frame_type
        for path in (created["url"], f"/api/shares/{created['id']}"):
            assert (await get(server.http_url, path))[0] == 404
        await client.close()


# -- several processes -------------------------------------------------------------------


@pytest.mark.scaleout
async def test_revoked_on_one_process_is_404_on_another(
    tmp_path: Path, postgres_url: str, fake: FakeUpstream
) -> None:
    """A share revoked through one process answers 404 from the other at once."""
    async with run_cluster(tmp_path, postgres_url, fake.dashscope_base_url, count=2) as cluster:
        first, second = cluster.servers
        client, owner = await signed_in(cluster, first.ws_url)
        store = Store(create_engine(postgres_url))
        try:
            seeded = await seed_conversation(store.database, owner, TURNS)
        finally:
            await store.close()
        created = await share(client, seeded.conversation_id)
        path = f"/api/shares/{created['id']}"
        assert (await get(second.http_url, path))[0] == 200
        revoked = await ask(client, "share.revoke", share_id=created["id"])
        assert revoked["share"]["revoked"] is True
        assert (await get(second.http_url, path))[0] == 404
        assert (await get(second.http_url, created["url"]))[0] == 404
        await client.close()


async def signed_in(cluster: Cluster, url: str) -> tuple[RawClient, str]:
    """A connection signed in as the cluster's user, past its hello; and its owner id."""
    client = RawClient(
        await ws_connect(url, additional_headers=cluster.headers, max_size=None, compression=None)
    )
    hello = await client.recv()
    assert hello["type"] == "hello"
    return client, str(hello["owner"])


async def test_python_client_shares_lists_copies_and_revokes(server: RunningServer) -> None:
    """Client.share gives a link that serves the snapshot; shares, copy_share and
    revoke_share work as the frames do."""
    seeded = await seed(server)
    async with Client(server.ws_url, client_id="alice") as alice:
        created = await alice.share(seeded.conversation_id, expires_in=600)
        url = alice.share_url(created)
        assert url == f"{server.http_url}/s/{created['id']}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
        assert [s["id"] for s in await alice.shares()] == [created["id"]]
        async with Client(server.ws_url, client_id="bob") as bob:
            copy = await bob.copy_share(created["id"])
            assert copy["title"] == "A shared chat"
        assert (await alice.revoke_share(created["id"]))["revoked"] is True
        assert await alice.shares() == []


async def test_cli_prints_the_full_link_lists_and_revokes(
    tmp_path: Path, server: RunningServer
) -> None:
    """``liaotian share ID`` prints a link that serves the snapshot; --list shows it;
    --revoke makes it 404."""
    seeded = await seed(server)
    options = ("--server", server_url(server), "--client-id", "alice")
    shared = await run_cli(tmp_path, seeded.conversation_id, *options, command="share")
    assert (shared.returncode, shared.stderr) == (0, "")
    link = shared.stdout.strip()
    assert link.startswith(f"{server.http_url}/s/")
    async with aiohttp.ClientSession() as session, session.get(link) as response:
        assert response.status == 200
    listed = await run_cli(tmp_path, "--list", *options, command="share")
    assert listed.stdout.startswith(f"{link}  A shared chat  never expires")
    share_id = link.rsplit("/", 1)[1]
    revoked = await run_cli(tmp_path, "--revoke", share_id, *options, command="share")
    assert revoked.returncode == 0
    assert (await get(server.http_url, f"/api/shares/{share_id}"))[0] == 404
