"""The interactive chat's terminal: reading lines, and showing answers.

On a terminal, lines are edited with prompt_toolkit (arrows, Ctrl+R search, history kept
in a file across sessions) and answers are rendered as markdown by rich (code highlighted)
while they stream, the model's thinking dimmed above them. Otherwise (a pipe, a file, a
script) lines are read plainly and answers are written exactly as received, without the
thinking: scripts get the answer alone.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import threading
from pathlib import Path
from typing import Final, Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text


class Interrupt:
    """Ctrl+C pressed at the prompt."""


INTERRUPT: Final = Interrupt()
Line = str | None | Interrupt


class Reader(Protocol):
    """Where the interactive chat's lines come from."""

    shows_prompt: bool
    """True if the reader shows the prompt itself."""

    async def readline(self) -> Line:
        """The next line (without its newline), None at end of input, or INTERRUPT."""

    def interrupt(self) -> None:
        """Make the pending :meth:`readline` return INTERRUPT (a SIGINT arrived)."""


class LineReader:
    """Lines of stdin, read by a daemon thread so the event loop never blocks.

    The thread uses ``os.read`` on the file descriptor, not ``input()``: a daemon thread
    blocked inside ``sys.stdin`` holds its buffer lock, and the interpreter then aborts at
    exit ("could not acquire lock for <stdin> at interpreter shutdown").
    """

    shows_prompt = False

    def __init__(self, stream: TextIO) -> None:
        self._fd = stream.fileno()
        self._lines: asyncio.Queue[Line] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread: threading.Thread | None = None

    async def readline(self) -> Line:
        """The next line (without its newline), None at end of input, or INTERRUPT."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stdin", daemon=True)
            self._thread.start()
        return await self._lines.get()

    def interrupt(self) -> None:
        self._lines.put_nowait(INTERRUPT)

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                self._put(line.removesuffix("\r"))
            if not chunk:
                if pending:
                    self._put(pending)
                self._put(None)
                return

    def _put(self, line: Line) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line)


PROMPT: Final = FormattedText([("bold ansicyan", "you"), ("", " › ")])


class PromptReader:
    """Lines typed at a terminal, edited with prompt_toolkit, kept in ``history``.

    Ctrl+D on an empty line ends the input; Ctrl+C returns INTERRUPT. prompt_toolkit does
    not take over SIGINT (``handle_sigint=False``): the chat's own handler stays in place
    for the answers.
    """

    shows_prompt = True

    def __init__(self, history: History) -> None:
        self._session: PromptSession[str] = PromptSession(history=history)

    async def readline(self) -> Line:
        try:
            return await self._session.prompt_async(PROMPT, handle_sigint=False)
        except EOFError:
            return None
        except KeyboardInterrupt:
            return INTERRUPT

    def interrupt(self) -> None:
        app = self._session.app
        if app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=KeyboardInterrupt())


def history(directory: Path) -> History:
    """The typed lines of earlier sessions, kept in ``directory/history`` (mode 0600: what
    was asked is private); in memory only if that file cannot be had."""
    path = directory / "history"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError:
        return InMemoryHistory()
    return FileHistory(path)


# -- answers ----------------------------------------------------------------------------


class AnswerView(Protocol):
    """Shows one answer as it streams."""

    def think(self, text: str) -> None:
        """Add the next piece of the model's thinking (shown only where it can be told
        apart from the answer: dimmed, on a terminal)."""

    def write(self, text: str) -> None:
        """Add the next piece of the answer."""

    def close(self) -> None:
        """The answer ended: show it whole and leave the cursor on the line after it."""


class RawAnswer:
    """The answer's text exactly as received, written as it comes (for pipes and files)."""

    def __init__(self, console: Console) -> None:
        self._file = console.file

    def think(self, text: str) -> None:
        """Dropped: piped, the output is the answer alone."""

    def write(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def close(self) -> None:
        self._file.write("\n")
        self._file.flush()


class MarkdownAnswer:
    """The answer rendered as markdown (code highlighted) and re-rendered as it grows, the
    thinking dimmed above it (unless ``show_thinking`` is False).

    A rich :class:`~rich.live.Live` region redraws it, ten times a second at most. While
    it streams, only its last lines that fit the screen are drawn (a region taller than
    the screen cannot be redrawn in place); once it ends, it is drawn whole, and scrolls
    like any output.
    """

    def __init__(self, console: Console, show_thinking: bool = True) -> None:
        self._view = _Growing()
        self._show_thinking = show_thinking
        self._live = Live(
            self._view,
            console=console,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="visible",
        )
        self._live.start()

    def think(self, text: str) -> None:
        if self._show_thinking:
            self._view.thinking += text

    def write(self, text: str) -> None:
        self._view.text += text

    def close(self) -> None:
        self._view.whole = True
        self._live.stop()  # draws it one last time, whole


class _Growing:
    """Markdown text, after dimmed thinking, that may still grow; ``whole`` False draws its
    tail only."""

    def __init__(self) -> None:
        self.thinking = ""
        self.text = ""
        self.whole = False

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        markdown = markdown_of(self.text)
        if self.whole:
            if self.thinking:
                yield thinking_text(self.thinking)
                yield Text()
            yield markdown
            return
        lines = console.render_lines(markdown, options, pad=False) if self.text else []
        if self.thinking:
            thought = console.render_lines(thinking_text(self.thinking), options, pad=False)
            lines = thought + ([[]] if self.text else []) + lines
        room = max(1, options.size.height - 2)
        for line in lines[-room:]:
            yield from line
            yield Segment.line()


THINKING_STYLE: Final = "dim"


def thinking_text(text: str) -> Text:
    """How the chat shows a model's thinking: dimmed, so it never reads as the answer."""
    return Text(text.strip("\n"), style=THINKING_STYLE)


def markdown_of(text: str) -> Markdown:
    """How the chat renders a model's markdown."""
    return Markdown(text, code_theme="monokai", hyperlinks=True)


def answer_view(console: Console, terminal: bool, show_thinking: bool = True) -> AnswerView:
    """Markdown (and the thinking, unless ``show_thinking`` is False) on a terminal, the raw
    answer otherwise."""
    return MarkdownAnswer(console, show_thinking) if terminal else RawAnswer(console)
