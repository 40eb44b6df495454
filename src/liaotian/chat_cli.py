"""``liaotian chat``: the terminal client, one-shot or interactive, on :mod:`liaotian.client`.

``liaotian chat "question"`` prints the answer to stdout as it streams, then a newline, and
nothing else (on a terminal, the model's thinking comes first, dimmed; with ``--search``,
the sources follow the answer after a blank line): errors go to stderr, one line.
``--image FILE`` uploads images first and sends them with the question. Exit status: 0
answered, 1 the request or the answer failed (or was cancelled), 2 the server cannot be
reached or the arguments are wrong (an image file that cannot be read), 130 interrupted.

``liaotian chat`` alone opens an interactive chat (``/help`` lists its commands). Ctrl+C
while an answer streams cancels that answer on the server; at the prompt, Ctrl+C or Ctrl+D
leaves. On a terminal, lines are edited with history kept across sessions and answers are
rendered as markdown; piped, lines are read plainly and answers written as received
(:mod:`liaotian.terminal`).

``liaotian models`` lists the server's models, what each can do (images, thinking, search),
whether each is ready (and what it needs when not), and marks the default.

The owner id (``--client-id``) defaults to a random id created on first use and kept in
``$XDG_CONFIG_HOME/liaotian/client_id`` (``~/.config/liaotian/client_id``): it is what lets
the next session see the same conversations, so it is private (mode 0600). The typed lines'
history is kept beside it, in ``history`` (mode 0600 too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from liaotian.cli_words import (
    TOKEN_HOWTO,
    abilities,
    describe,
    file_unreadable,
    source_lines,
    unknown_model,
    upload_refused,
)
from liaotian.client import (
    CLIENT_ID,
    Client,
    ClientConnectionError,
    MessageInfo,
    ReasoningDelta,
    Reply,
    ReplyResult,
    SignInRequired,
    SourceInfo,
    TextDelta,
    ws_url,
)
from liaotian.errors import ConfigError, LiaotianError, ModelNotFound
from liaotian.terminal import (
    Interrupt,
    LineReader,
    PromptReader,
    Reader,
    answer_view,
    history,
    markdown_of,
    thinking_text,
)

DEFAULT_SERVER = "ws://127.0.0.1:8011"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2
EXIT_INTERRUPTED = 130

HELP = (
    ("/new", "start a new conversation"),
    ("/models", "list the server's models"),
    ("/model NAME", "answer with model NAME from now on"),
    ("/think on|off|default", "ask the model to think first, or not (default: the model's)"),
    ("/search on|off", "let the model search the web and cite its sources"),
    ("/image FILE", "send this image with your next message"),
    ("/list", "list your conversations"),
    ("/open ID", "continue conversation ID or ID prefix (shows its history)"),
    ("/retry", "answer the last message again (the earlier answer stays, see /branches)"),
    ("/branches", "list the messages shown that have alternatives (edits, answers again)"),
    ("/switch ID", "show the alternative ID (or ID prefix) instead, with what follows it"),
    ("/help", "show this help"),
    ("↑ ↓  Ctrl+R", "earlier lines, and searching them (kept across sessions)"),
    ("/quit", "leave (Ctrl+D or Ctrl+C at the prompt, too)"),
)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--server``, ``--token`` and ``--client-id``: which server, as whom."""
    parser.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"server URL (default {DEFAULT_SERVER})"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("LIAOTIAN_TOKEN"),
        help=(
            "API token, for a server that requires accounts (default $LIAOTIAN_TOKEN; "
            "create one on the server with 'liaotian token create USER')"
        ),
    )
    parser.add_argument(
        "--client-id",
        help="owner id (default: one created on first use, kept in the user config dir)",
    )


