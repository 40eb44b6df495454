"""Replies with thinking, web search and images, from the fake upstream to the client."""

from __future__ import annotations

from typing import Any

from liaotian.settings import Settings
from tests.conftest import SettingsFactory
from tests.fake_upstream import (
    FakeUpstream,
    expected_reasoning,
    expected_reply,
    image_count,
)
from tests.server_harness import RunningServer, run_server
from tests.test_attachments import fetch, png, upload
from tests.test_chat import chat, connect, start
from tests.wsclient import Frame, RawClient, follow_parts, of_type

THINK_AND_SEARCH = "[think=12] [search=3] [tokens=10] [delay=5] how far is the moon?"
SOURCES = [
    {
        "index": i,
        "url": f"https://site{i}.example/page",
        "title": f"Result {i}",
        "site": f"Site {i}",
        "icon": f"https://site{i}.example/favicon.ico",
    }
    for i in (1, 2, 3)
]


def parts_settings(make_settings: SettingsFactory, **overrides: Any) -> Settings:
    """qwen-plus (thinking, search), a vision model and a text model on the fake."""
    return make_settings(dashscope_models=["qwen-plus", "qwen-vl-max", "qwen-turbo"], **overrides)


def expected_parts(prompt: str) -> dict[str, Any]:
    return {
        "reasoning": expected_reasoning(prompt),
        "sources": SOURCES,
        "text": expected_reply(prompt),
    }


async def test_thinking_and_search_stream_as_parts_apart_from_the_text(
    make_settings: SettingsFactory,
) -> None:
    """Sources, then the reasoning, then the answer, each its own event; the answer's text
    is exactly the answer; done reports the thinking time and reasoning tokens."""
    async with run_server(parts_settings(make_settings)) as server:
        client = await connect(server)
        frames = await chat(client, THINK_AND_SEARCH, thinking=True, search=True)
        started, done = frames[0], frames[-1]
        assert (started["thinking"], started["search"]) == (True, True)
        kinds = [frame["type"] for frame in frames]
        assert kinds.index("reply.sources") < kinds.index("reply.reasoning")
        last_reasoning = max(i for i, kind in enumerate(kinds) if kind == "reply.reasoning")
        assert last_reasoning < kinds.index("reply.delta")
        parts, _ = follow_parts(frames, started["message_id"])
        assert parts == expected_parts(THINK_AND_SEARCH)
        assert done["status"] == "completed"
        assert done["usage"]["reasoning_tokens"] == 12
        assert done["thinking_ms"] is not None
        await client.close()


async def test_history_returns_the_parts(make_settings: SettingsFactory) -> None:
    """After the reply, history has its reasoning, sources and thinking time."""
    async with run_server(parts_settings(make_settings)) as server:
        client = await connect(server)
        frames = await chat(client, THINK_AND_SEARCH, thinking=True, search=True)
        await client.send(
            {
                "type": "conversation.history",
                "id": "h",
                "conversation_id": frames[0]["conversation_id"],
            }
        )
        reply = (await client.recv())["messages"][-1]
        assert {key: reply[key] for key in ("reasoning", "sources", "content")} == {
            "reasoning": expected_reasoning(THINK_AND_SEARCH),
            "sources": SOURCES,
            "content": expected_reply(THINK_AND_SEARCH),
        }
        assert reply["thinking_ms"] == frames[-1]["thinking_ms"]
        await client.close()


async def test_resuming_after_every_seq_a_client_saw_gives_exactly_the_rest(
    make_settings: SettingsFactory,
) -> None:
    """From every cut point (in the sources, the reasoning or the text), a subscribe gives
    the rest of every part: no gap, no duplicate."""
    async with run_server(parts_settings(make_settings)) as server:
        first = await connect(server)
        frames = await chat(first, THINK_AND_SEARCH, thinking=True, search=True)
        await first.close()
        message_id = frames[0]["message_id"]
        later = await connect(server)
        for cut in range(len(frames) - 1):
            seen, last_seq = follow_parts(frames[: cut + 1], message_id)
            await later.send(
                {
                    "type": "chat.subscribe",
                    "id": cut,
                    "message_id": message_id,
                    "after_seq": last_seq,
                }
            )
            rest = await later.until(of_type("reply.done"))
            parts, _ = follow_parts(rest, message_id, seen, last_seq)
            assert parts == expected_parts(THINK_AND_SEARCH), f"cut after seq {last_seq}"
        await later.close()


async def test_a_cut_while_the_model_thinks_resumes_in_place(
    make_settings: SettingsFactory,
) -> None:
    """A connection lost mid-thinking: the next one subscribes after the last seq it saw
    and the reasoning goes on where it was, then the answer."""
    prompt = "[think=40] [tokens=5] [delay=10] think slowly"
    async with run_server(parts_settings(make_settings)) as server:
        first = await connect(server)
        started = await start(first, prompt, thinking=True)
        seen = [started]
        seen += await first.until(lambda f: f["type"] == "reply.reasoning" and f["seq"] >= 5)
        await first.close()
        message_id = started["message_id"]
        had, last_seq = follow_parts(seen, message_id)
        assert had["reasoning"]
        assert not had["text"]
        second = await connect(server)
        await second.send(
            {"type": "chat.subscribe", "message_id": message_id, "after_seq": last_seq}
        )
        rest = await second.until(of_type("reply.done", message_id=message_id))
        parts, _ = follow_parts(rest, message_id, had, last_seq)
        assert parts["reasoning"] == expected_reasoning(prompt)
        assert parts["text"] == expected_reply(prompt)
        await second.close()


