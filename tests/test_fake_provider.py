"""The scripted ``fake`` provider (liaotian.providers.fake), driven over protocol v1 against a
real server: off by default, echo, ``/fake`` scripts, errors, hang and cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from liaotian.errors import ConfigError
from liaotian.providers.fake import FAKE_MODEL_ID, FakeScript, FakeScriptError, split_message
from liaotian.settings import load_settings
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.wsclient import Frame, RawClient, of_type, reply_text


@pytest.fixture
async def fake_server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with run_server(make_settings(fake_provider=True, provider_retries=0)) as running:
        yield running


async def connect(server: RunningServer) -> RawClient:
    client = await RawClient.open(f"{server.ws_url}?client_id=alice")
    assert (await client.recv())["type"] == "hello"
    return client


async def start(client: RawClient, message: str, **fields: Any) -> Frame:
    """Send ``message`` to fake-echo; its reply.started, or the error frame."""
    frame = {"type": "chat.send", "id": "s", "message": message, "model": FAKE_MODEL_ID}
    await client.send({**frame, **fields})
    frames = await client.until(
        lambda f: f.get("id") == "s" and f["type"] in ("reply.started", "error")
    )
    return frames[-1]


async def chat(client: RawClient, message: str, **fields: Any) -> tuple[str, Frame]:
    """The reply's text and its reply.done."""
    started = await start(client, message, **fields)
    assert started["type"] == "reply.started", started
    frames = await client.until(of_type("reply.done", message_id=started["message_id"]))
    return reply_text(frames), frames[-1]


def numbered(count: int, start: int = 0) -> str:
    return "".join(f"t{index} " for index in range(start, start + count))


async def test_fake_provider_is_absent_by_default(server: RunningServer) -> None:
    """Without fake_provider the model is not listed and asking for it is model_not_found."""
    client = await connect(server)
    await client.send({"type": "models.list", "id": "m"})
    [models] = await client.until(of_type("models"))
    assert FAKE_MODEL_ID not in [model["id"] for model in models["models"]]
    error = await start(client, "hello")
    assert (error["type"], error["code"]) == ("error", "model_not_found")
    await client.close()


async def test_enabled_fake_provider_lists_its_model(fake_server: RunningServer) -> None:
    """fake_provider = true lists fake-echo, served by the provider fake."""
    client = await connect(fake_server)
    await client.send({"type": "models.list", "id": "m"})
    [models] = await client.until(of_type("models"))
    listed = {model["id"]: model for model in models["models"]}
    assert listed[FAKE_MODEL_ID]["provider"] == "fake"
    assert listed[FAKE_MODEL_ID]["available"] is True
    await client.close()


async def test_plain_message_is_echoed_exactly_a_word_per_token(
    fake_server: RunningServer,
) -> None:
    """A message without a script comes back as it is, whitespace included, with usage."""
    client = await connect(fake_server)
    message = "  Hello,  world!\nsecond line "
    text, done = await chat(client, message)
    assert text == message
    assert (done["status"], done["finish_reason"]) == ("completed", "stop")
    assert done["usage"]["output_tokens"] == 4
    await client.close()


async def test_tokens_directive_streams_that_many_numbered_tokens(
    fake_server: RunningServer,
) -> None:
    """/fake tokens=N answers t0 … tN-1, one token each, finish stop."""
    client = await connect(fake_server)
    text, done = await chat(client, "/fake tokens=25 delay_ms=1")
    assert text == numbered(25)
    assert (done["status"], done["usage"]["output_tokens"]) == ("completed", 25)
    await client.close()


async def test_text_after_the_script_line_is_what_gets_echoed(
    fake_server: RunningServer,
) -> None:
    """Lines after the /fake line are the echo; the script line itself is not."""
    client = await connect(fake_server)
    text, _ = await chat(client, "/fake first_delay_ms=5\nonly this")
    assert text == "only this"
    await client.close()


async def test_max_tokens_cuts_the_reply_with_finish_length(fake_server: RunningServer) -> None:
    """A request's max_tokens ends the scripted reply there, finish reason length."""
    client = await connect(fake_server)
    text, done = await chat(client, "/fake tokens=50", max_tokens=3)
    assert text == numbered(3)
    assert (done["status"], done["finish_reason"]) == ("completed", "length")
    await client.close()


async def test_scripted_error_before_the_first_token_ends_the_reply_with_its_code(
    fake_server: RunningServer,
) -> None:
    """/fake error=rate_limited ends the reply with provider_rate_limited and no text."""
    client = await connect(fake_server)
    text, done = await chat(client, "/fake error=rate_limited retry_after=1")
    assert text == ""
    assert (done["status"], done["error"]["code"]) == ("error", "provider_rate_limited")
    await client.close()


