"""The ``liaotian`` command: ``serve``, ``migrate``, ``user``, ``token``, ``audit``, ``usage``,
``chat``, ``models``, ``export``, ``import``, ``share``, ``search``.

Errors the user can fix (bad settings, an unreachable server) print one clear line, in
plain words (:mod:`liaotian.cli_words`), and exit with status 2; they never show a
traceback. Every sub-command and argument has a help text (``liaotian CMD --help``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from liaotian import __version__, logs
from liaotian.cli_words import describe
from liaotian.errors import LiaotianError
from liaotian.settings import Settings, load_settings

log = logging.getLogger("liaotian.serve")


CONFIG_HELP = "TOML settings file (see docs/configuration.md; default: LIAOTIAN_* variables)"


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse.ArgumentParser:
    """A sub-command whose one-line ``text`` is both its help and its description."""
    return commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")


ID_MAX = 2**62
"""The largest id a command takes (ids are 64-bit integers in the database)."""


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (argparse says so in one
    line otherwise, where the database would have raised)."""

    def whole(value: str) -> int:
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a whole number from {low} to {high}"
            )
        return int(value)

    return whole


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liaotian",
        description="A chat server for large language models over WebSocket, and its clients.",
    )
    parser.add_argument("--version", action="version", version=f"liaotian {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, title="commands", metavar="COMMAND"
    )

    serve = _command(commands, "serve", "run the server (the page at /, the WebSocket at /ws)")
    serve.add_argument("--config", help=CONFIG_HELP)
    serve.add_argument("--host", help="address to listen on (LIAOTIAN_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (LIAOTIAN_PORT)")

    migrate = _command(commands, "migrate", "bring the database schema up to date")
    migrate.add_argument("--config", help=CONFIG_HELP)

    user = _command(commands, "user", "manage user accounts (run on the server's machine)")
    user.add_argument("--config", help=CONFIG_HELP)
    user_actions = user.add_subparsers(
        dest="action", required=True, title="actions", metavar="ACTION"
    )
    for action, text in (
        ("add", "create a user (asks for the password twice)"),
        ("passwd", "change a user's password (ends its sessions)"),
        ("remove", "delete a user and its sessions and tokens"),
    ):
        sub = _command(user_actions, action, text)
        sub.add_argument("name", help="the user's name")
        if action != "remove":
            sub.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from the first line of stdin (for scripts)",
            )
        if action == "add":
            sub.add_argument(
                "--admin", action="store_true", help="make it an admin (the first user is one)"
            )
    role = _command(user_actions, "role", "make a user an admin, or an admin a user")
    role.add_argument("name", help="the user's name")
    role.add_argument("role", choices=("admin", "user"), help="the new role: admin or user")
    for action, text in (
        ("disable", "disable a user: its sessions and tokens stop working, its sockets close"),
        ("enable", "enable a disabled user, or approve one that signed up"),
    ):
        _command(user_actions, action, text).add_argument("name", help="the user's name")
    limits = _command(
        user_actions, "limits", "set a user's own limits over its role's (docs/administration.md)"
    )
    limits.add_argument("name", help="the user's name")
    limits.add_argument(
        "pairs",
        nargs="*",
        metavar="NAME=VALUE",
        help="a limit (tokens_per_day, messages_per_day, cost_per_month, concurrent_replies) "
        "and a number, or none to lift it for this user; the user's other own limits stay",
    )
    limits.add_argument(
        "--clear", action="store_true", help="drop every own limit: the role's apply again"
    )
    _command(user_actions, "list", "list the users (name, role, status, created)")

    token = _command(commands, "token", "manage API tokens (for scripts and the terminal client)")
    token.add_argument("--config", help=CONFIG_HELP)
    token_actions = token.add_subparsers(
        dest="action", required=True, title="actions", metavar="ACTION"
    )
    create = _command(token_actions, "create", "create a token for a user (shown once)")
    create.add_argument("name", help="the user the token signs in as")
    create.add_argument("--label", default="", help="what the token is for")
    listing = _command(token_actions, "list", "list tokens (id, user, state, created, label)")
    listing.add_argument("name", nargs="?", help="only this user's tokens")
    revoke = _command(token_actions, "revoke", "revoke a token (closes its connections)")
    revoke.add_argument(
        "id", type=_whole(1, ID_MAX), help="the token's id (liaotian token list shows it)"
    )

    audit = _command(commands, "audit", "show the audit log of admin actions, newest first")
    audit.add_argument("--config", help=CONFIG_HELP)
    audit.add_argument(
        "--limit",
        type=_whole(1, 1000),
        default=100,
        help="how many entries to show, 1 to 1000 (default 100)",
    )
    audit.add_argument(
        "--before", type=_whole(1, ID_MAX), help="only entries older than this entry id"
    )

    from liaotian.chat_cli import add_chat_parser

    add_chat_parser(commands)
    from liaotian.transfer_cli import add_transfer_parsers

    add_transfer_parsers(commands)

    from liaotian.share_cli import add_share_parser

    add_share_parser(commands)

    from liaotian.search_cli import add_search_parser

    add_search_parser(commands)

    from liaotian.usage_cli import add_usage_parser

    add_usage_parser(commands, CONFIG_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "migrate":
            return migrate(args)
        if args.command in ("user", "token", "audit"):
            from liaotian.accounts_cli import run_accounts

            return run_accounts(args, _settings(args))
        if args.command == "usage":
            from liaotian.usage_cli import run_usage

            return run_usage(args, _settings(args))
        if args.command in ("export", "import"):
            from liaotian.transfer_cli import run_export, run_import

            return run_export(args) if args.command == "export" else run_import(args)
        if args.command == "share":
            from liaotian.share_cli import run_share

            return run_share(args)
        if args.command == "search":
            from liaotian.search_cli import run_search

            return run_search(args)
        from liaotian.chat_cli import run_chat, run_models

        return run_models(args) if args.command == "models" else run_chat(args)
    except LiaotianError as error:
        print(f"liaotian: {describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
        )
        if value is not None
    }
    return load_settings(args.config, **overrides)


def serve(args: argparse.Namespace) -> int:
    from liaotian.transport import check_uvicorn_version

    check_uvicorn_version()  # before anything starts (build_server checks it again)

    from liaotian.app import create_app
    from liaotian.server import RESERVED_FILES, build_server, raise_open_file_limit
    from liaotian.transport import Drain

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format == "json")
    before, limit = raise_open_file_limit()
    if limit >= 0:
        log.info(
            "open-file limit: %d%s", limit, f" (raised from {before})" if limit != before else ""
        )
        if limit < settings.max_connections + RESERVED_FILES:
            log.warning(
                "the open-file limit (%d) is below max_connections (%d) + %d: connections "
                "past it fail; raise the hard limit (ulimit -Hn, LimitNOFILE= under systemd; "
                "see docs/deployment.md)",
                limit,
                settings.max_connections,
                RESERVED_FILES,
            )
    drain = Drain(settings.shutdown_grace)
    server = build_server(create_app(settings, drain), settings, drain)
    server.run()
    return 0 if server.started else 1


def migrate(args: argparse.Namespace) -> int:
    from liaotian.store.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    print(f"database schema is up to date ({settings.database_url.split('://')[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
