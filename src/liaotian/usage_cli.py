"""``liaotian usage [--days N] [--by day|user|model]``: totals from the ledger, read from
the server's database (run on the server's machine, like ``liaotian user``)."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from liaotian.settings import Settings
from liaotian.store import create_engine
from liaotian.store.database import open_database
from liaotian.store.migrate import upgrade
from liaotian.store.usage import Grouping, UsageBook

MAX_DAYS = 366
COLUMNS = ("tokens", "input_tokens", "output_tokens", "replies", "cost")


def add_usage_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], config_help: str
) -> argparse.ArgumentParser:
    """Add the ``usage`` sub-command to the ``liaotian`` parser."""
    text = "totals of tokens, replies and cost from the usage ledger (UTC days)"
    parser = subparsers.add_parser("usage", help=text, description=text[0].upper() + text[1:])
    parser.add_argument("--config", help=config_help)
    parser.add_argument(
        "--days",
        type=_days,
        default=30,
        help=f"the last N days, today included (1-{MAX_DAYS}, default 30)",
    )
    parser.add_argument(
        "--by",
        choices=get_args(Grouping),
        default="day",
        help="one line per day (default), per day and account, or per day and model",
    )
    return parser


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to {MAX_DAYS}")
    return int(value)


def run_usage(args: argparse.Namespace, settings: Settings) -> int:
    """Print the table; 0 (an empty period prints a line saying so)."""
    upgrade(settings.database_url)
    rows = asyncio.run(_totals(settings, args.days, args.by))
    print(format_table(rows, args.by, settings.currency))
    return 0


async def _totals(settings: Settings, days: int, by: Grouping) -> list[dict[str, Any]]:
    engine = create_engine(settings.database_url)
    database = open_database(engine)
    try:
        since = datetime.now(UTC).date() - timedelta(days=days - 1)
        return await UsageBook(database).totals(since, by)
    finally:
        await database.close()
        await engine.dispose()


def format_table(rows: list[dict[str, Any]], by: str, currency: str) -> str:
    """Aligned columns: day, the account or model (with ``by``), then the totals."""
    if not rows:
        return "no usage in this period"
    keys = ["day", *([by] if by != "day" else []), *COLUMNS]
    header = [key if key != "cost" else f"cost ({currency})" for key in keys]
    lines = [header]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            if key == "cost":
                cells.append("-" if value is None else f"{value:.4f}")
            elif value is None:
                cells.append("(open mode)" if key == "user" else "-")
            else:
                cells.append(str(value))
        lines.append(cells)
    widths = [max(len(line[n]) for line in lines) for n in range(len(keys))]
    text_columns = {0, 1} if by != "day" else {0}
    return "\n".join(
        "  ".join(
            cell.ljust(width) if n in text_columns else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