def add_chat_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``chat`` and ``models`` sub-commands to the ``liaotian`` parser."""
    parser = subparsers.add_parser(
        "chat",
        help="chat with a liaotian server from the terminal",
        description=(
            "Ask one question (the answer goes to stdout) or, without QUESTION, chat "
            "interactively (/help lists its commands)."
        ),
    )
    parser.add_argument(
        "question",
        nargs="?",
        help="ask this and print the answer ('-' reads the question from stdin)",
    )
    add_connection_options(parser)
    parser.add_argument(
        "-m", "--model", help="model id (default: the server's default; liaotian models lists them)"
    )
    parser.add_argument("-c", "--conversation", help="continue this conversation id")
    parser.add_argument(
        "--no-stream", action="store_true", help="ask the model for the whole answer at once"
    )
    parser.add_argument("--system", help="system prompt for a new conversation")
    parser.add_argument(
        "--think",
        dest="thinking",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask the model to think before answering, or not (default: the model's own)",
    )
    parser.add_argument(
        "--thinking-budget",
        type=_positive,
        metavar="TOKENS",
        help="the most tokens the model may spend thinking",
    )
    parser.add_argument(
        "--hide-thinking",
        action="store_true",
        help="do not show the model's thinking (on a terminal it is shown dimmed)",
    )
    parser.add_argument(
        "--search",
        action="store_true",
        help="let the model search the web; its sources are listed after the answer",
    )
    parser.add_argument(
        "--image",
        dest="images",
        action="append",
        default=[],
        metavar="FILE",
        help="send this image with the question (repeatable; PNG, JPEG, WEBP or GIF)",
    )
    models = subparsers.add_parser(
        "models",
        help="list the server's models",
        description=(
            "List the models the server knows: whether each is ready and, when not, what it "
            "needs; * marks the server's default."
        ),
    )
    add_connection_options(models)
    return parser


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def run_models(args: argparse.Namespace) -> int:
    """Run ``liaotian models``; returns the exit status."""
    return run_client(args, lambda client_id: _print_models(args, client_id))


async def _print_models(args: argparse.Namespace, client_id: str) -> int:
    async with Client(args.server, client_id=client_id, token=args.token) as client:
        listing = await client.models()
    rows = [
        (
            "*" if model["id"] == listing["default"] else " ",
            model["id"],
            model["provider"],
            abilities(model.get("capabilities")),
            "ready" if model["available"] else f"unavailable: needs {model['reason']}",
        )
        for model in listing["models"]
    ]
    widths = [max(len(row[column]) for row in rows) for column in (1, 2, 3)] if rows else [0] * 3
    for mark, name, provider, can, status in rows:
        columns = [f"{name:<{widths[0]}}", f"{provider:<{widths[1]}}"]
        if widths[2]:
            columns.append(f"{can:<{widths[2]}}")
        print(f"{mark} {'  '.join(columns)}  {status}".rstrip())
    if any(mark == "*" for mark, *_ in rows):
        print("* the default model")
    else:
        print(f"the default model, {listing['default']}, is not among them")
    return EXIT_OK


def run_chat(args: argparse.Namespace) -> int:
    """Run ``liaotian chat``; returns the exit status."""

    if args.images and args.question is None:
        print(
            'liaotian: --image goes with a question: liaotian chat --image FILE "question"',
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE

    def chat(client_id: str) -> Coroutine[None, None, int]:
        if args.question is not None:
            question = sys.stdin.read().rstrip() if args.question == "-" else args.question
            return ask(args, client_id, question)
        return ChatSession(args, client_id).run()

    return run_client(args, chat)


def run_client(args: argparse.Namespace, work: Callable[[str], Coroutine[None, None, int]]) -> int:
    """Check the connection options, run ``work(client_id)``; unreachable servers exit 2."""
    try:
        ws_url(args.server)
    except ValueError as exc:
        print(f"liaotian: --server: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    client_id = args.client_id
    if client_id is None:
        client_id = default_client_id()
    elif not CLIENT_ID.match(client_id):
        print("liaotian: --client-id must be 1-128 of A-Z a-z 0-9 _ . : -", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return asyncio.run(work(client_id))
    except SignInRequired as error:
        print(f"{error.message}. {TOKEN_HOWTO}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ClientConnectionError as error:
        print(error.message, file=sys.stderr)
        return EXIT_UNREACHABLE
    except asyncio.CancelledError:  # a second Ctrl+C while an answer was being cancelled
        return EXIT_INTERRUPTED


# -- the owner id ------------------------------------------------------------------------


def config_dir() -> Path:
    """Where liaotian keeps the terminal client's files."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "liaotian"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "liaotian"


