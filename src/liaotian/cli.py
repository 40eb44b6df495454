"""The ``liaotian`` command: ``serve``, ``migrate``, ``chat``.

Errors the user can fix (bad settings, an unreachable server) print one clear line and
exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from liaotian import __version__, logs
from liaotian.errors import ConfigError, LiaotianError
from liaotian.settings import Settings, load_settings

log = logging.getLogger("liaotian.serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liaotian", description="LLM chat server over WebSocket")
    parser.add_argument("--version", action="version", version=f"liaotian {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    serve.add_argument("--host", help="address to listen on (LIAOTIAN_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (LIAOTIAN_PORT)")

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--config", help="TOML settings file")

    user = commands.add_parser("user", help="manage user accounts")
    user.add_argument("--config", help="TOML settings file")
    user_actions = user.add_subparsers(dest="action", required=True)
    for action, text in (
        ("add", "create a user (asks for the password)"),
        ("passwd", "change a user's password (ends its sessions)"),
        ("remove", "delete a user and its sessions and tokens"),
    ):
        sub = user_actions.add_parser(action, help=text)
        sub.add_argument("name")
        if action != "remove":
            sub.add_argument(
                "--password-stdin", action="store_true", help="read the password from stdin"
            )
    user_actions.add_parser("list", help="list the users")

    token = commands.add_parser("token", help="manage API tokens (for scripts and the CLI)")
    token.add_argument("--config", help="TOML settings file")
    token_actions = token.add_subparsers(dest="action", required=True)
    create = token_actions.add_parser("create", help="create a token for a user (shown once)")
    create.add_argument("name", help="the user")
    create.add_argument("--label", default="", help="what the token is for")
    listing = token_actions.add_parser("list", help="list tokens")
    listing.add_argument("name", nargs="?", help="only this user's")
    revoke = token_actions.add_parser("revoke", help="revoke a token (closes its sockets)")
    revoke.add_argument("id", type=int)

    from liaotian.chat_cli import add_chat_parser

    add_chat_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "migrate":
            return migrate(args)
        if args.command in ("user", "token"):
            from liaotian.accounts_cli import run_accounts

            return run_accounts(args, _settings(args))
        from liaotian.chat_cli import run_chat

        return run_chat(args)
    except ConfigError as error:
        print(f"liaotian: {error.message}", file=sys.stderr)
        return 2
    except LiaotianError as error:
        print(f"liaotian: {error.message} [{error.code}]", file=sys.stderr)
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