async def test_the_seed_protocol_gets_only_the_answer_text(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """A model that thinks by default thinks for a seed client too, and the seed's frames
    carry the answer alone: no reasoning in any ``message``."""
    settings = parts_settings(make_settings, models={"qwen-plus": {"thinking_default": True}})
    prompt = "[think=8] [tokens=6] seed question"
    async with run_server(settings) as server:
        seed = await RawClient.open(server.seed_url("seed_client"))
        await seed.send({"message": prompt, "stream": True, "model": "qwen-plus"})
        frames = await seed.until(lambda f: f["status"] in ("completed", "error"))
        assert frames[-1]["status"] == "completed"
        text = "".join(frame["message"] for frame in frames if frame["status"] == "running")
        assert text == expected_reply(prompt)
        request = fake.requests[-1].body
        assert request["parameters"]["enable_thinking"] is True
        await seed.close()


async def test_inline_think_of_an_openai_compatible_server_is_split_off(
    make_settings: SettingsFactory,
) -> None:
    """A local server's ``<think>…</think>`` at the start of the content is reasoning."""
    settings = make_settings(models={"fake-chat": {"thinking": True}})
    prompt = "[inline_think=1] [think=6] [tokens=4] local model"
    async with run_server(settings) as server:
        client = await connect(server)
        frames = await chat(client, prompt, model="fake-chat", thinking=True)
        parts, _ = follow_parts(frames, frames[0]["message_id"])
        assert parts["reasoning"] == expected_reasoning(prompt)
        assert parts["text"] == expected_reply(prompt)
        assert "<think>" not in parts["text"]
        await client.close()


async def send_image(
    server: RunningServer, client: RawClient, prompt: str, **fields: Any
) -> list[Frame]:
    status, attachment = await upload(server, png(), client_id="alice", name="moon.png")
    assert status == 201, attachment
    return await chat(client, prompt, attachments=[attachment["id"]], **fields)


async def test_an_image_reaches_a_vision_model_and_comes_back_in_the_history(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """The model gets the image (on the multimodal endpoint); reply.started and history
    show it; the next turn sends it again with the history."""
    async with run_server(parts_settings(make_settings)) as server:
        client = await connect(server)
        frames = await send_image(server, client, "what is this?", model="qwen-vl-max")
        started = frames[0]
        assert frames[-1]["status"] == "completed", frames[-1]
        assert [a["name"] for a in started["user_attachments"]] == ["moon.png"]
        assert "saw 1 image" in "".join(f["text"] for f in frames if f["type"] == "reply.delta")
        assert fake.requests[-1].path.endswith("/multimodal-generation/generation")
        conversation_id = started["conversation_id"]
        await chat(client, "and now?", conversation_id=conversation_id, model="qwen-vl-max")
        messages = fake.requests[-1].body["input"]["messages"]
        assert [image_count(message) for message in messages] == [1, 0, 0]
        await client.send(
            {"type": "conversation.history", "id": "h", "conversation_id": conversation_id}
        )
        history = (await client.recv())["messages"]
        assert history[0]["attachments"] == started["user_attachments"]
        await client.close()


async def test_a_text_model_later_in_the_conversation_sees_the_text_only(
    make_settings: SettingsFactory, fake: FakeUpstream
) -> None:
    """Switching to a model without vision keeps the conversation going without images."""
    async with run_server(parts_settings(make_settings)) as server:
        client = await connect(server)
        frames = await send_image(server, client, "what is this?", model="qwen-vl-max")
        conversation_id = frames[0]["conversation_id"]
        answer = await chat(client, "thanks", conversation_id=conversation_id, model="qwen-turbo")
        assert answer[-1]["status"] == "completed"
        messages = fake.requests[-1].body["input"]["messages"]
        assert sum(image_count(message) for message in messages) == 0
        await client.close()


async def test_another_owners_image_cannot_be_attached(make_settings: SettingsFactory) -> None:
    """An attachment id of another owner is not_found; nothing is stored."""
    async with run_server(parts_settings(make_settings)) as server:
        status, attachment = await upload(server, png(), client_id="mallory")
        assert status == 201
        client = await connect(server, owner="alice")
        refused = await start(client, "look", model="qwen-vl-max", attachments=[attachment["id"]])
        assert (refused["type"], refused["code"]) == ("error", "not_found")
        await client.send({"type": "conversations.list", "id": 2})
        assert (await client.recv())["conversations"] == []
        await client.close()


async def test_deleting_the_conversation_deletes_its_images(make_settings: SettingsFactory) -> None:
    """Once its conversation is deleted, an image is gone for its owner too."""
    async with run_server(parts_settings(make_settings)) as server:
        client = await connect(server)
        frames = await send_image(server, client, "what is this?", model="qwen-vl-max")
        image_id = frames[0]["user_attachments"][0]["id"]
        assert (await fetch(server, image_id, client_id="alice"))[0] == 200
        await client.send(
            {
                "type": "conversation.delete",
                "id": "d",
                "conversation_id": frames[0]["conversation_id"],
            }
        )
        assert (await client.recv())["type"] == "conversation.deleted"
        assert (await fetch(server, image_id, client_id="alice"))[0] == 404
        await client.close()