def default_client_id(directory: Path | None = None) -> str:
    """The id stored in ``directory/client_id``, created (random, mode 0600) on first use.

    Two first uses at once agree on one id. Raises ConfigError if the file holds no valid id
    or cannot be written.
    """
    directory = directory or config_dir()
    path = directory / "client_id"
    try:
        return _read_client_id(path)
    except FileNotFoundError:
        pass
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = directory / f".client_id.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(f"cli-{secrets.token_urlsafe(24)}\n")
        try:
            os.link(fresh, path)  # atomic: fails if another process created it first
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
        return _read_client_id(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep a client id in {path}: {exc.strerror or exc}; pass --client-id"
        ) from None


def _read_client_id(path: Path) -> str:
    value = path.read_text().strip()
    if not CLIENT_ID.match(value):
        raise ConfigError(f"{path} holds no valid client id; delete it or pass --client-id")
    return value


# -- Ctrl+C ------------------------------------------------------------------------------


@contextlib.contextmanager
def on_interrupt(callback: Callable[[], None]) -> Iterator[bool]:
    """Call ``callback`` on SIGINT instead of raising KeyboardInterrupt, where supported.

    Yields False where the event loop cannot handle signals (Windows): there Ctrl+C still
    raises KeyboardInterrupt.
    """
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        yield False
        return
    try:
        yield True
    finally:
        loop.remove_signal_handler(signal.SIGINT)


# -- one-shot ----------------------------------------------------------------------------


