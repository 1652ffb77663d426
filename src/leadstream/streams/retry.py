"""Bounded retries of one message's processing, then a dead letter on ``rejects``.

Bad input is expected and handled where it is read (a ``RowError`` becomes a reject with its
reason). This is for the rest: an exception nobody foresaw while processing one message.
It is retried :data:`ATTEMPTS` times in all, then the message is given up as a reject with
reason ``internal_error`` naming the error's type, and the partition moves on.

Except a fault of the environment (:func:`environment_cause`: the store, the disk, the
network or Kafka failed): that is never the message's fault, so it is neither retried here
nor dead-lettered. It is raised as :class:`EnvironmentFault`, and the caller stops without
acknowledging the message (the worker exits and is restarted; :mod:`leadstream.lifecycle`). The log
says where it happened (type, file and line); the exception's message and stack, which may
quote a tenant's data, are logged at DEBUG only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from leadstream.domain.ingest import Rejected
from leadstream.domain.rejects import Reason
from leadstream.lifecycle import environment_cause

__all__ = [
    "ATTEMPTS",
    "BACKOFF_SECONDS",
    "EnvironmentFault",
    "gave_up",
    "with_retries",
    "with_retries_async",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 3
# The pause after the first and the second failed attempt.
BACKOFF_SECONDS = (0.05, 0.25)


class EnvironmentFault(Exception):
    """Processing a message failed because its environment did: stop, do not skip it."""


def _where(exc: BaseException) -> str:
    """``TypeName at file.py:line`` of the innermost frame: enough to find the bug,
    without the message (which may carry a phone number)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


def gave_up(exc: BaseException, raw: Any) -> Rejected:
    """The dead letter of a message whose every attempt raised ``exc``."""
    return Rejected(
        Reason.INTERNAL_ERROR,
        f"{type(exc).__name__} on each of {ATTEMPTS} attempts; the message was skipped",
        raw=raw,
    )


def _environment(exc: Exception, what: str) -> None:
    """Raise :class:`EnvironmentFault` if ``exc`` is the environment's fault."""
    cause = environment_cause(exc)
    if cause is not None:
        raise EnvironmentFault(f"{what}: {cause}") from exc


def _failed(what: str, attempt: int, exc: Exception) -> None:
    last = attempt == ATTEMPTS
    logger.log(
        logging.ERROR if last else logging.WARNING,
        "%s: %s (attempt %d of %d)%s",
        what,
        _where(exc),
        attempt,
        ATTEMPTS,
        "; dead-lettered to rejects" if last else "",
    )
    logger.debug("%s: attempt %d failed", what, attempt, exc_info=exc)


def with_retries(work: Callable[[], T], *, raw: Any, what: str) -> T | Rejected:
    """``work()``, or the dead letter once it raised on every attempt (blocking pauses)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes, all is logged
            _environment(exc, what)
            _failed(what, attempt, exc)
            if attempt == ATTEMPTS:
                return gave_up(exc, raw)
            time.sleep(BACKOFF_SECONDS[attempt - 1])
    raise AssertionError("unreachable")


async def with_retries_async(
    work: Callable[[], Awaitable[None]], *, raw: Any, what: str
) -> Rejected | None:
    """Await ``work()``; None when an attempt succeeded, else the dead letter."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await work()
            return None
        except Exception as exc:  # noqa: BLE001 - the point: nothing escapes, all is logged
            _environment(exc, what)
            _failed(what, attempt, exc)
            if attempt == ATTEMPTS:
                return gave_up(exc, raw)
            await asyncio.sleep(BACKOFF_SECONDS[attempt - 1])
    raise AssertionError("unreachable")
