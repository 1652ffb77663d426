"""How a worker process ends when it must: a fault of its environment, or a stop that
overruns its deadline.

* An environment fault (the state store or the disk fails, Kafka gives up on a write) is
  never the message's fault, so it is never a reject and no offset may be committed past
  the message it interrupted. :meth:`Lifecycle.fault` turns the worker not ready, logs one
  line naming the cause, and ends the process at once with :data:`EXIT_FAULT`, for its
  supervisor to start it again. At once, and not by a graceful stop: a graceful stop
  lets faust acknowledge the message being processed (its stream acks in a ``finally``)
  and commit its offset. What was applied before the fault is replayed after the restart
  and applies idempotently, as after a SIGKILL (the protocol in
  :mod:`leadstream.materialize.materializer`).
* SIGTERM (and SIGINT): the graceful stop gets ``LEADSTREAM_SHUTDOWN_SECONDS``; then the
  process exits with :data:`EXIT_STOP_OVERRUN`, whatever it was still waiting for (with
  every broker gone, aiokafka's consumer stop alone waited for minutes).

Before the process exits this way, its child processes are killed (the input router
commits only what it delivered, so killing it loses nothing).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from aiokafka.errors import KafkaError as AioKafkaError
from confluent_kafka import KafkaException

from leadstream.state.port import StoreError

__all__ = ["EXIT_FAULT", "EXIT_STOP_OVERRUN", "Lifecycle", "environment_cause"]

logger = logging.getLogger(__name__)

# sysexits.h EX_TEMPFAIL: a temporary failure, to be retried (restarted).
EXIT_FAULT = 75
# sysexits.h EX_SOFTWARE: the stop did not finish in time.
EXIT_STOP_OVERRUN = 70


# OSErrors that say the machine is at fault, whatever the message: the disk (full, over
# quota, failing, read-only, a file over the size limit) and the process's own limits.
# Others (a missing file, a directory where a file was expected) can follow from what a
# message named, and are left to the retries and the dead letter.
_ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.EMFILE, errno.ENFILE}
)


def environment_cause(exc: BaseException, *, network: bool = True) -> str | None:
    """What failed, when ``exc`` is a fault of the environment rather than of the message:
    the state store, the disk, and with ``network`` the network (a connection or a wait
    that failed) or a Kafka client that gave up. None for anything else. (An HTTP view
    asks without ``network``: a client that went away is not the machine's fault.)"""
    if isinstance(exc, StoreError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        return f"{type(exc).__name__}: {exc}"
    if not network:
        return None
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, AioKafkaError | KafkaException):
        return f"Kafka: {type(exc).__name__}: {exc}"
    return None


class Lifecycle:
    """The worker process's way out. ``exit`` is ``os._exit`` (tests pass their own)."""

    def __init__(
        self, shutdown_seconds: float, *, exit: Callable[[int], object] = os._exit
    ) -> None:
        self._shutdown_seconds = shutdown_seconds
        self._exit = exit
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._stopping = False
        self._children: list[Callable[[], int | None]] = []

    @property
    def fault_cause(self) -> str | None:
        """Why the worker is going down, once an environment fault was reported."""
        return self._fault

    def healthy(self) -> bool:
        """No environment fault so far (readiness needs this)."""
        return self._fault is None

    def add_child(self, pid: Callable[[], int | None]) -> None:
        """A child process (its current pid, or None) to kill before exiting this way."""
        self._children.append(pid)

    def fault(self, cause: str) -> None:
        """An environment fault: not ready from now on, one log line, and the process
        ends with :data:`EXIT_FAULT` from a thread of its own (so that a caller on the
        event loop never returns to acknowledge the message it was processing). Only the
        first report counts."""
        with self._lock:
            if self._fault is not None:
                return
            self._fault = cause
        logger.critical(
            "environment fault, stopping: %s; nothing was rejected or committed past it,"
            " and the worker exits with %d for its supervisor to restart it",
            cause,
            EXIT_FAULT,
        )
        threading.Thread(
            target=self._end, args=(EXIT_FAULT,), name="fault-exit", daemon=True
        ).start()

    def stop_requested(self) -> None:
        """A stop was asked for (SIGTERM, SIGINT): exit with :data:`EXIT_STOP_OVERRUN` if
        the graceful stop has not ended the process within the deadline."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        timer = threading.Timer(self._shutdown_seconds, self._overrun)
        timer.daemon = True
        timer.name = "shutdown-deadline"
        timer.start()

    def _overrun(self) -> None:
        logger.error(
            "the stop did not finish within %.0f s (LEADSTREAM_SHUTDOWN_SECONDS); exiting",
            self._shutdown_seconds,
        )
        self._end(EXIT_STOP_OVERRUN)

    def _end(self, code: int) -> None:
        for pid_of in self._children:
            pid = pid_of()
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass  # already gone
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # noqa: BLE001, S110 - exiting regardless
                pass
        sys.stdout.flush()
        sys.stderr.flush()
        self._exit(code)
