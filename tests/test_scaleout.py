"""Several server processes on PostgreSQL + Redis, behind nginx: replies shared by all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect as ws_connect

from tests.cluster import REDIS_START, REDIS_URL, Cluster, run_cluster
from tests.fake_upstream import FakeUpstream, expected_reasoning, expected_reply
from tests.wsclient import Frame, RawClient, follow_parts, follow_text, of_type, reply_text

pytestmark = pytest.mark.scaleout

TOKENS = "".join(f"t{n} " for n in range(60))


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str, fake: FakeUpstream) -> AsyncIterator[Cluster]:
    async with run_cluster(tmp_path, postgres_url, fake.dashscope_base_url, count=3) as running:
        yield running


async def connect(cluster: Cluster, url: str) -> RawClient:
    """A connection to ``url`` signed in as the cluster's user, past its ``hello``."""
    client = RawClient(
        await ws_connect(url, additional_headers=cluster.headers, max_size=None, compression=None)
    )
    assert (await client.recv())["type"] == "hello"
    return client


async def start(client: RawClient, message: str, **fields: object) -> Frame:
    await client.send({"type": "chat.send", "id": "s", "message": message, **fields})
    frames = await client.until(lambda f: f.get("id") == "s")
    return frames[-1]


async def test_reply_resumes_exactly_on_another_process(cluster: Cluster) -> None:
    """Cut after seq N on process A; subscribing on B after N gives exactly the rest."""
    for cut_after in (0, 7, 59):
        a = await connect(cluster, cluster.servers[0].ws_url)
        started = await start(a, "[tokens=60] [delay=15]")
        seen = [started]
        if cut_after > 0:
            seen += await a.until(
                lambda f, n=cut_after: f["type"] == "reply.delta" and f["seq"] >= n
            )
        await a.close()
        b = await connect(cluster, cluster.servers[1].ws_url)
        await b.send(
            {
                "type": "chat.subscribe",
                "id": "r",
                "message_id": started["message_id"],
                "after_seq": seen[-1]["seq"],
            }
        )
        rest = await b.until(of_type("reply.done"))
        answer = [frame for frame in rest if frame.get("id") == "r"]
        # Past the last seq seen (a delta may merge the events from there on: the text
        # below shows none is missing), or (when this connection was already following the
        # reply as its owner's) from a reply.started that starts the text over.
        assert answer[0]["seq"] > seen[-1]["seq"] or answer[0]["type"] == "reply.started"
        text = follow_text(rest, started["message_id"], reply_text(seen), seen[-1]["seq"])
        assert text == TOKENS, f"cut after {cut_after}"
        assert rest[-1]["status"] == "completed"
        await b.close()


async def test_reasoning_and_sources_resume_exactly_on_another_process(cluster: Cluster) -> None:
    """Cut in the sources, the reasoning or the text on A: B gives the rest of every part."""
    prompt = "[think=30] [search=2] [tokens=20] [delay=10] parts across processes"
    for cut_after in (1, 9, 40):
        a = await connect(cluster, cluster.servers[0].ws_url)
        started = await start(a, prompt, thinking=True, search=True)
        seen = [started]
        seen += await a.until(lambda f, n=cut_after: f.get("seq", -1) >= n)
        await a.close()
        message_id = started["message_id"]
        had, last_seq = follow_parts(seen, message_id)
        b = await connect(cluster, cluster.servers[1].ws_url)
        await b.send({"type": "chat.subscribe", "message_id": message_id, "after_seq": last_seq})
        rest = await b.until(of_type("reply.done", message_id=message_id))
        parts, _ = follow_parts(rest, message_id, had, last_seq)
        assert parts["reasoning"] == expected_reasoning(prompt), f"cut after {cut_after}"
        assert [source["index"] for source in parts["sources"]] == [1, 2]
        assert parts["text"] == expected_reply(prompt), f"cut after {cut_after}"
        await b.close()


async def test_resume_after_the_reply_ended_is_exact_too(cluster: Cluster) -> None:
    """A reply that finished while the client was away is delivered from where it left off."""
    a = await connect(cluster, cluster.servers[0].ws_url)
    started = await start(a, "[tokens=20] [delay=5]")
    first = await a.until(of_type("reply.delta"))
    await a.close()
    b = await connect(cluster, cluster.servers[2].ws_url)
    await b.send(
        {
            "type": "chat.subscribe",
            "message_id": started["message_id"],
            "after_seq": first[-1]["seq"],
        }
    )
    rest = await b.until(of_type("reply.done"))
    text = follow_text(rest, started["message_id"], reply_text(first), first[-1]["seq"])
    assert text == "".join(f"t{n} " for n in range(20))
    await b.close()


async def test_cancel_through_another_process_closes_the_upstream(
    cluster: Cluster, fake: FakeUpstream
) -> None:
    """A cancel sent to B stops the reply running on A and closes its upstream request
    long before the reply would have ended on its own."""
    a = await connect(cluster, cluster.servers[0].ws_url)
    started = await start(a, "[tokens=500] [delay=20]")
    await a.until(of_type("reply.delta"))
    b = await connect(cluster, cluster.servers[1].ws_url)
    await b.send({"type": "chat.cancel", "id": "c", "message_id": started["message_id"]})
    ack = (await b.until(lambda f: f.get("id") == "c"))[-1]
    assert ack["type"] == "ack"
    assert ack["message_ids"] == [started["message_id"]]
    # A disconnect counts only before the scripted 10 s answer ends: that is the bound.
    await fake.wait_for(lambda stats: stats.disconnects >= 1, within=10)
    done = (await a.until(of_type("reply.done")))[-1]
    assert done["status"] == "cancelled"
    await a.close()
    await b.close()


