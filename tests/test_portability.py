"""Export and import: liaotian's format (active path or tree), ChatGPT's conversations.json,
idempotence, refusals, limits, owner scope, the CLI and the Python client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from sqlalchemy import Connection, Table, func, insert, select, update

from liaotian.client import Client
from liaotian.errors import InvalidImport, NotFound
from liaotian.guards import IMPORT_QUEUE, IMPORTS_AT_ONCE
from liaotian.importers import parse_import
from liaotian.store import search
from liaotian.store.models import Conversation, Message, Owner
from tests.cluster import create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.test_chat_cli import run_cli, server_url
from tests.waiting import eventually
from tests.wsclient import RawClient

CHATGPT_FILE = Path(__file__).parent / "data" / "chatgpt_conversations.json"
CHATGPT_ID = "chatgpt-6750e1a2-3c4d-8000-9d1b-1f2e3d4c5b6a"

conversations = cast(Table, Conversation.__table__)
messages = cast(Table, Message.__table__)
owners = cast(Table, Owner.__table__)

# The tree built by build_tree: (id, parent id, role, content); m3 answers m1 again.
TREE = [
    ("m1", None, "user", "What is a WebSocket?"),
    ("m2", "m1", "assistant", "A protocol."),
    ("m3", "m1", "assistant", "A full-duplex protocol over one TCP connection."),
    ("m4", "m3", "user", "And its port?"),
    ("m5", "m4", "assistant", "80 or 443, like HTTP."),
]
ACTIVE_PATH = ["m1", "m3", "m4", "m5"]


async def build_tree(server: RunningServer, owner: str, conversation_id: str = "c-tree") -> None:
    """Store TREE as ``owner``'s conversation ``conversation_id``, its active leaf m5
    (ids prefixed by the conversation id, as message ids are unique everywhere)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)

    def work(c: Connection) -> None:
        if c.scalar(select(owners.c.id).where(owners.c.id == owner)) is None:
            c.execute(insert(owners).values(id=owner, created_at=start))
        pk = c.execute(
            insert(conversations)
            .values(
                id=conversation_id,
                owner_id=owner,
                title="Sockets",
                model="qwen-plus",
                created_at=start,
                updated_at=start,
            )
            .returning(conversations.c.pk)
        ).scalar_one()
        pks: dict[str | None, int | None] = {None: None}
        for number, (key, parent, role, content) in enumerate(TREE):
            pks[key] = c.execute(
                insert(messages)
                .values(
                    id=f"{conversation_id}-{key}",
                    conversation_pk=pk,
                    parent_pk=pks[parent],
                    role=role,
                    content=content,
                    status="completed",
                    model="qwen-plus" if role == "assistant" else None,
                    created_at=start + timedelta(seconds=number),
                    updated_at=start + timedelta(seconds=number),
                )
                .returning(messages.c.pk)
            ).scalar_one()
        c.execute(
            update(conversations)
            .where(conversations.c.pk == pk)
            .values(active_message_pk=pks["m5"])
        )

    await server.services.store.database.run(work)


async def connect(server: RunningServer, owner: str) -> RawClient:
    client = await RawClient.open(f"{server.ws_url}?client_id={owner}")
    assert (await client.recv())["type"] == "hello"
    return client


async def export(
    server: RunningServer, owner: str, conversation_id: str, **fields: Any
) -> dict[str, Any]:
    """The answer to conversation.export (the export, or the error frame)."""
    client = await connect(server, owner)
    try:
        await client.send(
            {"type": "conversation.export", "id": 1, "conversation_id": conversation_id, **fields}
        )
        [*_, answer] = await client.until(lambda frame: frame.get("id") == 1)
    finally:
        await client.close()
    return answer


async def post_import(
    server: RunningServer,
    body: bytes,
    *,
    client_id: str | None = "alice",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    params = {"client_id": client_id} if client_id else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.http_url}/conversations/import",
            data=body,
            params=params,
            headers={"Content-Type": content_type, **(headers or {})},
        ) as response,
    ):
        return response.status, await response.json()


async def count(server: RunningServer, table: Table) -> int:
    async with server.services.store.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


