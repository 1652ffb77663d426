"""Tests marked ``alone`` run while no other test of the session does.

Under pytest-xdist every test of a run takes one lock file shared, and an ``alone`` test
takes it exclusively, so it starts once the tests under way in the other processes end and
none starts before it ends. It is for a claim about the worker that the machine's other
load would blur (a health probe's answer time during a flood, on two cores shared by three
test processes). A second file is the turnstile: whoever waits for the lock holds it, so a
test waiting to run alone is not kept waiting by the tests that keep starting meanwhile.
Without xdist there is nothing to wait for. A process that dies lets go of its locks.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["turn"]


@contextmanager
def turn(run_id: str | None, *, alone: bool) -> Iterator[None]:
    """Hold the session's room for one test: shared, or alone."""
    if run_id is None:
        yield
        return
    base = Path(tempfile.gettempdir()) / f"leadstream-tests-{run_id}"
    with _opened(base.with_suffix(".gate")) as gate, _opened(base.with_suffix(".room")) as room:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)


@contextmanager
def _opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
