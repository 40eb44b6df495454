"""``liaotian user …``, ``liaotian token …`` and ``liaotian audit``: accounts, managed from
the server's shell.

Every change writes an audit entry with the actor ``cli`` (:data:`~liaotian.store.audit.CLI_ACTOR`).
The servers close the sockets of a disabled account or a revoked token within
``credential_check_interval`` (their sweep sees the credentials dead).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import math
import sys

from liaotian.errors import InvalidFrame
from liaotian.settings import LIMIT_NAMES, Settings
from liaotian.store import create_engine
from liaotian.store.accounts import ACTIVE, ADMIN, DISABLED, PENDING, Accounts
from liaotian.store.audit import CLI_ACTOR, AuditLog
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


def parse_limits(pairs: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` words as own limits (VALUE a number, or ``none`` to lift the limit);
    InvalidFrame in plain words for a malformed one. The store checks names and bounds."""
    limits: dict[str, object] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise InvalidFrame(
                f"{pair!r} is not NAME=VALUE (the limits are {', '.join(LIMIT_NAMES)})"
            )
        limits[name] = None if text.strip().lower() == "none" else _number(name, text)
    return limits


def _number(name: str, text: str) -> int | float:
    wrong = InvalidFrame(f"the limit {name} is a number, or none to lift it, not {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise wrong from None
    if not math.isfinite(value):
        raise wrong
    return int(value) if value.is_integer() else value


async def _run(args: argparse.Namespace, settings: Settings, password: str | None) -> int:
    engine = create_engine(settings.database_url)
    accounts = Accounts(engine)
    audit = AuditLog(engine)
    try:
        if args.command == "user":
            return await _user(args, accounts, audit, password)
        if args.command == "audit":
            return await _audit(args, audit)
        return await _token(args, accounts, audit)
    finally:
        await engine.dispose()


async def _user(
    args: argparse.Namespace, accounts: Accounts, audit: AuditLog, password: str | None
) -> int:
    if args.action == "add":
        assert password is not None
        role = await accounts.add_user(args.name, password, role=ADMIN if args.admin else None)
        await audit.record(CLI_ACTOR, "user.create", args.name, {"role": role, "limits": {}})
        print(f"user {args.name} created ({role})")
    elif args.action == "passwd":
        assert password is not None
        await accounts.set_password(args.name, password)
        await audit.record(CLI_ACTOR, "user.password", args.name)
        print(f"password of {args.name} changed; its sessions are ended")
    elif args.action == "remove":
        owner = await accounts.remove_user(args.name)
        await audit.record(CLI_ACTOR, "user.remove", args.name)
        print(
            f"user {args.name} removed; its conversations stay in the database under the "
            f"owner {owner}, which no other user will get"
        )
    elif args.action == "role":
        before, after = await accounts.update_user(args.name, role=args.role)
        if before.role != after.role:
            await audit.record(
                CLI_ACTOR, "user.role", args.name, {"from": before.role, "to": after.role}
            )
        print(f"{args.name} is now {after.role}")
    elif args.action in ("disable", "enable"):
        status = DISABLED if args.action == "disable" else ACTIVE
        await _set_status(args.name, status, accounts, audit)
    elif args.action == "limits":
        await _limits(args, accounts, audit)
    else:
        for user in await accounts.users():
            print(f"{user.name}\t{user.role}\t{user.status}\t{user.created_at:%Y-%m-%d %H:%M}")
    return 0


async def _set_status(name: str, status: str, accounts: Accounts, audit: AuditLog) -> None:
    before, after = await accounts.update_user(name, status=status)
    if before.status == after.status:
        print(f"{name} is {after.status} already")
        return
    if status == DISABLED:
        await audit.record(CLI_ACTOR, "user.disable", name)
        print(f"{name} disabled: its sessions and tokens stop working, its sockets close")
    else:
        approved = before.status == PENDING
        await audit.record(CLI_ACTOR, "user.approve" if approved else "user.enable", name)
        print(f"{name} {'approved' if approved else 'enabled'}")


async def _limits(args: argparse.Namespace, accounts: Accounts, audit: AuditLog) -> None:
    if args.clear == bool(args.pairs):
        raise InvalidFrame("give NAME=VALUE limits, or --clear (not both)")
    limits = {} if args.clear else parse_limits(args.pairs)
    if not args.clear:
        limits = {**(await accounts.user(args.name)).limits, **limits}
    before, after = await accounts.update_user(args.name, limits=limits)
    await audit.record(
        CLI_ACTOR, "user.limits", args.name, {"from": before.limits, "to": after.limits}
    )
    shown = ", ".join(
        f"{name}={'none' if value is None else value}" for name, value in after.limits.items()
    )
    print(f"own limits of {args.name}: {shown or 'none (the role limits apply)'}")


async def _audit(args: argparse.Namespace, audit: AuditLog) -> int:
    for entry in await audit.entries(limit=args.limit, before=args.before):
        details = json.dumps(entry.details, ensure_ascii=False) if entry.details else ""
        when = f"{entry.at:%Y-%m-%d %H:%M:%S}"
        print(f"{entry.id}\t{when}\t{entry.actor}\t{entry.action}\t{entry.target}\t{details}")
    return 0


async def _token(args: argparse.Namespace, accounts: Accounts, audit: AuditLog) -> int:
    if args.action == "create":
        token_id, secret = await accounts.create_token(args.name, args.label)
        await audit.record(
            CLI_ACTOR, "token.create", args.name, {"id": token_id, "name": args.label}
        )
        print(secret)
        print(
            f"token {token_id} for {args.name}: shown once, keep it secret; send it as "
            "'Authorization: Bearer …' (liaotian chat --token, LIAOTIAN_TOKEN)",
            file=sys.stderr,
        )
    elif args.action == "revoke":
        token = await accounts.revoke_token(args.id)
        await audit.record(
            CLI_ACTOR, "token.revoke", token.user, {"id": token.id, "name": token.name}
        )
        print(f"token {args.id} revoked")
    else:
        for token in await accounts.list_tokens(args.name):
            state = "revoked" if token.revoked else "active"
            print(f"{token.id}\t{token.user}\t{state}\t{token.created_at:%Y-%m-%d}\t{token.name}")
    return 0
