"""``liaotian share``: share a conversation as a read-only link, list or revoke links."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from liaotian.chat_cli import EXIT_OK, EXIT_UNREACHABLE, add_connection_options, run_client
from liaotian.client import Client, ShareInfo


def add_share_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``share`` sub-command to the ``liaotian`` parser."""
    parser = subparsers.add_parser(
        "share",
        help="share a conversation as a read-only link (or list, or revoke links)",
        description=(
            "Print the full link of a read-only snapshot of CONVERSATION_ID's active path "
            "(anyone with it can read it, without signing in). --list lists your links, "
            "--revoke ID revokes one."
        ),
    )
    parser.add_argument("conversation_id", nargs="?", help="the conversation to share")
    parser.add_argument("--message", help="end the snapshot at this message (default: the last)")
    parser.add_argument(
        "--expires-in",
        type=int,
        metavar="SECONDS",
        help="the link stops working after this many seconds (60 to 31536000; default: never)",
    )
    parser.add_argument("--list", action="store_true", help="list your links, newest first")
    parser.add_argument("--revoke", metavar="SHARE_ID", help="revoke this link")
    add_connection_options(parser)
    return parser


def run_share(args: argparse.Namespace) -> int:
    """Run ``liaotian share``; returns the exit status (2 for a wrong mix of arguments)."""
    revoking = args.revoke is not None
    sharing = not args.list and not revoking
    if (
        (args.list and revoking)
        or (revoking and args.conversation_id is not None)
        or (sharing and args.conversation_id is None)
    ):
        print(
            "liaotian share: give CONVERSATION_ID, --list [CONVERSATION_ID] or --revoke SHARE_ID",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE

    async def work(client_id: str) -> int:
        async with Client(args.server, client_id=client_id, token=args.token) as client:
            if args.list:
                for share in await client.shares(args.conversation_id):
                    print(_line(client, share))
            elif args.revoke is not None:
                await client.revoke_share(args.revoke)
                print(f"revoked {args.revoke}")
            else:
                share = await client.share(
                    args.conversation_id, message_id=args.message, expires_in=args.expires_in
                )
                print(client.share_url(share))
        return EXIT_OK

    return run_client(args, work)


def _line(client: Client, share: ShareInfo) -> str:
    expires = share["expires_at"]
    until = "never expires"
    if expires is not None:
        until = "expires " + datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{client.share_url(share)}  {share['title'] or '(untitled)'}  {until}"
