"""``liaotian search QUERY``: find conversations by their messages' words or their titles.

Prints each conversation found, best first: its title, the date of the matching message
and the conversation's id (to continue it: ``liaotian chat -c ID``), then a line of the
message around the match. On a terminal the matched words are highlighted; piped, the
output is plain text. Exit status: 0 something was found, 1 nothing was (or the server
refused the query), 2 the server cannot be reached or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any, TextIO, cast

from rich.console import Console
from rich.text import Text

from liaotian.chat_cli import EXIT_FAILED, EXIT_OK, add_connection_options, run_client
from liaotian.cli_words import describe
from liaotian.client import Client, SearchResult
from liaotian.errors import LiaotianError

MAX_LIMIT = 50


def add_search_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``search`` sub-command to the ``liaotian`` parser."""
    parser = subparsers.add_parser(
        "search",
        help="find your conversations by the words of their messages or titles",
        description=(
            "Find your conversations whose messages (yours and the answers, on every "
            "branch, archived conversations too) or titles contain every word of QUERY. "
            "Words match by their beginning, in any case; Chinese, Japanese and Korean "
            "match as written."
        ),
    )
    parser.add_argument("query", nargs="+", help="the words to look for")
    parser.add_argument(
        "-n",
        "--limit",
        type=_limit,
        default=20,
        help=f"show at most this many conversations (1-{MAX_LIMIT}, default 20)",
    )
    add_connection_options(parser)
    return parser


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def run_search(args: argparse.Namespace) -> int:
    """Run ``liaotian search``; returns the exit status."""
    query = " ".join(args.query)

    async def search(client_id: str) -> int:
        async with Client(args.server, client_id=client_id, token=args.token) as client:
            try:
                results = await client.search(query, limit=args.limit)
            except LiaotianError as error:
                print(f"liaotian: {describe(error)}", file=sys.stderr)
                return EXIT_FAILED
        if not results:
            print(f"nothing found for {query!r}", file=sys.stderr)
            return EXIT_FAILED
        print_results(results, sys.stdout)
        return EXIT_OK

    return run_client(args, search)


def print_results(results: list[SearchResult], out: TextIO) -> None:
    """Each result as a heading line and a snippet line; matches highlighted on a terminal."""
    console = Console(file=out, highlight=False, soft_wrap=True)
    for number, result in enumerate(results):
        if number:
            console.print()
        conversation = result["conversation"]
        when = result["created_at"] or conversation["updated_at"]
        heading = Text(conversation["title"] or "(untitled)", style="bold")
        details = [datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M")]
        if cast(dict[str, Any], conversation).get("archived"):
            details.append("archived")
        if not result["on_active_path"]:
            details.append("on another branch")
        details.append(conversation["id"])
        heading.append("  " + " · ".join(details), style="dim")
        console.print(heading)
        line = Text("  ")
        if result["message_id"] is None:
            line.append("(the title)", style="dim")
        else:
            line.append("you: " if result["role"] == "user" else "answer: ", style="dim")
            for piece in result["snippet"]:
                line.append(piece["text"], style="bold yellow" if piece.get("match") else "")
        console.print(line)
