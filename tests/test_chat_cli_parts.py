"""``liaotian chat`` with thinking, web search and images: the real console script against a
real server whose ``fake-echo`` model thinks and searches on every reply (its script)."""

from __future__ import annotations

import asyncio
import io
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pexpect
import pytest
from PIL import Image

from liaotian.client import Client
from liaotian.providers.fake import FAKE_MODEL_ID
from tests.conftest import SettingsFactory
from tests.server_harness import RunningServer, run_server
from tests.test_attachments import png
from tests.test_chat_cli import SCRIPT, TIMEOUT, cli_env, run_cli, server_url
from tests.test_chat_tty import COLUMNS, ROWS, Terminal

THOUGHTS = "r0 r1 r2 "
SOURCES = "[1] Source 1 — https://example.com/1\n[2] Source 2 — https://example.com/2\n"
# Rich's SGR for dim text (``ESC [ 2 m``), then the text before any other escape.
DIM_THOUGHTS = re.compile(r"\x1b\[2m([^\x1b]*)")


@pytest.fixture
async def thinker(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    """A server whose default model, fake-echo, thinks 3 tokens and finds 2 sources when
    asked to."""
    settings = make_settings(
        fake_provider=True,
        fake_provider_script="think=3 sources=2",
        default_model=FAKE_MODEL_ID,
        provider_retries=0,
    )
    async with run_server(settings) as running:
        yield running


def connect(server: RunningServer, client_id: str = "cli") -> tuple[str, ...]:
    return ("--server", server_url(server), "--client-id", client_id)


async def one_shot_on_a_terminal(tmp_path: Path, *args: str) -> str:
    """Run ``liaotian chat ARGS`` in a pseudo-terminal to its end; everything it wrote."""
    env = cli_env(tmp_path)
    env.pop("NO_COLOR")  # dimming is what is tested here
    env["TERM"] = "xterm-256color"
    child = pexpect.spawn(
        str(SCRIPT), ["chat", *args], env=env, dimensions=(ROWS, COLUMNS), encoding="utf-8"
    )
    try:
        # In a thread: the server runs in this event loop.
        await asyncio.to_thread(child.expect, pexpect.EOF, timeout=TIMEOUT)
        output = str(child.before)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, output
    return output


def dimmed(output: str) -> str:
    """The text ``output`` shows dimmed."""
    return "".join(DIM_THOUGHTS.findall(output))


async def test_piped_one_shot_prints_the_answer_then_its_sources(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """Piped, stdout is the answer, a blank line and the numbered sources: no thinking."""
    run = await run_cli(tmp_path, *connect(thinker), "--think", "--search", "hello")
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == "hello [1] [2]\n\n" + SOURCES


async def test_one_shot_on_a_terminal_shows_the_thinking_dimmed_then_the_answer(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """On a terminal the thinking comes first, dimmed (SGR 2), and the answer after it,
    not dimmed."""
    output = await one_shot_on_a_terminal(tmp_path, *connect(thinker), "--think", "hello")
    assert dimmed(output) == THOUGHTS
    assert output.index("r2") < output.index("hello")
    assert "hello" not in dimmed(output)


async def test_hide_thinking_leaves_the_thinking_out(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """--hide-thinking: on a terminal, only the answer is shown."""
    output = await one_shot_on_a_terminal(
        tmp_path, *connect(thinker), "--think", "--hide-thinking", "hello"
    )
    assert "r0" not in output
    assert "hello" in output


async def test_no_think_asks_the_model_not_to_think(tmp_path: Path, thinker: RunningServer) -> None:
    """--no-think: the model does not think (no reasoning is stored)."""
    run = await run_cli(tmp_path, *connect(thinker), "--no-think", "hello")
    assert (run.returncode, run.stdout) == (0, "hello\n")
    async with Client(thinker.http_url, client_id="cli") as client:
        page = await client.conversations()
        history = await client.history(page["conversations"][0]["id"])
    assert history["messages"][-1].get("reasoning") is None


async def test_interactive_think_and_search_commands_apply_to_the_next_answers(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """'/think on' and '/search on' make the next answer think and cite its sources,
    listed after it."""
    run = await run_cli(tmp_path, *connect(thinker), stdin="/think on\n/search on\nhello\n")
    assert (run.returncode, run.stderr) == (0, "")
    assert "hello [1] [2]\n" + SOURCES in run.stdout
    async with Client(thinker.http_url, client_id="cli") as client:
        page = await client.conversations()
        history = await client.history(page["conversations"][0]["id"])
    assert history["messages"][-1].get("reasoning") == THOUGHTS


async def test_interactive_terminal_shows_the_thinking_dimmed(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """In the interactive chat on a terminal, the thinking is drawn dimmed above the
    answer, and the status line says how long the model thought."""
    raw: list[str] = []

    class Recording(Terminal):
        def _read(self) -> bool:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except pexpect.TIMEOUT:
                return True
            except pexpect.EOF:
                return False
            raw.append(data)
            self._stream.feed(data)
            return True

    terminal = Recording(tmp_path, *connect(thinker), "--think")
    try:
        await terminal.at_prompt()
        terminal.type("hello\r")
        await terminal.until(
            lambda t: any("thought" in line for line in t.lines), "the status line"
        )
        lines = terminal.lines
        assert lines.index("r0 r1 r2") < lines.index("hello")
        assert THOUGHTS.strip() in dimmed("".join(raw))
        assert await terminal.leave() == 0
    finally:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)


async def test_models_say_what_each_model_can_do(tmp_path: Path, thinker: RunningServer) -> None:
    """``liaotian models`` shows each model's capabilities in words."""
    run = await run_cli(tmp_path, *connect(thinker), command="models")
    assert run.returncode == 0
    lines = {row[2:].split()[0]: row for row in run.stdout.splitlines()[:-1]}
    assert "can: images, thinking, search" in lines[FAKE_MODEL_ID]
    assert "can: text only" in lines["fake-mini"]


async def test_a_capability_the_model_lacks_is_refused_in_plain_words(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """--think with a model that cannot think: exit 1, one plain line naming the model."""
    run = await run_cli(tmp_path, *connect(thinker), "-m", "fake-mini", "--think", "hi")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (
        "liaotian: the model fake-mini cannot think, or its thinking cannot be switched on or "
        "off (liaotian models shows what each model can do)\n"
    )


async def test_a_missing_image_file_is_named(tmp_path: Path, thinker: RunningServer) -> None:
    """--image with a file that does not exist: exit 2 before connecting, naming it."""
    missing = str(tmp_path / "nope.png")
    run = await run_cli(tmp_path, *connect(thinker), "--image", missing, "what is this?")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"liaotian: no such file: {missing}\n"


# -- images ------------------------------------------------------------------------------------


def image_file(tmp_path: Path, name: str = "photo.png", data: bytes | None = None) -> str:
    path = tmp_path / name
    path.write_bytes(png() if data is None else data)
    return str(path)


async def test_one_shot_sends_an_image_with_the_question(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """--image uploads the file and sends it with the question: the model sees it."""
    run = await run_cli(
        tmp_path, *connect(thinker), "--image", image_file(tmp_path), "what is this?"
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == "(1 image) what is this?\n"


async def test_a_file_that_is_not_an_image_is_named_in_plain_words(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """A file that is no image: exit 1, one line naming it and the formats taken."""
    notes = image_file(tmp_path, "notes.txt", b"just some text, not a picture\n" * 10)
    run = await run_cli(tmp_path, *connect(thinker), "--image", notes, "what is this?")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (
        "liaotian: notes.txt is not an image this server takes (PNG, JPEG, WEBP or GIF)\n"
    )


async def test_an_image_over_the_size_limit_is_called_too_large(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    """An image over max_attachment_bytes (HTTP 413): exit 1, 'too large', naming it."""
    noise = Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3))
    big = io.BytesIO()
    noise.save(big, "PNG")
    settings = make_settings(
        fake_provider=True, default_model=FAKE_MODEL_ID, max_attachment_bytes=1024
    )
    async with run_server(settings) as running:
        path = image_file(tmp_path, "big.png", big.getvalue())
        run = await run_cli(tmp_path, *connect(running), "--image", path, "what is this?")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == "liaotian: big.png is too large for this server\n"


async def test_an_image_for_a_model_without_vision_is_refused_in_plain_words(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """--image with a model that cannot read images: exit 1, one plain line."""
    path = image_file(tmp_path)
    run = await run_cli(tmp_path, *connect(thinker), "-m", "fake-mini", "--image", path, "what?")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (
        "liaotian: the model fake-mini cannot read images "
        "(liaotian models shows what each model can do)\n"
    )


async def test_interactive_image_command_sends_the_image_with_the_next_message(
    tmp_path: Path, thinker: RunningServer
) -> None:
    """'/image FILE' sends that image with the next message only; a missing file is named."""
    missing = str(tmp_path / "nope.png")
    stdin = f"/image {missing}\n/image {image_file(tmp_path)}\nwhat is this?\nand now?\n"
    run = await run_cli(tmp_path, *connect(thinker), stdin=stdin)
    assert (run.returncode, run.stderr) == (0, "")
    assert f"no such file: {missing}" in run.stdout
    assert "(1 image) what is this?\n" in run.stdout
    assert "› and now?\n" in run.stdout
