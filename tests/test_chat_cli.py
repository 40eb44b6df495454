"""``liaotian chat``: the real console script, run as a subprocess against a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from liaotian.chat_cli import default_client_id
from liaotian.client import Client
from tests.cluster import create_user
from tests.conftest import SettingsFactory
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer, run_server

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


async def start(tmp_path: Path, *args: str, command: str = "chat") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(SCRIPT),
        command,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(tmp_path),
    )


async def run_cli(tmp_path: Path, *args: str, stdin: str = "", command: str = "chat") -> Run:
    """Run ``liaotian COMMAND ARGS`` to completion; the server keeps serving meanwhile."""
    process = await start(tmp_path, *args, command=command)
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
    """An unknown model exits 1 with one stderr line naming the models there are (in plain
    words: no frame name), empty stdout."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", "-m", "nope", "hi"
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith("liaotian: the server has no model 'nope'; it has: ")
    listed = run.stderr.partition("it has: ")[2]
    assert "qwen-plus" in listed
    assert "fake-mini" in listed
    assert "models.list" not in run.stderr
    assert run.stderr.count("\n") == 1


async def test_one_shot_can_name_any_listed_model(tmp_path: Path, server: RunningServer) -> None:
    """``-m NAME`` answers with NAME, a model other than the default."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", "-m", "fake-mini", "hi"
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, expected_reply("hi") + "\n", "")
    async with Client(server.http_url, client_id="cli") as client:
        page = await client.conversations()
        history = await client.history(page["conversations"][0]["id"])
    assert history["messages"][-1]["model"] == "fake-mini"


async def test_models_lists_availability_reasons_and_the_default(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    """``liaotian models``: one line per model, ready or what it needs, * on the default."""
    settings = make_settings(dashscope_api_key=None, default_model="fake-mini")
    async with run_server(settings) as running:
        run = await run_cli(
            tmp_path, "--server", server_url(running), "--client-id", "cli", command="models"
        )
    assert (run.returncode, run.stderr) == (0, "")
    *rows, legend = run.stdout.splitlines()
    lines = {row[2:].split()[0]: row for row in rows}
    assert lines["fake-mini"].startswith("* ")
    assert lines["fake-mini"].endswith("ready")
    assert lines["qwen-plus"].startswith("  ")
    assert lines["qwen-plus"].endswith("unavailable: needs DASHSCOPE_API_KEY on the server")
    assert legend == "* the default model"


async def test_one_shot_failed_answer_exits_non_zero(tmp_path: Path, server: RunningServer) -> None:
    """An answer that ends in a provider error exits 1 and says why in words, without the
    protocol's error code."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "cli", "[fault=503]"
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith("liaotian: ")
    assert "503" in run.stderr
    assert "provider_unavailable" not in run.stderr
    assert "[" not in run.stderr


async def test_unreachable_server_exits_2_with_one_clear_line(
    tmp_path: Path, refused_port: int
) -> None:
    """A server nobody listens on: exit 2, one line 'cannot reach liaotian at URL: ...'."""
    url = f"ws://127.0.0.1:{refused_port}"
    run = await run_cli(tmp_path, "--server", url, "--client-id", "cli", "hi")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"cannot reach liaotian at {url}: connection refused\n"


@pytest.fixture
async def secured(
    make_settings: SettingsFactory, database_url: str
) -> AsyncIterator[tuple[RunningServer, str]]:
    """A server with a user, and that user's API token."""
    token = await create_user(database_url, "alice")
    async with run_server(make_settings()) as running:
        yield running, token


@pytest.mark.parametrize("command", ["chat", "models"])
async def test_no_token_on_a_server_with_accounts_says_sign_in_is_required(
    tmp_path: Path, secured: tuple[RunningServer, str], command: str
) -> None:
    """Without a token, the server's 403 is explained: sign-in required, how to get a token."""
    server, _ = secured
    args = ["--server", server_url(server)] + (["hi"] if command == "chat" else [])
    run = await run_cli(tmp_path, *args, command=command)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.startswith(f"liaotian at {server_url(server)} requires signing in")
    assert "no token was given" in run.stderr
    assert "liaotian token create USER" in run.stderr
    assert "--token" in run.stderr
    assert "LIAOTIAN_TOKEN" in run.stderr
    # The status code is not shown (the server's URL is left out: its port may hold "403").
    assert "403" not in run.stderr.replace(server_url(server), "")
    assert run.stderr.count("\n") == 1


async def test_a_revoked_or_wrong_token_is_called_so(
    tmp_path: Path, secured: tuple[RunningServer, str]
) -> None:
    """A token the server does not accept (from the option or LIAOTIAN_TOKEN) is named as
    such; the right one (from the environment) answers."""
    server, token = secured
    run = await run_cli(tmp_path, "--server", server_url(server), "--token", "lt_wrong", "hi")
    assert (run.returncode, run.stdout) == (2, "")
    assert "does not accept the token: it is invalid or revoked" in run.stderr
    assert "liaotian token create USER" in run.stderr
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT), "chat", "--server", server_url(server), "hi",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**cli_env(tmp_path), "LIAOTIAN_TOKEN": token},
    )  # fmt: skip
    async with asyncio.timeout(TIMEOUT):
        stdout, stderr = await process.communicate()
    assert (process.returncode, stdout.decode(), stderr.decode()) == (
        0,
        expected_reply("hi") + "\n",
        "",
    )


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


async def test_a_connection_over_the_cap_says_why(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    """A connection refused after the handshake (too many for the owner) is reported with
    the server's words, not as a server that did not say hello."""
    async with (
        run_server(make_settings(max_connections_per_owner=1)) as running,
        Client(running.http_url, client_id="cli"),
    ):
        run = await run_cli(tmp_path, "--server", server_url(running), "--client-id", "cli", "hi")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.startswith(
        f"cannot reach liaotian at {server_url(running)}: the server refused the connection: "
    )
    assert "too_many_connections" not in run.stderr
    assert "hello" not in run.stderr


async def test_interactive_retry_branches_and_switch(tmp_path: Path, server: RunningServer) -> None:
    """/retry adds a second answer, /branches lists it as 2/2, /switch goes back to the first."""
    args = ("--server", server_url(server), "--client-id", "cli")
    run = await run_cli(tmp_path, *args, stdin="question\n/retry\n/branches\n/quit\n")
    assert (run.returncode, run.stderr) == (0, "")
    assert "answer 2/2" in run.stdout
    async with Client(server.http_url, client_id="cli") as client:
        conversation_id = (await client.conversations())["conversations"][0]["id"]
        answer = (await client.history(conversation_id))["messages"][-1]
        first = answer.get("siblings", [])[0]
        run = await run_cli(
            tmp_path, *args, stdin=f"/open {conversation_id}\n/switch {first[:10]}\n/quit\n"
        )
        assert (run.returncode, run.stderr) == (0, "")
        page = await client.history(conversation_id)
    assert page["conversation"].get("active_message_id") == first
