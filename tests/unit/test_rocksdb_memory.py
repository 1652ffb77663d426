"""The worker's RocksDB memory budget (state/rocksdb.py ``Memory``): every partition's DB on
one block cache, the memtables charged to it, on REAL rocksdict DBs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rocksdict import Rdict

from leadstream.state.rocksdb import BoundedOptions, Memory

BUDGET = 8 << 20
VALUE = 16 << 10


def flushes_settled(dbs: list[Rdict], timeout: float = 60.0) -> None:
    """Until no DB has a memtable waiting to be flushed or being flushed. The write buffer
    manager's limit is a soft one: it asks for flushes, which run in the background, so
    right after a burst of writes the memtables may be over it for as long as the flushes
    take (12.4 MiB of 8 seen with three test processes on two cores). What the budget
    bounds is what stays once they ran; without it nothing would be flushed at all."""
    deadline = time.monotonic() + timeout
    while any(
        (db.property_int_value("rocksdb.mem-table-flush-pending") or 0)
        + (db.property_int_value("rocksdb.num-running-flushes") or 0)
        for db in dbs
    ):
        assert time.monotonic() < deadline, "flushes still pending"
        time.sleep(0.05)


def test_partitions_share_one_bounded_cache_and_their_memtables_are_charged_to_it(
    tmp_path: Path,
) -> None:
    memory = Memory(BUDGET, partitions=4)
    options = BoundedOptions(memory)
    dbs = [options.open(tmp_path / f"p{p}") for p in range(4)]
    try:
        written: dict[bytes, bytes] = {}
        # 24 MiB of values that do not compress, three times the budget: under faust's
        # defaults (a 64 MiB memtable per DB) all of it would still sit in memtables.
        for i in range(3 * BUDGET // VALUE):
            key, value = i.to_bytes(4, "big"), os.urandom(VALUE)
            dbs[i % 4].put(key, value)
            written[key] = value
        flushes_settled(dbs)
        usage = memory.usage(dbs)
        assert usage["memtables"] <= BUDGET, usage
        for i, (key, value) in enumerate(written.items()):
            assert bytes(dbs[i % 4][key]) == value
        flushes_settled(dbs)
        usage = memory.usage(dbs)
        # One cache: what the four DBs read (and their memtables' share) fits the budget,
        # give or take one memtable: the limit is RocksDB's soft one, and a memtable being
        # flushed in the background keeps its charge while reads fill the cache (9.6 MiB of
        # 8 seen with three test processes on two cores).
        assert 0 < usage["block_cache"] <= BUDGET + memory.memtable_bytes, usage
        assert usage["memtables"] <= BUDGET, usage
    finally:
        for db in dbs:
            db.close()


def test_a_memtable_is_the_partitions_share_of_half_the_budget() -> None:
    assert Memory(512 << 20, partitions=8).memtable_bytes == 32 << 20
    assert Memory(4 << 30, partitions=8).memtable_bytes == 64 << 20  # never above faust's
    assert Memory(32 << 20, partitions=64).memtable_bytes == 4 << 20  # nor below 4 MiB
