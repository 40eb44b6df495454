"""Structured logs: one line per event, ``key=value`` fields, ids instead of content.

Log calls pass their fields as ``extra={"fields": {...}}``; the connection and reply being
served are added from context variables, so a line can be traced to both. Message text is
never logged; neither are keys (they never reach a log call).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import orjson

connection_id: ContextVar[str | None] = ContextVar("liaotian_connection", default=None)
reply_id: ContextVar[str | None] = ContextVar("liaotian_reply", default=None)


_make_record = logging.getLogRecordFactory()


def _stamped_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """A log record carrying the connection and reply ids of the context it was made in
    (a handler may format it later, elsewhere)."""
    record = _make_record(*args, **kwargs)
    record.conn = connection_id.get()
    record.reply = reply_id.get()
    return record


if getattr(_make_record, "__name__", "") != "_stamped_record":
    logging.setLogRecordFactory(_stamped_record)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("reply ended", extra=fields(status=...))``."""
    return {"fields": values}


class StructuredFormatter(logging.Formatter):
    """``time level logger message k=v …`` (text) or one JSON object per line (json)."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        values: dict[str, Any] = {}
        if (connection := getattr(record, "conn", None)) is not None:
            values["conn"] = connection
        if (reply := getattr(record, "reply", None)) is not None:
            values["reply"] = reply
        values.update(getattr(record, "fields", {}))
        if record.exc_info:
            values["error"] = self.formatException(record.exc_info)
        if self.json_lines:
            line = {
                "time": self.formatTime(record),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
                **values,
            }
            return orjson.dumps(line, default=str).decode()
        extra = " ".join(f"{key}={_text(value)}" for key, value in values.items())
        text = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        return f"{text} {extra}" if extra else text


def _text(value: Any) -> str:
    text = str(value)
    return orjson.dumps(text).decode() if (" " in text or not text) else text


def configure(level: str, json_lines: bool) -> None:
    """Send every log line to stderr in the structured format."""
    handler = logging.StreamHandler()
    handler.setFormatter(StructuredFormatter(json_lines))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
