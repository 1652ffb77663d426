"""Stores for unit tests: the in-memory store with the partitions' indexes, as workers
run the RocksDB one."""

from __future__ import annotations

from leadstream.index import durable
from leadstream.index.partition import OptTypes
from leadstream.index.table import IndexedStore
from leadstream.state.memory import MemoryStore
from leadstream.state.port import PartitionStore
from leadstream.wire.records import RECIPIENT_ENTRIES

__all__ = ["assert_indexes_rebuild_equal", "indexed_memory"]


def indexed_memory(
    opt_out: str = "opted_out", opt_in: str = "opted_in", inner: PartitionStore | None = None
) -> IndexedStore:
    """An indexed store over ``inner`` (by default a new :class:`MemoryStore`)."""
    return IndexedStore(
        inner if inner is not None else MemoryStore(), OptTypes(opt_out, opt_in), RECIPIENT_ENTRIES
    )


def assert_indexes_rebuild_equal(store: IndexedStore, partitions: list[int] | None = None) -> None:
    """Every partition's index, as kept current by the writes so far, equals the index a
    restart reads back from what was kept on disk (snapshot and journal), and the index a
    build from the same keys makes (what a restore, or a restart after a crash, builds)."""
    inner = store._inner
    if partitions is None:
        assert isinstance(inner, MemoryStore)
        partitions = inner.partitions()
    built = IndexedStore(inner, store._opt, store._codec, hash_key=store._hash_key, keep=False)
    for partition in partitions:
        kept = store.index(partition).snapshot()
        # Read back, not built: kept current, the index on disk agrees with the keys.
        loaded = durable.load(inner, partition, store._opt, store._codec, hash_key=store._hash_key)
        assert loaded is not None, partition
        assert kept == loaded[0].snapshot(), partition
        assert kept == built.index(partition).snapshot(), partition
