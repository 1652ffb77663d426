"""How every leadstream process logs: text lines, or one JSON object per line.

:func:`configure_logging` sets up the root logger of a process (the CLI, the lead-events
router child). :func:`logging_config` is the same set-up as a ``logging.config.dictConfig``
dictionary: the worker hands it to faust, whose own logging set-up (mode's) would otherwise
replace these handlers with its colored ones.

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; the
``organization``, ``send_id`` and ``request_id`` a call passes as ``extra={...}``; and an
exception, with its stack, as the one string ``exception``.

No log line may carry a phone number. The log calls name organizations, sends, partitions
and counts, never a lead; as a defence, whatever looks like an E.164 number (``+`` and 7 or
more digits, also with separators or URL-encoded) is replaced by ``<phone>`` in every line,
text or JSON, exceptions included.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

__all__ = [
    "FIELDS",
    "LOG_FORMATS",
    "PHONE_MASK",
    "TEXT_FORMAT",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_fields",
    "logging_config",
    "scrub",
]

logger = logging.getLogger(__name__)

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a log call may pass as ``extra={...}`` that a JSON line shows as fields of its own.
FIELDS: Final = ("organization", "send_id", "request_id")

# "+" (or "%2B" in a URL), a digit, then at least 6 more, each after at most two
# separators: "+15551234567", "+1 (555) 123-4567", "%2B15551234567".
_PHONE = re.compile(r"(?:\+|%2[bB])\d(?:[\s().-]{0,2}\d){6,}")
PHONE_MASK: Final = "<phone>"


def log_fields(
    *,
    organization: str | None = None,
    send_id: str | None = None,
    request_id: str | None = None,
) -> dict[str, str]:
    """The ``extra={...}`` of a log call about one organization, one send of it, or one
    HTTP request."""
    fields = {"organization": organization, "send_id": send_id, "request_id": request_id}
    return {k: v for k, v in fields.items() if v is not None}


def scrub(text: str) -> str:
    """``text`` with every E.164-looking number replaced by ``<phone>``."""
    return _PHONE.sub(PHONE_MASK, text)


def _message(record: logging.LogRecord) -> str:
    """The record's message; a call whose arguments do not fit its format still gives a
    line (logging would print a traceback to stderr instead)."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a log call must never break the log
        return f"{record.msg!s} (arguments that do not fit the format: {len(record.args or ())})"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines (local time, as before), phone numbers scrubbed."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        try:
            return scrub(super().format(record))
        except Exception:  # noqa: BLE001 - see _message
            return scrub(f"{self.formatTime(record)} {record.levelname} {record.name}: ") + scrub(
                _message(record)
            )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(_message(record)),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, int) else scrub(str(value))
        problem = []
        if record.exc_info:
            problem.append(self.formatException(record.exc_info))
        if record.stack_info:
            problem.append(self.formatStack(record.stack_info))
        if problem:
            line["exception"] = scrub("\n".join(problem))
        return json.dumps(line, default=str)


def _level(level: str) -> str:
    name = level.strip().upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"unknown log level {level!r}")
    return name


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """The ``dictConfig`` of a process's logging: one handler, on stderr, at ``level``
    (a level name, any case), with the formatter of ``fmt`` ("text" or "json");
    ``ValueError`` for anything else. Loggers made before it stay enabled."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(LOG_FORMATS)}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "leadstream": {"()": JsonFormatter if fmt == "json" else TextFormatter},
        },
        "handlers": {
            "leadstream": {
                "class": "logging.StreamHandler",
                "formatter": "leadstream",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"level": _level(level), "handlers": ["leadstream"]},
    }


def configure_logging(level: str, fmt: str) -> None:
    """Set up this process's logging (see :func:`logging_config`). Warnings go through it
    too, and with "json" so do uncaught exceptions, which Python would otherwise print as
    a bare traceback."""
    logging.config.dictConfig(logging_config(level, fmt))
    logging.captureWarnings(True)
    if fmt == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logger.critical("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logger.critical(
        "uncaught %s in thread %s",
        args.exc_type.__name__,
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
