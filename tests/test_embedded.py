"""The embedded model end to end, and `liaotian serve` as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.cluster import free_port
from tests.conftest import SettingsFactory
from tests.server_harness import run_server
from tests.wsclient import RawClient, of_type, reply_text

LIAOTIAN = Path(sys.executable).with_name("liaotian")


async def test_embedded_model_answers_through_the_server(make_settings: SettingsFactory) -> None:
    """With no key and no network, the default model answers a short question for real.

    Asked at temperature 0 (greedy decoding: the same answer on every run), so that the
    answer being more than whitespace does not depend on chance.
    """
    settings = make_settings(
        local_enabled=True,
        dashscope_api_key=None,
        openai_base_url=None,
        default_model=None,
    )
    async with run_server(settings) as server:
        client = await RawClient.open(f"{server.ws_url}?client_id=solo")
        hello = await client.recv()
        assert hello["default_model"] == "smollm2-135m-instruct"
        await client.send(
            {"type": "chat.send", "message": "Say hello.", "max_tokens": 12, "temperature": 0}
        )
        frames = await client.until(of_type("reply.done"), within=60)
        assert frames[-1]["status"] == "completed", frames[-1]
        assert reply_text(frames).strip()
        assert frames[-1]["usage"]["output_tokens"] >= 1
        await client.close()


async def test_serve_command_runs_the_server(tmp_path: Path) -> None:
    """`liaotian serve` starts on the given port, answers /healthz, and stops on SIGTERM."""
    port = free_port()
    env = {
        **os.environ,
        "LIAOTIAN_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "LIAOTIAN_LOCAL_ENABLED": "false",
    }
    process = await asyncio.create_subprocess_exec(
        str(LIAOTIAN),
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "the server exited"
                    await asyncio.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells it.
    assert process.returncode in (0, -signal.SIGTERM)
    assert b"Finished server process" in stderr


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("LIAOTIAN_PORT", "http", "LIAOTIAN_PORT"),
        ("LIAOTIAN_DATABASE_URL", "mysql://x/y", "LIAOTIAN_DATABASE_URL"),
        ("DASHSCOPE_HTTP_BASE_URL", "ftp://x", "DASHSCOPE_HTTP_BASE_URL"),
        ("LIAOTIAN_OPENAI_ENDPOINTS", "ollama", "LIAOTIAN_OPENAI_ENDPOINTS must be JSON"),
    ],
)
async def test_wrong_settings_stop_start_up_with_a_fix(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    """A wrong setting exits with status 2 and a message naming the variable to fix."""
    process = await asyncio.create_subprocess_exec(
        str(LIAOTIAN),
        "serve",
        env={**os.environ, variable: value},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    message = stderr.decode()
    assert named in message
    assert "Traceback" not in message
