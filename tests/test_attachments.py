"""Attachments: uploading images over HTTP, checking and re-encoding them, owner scope,
limits, linking them to a conversation, and removing them with it or when unused."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import func, select

from liaotian.client import Client
from liaotian.errors import NotFound, UnsupportedMediaType
from liaotian.store.attachments import attachments, claim_attachments, load_images
from tests.cluster import create_user
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.waiting import eventually
from tests.wsclient import RawClient, of_type

GPS_LATITUDE = (48.0, 51.0, 29.5)


def encoded(image: Image.Image, image_format: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def png(width: int = 60, height: int = 40, mode: str = "RGB") -> bytes:
    return encoded(Image.new(mode, (width, height), "teal"), "PNG")


def camera_jpeg() -> bytes:
    """A 300 × 200 JPEG as a phone takes it: EXIF with a camera, GPS position, and
    orientation 6 (turn 90° clockwise to show it), and a comment."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 6  # Orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", GPS_LATITUDE
    return encoded(Image.new("RGB", (300, 200), "orange"), "JPEG", exif=exif, comment=b"note")


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only a signature, an IHDR claiming ``width`` × ``height`` and IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


async def upload(
    server: RunningServer,
    data: bytes,
    content_type: str = "image/png",
    *,
    client_id: str | None = "alice",
    name: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST the bytes; (status, JSON body)."""
    params = {key: value for key, value in (("client_id", client_id), ("name", name)) if value}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.http_url}/attachments",
            data=data,
            params=params,
            headers={"Content-Type": content_type, **(headers or {})},
        ) as response,
    ):
        return response.status, await response.json()


async def fetch(
    server: RunningServer,
    attachment_id: str,
    *,
    client_id: str | None = "alice",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    """GET an attachment; (status, body, headers)."""
    params = {"client_id": client_id} if client_id else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{server.http_url}/attachments/{attachment_id}", params=params, headers=headers
        ) as response,
    ):
        return response.status, await response.read(), response.headers


async def stored_count(server: RunningServer) -> int:
    async with server.services.store.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(attachments)) or 0)


async def raw_request(server: RunningServer, head: str, body_parts: list[bytes]) -> bytes:
    """Send a request head and some body, never the rest; the response head the server
    sends anyway (it must answer without waiting for the whole body)."""
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


# -- uploading and serving ----------------------------------------------------------------


async def test_a_png_is_stored_and_served_back_to_its_owner(server: RunningServer) -> None:
    """An uploaded PNG answers 201 with its description and is served back inline."""
    status, info = await upload(server, png(60, 40), name="diagram.png")
    assert status == 201
    assert info["media_type"] == "image/png"
    assert (info["name"], info["width"], info["height"]) == ("diagram.png", 60, 40)
    status, body, headers = await fetch(server, info["id"])
    assert status == 200
    assert len(body) == info["bytes"]
    assert Image.open(io.BytesIO(body)).size == (60, 40)
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"].startswith('inline; filename="diagram.png"')
    assert headers["Cache-Control"].startswith("private, max-age=")


async def test_camera_metadata_is_dropped_and_the_photo_turned_upright(
    server: RunningServer,
) -> None:
    """A JPEG's EXIF (camera, GPS) and comment are gone; its orientation is applied."""
    original = camera_jpeg()
    assert b"SecretCam" in original
    status, info = await upload(server, original, "image/jpeg", name="IMG_0001.JPG")
    assert status == 201
    assert (info["media_type"], info["width"], info["height"]) == ("image/jpeg", 200, 300)
    _, body, _ = await fetch(server, info["id"])
    stored = Image.open(io.BytesIO(body))
    assert stored.format == "JPEG"
    assert dict(stored.getexif()) == {}
    assert "comment" not in stored.info
    assert b"SecretCam" not in body
    assert b"Exif" not in body


async def test_png_text_and_exif_chunks_are_dropped(server: RunningServer) -> None:
    """A PNG's text chunks and eXIf chunk are not kept."""
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Secret Person")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    original = encoded(Image.new("RGBA", (20, 20), "red"), "PNG", pnginfo=text, exif=exif)
    status, info = await upload(server, original)
    assert status == 201
    _, body, _ = await fetch(server, info["id"])
    assert b"Secret Person" not in body
    assert b"SecretCam" not in body
    assert Image.open(io.BytesIO(body)).mode == "RGBA"


async def test_a_large_image_is_scaled_down_to_the_longest_side(
    make_settings: SettingsFactory,
) -> None:
    """The longest side is brought down to ``attachment_max_side``, the ratio kept."""
    async with run_server(make_settings(attachment_max_side=100)) as server:
        status, info = await upload(server, png(400, 200))
        assert status == 201
        assert (info["width"], info["height"]) == (100, 50)
        _, body, _ = await fetch(server, info["id"])
        assert Image.open(io.BytesIO(body)).size == (100, 50)


async def test_an_animated_gif_becomes_a_png_of_its_first_frame(server: RunningServer) -> None:
    """A GIF is stored as a PNG of its first frame, its name's extension following."""
    frames = [Image.new("RGB", (16, 8), color) for color in ("red", "blue")]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    status, info = await upload(server, gif, "image/gif", name="dance.gif")
    assert status == 201
    assert (info["media_type"], info["name"]) == ("image/png", "dance.png")
    _, body, _ = await fetch(server, info["id"])
    stored = Image.open(io.BytesIO(body)).convert("RGB")
    assert stored.getpixel((0, 0)) == (255, 0, 0)


async def test_the_name_is_cleaned(server: RunningServer) -> None:
    """Path parts, control and bidi characters leave the name; the header stays ASCII."""
    status, info = await upload(server, png(), name="../../etc/pa\u202esswd\r\nX: 1.png")
    assert status == 201
    assert info["name"] == "passwd X: 1.png"
    _, _, headers = await fetch(server, info["id"])
    assert headers["Content-Disposition"] == (
        "inline; filename=\"passwd X_ 1.png\"; filename*=UTF-8''passwd%20X%3A%201.png"
    )


# -- refusals ------------------------------------------------------------------------------


async def test_a_file_that_is_not_an_image_is_refused(server: RunningServer) -> None:
    """Text sent as an image, and a BMP, are 415 ``unsupported_media_type``."""
    for data in (b"<svg onload=alert(1)>", encoded(Image.new("RGB", (4, 4)), "BMP")):
        status, answer = await upload(server, data)
        assert status == 415
        assert answer["error"]["code"] == "unsupported_media_type"
    assert await stored_count(server) == 0


async def test_a_form_body_is_refused(server: RunningServer) -> None:
    """A Content-Type a cross-site form can send (multipart, text) is 415."""
    for content_type in ("multipart/form-data; boundary=x", "text/plain"):
        status, answer = await upload(server, png(), content_type)
        assert status == 415, content_type
        assert answer["error"]["code"] == "unsupported_media_type"


async def test_a_truncated_image_is_refused(server: RunningServer) -> None:
    """A JPEG cut in half is 400 ``invalid_image``."""
    whole = encoded(Image.effect_noise((200, 200), 64).convert("RGB"), "JPEG")
    status, answer = await upload(server, whole[: len(whole) // 2], "image/jpeg")
    assert status == 400
    assert answer["error"]["code"] == "invalid_image"


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(
    server: RunningServer,
) -> None:
    """A Content-Length over the limit is answered 413 after its first kilobyte."""
    head = (
        "POST /attachments?client_id=alice HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Type: image/png\r\n"
        f"Content-Length: {100 << 20}\r\n\r\n"
    )
    response = await raw_request(server, head, [b"\0" * 1024])
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in response.lower()


async def test_a_chunked_body_is_cut_off_at_the_limit(make_settings: SettingsFactory) -> None:
    """A body without a length is answered 413 once it passes the limit, not at its end."""
    async with run_server(make_settings(max_attachment_bytes=100_000)) as server:
        head = (
            "POST /attachments?client_id=alice HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nContent-Type: image/png\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (60_000, b"\0" * 60_000)
        response = await raw_request(server, head, [chunk, chunk])
        assert response.startswith(b"HTTP/1.1 413 ")


async def test_a_header_claiming_a_huge_image_is_refused(server: RunningServer) -> None:
    """A PNG header claiming 100,000 × 100,000 pixels is 413 without any decoding."""
    status, answer = await upload(server, png_header(100_000, 100_000))
    assert status == 413
    assert answer["error"]["code"] == "attachment_too_large"


async def test_a_small_file_of_too_many_pixels_is_refused(server: RunningServer) -> None:
    """An 8,000 × 8,000 blank PNG (a few KiB) is over ``max_attachment_pixels``: 413."""
    bomb = encoded(Image.new("1", (8000, 8000)), "PNG")
    assert len(bomb) < 100_000
    status, answer = await upload(server, bomb)
    assert status == 413
    assert "8,000 × 8,000" in answer["error"]["message"]


async def test_uploads_are_rate_limited_per_owner(make_settings: SettingsFactory) -> None:
    """Over ``attachments_per_minute`` an owner gets 429 with Retry-After; others do not."""
    async with run_server(make_settings(attachments_per_minute=2)) as server:
        for _ in range(2):
            assert (await upload(server, png()))[0] == 201
        status, answer = await upload(server, png())
        assert status == 429
        assert answer["error"]["code"] == "rate_limited"
        assert (await upload(server, png(), client_id="bob"))[0] == 201


async def test_uploads_beyond_the_checking_room_are_refused_at_once(
    make_settings: SettingsFactory,
) -> None:
    """With every slot and queue place taken, another upload is 503 at once."""
    settings = make_settings(attachment_decodes_at_once=1, attachment_decode_queue=0)
    async with run_server(settings) as server:
        head = (
            "POST /attachments?client_id=alice HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nContent-Type: image/png\r\n"
            "Content-Length: 1000\r\n\r\n"
        )
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head.encode() + b"\0" * 10)  # the rest never comes
        await writer.drain()
        await eventually(lambda: server.services.guards.image_uploads == 1)
        status, answer = await upload(server, png(), client_id="bob")
        assert status == 503
        assert answer["error"]["code"] == "attachments_busy"
        writer.close()
        await eventually(lambda: server.services.guards.image_uploads == 0)
        assert (await upload(server, png(), client_id="bob"))[0] == 201


# -- who may upload and fetch ----------------------------------------------------------------


async def test_another_client_gets_404_like_an_unknown_id(server: RunningServer) -> None:
    """With per-client owners, another client id's fetch is 404, as for an unknown id."""
    _, info = await upload(server, png(), client_id="alice")
    status, body, _ = await fetch(server, info["id"], client_id="mallory")
    unknown_id = "AAAAAAAAAAAAAAAAAAAAAA"
    unknown = await fetch(server, unknown_id, client_id="mallory")
    assert (status, body.replace(info["id"].encode(), b"ID")) == (
        unknown[0],
        unknown[1].replace(unknown_id.encode(), b"ID"),
    )
    assert status == 404
    assert (await fetch(server, info["id"], client_id="alice"))[0] == 200


async def test_without_a_client_id_per_client_owners_are_refused(server: RunningServer) -> None:
    """With ``open_owner = "per-client"`` a request without ``client_id`` is 400."""
    status, answer = await upload(server, png(), client_id=None)
    assert status == 400
    assert answer["error"]["code"] == "client_id_required"


async def test_shared_open_mode_clients_share_attachments(make_settings: SettingsFactory) -> None:
    """With shared owners, what one client uploads another (or none) can fetch."""
    async with run_server(make_settings(open_owner="shared")) as server:
        status, info = await upload(server, png(), client_id=None)
        assert status == 201
        assert (await fetch(server, info["id"], client_id="the-page"))[0] == 200


async def test_a_cross_site_upload_is_refused(server: RunningServer) -> None:
    """An upload with another site's Origin is 403 and stores nothing; the server's own
    origin is accepted."""
    status, answer = await upload(server, png(), headers={"Origin": "https://evil.example"})
    assert status == 403
    assert answer["error"]["code"] == "origin_not_allowed"
    assert await stored_count(server) == 0
    own = {"Origin": server.http_url}
    assert (await upload(server, png(), headers=own))[0] == 201


@pytest.fixture
async def accounts_server(
    make_settings: SettingsFactory, database_url: str
) -> AsyncIterator[tuple[RunningServer, dict[str, str]]]:
    tokens = {name: await create_user(database_url, name) for name in ("alice", "bob")}
    async with run_server(make_settings()) as server:
        yield server, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_with_accounts_an_anonymous_upload_is_refused(
    accounts_server: tuple[RunningServer, dict[str, str]],
) -> None:
    """Once users exist, an upload or fetch without a credential is 401."""
    server, tokens = accounts_server
    status, answer = await upload(server, png())
    assert status == 401
    assert answer["error"]["code"] == "authentication_required"
    _, info = await upload(server, png(), headers=bearer(tokens["alice"]))
    assert (await fetch(server, info["id"]))[0] == 401


async def test_a_user_cannot_fetch_another_users_attachment(
    accounts_server: tuple[RunningServer, dict[str, str]],
) -> None:
    """bob gets 404 for alice's attachment (whatever client id he gives); alice gets it."""
    server, tokens = accounts_server
    status, info = await upload(server, png(), headers=bearer(tokens["alice"]))
    assert status == 201
    assert (await fetch(server, info["id"], headers=bearer(tokens["bob"])))[0] == 404
    assert (await fetch(server, info["id"], headers=bearer(tokens["alice"])))[0] == 200


async def test_a_signed_in_browser_uploads_with_its_cookie(
    accounts_server: tuple[RunningServer, dict[str, str]],
) -> None:
    """The page's session cookie is the credential, as for its socket."""
    server, _ = accounts_server
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        login = {"user": "alice", "password": "correct horse battery"}
        async with session.post(f"{server.http_url}/auth/login", json=login) as response:
            assert response.status == 200
        async with session.post(
            f"{server.http_url}/attachments",
            data=png(),
            headers={"Content-Type": "image/png", "Origin": server.http_url},
        ) as response:
            assert response.status == 201
            info = await response.json()
        async with session.get(f"{server.http_url}/attachments/{info['id']}") as response:
            assert response.status == 200


# -- linking, loading, removing ---------------------------------------------------------------


async def start_conversation(server: RunningServer, client_id: str) -> tuple[RawClient, str]:
    client = await RawClient.open(f"{server.ws_url}?client_id={client_id}")
    await client.recv()
    await client.send({"type": "chat.send", "message": "look at this"})
    [*_, done] = await client.until(of_type("reply.done"))
    return client, done["conversation_id"]


async def claim(server: RunningServer, owner: str, ids: list[str], conversation_id: str) -> Any:
    conversation = await server.services.store.get_conversation(owner, conversation_id)
    database = server.services.store._db
    return await database.run(lambda c: claim_attachments(c, owner, ids, conversation.pk))


async def test_claiming_links_attachments_in_the_given_order(server: RunningServer) -> None:
    """Claimed attachments come back in the order asked; claiming again in the same
    conversation is fine, in another one NotFound."""
    first = (await upload(server, png(10, 10)))[1]
    second = (await upload(server, png(20, 20)))[1]
    client, conversation_id = await start_conversation(server, "alice")
    claimed = await claim(server, "alice", [second["id"], first["id"]], conversation_id)
    assert [info.to_wire() for info in claimed] == [second, first]
    assert len(await claim(server, "alice", [first["id"]], conversation_id)) == 1
    await client.send({"type": "chat.send", "message": "elsewhere"})
    [*_, other] = await client.until(of_type("reply.done"))
    with pytest.raises(NotFound, match=first["id"]):
        await claim(server, "alice", [first["id"]], other["conversation_id"])
    await client.close()


async def test_claiming_another_owners_attachment_changes_nothing(server: RunningServer) -> None:
    """mallory cannot link alice's attachment: NotFound, and it stays unlinked."""
    _, info = await upload(server, png(), client_id="alice")
    mallory, conversation_id = await start_conversation(server, "mallory")
    with pytest.raises(NotFound):
        await claim(server, "mallory", [info["id"]], conversation_id)
    async with server.services.store.engine.connect() as connection:
        linked = await connection.scalar(
            select(attachments.c.conversation_pk).where(attachments.c.id == info["id"])
        )
    assert linked is None
    await mallory.close()


async def test_load_images_gives_only_the_owners(server: RunningServer) -> None:
    """load_images returns the owner's images by id, and nothing of another owner's."""
    _, mine = await upload(server, png(), client_id="alice")
    _, theirs = await upload(server, png(), client_id="bob")
    database = server.services.store._db
    loaded = await database.run(lambda c: load_images(c, "alice", [mine["id"], theirs["id"]]))
    assert list(loaded) == [mine["id"]]
    media_type, data = loaded[mine["id"]]
    assert media_type == "image/png"
    assert len(data) == mine["bytes"]


async def test_deleting_a_conversation_deletes_its_attachments(server: RunningServer) -> None:
    """Deleting the conversation removes the attachments linked to it (the foreign key
    cascades, on SQLite and on PostgreSQL); an unlinked one stays."""
    _, linked = await upload(server, png())
    _, unlinked = await upload(server, png())
    client, conversation_id = await start_conversation(server, "alice")
    await claim(server, "alice", [linked["id"]], conversation_id)
    await client.send({"type": "conversation.delete", "conversation_id": conversation_id})
    await client.until(of_type("conversation.deleted"))
    assert (await fetch(server, linked["id"]))[0] == 404
    assert (await fetch(server, unlinked["id"]))[0] == 200
    assert await stored_count(server) == 1
    await client.close()


async def test_reaping_removes_only_old_unlinked_attachments(server: RunningServer) -> None:
    """reap_unused deletes what no message used and is older than asked; nothing else."""
    _, linked = await upload(server, png())
    _, unlinked = await upload(server, png())
    client, conversation_id = await start_conversation(server, "alice")
    await claim(server, "alice", [linked["id"]], conversation_id)
    store = server.services.attachments
    assert await store.reap_unused(3600) == 0
    assert await store.reap_unused(0) == 1
    assert (await fetch(server, unlinked["id"]))[0] == 404
    assert (await fetch(server, linked["id"]))[0] == 200
    await client.close()


async def test_the_server_reaps_unused_attachments_by_itself(
    make_settings: SettingsFactory,
) -> None:
    """With a short ``attachment_unused_ttl`` an unused attachment goes away on its own."""
    async with run_server(make_settings(attachment_unused_ttl=0.5)) as server:
        status, info = await upload(server, png())
        assert status == 201
        # Nothing announces a reap: ask until the image is gone, within a bound.
        async with asyncio.timeout(20):
            while (await fetch(server, info["id"]))[0] != 404:  # noqa: ASYNC110
                await asyncio.sleep(0.1)


# -- the page and the Python client -----------------------------------------------------------


async def test_the_page_may_show_uploaded_and_local_images(server: RunningServer) -> None:
    """The page's CSP admits images of its own origin, blob: previews and data: URLs."""
    async with aiohttp.ClientSession() as session, session.get(server.http_url) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "img-src 'self' blob: data:;" in policy


async def test_the_python_client_uploads_files_and_bytes(
    accounts_server: tuple[RunningServer, dict[str, str]], tmp_path: Path
) -> None:
    """Client.upload_image sends a path or bytes with its token; a refusal raises."""
    server, tokens = accounts_server
    path = tmp_path / "chart.png"
    path.write_bytes(png(30, 20))
    async with Client(server.http_url, client_id="script", token=tokens["alice"]) as client:
        from_path = await client.upload_image(path)
        from_bytes = await client.upload_image(camera_jpeg(), name="photo.jpg")
        with pytest.raises(UnsupportedMediaType):
            await client.upload_image(b"not an image")
    assert (from_path["name"], from_path["width"], from_path["height"]) == ("chart.png", 30, 20)
    assert (from_bytes["media_type"], from_bytes["name"]) == ("image/jpeg", "photo.jpg")
    alice = bearer(tokens["alice"])
    assert (await fetch(server, from_path["id"], headers=alice))[0] == 200
