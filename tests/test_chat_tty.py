"""``liaotian chat`` on a terminal: a real pseudo-terminal (pexpect), its screen emulated
(pyte), the real console script against a real server.

On a terminal, lines are edited by prompt_toolkit (history across sessions) and answers
are rendered as markdown by rich; piped, answers are the raw text.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte
import pytest

from liaotian.client import Client
from tests.fake_upstream import expected_reply
from tests.server_harness import RunningServer
from tests.test_chat_cli import SCRIPT, TIMEOUT, cli_env, run_cli, server_url

COLUMNS, ROWS = 100, 30
UP, ENTER, CTRL_C, CTRL_D = "\x1b[A", "\r", "\x03", "\x04"


class Terminal:
    """``liaotian chat ARGS`` in a pseudo-terminal; :attr:`screen` is what a person sees."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        env = cli_env(tmp_path)
        env.pop("NO_COLOR")  # rendering is what is tested here
        # No cursor-position requests: pyte would not answer them.
        env.update({"TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"})
        self.screen = pyte.HistoryScreen(COLUMNS, ROWS, history=10_000)
        self._stream = pyte.Stream(self.screen)
        self.child = pexpect.spawn(
            str(SCRIPT), ["chat", *args], env=env, dimensions=(ROWS, COLUMNS), encoding="utf-8"
        )

    @property
    def scrollback(self) -> list[str]:
        """The lines scrolled off the top of the screen, oldest first."""
        return [
            "".join(line[x].data for x in range(COLUMNS)).rstrip()
            for line in self.screen.history.top
        ]

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def prompt_line(self) -> str | None:
        """The line the cursor is on, if it is the prompt."""
        line = self.lines[self.screen.cursor.y]
        return line if line.startswith("you ›") else None

    def _read(self) -> bool:
        """Feed what the program wrote (waiting 50 ms at most) to the screen; False at EOF."""
        try:
            self._stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            return False
        return True

    async def until(self, condition: Callable[[Terminal], bool], what: str) -> None:
        """Read until ``condition(self)`` holds on the screen."""
        try:
            async with asyncio.timeout(TIMEOUT):
                while not condition(self):
                    if not await asyncio.to_thread(self._read):
                        break
        except TimeoutError:
            pass
        assert condition(self), f"waited for {what}; the screen:\n" + "\n".join(self.lines)

    async def at_prompt(self, text: str = "") -> None:
        await self.until(lambda t: t.prompt_line() == f"you › {text}".rstrip(), f"prompt {text!r}")

    def type(self, keys: str) -> None:
        self.child.send(keys)

    async def leave(self, key: str = CTRL_D) -> int:
        """Leave with ``key`` (Ctrl+D on an empty line, Ctrl+C on any); the exit status."""
        self.type(key)
        await self.until(lambda t: not t.child.isalive(), "the chat to end")
        self.child.close()
        assert self.child.exitstatus is not None
        return self.child.exitstatus


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Terminals a test opens, killed if it fails before leaving them."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        if terminal.child.isalive():
            terminal.child.terminate(force=True)


async def user_messages(server: RunningServer, client_id: str) -> list[str]:
    async with Client(server.http_url, client_id=client_id) as client:
        page = await client.conversations()
        history = await client.history(page["conversations"][0]["id"])
    return [m["content"] for m in history["messages"] if m["role"] == "user"]


