"""Open mode (no accounts): one owner on one machine.

By default (``open_owner = "shared"``) every protocol-v1 client — the page, ``liaotian
chat``, the Python client — is the owner ``local`` whatever client id it sends, so they see
the same conversations; seed-protocol clients keep their own ``client_id`` as in the seed.
``open_owner = "per-client"`` keeps each client id apart.
"""

from __future__ import annotations

from pathlib import Path

from liaotian.client import Client
from liaotian.gate import OPEN_OWNER
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server
from tests.test_chat_cli import run_cli, server_url
from tests.wsclient import Frame, RawClient, of_type


async def hello_of(url: str) -> tuple[RawClient, Frame]:
    client = await RawClient.open(url)
    hello = await client.recv()
    assert hello["type"] == "hello"
    return client, hello


async def conversation_ids(client: RawClient) -> list[str]:
    await client.send({"type": "conversations.list", "id": "list"})
    [*_, listing] = await client.until(of_type("conversations", id="list"))
    return [conversation["id"] for conversation in listing["conversations"]]


async def test_every_v1_client_is_the_one_local_owner(make_settings: SettingsFactory) -> None:
    """Two client ids, and none at all, are one owner that sees one set of conversations."""
    async with run_server(make_settings(open_owner="shared")) as server:
        first, hello = await hello_of(f"{server.ws_url}?client_id=browser-one")
        second, other = await hello_of(f"{server.ws_url}?client_id=browser-two")
        third, bare = await hello_of(server.ws_url)
        assert hello["owner"] == other["owner"] == bare["owner"] == OPEN_OWNER
        await first.send({"type": "chat.send", "message": "shared"})
        [*_, done] = await first.until(of_type("reply.done"))
        assert done["status"] == "completed"
        assert await conversation_ids(second) == [done["conversation_id"]]
        await third.send(
            {
                "type": "conversation.history",
                "id": "h",
                "conversation_id": done["conversation_id"],
            }
        )
        [*_, history] = await third.until(of_type("conversation.history", id="h"))
        assert [m["content"] for m in history["messages"]] == [
            "shared",
            expected_reply("shared"),
        ]
        for client in (first, second, third):
            await client.close()


async def test_the_cli_and_the_python_client_share_the_pages_conversations(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """What `liaotian chat` (its own stored client id) and Client(...) start, the page lists."""
    async with run_server(make_settings(open_owner="shared")) as server:
        run = await run_cli(tmp_path, "--server", server_url(server), "from the terminal")
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == expected_reply("from the terminal").strip()
        async with Client(server.ws_url, client_id="a-script") as client:
            reply = await client.send("from a script")
            await reply.result()
        page, _ = await hello_of(f"{server.ws_url}?client_id=the-page")
        listed = await conversation_ids(page)
        assert len(listed) == 2
        assert reply.conversation_id in listed
        await page.close()


async def test_seed_clients_keep_their_own_client_id(make_settings: SettingsFactory) -> None:
    """A seed client's conversations are its client id's, never the shared owner's."""
    async with run_server(make_settings(open_owner="shared")) as server:
        seed = await RawClient.open(server.seed_url("seed-client"))
        await seed.send({"message": "seed question", "stream": True, "model": "qwen-plus"})
        frames = await seed.until(lambda f: f["status"] in ("completed", "error", "cancelled"))
        assert frames[-1]["status"] == "completed"
        session_id = frames[-1]["session_id"]
        page, _ = await hello_of(f"{server.ws_url}?client_id=the-page")
        assert await conversation_ids(page) == []
        messages, _ = await server.services.store.history("seed-client", session_id, limit=5)
        assert [message.role for message in messages] == ["user", "assistant"]
        await seed.close()
        await page.close()


async def test_per_client_keeps_each_client_id_apart(server: RunningServer) -> None:
    """With ``open_owner = "per-client"`` (the test suite's setting) each id is an owner."""
    assert server.services.settings.open_owner == "per-client"
    alice, hello = await hello_of(f"{server.ws_url}?client_id=alice")
    bob, _ = await hello_of(f"{server.ws_url}?client_id=bob")
    assert hello["owner"] == "alice"
    await alice.send({"type": "chat.send", "message": "mine"})
    await alice.until(of_type("reply.done"))
    assert await conversation_ids(bob) == []
    await alice.close()
    await bob.close()


def test_shared_is_the_default() -> None:
    """Without a setting, open mode shares one owner."""
    from liaotian.settings import Settings

    assert Settings(local_enabled=False).open_owner == "shared"