def read_images(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of each image file; raises OSError naming the file."""
    images = []
    for path in paths:
        try:
            images.append((Path(path).name, Path(path).read_bytes()))
        except OSError as error:
            error.filename = path
            raise
    return images


async def ask(args: argparse.Namespace, client_id: str, question: str) -> int:
    """Send ``question``, print the answer to stdout, errors to stderr (one line).

    On a terminal the thinking streams first, dimmed (not with ``--hide-thinking``);
    piped, stdout gets the answer alone. Sources follow the answer, after a blank line.
    """
    out = sys.stdout
    try:
        images = read_images(args.images)
    except OSError as error:
        print(f"liaotian: {file_unreadable(str(error.filename), error)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    async with Client(args.server, client_id=client_id, token=args.token) as client:
        try:
            attachments = await _upload(client, images)
        except LiaotianError as error:
            print(f"liaotian: {error.message}", file=sys.stderr)
            return EXIT_FAILED
        try:
            reply = await client.send(
                question,
                conversation_id=args.conversation,
                model=args.model,
                stream=not args.no_stream,
                system_prompt=args.system,
                thinking=args.thinking,
                thinking_budget=args.thinking_budget,
                search=args.search or None,
                attachments=attachments or None,
            )
        except LiaotianError as error:
            print(f"liaotian: {await _explain(client, error, args.model)}", file=sys.stderr)
            return EXIT_FAILED
        main = asyncio.current_task()
        assert main is not None
        cancelling: asyncio.Task[None] | None = None

        def interrupt() -> None:
            nonlocal cancelling
            if cancelling is None:
                cancelling = asyncio.create_task(_cancel_quietly(reply))
            else:
                main.cancel()

        show_thinking = out.isatty() and not args.hide_thinking
        printer = _OneShot(out, show_thinking)
        with on_interrupt(interrupt):
            try:
                async for part in reply.parts():
                    if isinstance(part, ReasoningDelta):
                        printer.think(part.text)
                    elif isinstance(part, TextDelta):
                        printer.write(part.text)
            except BrokenPipeError:
                # The reader went away (``| head``): stop quietly, as shell tools do.
                _silence_stdout()
                await _cancel_quietly(reply)
                return EXIT_FAILED
            result = await reply.result()
            if cancelling is not None:
                await cancelling
    if result.ok or printer.wrote:
        out.write("\n")
    if result.sources:
        out.write("\n" + "".join(line + "\n" for line in source_lines(result.sources)))
    out.flush()
    if result.ok:
        return EXIT_OK
    print(f"liaotian: {describe_failure(result)}", file=sys.stderr)
    return EXIT_FAILED if cancelling is None else EXIT_INTERRUPTED


class _OneShot:
    """Writes a one-shot answer: the thinking dimmed (when shown), a blank line, the text."""

    def __init__(self, out: TextIO, show_thinking: bool) -> None:
        self._out = out
        self._thinking = Console(file=out, highlight=False, soft_wrap=True)
        self._show_thinking = show_thinking
        self._thought = False
        self.wrote = False
        """True once any answer text (or shown thinking) was written."""

    def think(self, text: str) -> None:
        if self._show_thinking:
            self._thinking.print(Text(text, style="dim"), end="")
            self._out.flush()
            self._thought = self.wrote = True

    def write(self, text: str) -> None:
        if self._thought:
            self._out.write("\n\n")  # the answer starts below the thinking
            self._thought = False
        self._out.write(text)
        self._out.flush()
        self.wrote = True


async def _upload(client: Client, images: Sequence[tuple[str, bytes]]) -> list[str]:
    """Upload each ``(name, bytes)`` image; their attachment ids. Raises LiaotianError with
    a message in plain words naming the file that was refused."""
    ids = []
    for name, data in images:
        try:
            uploaded = await client.upload_image(data, name=name)
        except LiaotianError as error:
            raise LiaotianError(upload_refused(name, error), code=error.code) from None
        ids.append(str(uploaded["id"]))
    return ids


async def _explain(client: Client, error: LiaotianError, model: str | None) -> str:
    """Plain words for a refused request; an unknown model names the models there are."""
    model = model or client.hello.get("default_model")
    if isinstance(error, ModelNotFound) and isinstance(model, str):
        with contextlib.suppress(LiaotianError, ClientConnectionError, TimeoutError):
            listing = await client.models()
            return unknown_model(model, [known["id"] for known in listing["models"]])
    return describe(error, model if isinstance(model, str) else None)


def describe_failure(result: ReplyResult) -> str:
    """One line saying why an answer did not complete."""
    if result.status == "cancelled":
        return "the answer was cancelled"
    if result.error is not None:
        return describe(result.error)
    return f"the answer ended with status {result.status}"


async def _cancel_quietly(reply: Reply) -> None:
    with contextlib.suppress(LiaotianError, ClientConnectionError):
        await reply.cancel()


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# -- interactive -------------------------------------------------------------------------


class ChatSession:
    """The interactive chat: a prompt, streamed answers, slash commands."""

    def __init__(self, args: argparse.Namespace, client_id: str) -> None:
        self.args = args
        self.client_id = client_id
        self.console = Console(highlight=False)
        self.model: str | None = args.model
        self.conversation_id: str | None = args.conversation
        self.system_prompt: str | None = args.system
        self.thinking: bool | None = args.thinking
        self.search: bool = args.search
        self._show_thinking = not args.hide_thinking
        self._images: list[tuple[str, bytes]] = []  # for the next message
        self._on_interrupt: Callable[[], None] | None = None
        self._client: Client | None = None
        self._echo_input = not sys.stdin.isatty()
        self._terminal = sys.stdout.isatty()

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    async def run(self) -> int:
        """Chat until /quit, end of input or Ctrl+C at the prompt; returns the exit status."""
        main = asyncio.current_task()
        assert main is not None
        reader: Reader
        if sys.stdin.isatty() and self._terminal:
            reader = PromptReader(history(config_dir()))
        else:
            reader = LineReader(sys.stdin)

        def interrupt() -> None:
            if self._on_interrupt is not None:
                self._on_interrupt()
            else:
                main.cancel()

        async with Client(
            self.args.server, client_id=self.client_id, token=self.args.token
        ) as client:
            self._client = client
            with on_interrupt(interrupt):
                return await self._loop(reader)

    async def _loop(self, reader: Reader) -> int:
        hello = self.client.hello
        self.console.print(
            f"[bold]liaotian[/] {escape(self.args.server)} · "
            f"[green]{escape(self.model or str(hello.get('default_model')))}[/] · "
            "[dim]/help, Ctrl+D leaves[/]"
        )
        if self.conversation_id is not None:
            await self._open(self.conversation_id)
        while True:
            if not reader.shows_prompt:
                self.console.print("[bold cyan]you[/] › ", end="")
            self._on_interrupt = reader.interrupt
            try:
                line = await reader.readline()
            finally:
                self._on_interrupt = None
            if line is None or isinstance(line, Interrupt):
                if not reader.shows_prompt:
                    self.console.print()
                return EXIT_OK
            if self._echo_input:  # a terminal echoes what is typed, a pipe does not
                self.console.print(line, markup=False)
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not await self._command(text):
                    return EXIT_OK
                continue
            await self._ask(line)

    # -- answers ---------------------------------------------------------------------------

    async def _ask(self, message: str) -> None:
        images, self._images = self._images, []
        try:
            attachments = await _upload(self.client, images)
        except LiaotianError as error:
            self._error(error.message)
            return
        try:
            reply = await self.client.send(
                message,
                conversation_id=self.conversation_id,
                model=self.model,
                stream=not self.args.no_stream,
                system_prompt=self.system_prompt if self.conversation_id is None else None,
                thinking=self.thinking,
                thinking_budget=self.args.thinking_budget,
                search=self.search or None,
                attachments=attachments or None,
            )
        except LiaotianError as error:
            self._error(await _explain(self.client, error, self.model))
            return
        self.conversation_id = reply.conversation_id
        await self._stream(reply)

    async def _stream(self, reply: Reply) -> None:
        """Print a reply as it streams; the first Ctrl+C cancels it, a second one leaves."""
        cancelling: asyncio.Task[None] | None = None
        main = asyncio.current_task()
        assert main is not None

        def interrupt() -> None:
            nonlocal cancelling
            if cancelling is not None:
                main.cancel()
                return
            cancelling = asyncio.create_task(_cancel_quietly(reply))

        self._speaker(reply.model or self.model or "assistant")
        self._on_interrupt = interrupt
        view = answer_view(self.console, self._terminal, self._show_thinking)
        try:
            async for part in reply.parts():
                if isinstance(part, ReasoningDelta):
                    view.think(part.text)
                elif isinstance(part, TextDelta):
                    view.write(part.text)
            result = await reply.result()
        finally:
            self._on_interrupt = None
            view.close()
            if cancelling is not None:
                await cancelling
        self._sources(result.sources)
        self.console.print(self._status_line(result), style="dim", markup=False)

    def _sources(self, sources: Sequence[SourceInfo]) -> None:
        """The web sources of an answer, numbered as it cites them."""
        for line in source_lines(sources):
            self.console.print(line, markup=False, soft_wrap=True)

    def _speaker(self, name: str) -> None:
        """Who speaks next: on its own line above a rendered answer, else before the text."""
        self.console.print(f"[bold green]{escape(name)}[/] ›", end="\n" if self._terminal else " ")

    def _status_line(self, result: ReplyResult) -> str:
        if result.status == "cancelled":
            return "[cancelled]"
        if not result.ok:
            return f"[{describe_failure(result)}]"
        details = [result.model or ""]
        if result.usage and result.usage.get("output_tokens") is not None:
            details.append(f"{result.usage['output_tokens']} tokens")
        if result.thinking_ms is not None:
            details.append(f"thought {result.thinking_ms / 1000:.1f} s")
        if result.duration_ms is not None:
            details.append(f"{result.duration_ms / 1000:.1f} s")
        return "[" + " · ".join(detail for detail in details if detail) + "]"

    def _error(self, message: str) -> None:
        # Soft-wrapped: a long file name stays whole on one line (the terminal wraps it).
        self.console.print(f"[bold red]error[/] {escape(message)}", soft_wrap=True)

    # -- commands --------------------------------------------------------------------------

    async def _command(self, text: str) -> bool:
        """Run one slash command; False means leave."""
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        try:
            if name in ("/quit", "/exit", "/q"):
                return False
            if name == "/help":
                self._help()
            elif name == "/new":
                self.conversation_id = None
                self.console.print("[dim]new conversation[/]")
            elif name == "/models":
                await self._models()
            elif name == "/model" and argument:
                await self._use_model(argument)
            elif name == "/think" and argument in ("on", "off", "default"):
                self.thinking = {"on": True, "off": False}.get(argument)
                self.console.print(f"[dim]thinking {argument}[/]")
            elif name == "/search" and argument in ("on", "off"):
                self.search = argument == "on"
                self.console.print(f"[dim]web search {argument}[/]")
            elif name == "/image" and argument:
                self._attach(argument)
            elif name == "/list":
                await self._list()
            elif name == "/open" and argument:
                await self._open(argument)
            elif name == "/retry":
                await self._retry()
            elif name == "/branches":
                await self._branches()
            elif name == "/switch" and argument:
                await self._switch(argument)
            else:
                self._error(f"unknown command {text!r}; /help lists the commands")
        except LiaotianError as error:
            self._error(describe(error))
        return True

    # -- branches --------------------------------------------------------------------------

    async def _retry(self) -> None:
        """Answer the current conversation's last message again, beside the earlier answer."""
        if self.conversation_id is None:
            self._error("nothing to answer again yet: send a message first")
            return
        reply = await self.client.regenerate(
            self.conversation_id,
            model=self.model,
            stream=not self.args.no_stream,
            thinking=self.thinking,
            thinking_budget=self.args.thinking_budget,
            search=self.search or None,
        )
        await self._stream(reply)

    async def _alternatives(self) -> list[tuple[MessageInfo, list[str]]] | None:
        """The messages of the current conversation's active path that have siblings,
        with their siblings' ids (None, said, without a conversation)."""
        if self.conversation_id is None:
            self._error("no conversation yet: send a message or /open one")
            return None
        page = await self.client.history(self.conversation_id, limit=500)
        found = []
        for message in page["messages"]:
            siblings = message.get("siblings") or []
            if len(siblings) > 1:
                found.append((message, siblings))
        return found

    async def _branches(self) -> None:
        found = await self._alternatives()
        if found is None:
            return
        if not found:
            self.console.print("[dim]no alternatives: every message shown is the only one[/]")
            return
        for message, siblings in found:
            who = "you" if message["role"] == "user" else "answer"
            position = f"{siblings.index(message['id']) + 1}/{len(siblings)}"
            line = " ".join(message["content"].split())
            snippet = line if len(line) <= 40 else line[:39] + "…"
            others = " ".join(s for s in siblings if s != message["id"])
            self.console.print(
                Text(f"{who} {position}  {snippet}  ") + Text(f"others: {others}", style="dim")
            )

    async def _switch(self, prefix: str) -> None:
        """Switch to the alternative ``prefix`` names (an id or a unique prefix of one listed
        by /branches), then show the conversation again."""
        found = await self._alternatives()
        if found is None:
            return
        ids = {sibling for _, siblings in found for sibling in siblings}
        matches = [sibling for sibling in ids if sibling.startswith(prefix)]
        if len(matches) != 1:
            self._error(f"no single alternative starts with {prefix!r}; /branches lists them")
            return
        assert self.conversation_id is not None
        await self.client.switch_branch(self.conversation_id, matches[0])
        await self._open(self.conversation_id)

    def _attach(self, path: str) -> None:
        """Keep the image file ``path`` for the next message (sent, and uploaded, with it)."""
        try:
            self._images += read_images([path])
        except OSError as error:
            self._error(file_unreadable(path, error))
            return
        count = len(self._images)
        self.console.print(f"[dim]{count} image{'s' if count > 1 else ''} for your next message[/]")

    def _help(self) -> None:
        table = Table(show_header=False, box=None, padding=(0, 2))
        for command, meaning in HELP:
            table.add_row(f"[cyan]{command}[/]", meaning)
        self.console.print(table)

    async def _models(self) -> None:
        listing = await self.client.models()
        current = self.model or listing["default"]
        table = Table("", "model", "provider", "can", "status", box=None, padding=(0, 1))
        for model in listing["models"]:
            mark = "*" if model["id"] == current else ""
            status = "ready" if model["available"] else f"needs {model['reason']}"
            can = abilities(model.get("capabilities")).removeprefix("can: ")
            table.add_row(mark, Text(model["id"]), Text(model["provider"]), Text(can), Text(status))
        self.console.print(table)

    async def _use_model(self, name: str) -> None:
        listing = await self.client.models()
        found = next((model for model in listing["models"] if model["id"] == name), None)
        if found is None:
            self._error(f"the server has no model {name!r}; /models lists them")
            return
        self.model = name
        note = "" if found["available"] else f" (not ready: needs {found['reason']})"
        self.console.print(f"[dim]model {escape(name)}{escape(note)}[/]")

    async def _list(self) -> None:
        page = await self.client.conversations(limit=20)
        if not page["conversations"]:
            self.console.print("[dim]no conversations yet[/]")
            return
        # Ids are never cut (they are typed back into /open); long titles are.
        table = Table(box=None, padding=(0, 1))
        id_width = max(len(c["id"]) for c in page["conversations"]) + 2
        table.add_column("id", no_wrap=True, width=id_width)
        title_width = max(10, self.console.width - id_width - 16 - 6)  # 6: cell padding
        table.add_column("title", no_wrap=True, overflow="ellipsis", max_width=title_width)
        table.add_column("updated", no_wrap=True, width=16)
        for conversation in page["conversations"]:
            updated = Text(
                datetime.fromtimestamp(conversation["updated_at"]).strftime("%Y-%m-%d %H:%M")
            )
            if conversation.get("streaming_message_id"):
                updated = Text("streaming", style="yellow")
            marker = " *" if conversation["id"] == self.conversation_id else ""
            table.add_row(Text(conversation["id"] + marker), Text(conversation["title"]), updated)
        self.console.print(table)

    async def _open(self, conversation_id: str) -> None:
        """Show a conversation (an id or a unique id prefix) and make it the current one."""
        listing = await self.client.conversations(limit=200)
        matches = [c["id"] for c in listing["conversations"] if c["id"].startswith(conversation_id)]
        if len(matches) == 1:
            conversation_id = matches[0]
        page = await self.client.history(conversation_id, limit=50)
        conversation = page["conversation"]
        self.conversation_id = conversation["id"]
        self.console.print(f"[bold]{escape(conversation['title'])}[/] [dim]{conversation['id']}[/]")
        streaming: str | None = None
        for message in page["messages"]:
            if message["role"] == "assistant" and message["status"] == "streaming":
                streaming = message["id"]  # shown live below, from its first event
                continue
            self._show_message(message)
        if streaming is not None:
            await self._stream(await self.client.subscribe(streaming))

    def _show_message(self, message: MessageInfo) -> None:
        if message["role"] == "user":
            self.console.print("[bold cyan]you[/] › ", end="")
            self.console.print(message["content"], markup=False, soft_wrap=True)
        else:
            self._speaker(message.get("model") or "assistant")
            reasoning = message.get("reasoning")
            if self._terminal:
                if reasoning and self._show_thinking:
                    self.console.print(thinking_text(reasoning))
                    self.console.print()
                self.console.print(markdown_of(message["content"]))
            else:
                self.console.print(message["content"], markup=False, soft_wrap=True)
            self._sources(message.get("sources") or [])
        if message["role"] == "assistant" and message["status"] != "completed":
            self.console.print(f"[{message['status']}]", style="dim", markup=False)