def shape(export: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(parent's content, role, content) of each message: the tree without its ids."""
    content = {message["id"]: message["content"] for message in export["messages"]}
    return sorted(
        (content.get(message["parent_id"], ""), message["role"], message["content"])
        for message in export["messages"]
    )


def active_contents(export: dict[str, Any]) -> list[str]:
    """The active path's contents, from the first message to the active one."""
    by_id = {message["id"]: message for message in export["messages"]}
    path, current = [], export["conversation"]["active_message_id"]
    while current is not None:
        path.append(by_id[current]["content"])
        current = by_id[current]["parent_id"]
    return path[::-1]


# -- export ------------------------------------------------------------------------------


async def test_export_gives_the_active_path_by_default(server: RunningServer) -> None:
    """Without tree, the export holds the active path only, first message first, each
    with its parent's id."""
    await build_tree(server, "alice")
    answer = await export(server, "alice", "c-tree")
    assert answer["type"] == "conversation.export"
    document = answer["export"]
    assert (document["format"], document["version"]) == ("liaotian.conversation", 1)
    ids = [message["id"].removeprefix("c-tree-") for message in document["messages"]]
    assert ids == ACTIVE_PATH
    parents = [message["parent_id"] for message in document["messages"]]
    assert parents == [None, "c-tree-m1", "c-tree-m3", "c-tree-m4"]
    assert document["conversation"]["id"] == "c-tree"
    assert document["conversation"]["active_message_id"] == "c-tree-m5"
    assert document["messages"][1]["model"] == "qwen-plus"


async def test_export_with_tree_gives_every_branch(server: RunningServer) -> None:
    """With tree, every message of every branch is there with its parent."""
    await build_tree(server, "alice")
    document = (await export(server, "alice", "c-tree", tree=True))["export"]
    got = [
        (m["id"].removeprefix("c-tree-"), (m["parent_id"] or "").removeprefix("c-tree-") or None)
        for m in document["messages"]
    ]
    assert got == [(key, parent) for key, parent, _, _ in TREE]


async def test_exporting_another_owners_conversation_is_not_found(server: RunningServer) -> None:
    """bob's export of alice's conversation is answered like an unknown id."""
    await build_tree(server, "alice")
    theirs = await export(server, "bob", "c-tree")
    unknown = await export(server, "bob", "c-nothing")
    assert theirs["type"] == unknown["type"] == "error"
    assert theirs["code"] == unknown["code"] == "not_found"
    assert theirs["message"] == unknown["message"].replace("c-nothing", "c-tree")


async def test_a_conversation_without_messages_exports_empty(server: RunningServer) -> None:
    """A conversation with no message yet exports with no message and no active one."""
    status, _ = await post_import(server, liaotian_file("c-empty", []))
    assert status == 200
    document = (await export(server, "alice", "c-empty"))["export"]
    assert document["messages"] == []
    assert document["conversation"]["active_message_id"] is None


# -- import: liaotian's format -----------------------------------------------------------


def liaotian_file(conversation_id: str, items: list[dict[str, Any]], **info: Any) -> bytes:
    return json.dumps(
        {
            "format": "liaotian.conversation",
            "version": 1,
            "conversation": {"id": conversation_id, "title": "Imported", **info},
            "messages": items,
        }
    ).encode()


async def test_a_round_trip_into_another_owner_keeps_messages_and_tree(
    server: RunningServer,
) -> None:
    """alice's whole tree, imported by bob, exports again with the same messages, links
    and active path (new message ids: ids are unique across owners)."""
    await build_tree(server, "alice")
    original = (await export(server, "alice", "c-tree", tree=True))["export"]
    status, answer = await post_import(server, json.dumps(original).encode(), client_id="bob")
    assert status == 200
    assert answer == {
        "imported": 1,
        "skipped": 0,
        "conversations": [{"id": "c-tree", "title": "Sockets"}],
    }
    copy = (await export(server, "bob", "c-tree", tree=True))["export"]
    assert shape(copy) == shape(original)
    assert (
        active_contents(copy)
        == active_contents(original)
        == [TREE[0][3], *[content for key, _, _, content in TREE if key in ACTIVE_PATH[1:]]]
    )
    assert not {m["id"] for m in copy["messages"]} & {m["id"] for m in original["messages"]}
    kept = ("role", "content", "status", "model", "created_at")
    assert [{k: m[k] for k in kept} for m in copy["messages"]] == [
        {k: m[k] for k in kept} for m in original["messages"]
    ]


async def test_an_export_imported_by_its_owner_is_skipped(server: RunningServer) -> None:
    """Importing alice's own export back into alice adds nothing: she has that id."""
    await build_tree(server, "alice")
    document = (await export(server, "alice", "c-tree"))["export"]
    before = await count(server, messages)
    status, answer = await post_import(server, json.dumps([document]).encode())
    assert (status, answer["imported"], answer["skipped"]) == (200, 0, 1)
    assert await count(server, messages) == before


async def test_imported_conversations_are_marked_and_listed(server: RunningServer) -> None:
    """An imported conversation is listed with title_source 'import' and its active leaf."""
    await post_import(
        server,
        liaotian_file(
            "c-mark",
            [{"id": "a", "role": "user", "content": "hi", "parent_id": None}],
            title="Marked",
        ),
    )
    async with Client(server.http_url, client_id="alice") as client:
        page = await client.conversations()
    [listed] = page["conversations"]
    assert (listed["id"], listed["title"]) == ("c-mark", "Marked")
    assert cast(dict[str, Any], listed)["title_source"] == "import"


def test_a_reply_exported_while_streaming_imports_as_interrupted() -> None:
    """A streaming reply cannot be continued elsewhere: it imports as interrupted, and a
    message with images only becomes '[image]' (the images are not in the file)."""
    items = [
        {"id": "u", "role": "user", "content": "", "attachments": [{"id": "x"}]},
        {
            "id": "r",
            "parent_id": "u",
            "role": "assistant",
            "content": "Half",
            "status": "streaming",
        },
    ]
    [conversation] = parse_import(liaotian_file("c", items), now=datetime.now(UTC))
    user, reply = conversation.messages
    assert user.content == "[image]"
    assert (reply.status, reply.error_code) == ("interrupted", "interrupted")


# -- import: ChatGPT ---------------------------------------------------------------------


async def test_a_chatgpt_export_imports_with_its_active_path(server: RunningServer) -> None:
    """ChatGPT's conversations.json: both conversations, text messages only, branches kept,
    current_node's path active, images as '[image]', hidden and tool nodes skipped."""
    status, answer = await post_import(server, CHATGPT_FILE.read_bytes())
    assert status == 200
    assert answer["imported"] == 2
    assert answer["conversations"][0] == {"id": CHATGPT_ID, "title": "Packing for Lisbon"}
    document = (await export(server, "alice", CHATGPT_ID, tree=True))["export"]
    assert len(document["messages"]) == 7
    assert {m["role"] for m in document["messages"]} == {"user", "assistant"}
    assert active_contents(document) == [
        "What should I pack for Lisbon in March?",
        "Bring a rain jacket, comfortable shoes for the hills, and a warm layer.",
        "And for a day trip to Sintra?",
        "Sintra is cooler and misty: add a sweater.",
    ]
    contents = {m["content"]: m for m in document["messages"]}
    assert "[image]\n\nIs this jacket warm enough?" in contents
    answers = [c for c in shape(document) if c[0] == "What should I pack for Lisbon in March?"]
    assert len(answers) == 2  # the answer given again is a branch
    assert contents["Pack layers and a light rain jacket."]["model"] == "gpt-4o"
    assert document["conversation"]["model"] == "gpt-4o"
    assert document["conversation"]["created_at"] == pytest.approx(1733212800.123)
    other = await export(server, "alice", "chatgpt-6750f8b0-1111-8000-aaaa-222233334444")
    assert active_contents(other["export"]) == ["用中文说你好", "你好！"]
    assert other["export"]["conversation"]["archived"] is True


async def test_importing_the_same_file_twice_adds_nothing(server: RunningServer) -> None:
    """The second import of a file skips every conversation and stores no message."""
    assert (await post_import(server, CHATGPT_FILE.read_bytes()))[0] == 200
    stored = (await count(server, conversations), await count(server, messages))
    status, answer = await post_import(server, CHATGPT_FILE.read_bytes())
    assert (status, answer) == (200, {"imported": 0, "skipped": 2, "conversations": []})
    assert (await count(server, conversations), await count(server, messages)) == stored


async def test_imported_messages_and_titles_are_indexed_for_search(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every imported message with text and every title goes through the search hooks."""
    indexed: list[str] = []
    monkeypatch.setattr(search, "index_message", lambda c, message_id, text: indexed.append(text))
    monkeypatch.setattr(search, "index_title", lambda c, pk, title: indexed.append(title))
    await post_import(server, CHATGPT_FILE.read_bytes())
    assert len(indexed) == 9 + 2
    assert {"Packing for Lisbon", "你好", "你好！", "And for a day trip to Sintra?"} <= set(indexed)


def chatgpt_with(**changes: Any) -> bytes:
    """The fixture file with its first conversation changed."""
    document = json.loads(CHATGPT_FILE.read_bytes())
    document[0].update(changes)
    return json.dumps(document).encode()


def broken_parent() -> bytes:
    document = json.loads(CHATGPT_FILE.read_bytes())
    document[1]["mapping"]["r1"]["parent"] = "nowhere"
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b"42", "expected a JSON object or a list"),
        (b'[{"title": "x"}]', "conversation 1 ('x') is neither"),
        (chatgpt_with(mapping=[]), "conversation 1 ('Packing for Lisbon'): mapping: "),
        (chatgpt_with(current_node="gone"), "current_node 'gone' is not in mapping"),
        (broken_parent(), "conversation 2 ('你好'): message 'r1' follows 'nowhere'"),
        (
            liaotian_file("c", [{"id": "a", "role": "system", "content": "x"}]),
            "conversation 1 ('Imported'): messages.0.role: ",
        ),
        (liaotian_file("bad id!", []), "conversation.id: "),
        (
            liaotian_file("c", [{"id": "a", "role": "user", "parent_id": "a"}]),
            "message 'a' is in a loop of parents",
        ),
    ],
)
async def test_a_malformed_file_is_refused_and_nothing_is_stored(
    server: RunningServer, body: bytes, says: str
) -> None:
    """A malformed file is 400 invalid_import saying what and where; nothing is stored,
    not even the good conversations before the bad one."""
    status, answer = await post_import(server, body)
    assert status == 400
    assert answer["error"]["code"] == "invalid_import"
    assert says in answer["error"]["message"]
    assert await count(server, conversations) == 0


async def raw_request(server: RunningServer, head: str, body_parts: list[bytes]) -> bytes:
    """Send a request head and some body, never the rest; the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head.encode())
        for part in body_parts:
            writer.write(part)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_a_body_declared_too_large_is_refused_before_it_is_read(
    make_settings: SettingsFactory,
) -> None:
    """A Content-Length over max_import_bytes is answered 413 after its first kilobyte."""
    async with run_server(make_settings(max_import_bytes=100_000)) as server:
        head = (
            "POST /conversations/import?client_id=alice HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 << 20}\r\n\r\n"
        )
        response = await raw_request(server, head, [b"[" * 1024])
        assert response.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in response.lower()


async def test_a_chunked_body_is_cut_off_at_the_limit(make_settings: SettingsFactory) -> None:
    """A body without a length is answered 413 once it passes the limit."""
    async with run_server(make_settings(max_import_bytes=100_000)) as server:
        head = (
            "POST /conversations/import?client_id=alice HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (60_000, b" " * 60_000)
        response = await raw_request(server, head, [chunk, chunk])
        assert response.startswith(b"HTTP/1.1 413 ")


async def test_a_form_or_text_body_is_refused(server: RunningServer) -> None:
    """Only application/json is read: a form or text body (which another site's page
    could send without asking) is 415."""
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, answer = await post_import(
            server, CHATGPT_FILE.read_bytes(), content_type=content_type
        )
        assert (status, answer["error"]["code"]) == (415, "unsupported_media_type")
    assert await count(server, conversations) == 0


async def test_a_cross_site_import_is_refused(server: RunningServer) -> None:
    """A browser on another site gets 403 and nothing is imported."""
    status, answer = await post_import(
        server, CHATGPT_FILE.read_bytes(), headers={"Origin": "https://evil.example"}
    )
    assert (status, answer["error"]["code"]) == (403, "origin_not_allowed")
    assert await count(server, conversations) == 0


async def test_imports_are_rate_limited_per_owner(make_settings: SettingsFactory) -> None:
    """Over imports_per_minute an owner gets 429 with Retry-After; another owner does not."""
    async with run_server(make_settings(imports_per_minute=2)) as server:
        for _ in range(2):
            assert (await post_import(server, b"[]"))[0] == 200
        status, answer = await post_import(server, b"[]")
        assert (status, answer["error"]["code"]) == (429, "rate_limited")
        assert (await post_import(server, b"[]", client_id="bob"))[0] == 200


async def test_imports_beyond_the_room_are_refused_at_once(server: RunningServer) -> None:
    """With the import slot and the queue taken (bodies still arriving), another import is
    503 at once; once they leave, imports are served again."""
    head = (
        "POST /conversations/import?client_id=alice HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    writers = []
    room = IMPORTS_AT_ONCE + IMPORT_QUEUE
    for number in range(room):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head.replace("alice", f"owner{number}").encode() + b"[")  # never the rest
        await writer.drain()
        writers.append(writer)
    await eventually(lambda: server.services.guards.imports == room)
    status, answer = await post_import(server, b"[]", client_id="bob")
    assert (status, answer["error"]["code"]) == (503, "imports_busy")
    for writer in writers:
        writer.close()
    await eventually(lambda: server.services.guards.imports == 0)
    assert (await post_import(server, b"[]", client_id="bob"))[0] == 200


# -- owners ------------------------------------------------------------------------------


async def test_imports_go_to_the_callers_owner_only(server: RunningServer) -> None:
    """alice's import is hers: bob lists nothing and cannot export it."""
    await post_import(server, CHATGPT_FILE.read_bytes())
    async with Client(server.http_url, client_id="bob") as bob:
        assert (await bob.conversations())["conversations"] == []
        with pytest.raises(NotFound):
            await bob.export(CHATGPT_ID)
    async with Client(server.http_url, client_id="alice") as alice:
        # The file's second conversation was archived in ChatGPT, and stays archived.
        assert len((await alice.conversations())["conversations"]) == 1
        assert len((await alice.conversations(archived=True))["conversations"]) == 1


async def test_the_same_file_imports_for_two_owners(server: RunningServer) -> None:
    """Two owners can import one file: the same conversation ids, distinct message ids."""
    assert (await post_import(server, CHATGPT_FILE.read_bytes()))[1]["imported"] == 2
    assert (await post_import(server, CHATGPT_FILE.read_bytes(), client_id="bob"))[1][
        "imported"
    ] == 2
    assert await count(server, messages) == 2 * 9


async def test_without_a_client_id_per_client_owners_are_refused(server: RunningServer) -> None:
    """In per-client open mode the owner is the client_id: without one, 400."""
    status, answer = await post_import(server, b"[]", client_id=None)
    assert (status, answer["error"]["code"]) == (400, "client_id_required")


async def test_in_shared_open_mode_the_import_is_the_local_owners(
    make_settings: SettingsFactory,
) -> None:
    """With open_owner shared, whatever client imports, every client sees it."""
    async with run_server(make_settings(open_owner="shared")) as server:
        await post_import(server, CHATGPT_FILE.read_bytes(), client_id=None)
        async with Client(server.http_url, client_id="anyone") as client:
            assert len((await client.conversations())["conversations"]) == 1  # and one archived


@pytest.fixture
async def accounts_server(
    make_settings: SettingsFactory, database_url: str
) -> AsyncIterator[tuple[RunningServer, dict[str, str]]]:
    tokens = {name: await create_user(database_url, name) for name in ("alice", "bob")}
    async with run_server(make_settings()) as server:
        yield server, tokens


async def test_with_accounts_imports_belong_to_the_signed_in_user(
    accounts_server: tuple[RunningServer, dict[str, str]],
) -> None:
    """Without a credential 401; with alice's token the import is alice's, not bob's."""
    server, tokens = accounts_server
    status, answer = await post_import(server, CHATGPT_FILE.read_bytes())
    assert (status, answer["error"]["code"]) == (401, "authentication_required")
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    assert (await post_import(server, CHATGPT_FILE.read_bytes(), headers=alice))[0] == 200
    async with Client(server.http_url, client_id="x", token=tokens["bob"]) as bob:
        assert (await bob.conversations())["conversations"] == []
    async with Client(server.http_url, client_id="x", token=tokens["alice"]) as client:
        assert len((await client.conversations())["conversations"]) == 1  # and one archived
        assert (await client.export(CHATGPT_ID))["conversation"]["id"] == CHATGPT_ID


async def test_open_pages_are_told_of_imported_conversations(server: RunningServer) -> None:
    """Each conversation imported reaches the owner's connections as conversation.updated."""
    page = await connect(server, "alice")
    other = await connect(server, "bob")
    await post_import(server, CHATGPT_FILE.read_bytes())
    frames = await page.until(
        lambda frame: (
            frame["type"] == "conversation.updated"
            and frame["conversation"]["id"].endswith("222233334444")
        )
    )
    told = [f["conversation"]["id"] for f in frames if f["type"] == "conversation.updated"]
    assert told == [CHATGPT_ID, "chatgpt-6750f8b0-1111-8000-aaaa-222233334444"]
    assert frames[0]["conversation"]["title_source"] == "import"
    await other.send({"type": "ping", "id": "p"})
    assert (await other.recv())["type"] == "pong"  # bob was told nothing
    await page.close()
    await other.close()


# -- the Python client and the CLI -------------------------------------------------------


async def test_the_python_client_exports_and_imports(server: RunningServer, tmp_path: Path) -> None:
    """Client.export and Client.import_file (a path or bytes) round-trip a conversation."""
    await build_tree(server, "alice")
    async with Client(server.http_url, client_id="alice") as alice:
        document = await alice.export("c-tree", tree=True)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(document))
    async with Client(server.http_url, client_id="bob") as bob:
        assert (await bob.import_file(path))["imported"] == 1
        assert (await bob.import_file(path.read_bytes()))["skipped"] == 1
        with pytest.raises(InvalidImport, match="not JSON"):
            await bob.import_file(b"nope")
        assert shape(await bob.export("c-tree", tree=True)) == shape(document)


async def test_the_cli_exports_and_imports_through_a_server(
    server: RunningServer, tmp_path: Path
) -> None:
    """liaotian export --tree -o FILE, then liaotian import FILE as another owner, twice."""
    await build_tree(server, "alice")
    url = server_url(server)
    out = tmp_path / "tree.json"
    run = await run_cli(
        tmp_path,
        "c-tree",
        "--tree",
        "-o",
        str(out),
        "--server",
        url,
        "--client-id",
        "alice",
        command="export",
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert len(json.loads(out.read_text())["messages"]) == len(TREE)
    imported = await run_cli(
        tmp_path, str(out), "--server", url, "--client-id", "bob", command="import"
    )
    assert (imported.returncode, imported.stdout) == (0, "imported 1, skipped 0\n")
    again = await run_cli(
        tmp_path, str(out), "--server", url, "--client-id", "bob", command="import"
    )
    assert (again.returncode, again.stdout) == (0, "imported 0, skipped 1\n")
    listing = await run_cli(
        tmp_path, "--all", "--server", url, "--client-id", "bob", command="export"
    )
    assert [item["conversation"]["id"] for item in json.loads(listing.stdout)] == ["c-tree"]


async def test_the_cli_says_what_went_wrong_in_plain_words(
    server: RunningServer, tmp_path: Path
) -> None:
    """An unknown conversation and a malformed file exit 1 with one line; a missing file 2."""
    url = server_url(server)
    run = await run_cli(tmp_path, "nope", "--server", url, "--client-id", "a", command="export")
    assert (run.returncode, run.stdout, run.stderr) == (1, "", "liaotian: no conversation nope\n")
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    run = await run_cli(tmp_path, str(bad), "--server", url, "--client-id", "a", command="import")
    assert run.returncode == 1
    assert run.stderr == f"liaotian: cannot import {bad}: conversation 1 is not a JSON object\n"
    missing = tmp_path / "missing.json"
    run = await run_cli(
        tmp_path, str(missing), "--server", url, "--client-id", "a", command="import"
    )
    assert (run.returncode, run.stderr) == (2, f"liaotian: no such file: {missing}\n")