async def test_second_send_through_another_process_is_busy(cluster: Cluster) -> None:
    """One reply at a time per conversation holds across processes."""
    a = await connect(cluster, cluster.servers[0].ws_url)
    started = await start(a, "[tokens=200] [delay=10]")
    b = await connect(cluster, cluster.servers[1].ws_url)
    refused = await start(b, "me too", conversation_id=started["conversation_id"])
    assert (refused["type"], refused["code"]) == ("error", "conversation_busy")
    await a.close()
    await b.close()


async def test_tabs_on_different_processes_see_the_same_reply(cluster: Cluster) -> None:
    """A second tab connected to another process streams the reply the first tab started."""
    watcher = await connect(cluster, cluster.servers[2].ws_url)
    sender = await connect(cluster, cluster.servers[0].ws_url)
    started = await start(sender, "hello from tab one")
    sent = [started, *await sender.until(of_type("reply.done"))]
    watched = await watcher.until(of_type("reply.done", message_id=started["message_id"]))
    assert reply_text(watched) == reply_text(sent) == expected_reply("hello from tab one")
    await watcher.close()
    await sender.close()


async def test_killed_process_replies_become_interrupted(
    cluster: Cluster, fake: FakeUpstream
) -> None:
    """SIGKILL mid-reply: another process marks it interrupted, text kept; followers are told."""
    a = await connect(cluster, cluster.servers[0].ws_url)
    started = await start(a, "[tokens=1000] [delay=20]")
    message_id = started["message_id"]
    await a.until(lambda f: f["type"] == "reply.delta" and f["seq"] >= 10)
    b = await connect(cluster, cluster.servers[1].ws_url)
    await b.send({"type": "chat.subscribe", "message_id": message_id, "after_seq": 0})
    await b.until(of_type("reply.delta"))
    cluster.servers[0].kill()
    frames = await b.until(of_type("reply.done"), within=20)
    assert frames[-1]["status"] == "interrupted"
    c = await connect(cluster, cluster.servers[2].ws_url)
    await c.send({"type": "conversation.history", "conversation_id": started["conversation_id"]})
    history = (await c.until(of_type("conversation.history")))[-1]["messages"]
    assert history[-1]["status"] == "interrupted"
    saved = history[-1]["content"]
    # The text of the last checkpoint: a prefix of what streamed, at most an interval behind.
    assert saved.startswith("t0 ")
    assert "".join(f"t{n} " for n in range(1000)).startswith(saved)
    await b.close()
    await c.close()


async def test_through_nginx_any_process_resumes_a_reply(
    tmp_path: Path, postgres_url: str, fake: FakeUpstream
) -> None:
    """Behind nginx (no sticky sessions), reconnecting lands anywhere and resumes exactly."""
    async with run_cluster(
        tmp_path, postgres_url, fake.dashscope_base_url, count=3, nginx=True
    ) as cluster:
        for attempt in range(3):
            first = await connect(cluster, cluster.nginx_ws_url)
            started = await start(first, f"[tokens=40] [delay=10] attempt {attempt}")
            seen = [started, *await first.until(of_type("reply.delta"))]
            await first.close()
            second = await connect(cluster, cluster.nginx_ws_url)
            await second.send(
                {
                    "type": "chat.subscribe",
                    "message_id": started["message_id"],
                    "after_seq": seen[-1]["seq"],
                }
            )
            rest = await second.until(of_type("reply.done"))
            text = follow_text(rest, started["message_id"], reply_text(seen), seen[-1]["seq"])
            assert text == "".join(f"t{n} " for n in range(40))
            await second.close()


async def stop_redis() -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.shutdown(nosave=True)
    except Exception:
        pass  # the connection drops as Redis exits
    finally:
        await client.aclose()


async def start_redis() -> None:
    process = await asyncio.create_subprocess_exec(
        *REDIS_START, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    assert await process.wait() == 0


async def backplane_state(server_url: str, wanted: str) -> None:
    """Wait until the server's readiness reports the backplane in state ``wanted``."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            async with session.get(f"{server_url}/readyz") as response:
                if (await response.json())["checks"]["backplane"]["state"] == wanted:
                    return
            await asyncio.sleep(0.2)


async def test_redis_outage_during_traffic_loses_nothing(cluster: Cluster) -> None:
    """While Redis is down, processes serve their own clients and store every reply;
    readiness says so; when Redis is back, sharing resumes by itself."""
    a = await connect(cluster, cluster.servers[0].ws_url)
    started = await start(a, "[tokens=100] [delay=20]")
    first = await a.until(of_type("reply.delta"))
    await stop_redis()
    try:
        done = await a.until(of_type("reply.done"), within=30)
        assert reply_text([started, *first, *done]) == "".join(f"t{n} " for n in range(100))
        assert done[-1]["status"] == "completed"
        during = await start(a, "while redis is down")
        during_done = await a.until(of_type("reply.done"))
        assert reply_text([during, *during_done]) == expected_reply("while redis is down")
        await backplane_state(cluster.servers[0].http_url, "unreachable")
    finally:
        await start_redis()
    await backplane_state(cluster.servers[1].http_url, "ok")
    await a.send({"type": "conversation.history", "conversation_id": during["conversation_id"]})
    stored = (await a.until(of_type("conversation.history")))[-1]["messages"]
    assert stored[-1]["content"] == expected_reply("while redis is down")
    second = await start(a, "[tokens=30] [delay=10] after redis")
    b = await connect(cluster, cluster.servers[1].ws_url)
    await b.send({"type": "chat.subscribe", "message_id": second["message_id"], "after_seq": 0})
    rest = await b.until(of_type("reply.done"), within=30)
    assert reply_text(rest) == "".join(f"t{n} " for n in range(30))
    await a.close()
    await b.close()
