"""``liaotian export`` and ``liaotian import``: conversations out to a file and back in.

``liaotian export ID`` writes the conversation in liaotian's export format (JSON,
docs/protocol.md) to stdout or ``-o FILE``: its active path, or every branch with
``--tree``; ``--all`` writes a list of every conversation of the owner (archived ones too).
``liaotian import FILE`` sends liaotian's export or a ChatGPT ``conversations.json`` to the
server (``POST /conversations/import``) and prints ``imported N, skipped M``; importing the
same file again adds nothing.

Both connect as ``liaotian chat`` does (``--server``, ``--token``, ``--client-id``). Exit
status: 0 done, 1 the server refused the request (an unknown conversation, a malformed
file), 2 the server cannot be reached, refused the sign-in, or the arguments are wrong (a
file that cannot be read or written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from liaotian.chat_cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    add_connection_options,
    run_client,
)
from liaotian.cli_words import describe, file_unreadable, import_refused
from liaotian.client import Client
from liaotian.errors import LiaotianError

PAGE = 200
"""Conversations asked for at once by ``export --all``."""


def add_transfer_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the ``export`` and ``import`` sub-commands to the ``liaotian`` parser."""
    export = commands.add_parser(
        "export",
        help="write conversations to a JSON file (liaotian's export format)",
        description=(
            "Write a conversation, or with --all every conversation, in liaotian's export "
            "format (JSON): the branch shown, or with --tree every branch."
        ),
    )
    export.add_argument(
        "conversation", nargs="?", metavar="CONVERSATION_ID", help="the conversation to export"
    )
    export.add_argument(
        "--all", action="store_true", help="export every conversation, as a JSON list"
    )
    export.add_argument(
        "--tree",
        action="store_true",
        help="every branch (answers given again, edited messages), not only the one shown",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    add_connection_options(export)
    imports = commands.add_parser(
        "import",
        help="import conversations: liaotian's export or ChatGPT's conversations.json",
        description=(
            "Import liaotian's export or a ChatGPT export's conversations.json into your "
            "conversations; importing the same file again adds nothing."
        ),
    )
    imports.add_argument("file", metavar="FILE", help="the JSON file to import ('-' reads stdin)")
    add_connection_options(imports)


def run_export(args: argparse.Namespace) -> int:
    """Run ``liaotian export``; returns the exit status."""
    if args.all == (args.conversation is not None):
        print(
            "liaotian: name one conversation to export, or --all for every one",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE

    exported: list[Any] = []

    async def work(client_id: str) -> int:
        async with Client(args.server, client_id=client_id, token=args.token) as client:
            try:
                if args.all:
                    exported.append(
                        [
                            await client.export(conversation_id, tree=args.tree)
                            for conversation_id in await _every_conversation(client)
                        ]
                    )
                else:
                    exported.append(await client.export(args.conversation, tree=args.tree))
            except LiaotianError as error:
                if error.code == "not_found":
                    print(f"liaotian: no conversation {args.conversation}", file=sys.stderr)
                else:
                    print(f"liaotian: {describe(error)}", file=sys.stderr)
                return EXIT_FAILED
        return EXIT_OK

    status = run_client(args, work)
    if status != EXIT_OK:
        return status
    text = json.dumps(exported[0], ensure_ascii=False, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"liaotian: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK


async def _every_conversation(client: Client) -> list[str]:
    """The ids of every conversation of the owner, archived ones too, each once."""
    ids: dict[str, None] = {}
    for archived in (False, True):
        before: str | None = None
        while True:
            page = await client.conversations(PAGE, before, archived=archived)
            listed = page["conversations"]
            ids.update((conversation["id"], None) for conversation in listed)
            if not page["has_more"] or not listed:
                break
            before = listed[-1]["id"]
    return list(ids)


def run_import(args: argparse.Namespace) -> int:
    """Run ``liaotian import``; returns the exit status."""
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        print(f"liaotian: {file_unreadable(args.file, error)}", file=sys.stderr)
        return EXIT_UNREACHABLE

    async def work(client_id: str) -> int:
        client = Client(args.server, client_id=client_id, token=args.token, request_timeout=None)
        try:
            result = await client.import_file(data)
        except LiaotianError as error:
            print(f"liaotian: {import_refused(args.file, error)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"imported {result['imported']}, skipped {result['skipped']}")
        return EXIT_OK

    return run_client(args, work)
