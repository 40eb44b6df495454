"""``liaotian chat``: the real console script, run as a subprocess against a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from liaotian.chat_cli import default_client_id
from liaotian.client import Client
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer

TIMEOUT = 30.0
SCRIPT = Path(sys.executable).parent / "liaotian"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections (bound, never listening) for the test's duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the CLI (conftest removed provider keys): own config dir, no color."""
    env = dict(os.environ)
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "config"), "NO_COLOR": "1"})
    return env


async def start(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "chat",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(tmp_path),
    )


async def run_cli(tmp_path: Path, *args: str, stdin: str = "") -> Run:
    """Run ``liaotian chat ARGS`` to completion; the server keeps serving meanwhile."""
    process = await start(tmp_path, *args)
    async with asyncio.timeout(TIMEOUT):
        stdout, stderr = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


def server_url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


async def test_one_shot_prints_exactly_the_answer(tmp_path: Path, server: RunningServer) -> None:
    """A question as argument prints the answer and a newline to stdout, nothing else."""
    question = "What is a WebSocket? 简短回答"
    run = await run_cli(tmp_path, "--server", server_url(server), "--client-id", "cli", question)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == expected_reply(question) + "\n"


async def test_one_shot_answer_is_stored_for_the_owner(
    tmp_path: Path, server: RunningServer
) -> None:
    """The one-shot answer is saved in a conversation of the --client-id owner."""
    run = await run_cli(tmp_path, "--server", server_url(server), "--client-id", "cli", "keep it")
    assert run.returncode == 0
    async with Client(server.http_url, client_id="cli") as client:
        page = await client.conversations()
    assert [c["title"] for c in page["conversations"]] == ["keep it"]


async def test_one_shot_unknown_model_fails_with_one_line(
    tmp_path: Path, server: RunningServer
) -> None:
    """An unknown model exits 1 with the server's message on one stderr line, empty stdout."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", "-m", "nope", "hi"
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith("liaotian: no provider serves the model 'nope'")
    assert run.stderr.count("\n") == 1


async def test_one_shot_failed_answer_exits_non_zero(tmp_path: Path, server: RunningServer) -> None:
    """An answer that ends in a provider error exits 1 and names the error code on stderr."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", "[fault=503]"
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith("liaotian: ")
    assert run.stderr.rstrip().endswith("[provider_unavailable]")


async def test_unreachable_server_exits_2_with_one_clear_line(
    tmp_path: Path, refused_port: int
) -> None:
    """A server nobody listens on: exit 2, one line 'cannot reach liaotian at URL: ...'."""
    url = f"ws://127.0.0.1:{refused_port}"
    run = await run_cli(tmp_path, "--server", url, "--client-id", "cli", "hi")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"cannot reach liaotian at {url}: connection refused\n"


async def test_ctrl_c_cancels_the_answer_on_the_server(
    tmp_path: Path, server: RunningServer
) -> None:
    """SIGINT during a one-shot answer cancels it on the server and exits 130."""
    process = await start(
        tmp_path, "--server", server_url(server), "--client-id", "cli", "[tokens=500][delay=20]"
    )
    assert process.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        assert await process.stdout.read(3) == b"t0 "  # streaming: the handler is installed
        process.send_signal(signal.SIGINT)
        stdout, stderr = await process.communicate()
    assert process.returncode == 130
    assert stderr.decode() == "liaotian: the answer was cancelled\n"
    async with Client(server.http_url, client_id="cli") as client:
        page = await client.conversations()
        history = await client.history(page["conversations"][0]["id"])
    assert history["messages"][-1]["status"] == "cancelled"
    assert "t0 " + stdout.decode().rstrip("\n") == history["messages"][-1]["content"]


async def test_interactive_chat_answers_each_line(tmp_path: Path, server: RunningServer) -> None:
    """Without a question, each stdin line is sent in one conversation until /quit."""
    run = await run_cli(
        tmp_path,
        "--server",
        server_url(server),
        "--client-id",
        "cli",
        stdin="first line\nsecond line\n/quit\nnot sent\n",
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert expected_reply("first line") in run.stdout
    assert expected_reply("second line") in run.stdout
    async with Client(server.http_url, client_id="cli") as client:
        page = await client.conversations()
        assert len(page["conversations"]) == 1
        history = await client.history(page["conversations"][0]["id"])
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == [
        "first line",
        "second line",
    ]


async def test_interactive_model_command_rejects_unknown_models(
    tmp_path: Path, server: RunningServer
) -> None:
    """'/model NAME' with a model the server lacks says so and keeps the session going."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", stdin="/model nope\n"
    )
    assert run.returncode == 0
    assert "the server has no model 'nope'" in run.stdout


def test_default_client_id_is_created_once_and_kept_private(tmp_path: Path) -> None:
    """The first use creates a random id in a 0600 file; later uses return the same id."""
    first = default_client_id(tmp_path / "liaotian")
    assert default_client_id(tmp_path / "liaotian") == first
    path = tmp_path / "liaotian" / "client_id"
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["client_id"]
