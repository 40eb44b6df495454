"""Through deploy/nginx.conf: the API's event streams pass unbuffered, and each route's
request bodies up to liaotian's own caps reach liaotian (not nginx's 413).

The chat-completion tests follow the contract of docs/api.md ("OpenAI-compatible API"),
read with raw aiohttp so that what nginx passes on, and when, is what the test sees.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.cluster import Nginx, start_nginx
from tests.fake_upstream import FakeUpstream
from tests.server_harness import RunningServer

CLIENT = "nginx-client"
AUTH = {"Authorization": f"Bearer {CLIENT}"}
"""Open mode, per-client owners (the test server's): the API key is the client id."""
TOKENS = "".join(f"t{n} " for n in range(40))


@pytest.fixture
async def behind_nginx(server: RunningServer, tmp_path: Path) -> AsyncIterator[Nginx]:
    running = await start_nginx(tmp_path, [server.port])
    try:
        yield running
    finally:
        await running.stop()


def completion(content: str, **fields: Any) -> dict[str, Any]:
    """A Chat Completions request of one user message (the default model, not stored)."""
    return {
        "model": "qwen-plus",
        "messages": [{"role": "user", "content": content}],
        "store": False,
        **fields,
    }


async def sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The ``data:`` values of an event stream, one at a time, as they arrive."""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            yield line.removeprefix("data:").strip()


async def raw_exchange(nginx: Nginx, head: str, body_start: bytes) -> tuple[str, bytes]:
    """Send a request head and the start of its body, never the rest; the status line and
    the body of the answer (which must come without the whole request body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx.port)
    try:
        writer.write(head.encode() + body_start)
        await writer.drain()
        async with asyncio.timeout(10):
            response_head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = next(
                int(line.split(":", 1)[1])
                for line in response_head.split("\r\n")
                if line.lower().startswith("content-length:")
            )
            return response_head.split("\r\n", 1)[0], await reader.readexactly(length)
    finally:
        writer.close()


# -- the API --------------------------------------------------------------------------------


async def test_models_are_listed_through_nginx(behind_nginx: Nginx) -> None:
    """GET /v1/models through nginx answers liaotian's model list."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{behind_nginx.http_url}/v1/models", headers=AUTH) as response,
    ):
        assert response.status == 200
        listed = await response.json()
    assert listed["object"] == "list"
    assert listed["data"][0]["id"] == "qwen-plus"


async def test_a_streamed_completion_passes_nginx_as_it_is_generated(
    behind_nginx: Nginx, fake: FakeUpstream
) -> None:
    """Through nginx the first content chunk arrives while the upstream is still sending
    the answer (no [DONE] yet, not all tokens), and the whole answer follows."""
    body = completion(
        "[tokens=40] [delay=100] through nginx",
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: list[str] = []
    upstream_at_first_text: tuple[int, int] | None = None
    ended = False
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{behind_nginx.http_url}/v1/chat/completions", json=body, headers=AUTH
        ) as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        async for data in sse_data(response):
            if data == "[DONE]":
                ended = True
                break
            chunk = json.loads(data)
            for choice in chunk["choices"]:
                text = choice["delta"].get("content")
                if text:
                    if not texts:
                        stats = fake.stats
                        upstream_at_first_text = (stats.streams_open, stats.streams_completed)
                    texts.append(text)
    # Buffered by nginx, the first text would come only after the upstream had finished.
    assert upstream_at_first_text == (1, 0)
    assert len(texts[0].split()) < 40
    assert ended
    assert "".join(texts) == TOKENS


async def test_a_two_mib_completion_body_reaches_liaotian_through_nginx(
    behind_nginx: Nginx,
) -> None:
    """A 2 MiB request (a long history) is over nginx's 1m default but under
    max_api_body_bytes: liaotian answers it."""
    turn = "history " * 2048  # 16 KiB per earlier message
    history = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"{n} {turn}"}
        for n in range(128)
    ]
    body = completion("[tokens=3] after a long history")
    body["messages"] = [*history, *body["messages"]]
    payload = json.dumps(body).encode()
    assert len(payload) > 2 << 20
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{behind_nginx.http_url}/v1/chat/completions",
            data=io.BytesIO(payload),
            headers={**AUTH, "Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "t0 t1 t2 "


async def test_a_completion_body_over_the_cap_gets_liaotians_413_through_nginx(
    behind_nginx: Nginx,
) -> None:
    """A body declared over max_api_body_bytes (4 MiB) but under nginx's cap is refused
    by liaotian, in OpenAI's error format, before it is sent."""
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{behind_nginx.port}\r\nAuthorization: Bearer {CLIENT}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {(4 << 20) + (256 << 10)}\r\n\r\n"
    )
    status, body = await raw_exchange(behind_nginx, head, b'{"model": "qwen-plus", ' + b" " * 1024)
    assert status.startswith("HTTP/1.1 413 ")
    assert json.loads(body)["error"]["code"] == "request_too_large"


# -- the page's routes that take large bodies ------------------------------------------------


def noise_png(side: int) -> bytes:
    """A PNG of random pixels (it does not compress: about 3 × side² bytes)."""
    pixels = random.Random(14).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, "PNG")
    return out.getvalue()


async def test_an_image_over_one_mib_uploads_through_nginx(behind_nginx: Nginx) -> None:
    """A 2.4 MiB photo (under max_attachment_bytes) is stored through nginx."""
    image = noise_png(900)
    assert len(image) > 2 << 20
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{behind_nginx.http_url}/attachments",
            params={"client_id": CLIENT},
            data=io.BytesIO(image),
            headers={"Content-Type": "image/png"},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        stored = await response.json()
    assert (stored["width"], stored["height"]) == (900, 900)


async def test_an_import_over_one_mib_goes_through_nginx(behind_nginx: Nginx) -> None:
    """A 2 MiB export (under max_import_bytes) is imported through nginx."""
    words = "imported " * 2048
    messages = [
        {
            "id": f"m{n}",
            "role": "user" if n % 2 == 0 else "assistant",
            "content": f"{n} {words}",
            "parent_id": f"m{n - 1}" if n else None,
        }
        for n in range(128)
    ]
    export = {
        "format": "liaotian.conversation",
        "version": 1,
        "conversation": {"id": "c-large", "title": "Large"},
        "messages": messages,
    }
    payload = json.dumps(export).encode()
    assert len(payload) > 2 << 20
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{behind_nginx.http_url}/conversations/import",
            params={"client_id": CLIENT},
            data=io.BytesIO(payload),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["imported"] == 1
