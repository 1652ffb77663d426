"""Freed memory given back to the system.

glibc's malloc keeps what the worker frees in its heaps unless the free space is at the
top of one: a worker that ingested a few million events (each batch's objects freed while
the index and RocksDB's blocks, allocated meanwhile, stay) held a quarter of its resident
memory as free heap (903 MiB resident, 665 MiB after ``malloc_trim``, at 1,000,000 leads).
``malloc_trim`` returns the free pages inside the heaps too.

A trim walks every heap, each locked meanwhile (~0.1 s for 3 GiB, on a thread: ctypes lets
go of the GIL, but the event loop's own mallocs wait for the lock), so it runs only when
the resident memory grew by :data:`GROWTH_BYTES` since the last one: while the worker
ingests or loads, not while it serves a steady load.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable

__all__ = ["GROWTH_BYTES", "Trimmer", "resident_bytes", "trimmer"]

logger = logging.getLogger(__name__)

GROWTH_BYTES = 64 << 20

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


class Trimmer:
    """Gives the free pages of the malloc heaps back when the process grew since the last
    time (:meth:`due`, cheap, on the loop; :meth:`trim`, on a thread)."""

    def __init__(
        self,
        malloc_trim: Callable[[int], object],
        resident: Callable[[], int] = resident_bytes,
        growth: int = GROWTH_BYTES,
    ) -> None:
        self._malloc_trim = malloc_trim
        self._resident = resident
        self._growth = growth
        self._after = resident()

    def due(self) -> bool:
        return self._resident() >= self._after + self._growth

    def trim(self) -> None:
        started, before = time.perf_counter(), self._resident()
        self._malloc_trim(0)
        self._after = self._resident()
        logger.debug(
            "malloc heaps trimmed in %.3f s: %d -> %d MiB resident",
            time.perf_counter() - started,
            before >> 20,
            self._after >> 20,
        )


def trimmer() -> Trimmer | None:
    """A :class:`Trimmer` of this process, or None when the C library has no
    ``malloc_trim`` (not glibc) or there is no /proc."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
        malloc_trim.argtypes = [ctypes.c_size_t]
        malloc_trim.restype = ctypes.c_int
        return Trimmer(malloc_trim)
    except (AttributeError, OSError):
        return None
