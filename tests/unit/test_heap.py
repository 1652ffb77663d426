"""heap: freed memory given back to the system, when the process grew."""

from __future__ import annotations

import subprocess
import sys

import pytest

from leadstream import heap

CHILD = """
from leadstream import heap

# 300 MB of malloc'd blocks (bytes of 1,000: beyond Python's small-object allocator), a
# survivor allocated after them at the top of the heap: freed, they stay with malloc.
trimmer = heap.trimmer()
junk = [bytes(1000) for _ in range(300_000)]
survivors = [bytes(1000) for _ in range(4_000)]
del junk
freed = heap.resident_bytes() >> 20
due = trimmer.due()
trimmer.trim()
print(freed, heap.resident_bytes() >> 20, due, trimmer.due())
"""


@pytest.mark.skipif(heap.trimmer() is None, reason="the C library has no malloc_trim (not glibc)")
def test_the_trim_gives_freed_heap_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=120
    )
    freed, trimmed, due_before, due_after = out.stdout.split()
    assert int(freed) - int(trimmed) >= 200, out.stdout
    assert (due_before, due_after) == ("True", "False")


def test_a_trim_is_due_only_after_the_process_grew_since_the_last() -> None:
    resident = [1000 << 20]
    calls: list[int] = []
    trimmer = heap.Trimmer(calls.append, lambda: resident[0], growth=64 << 20)
    assert not trimmer.due()
    resident[0] += 63 << 20
    assert not trimmer.due()
    resident[0] += 1 << 20
    assert trimmer.due()
    trimmer.trim()
    assert calls == [0]
    assert not trimmer.due()  # measured from what the trim left
    resident[0] += 64 << 20
    assert trimmer.due()