async def test_up_recalls_the_last_line_within_and_across_sessions(
    tmp_path: Path, server: RunningServer, terminals: list[Terminal]
) -> None:
    """Up at the prompt brings back the previous line (not ``^[[A``), to edit or send
    again; a new session recalls it from the history file (private, mode 0600)."""
    args = ("--server", server_url(server), "--client-id", "tty")
    first = Terminal(tmp_path, *args)
    terminals.append(first)
    await first.at_prompt()
    first.type("first line" + ENTER)
    await first.until(
        lambda t: expected_reply("first line") in "\n".join(t.lines) and t.prompt_line() == "you ›",
        "the answer, then the prompt",
    )
    first.type(UP)
    await first.at_prompt("first line")
    first.type(" again" + ENTER)
    await first.until(lambda t: expected_reply("first line again") in "\n".join(t.lines), "answer")
    await first.at_prompt()
    assert await first.leave() == 0
    assert await user_messages(server, "tty") == ["first line", "first line again"]

    history = tmp_path / "config" / "liaotian" / "history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    second = Terminal(tmp_path, *args)
    terminals.append(second)
    await second.at_prompt()
    second.type(UP)
    await second.at_prompt("first line again")
    second.type(UP)
    await second.at_prompt("first line")
    assert await second.leave(CTRL_C) == 0


MARKDOWN = "**bold** and `code`"


async def test_answers_are_rendered_as_markdown_on_a_terminal(
    tmp_path: Path, server: RunningServer, terminals: list[Terminal]
) -> None:
    """On a terminal the answer's ``**bold**`` shows as bold text, without the asterisks."""
    terminal = Terminal(tmp_path, "--server", server_url(server), "--client-id", "tty")
    terminals.append(terminal)
    await terminal.at_prompt()
    terminal.type(MARKDOWN + ENTER)
    await terminal.until(
        lambda t: any(line.startswith("echo: ") for line in t.lines) and t.prompt_line() == "you ›",
        "the answer, then the prompt",
    )
    row = next(y for y, line in enumerate(terminal.lines) if line.startswith("echo: "))
    assert terminal.lines[row] == "echo: bold and code"
    cells = terminal.screen.buffer[row]
    assert [cells[x].bold for x in range(6, 10)] == [True] * 4  # "bold"
    assert not cells[0].bold
    assert await terminal.leave() == 0


async def test_answers_are_raw_text_when_piped(tmp_path: Path, server: RunningServer) -> None:
    """Piped, the interactive chat writes the answer exactly as the model sent it."""
    run = await run_cli(
        tmp_path, "--server", server_url(server), "--client-id", "pipe", stdin=MARKDOWN + "\n"
    )
    assert run.returncode == 0
    assert f"› {expected_reply(MARKDOWN)}\n" in run.stdout


async def test_ctrl_c_on_a_terminal_cancels_the_streaming_answer(
    tmp_path: Path, server: RunningServer, terminals: list[Terminal]
) -> None:
    """Ctrl+C while an answer streams cancels it (prompt_toolkit leaves SIGINT to the chat);
    the prompt comes back."""
    terminal = Terminal(tmp_path, "--server", server_url(server), "--client-id", "tty")
    terminals.append(terminal)
    await terminal.at_prompt()
    terminal.type("[tokens=2000][delay=20]" + ENTER)
    await terminal.until(lambda t: "t1 " in "\n".join(t.lines), "the answer to stream")
    terminal.type(CTRL_C)
    await terminal.until(lambda t: "[cancelled]" in t.lines, "the cancel")
    await terminal.at_prompt()
    assert await terminal.leave() == 0


async def test_an_answer_taller_than_the_screen_ends_whole_and_once(
    tmp_path: Path, server: RunningServer, terminals: list[Terminal]
) -> None:
    """While it streams, only the answer's tail is redrawn; once done it is printed whole:
    the screen and its scrollback hold every token exactly once, in order."""
    terminal = Terminal(tmp_path, "--server", server_url(server), "--client-id", "tty")
    terminals.append(terminal)
    await terminal.at_prompt()
    terminal.type("[tokens=1500][delay=1]" + ENTER)
    await terminal.until(lambda t: any("tokens" in line for line in t.lines), "the status line")
    await terminal.at_prompt()
    everything = [str(line) for line in terminal.scrollback] + terminal.lines
    words = " ".join(everything).split()
    tokens = [word for word in words if word[:1] == "t" and word[1:].isdigit()]
    assert tokens == [f"t{n}" for n in range(1500)]
    assert await terminal.leave() == 0
