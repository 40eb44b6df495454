"""The README's examples run as they are written."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer

README = Path(__file__).resolve().parent.parent / "README.md"


def python_examples() -> list[str]:
    """The README's ```python blocks, dedented."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [
        "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())
        for block in blocks
    ]


async def test_the_python_client_example_runs_as_a_script(
    server: RunningServer, tmp_path: Path
) -> None:
    """The client example is a whole script: saved to a file and run, it prints the answer
    and how it ended (only the server's address is changed, to the test server's)."""
    [example] = [block for block in python_examples() if "liaotian.client" in block]
    assert "ws://127.0.0.1:8011" in example
    script = tmp_path / "example.py"
    script.write_text(example.replace("ws://127.0.0.1:8011", f"ws://127.0.0.1:{server.port}"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    printed = stdout.decode()
    assert printed.startswith(expected_reply("Hello!"))
    assert printed.rstrip().endswith("[completed, qwen-plus]")