async def test_scripted_error_after_k_tokens_keeps_the_text_so_far(
    fake_server: RunningServer,
) -> None:
    """/fake tokens=10 error=unavailable after=4 sends 4 tokens, then provider_unavailable."""
    client = await connect(fake_server)
    text, done = await chat(client, "/fake tokens=10 error=unavailable after=4")
    assert text == numbered(4)
    assert (done["status"], done["error"]["code"]) == ("error", "provider_unavailable")
    await client.close()


async def test_hang_lasts_until_the_reply_is_cancelled(fake_server: RunningServer) -> None:
    """/fake hang after=2 sends two tokens and then nothing, until chat.cancel ends it."""
    client = await connect(fake_server)
    started = await start(client, "/fake tokens=5 hang after=2")
    message_id = started["message_id"]
    frames: list[Frame] = []
    while reply_text(frames) != numbered(2):
        frames.append(await client.recv())
    await client.send({"type": "chat.cancel", "id": "c", "message_id": message_id})
    frames += await client.until(of_type("reply.done", message_id=message_id))
    assert reply_text(frames) == numbered(2)
    assert frames[-1]["status"] == "cancelled"
    await client.close()


async def test_cancel_stops_a_long_fast_reply_between_tokens(fake_server: RunningServer) -> None:
    """A 100,000-token reply with no delay stops at chat.cancel, well short of its end."""
    client = await connect(fake_server)
    started = await start(client, "/fake tokens=100000")
    message_id = started["message_id"]
    frames = await client.until(of_type("reply.delta", message_id=message_id))
    await client.send({"type": "chat.cancel", "id": "c", "message_id": message_id})
    frames += await client.until(of_type("reply.done", message_id=message_id))
    assert frames[-1]["status"] == "cancelled"
    text = reply_text(frames)
    assert numbered(100_000).startswith(text)
    assert len(text) < len(numbered(100_000))
    await client.close()


async def test_unreadable_script_is_provider_bad_request(fake_server: RunningServer) -> None:
    """An unknown directive ends the reply with provider_bad_request naming it."""
    client = await connect(fake_server)
    _, done = await chat(client, "/fake tokenz=3")
    assert (done["status"], done["error"]["code"]) == ("error", "provider_bad_request")
    assert "unknown directive 'tokenz'" in done["error"]["message"]
    await client.close()


async def test_non_streamed_reply_is_one_delta(fake_server: RunningServer) -> None:
    """stream: false gets the whole scripted text in one delta."""
    client = await connect(fake_server)
    started = await start(client, "/fake tokens=6", stream=False)
    frames = await client.until(of_type("reply.done", message_id=started["message_id"]))
    deltas = [frame for frame in frames if frame["type"] == "reply.delta"]
    assert [delta["text"] for delta in deltas] == [numbered(6)]
    await client.close()


async def test_default_script_applies_to_every_reply_and_messages_override_it(
    make_settings: SettingsFactory,
) -> None:
    """fake_provider_script scripts plain messages; a message's directives win key by key."""
    settings = make_settings(fake_provider=True, fake_provider_script="tokens=3 delay_ms=1")
    async with run_server(settings) as running:
        client = await connect(running)
        assert (await chat(client, "anything"))[0] == numbered(3)
        assert (await chat(client, "/fake tokens=1"))[0] == numbered(1)
        await client.close()


def test_a_malformed_default_script_fails_at_start_up() -> None:
    """fake_provider_script is checked when the settings load, naming the setting."""
    with pytest.raises(ConfigError, match="fake_provider_script"):
        load_settings(fake_provider=True, fake_provider_script="delay_ms=fast")


@pytest.mark.parametrize(
    ("message", "directives", "echo"),
    [
        ("hello", "", "hello"),
        ("/fakery", "", "/fakery"),
        ("/fake tokens=2", " tokens=2", "/fake tokens=2"),
        ("/fake hang\nthe rest", " hang", "the rest"),
    ],
)
def test_only_a_leading_fake_line_is_a_script(message: str, directives: str, echo: str) -> None:
    """A script is a first line starting with the word /fake; the rest is echoed."""
    assert split_message(message) == (directives, echo)


@pytest.mark.parametrize(
    "script", ["tokens=-1", "tokens=100001", "delay_ms=60001", "error=teapot", "finish=Stop!", "x"]
)
def test_out_of_range_or_unknown_directives_are_refused(script: str) -> None:
    """Every directive is checked: unknown keys, bad numbers and codes raise FakeScriptError."""
    with pytest.raises(FakeScriptError):
        FakeScript.parse(script)
