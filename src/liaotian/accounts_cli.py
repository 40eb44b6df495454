"""``liaotian user …`` and ``liaotian token …``: accounts, managed from the server's shell."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from liaotian.settings import Settings
from liaotian.store import create_engine
from liaotian.store.accounts import Accounts
from liaotian.store.migrate import upgrade


def run_accounts(args: argparse.Namespace, settings: Settings) -> int:
    """Run one account command; LiaotianErrors reach the CLI's error printer."""
    upgrade(settings.database_url)
    password = None
    if args.command == "user" and args.action in ("add", "passwd"):
        password = _read_password(args.password_stdin)
    return asyncio.run(_run(args, settings, password))


NO_TERMINAL = "no terminal to ask for the password: pipe it with --password-stdin"


def _read_password(from_stdin: bool) -> str:
    """The password from stdin's first line, or asked twice at the terminal.

    Without a terminal (stdin not a tty) and without ``--password-stdin``, exits with
    status 2 and says so: getpass would read the pipe unmasked, or fail with a traceback.
    """
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        print(f"liaotian: {NO_TERMINAL}", file=sys.stderr)
        raise SystemExit(2)
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("liaotian: the passwords differ", file=sys.stderr)
        raise SystemExit(2)
    return first


async def _run(args: argparse.Namespace, settings: Settings, password: str | None) -> int:
    engine = create_engine(settings.database_url)
    accounts = Accounts(engine)
    try:
        if args.command == "user":
            return await _user(args, accounts, password)
        return await _token(args, accounts)
    finally:
        await engine.dispose()


async def _user(args: argparse.Namespace, accounts: Accounts, password: str | None) -> int:
    if args.action == "add":
        assert password is not None
        await accounts.add_user(args.name, password)
        print(f"user {args.name} created")
    elif args.action == "passwd":
        assert password is not None
        await accounts.set_password(args.name, password)
        print(f"password of {args.name} changed; its sessions are ended")
    elif args.action == "remove":
        owner = await accounts.remove_user(args.name)
        print(
            f"user {args.name} removed; its conversations stay in the database under the "
            f"owner {owner}, which no other user will get"
        )
    else:
        for name, created in await accounts.list_users():
            print(f"{name}\t{created:%Y-%m-%d %H:%M}")
    return 0


async def _token(args: argparse.Namespace, accounts: Accounts) -> int:
    if args.action == "create":
        token_id, secret = await accounts.create_token(args.name, args.label)
        print(secret)
        print(
            f"token {token_id} for {args.name}: shown once, keep it secret; send it as "
            "'Authorization: Bearer …' (liaotian chat --token, LIAOTIAN_TOKEN)",
            file=sys.stderr,
        )
    elif args.action == "revoke":
        await accounts.revoke(args.id)
        print(f"token {args.id} revoked")
    else:
        for token in await accounts.list_tokens(args.name):
            state = "revoked" if token.revoked else "active"
            print(f"{token.id}\t{token.user}\t{state}\t{token.created_at:%Y-%m-%d}\t{token.name}")
    return 0
