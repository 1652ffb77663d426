"""The worker's RocksDB adapter with its changelog recorded, for unit tests: a stand-in for
a faust table whose per-partition DBs are real raw-mode rocksdict Rdicts (as faust's
rocksdict driver opens them), what Kafka's log cleaner leaves of a changelog, and the
state a restore writes from it; an in-memory store with its changelog recorded, and a
standby that restores it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict

from leadstream.state import keys
from leadstream.state.memory import MemoryStore
from leadstream.state.rocksdb import BoundedOptions, Memory, restore_mark

__all__ = [
    "ChangelogRecord",
    "FakeTable",
    "LoggedStore",
    "RdictPerPartition",
    "Standby",
    "kafka_compacted",
    "replay",
    "table_maker",
]


@dataclass
class ChangelogRecord:
    partition: int
    key: bytes
    value: bytes | None
    key_serializer: Any
    value_serializer: Any


class RdictPerPartition:
    """What TableStore reaches through ``table.data``: one real raw-mode Rdict per partition,
    opened as the worker opens them (on one :class:`~leadstream.state.rocksdb.Memory`)."""

    def __init__(self, root: Path, memory: Memory | None = None) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}
        self.options = BoundedOptions(memory or Memory(64 << 20, partitions=8))

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = self.options.open(self.root / f"p{partition}")
        return self.dbs[partition]

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@dataclass
class FakeTable:
    data: RdictPerPartition
    changelog: list[ChangelogRecord] = field(default_factory=list)

    def send_changelog(
        self,
        partition: int,
        key: bytes,
        value: bytes | None,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> None:
        record = ChangelogRecord(partition, key, value, key_serializer, value_serializer)
        self.changelog.append(record)


@contextmanager
def table_maker(root: Path) -> Iterator[Callable[[str], FakeTable]]:
    """Tables under ``root`` by name, their DBs closed at the end."""
    made: list[FakeTable] = []

    def make(name: str) -> FakeTable:
        made.append(FakeTable(RdictPerPartition(root / name)))
        return made[-1]

    try:
        yield make
    finally:
        for table in made:
            table.data.close()


def kafka_compacted(records: list[ChangelogRecord]) -> list[ChangelogRecord]:
    """What a compacted changelog topic keeps at worst, once the cleaner ran and the
    tombstones' retention passed: the last record of each key, in offset order,
    tombstones gone."""
    last = {(r.partition, r.key): i for i, r in enumerate(records)}
    return [
        r for i, r in enumerate(records) if last[(r.partition, r.key)] == i and r.value is not None
    ]


def replay(records: list[ChangelogRecord]) -> MemoryStore:
    """The state a restore writes from ``records`` (logged batches expanded)."""
    restored = MemoryStore()
    for r in records:
        for key, value in keys.expand_changelog_record(r.key, r.value):
            if value is None:
                restored.delete(r.partition, key)
            else:
                restored.put(r.partition, key, value)
    return restored


class LoggedStore(MemoryStore):
    """A :class:`MemoryStore` that also records, in order, what a worker's changelog gets
    of each write, as the (partition, key, value) a restore writes (logged batches
    expanded, None deletes; the index's marks are never logged); :meth:`unlogged` writes
    behind it, as a restore does."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, bytes, bytes | None]] = []
        self._logging = True

    @contextmanager
    def unlogged(self) -> Iterator[None]:
        self._logging = False
        try:
            yield
        finally:
            self._logging = True

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        super().put(partition, key, value)
        if self._logging and key not in keys.index_marks():
            self.log.append((partition, key, value))

    def delete(self, partition: int, key: bytes) -> None:
        super().delete(partition, key)
        if self._logging and key not in keys.index_marks():
            self.log.append((partition, key, None))


class Standby:
    """A standby replica of a :class:`LoggedStore`: its log restored into a store of its
    own in batches of any size, as a worker's restore applies them (the index's restore
    mark included, :func:`leadstream.state.rocksdb.restore_mark`)."""

    def __init__(self, source: LoggedStore) -> None:
        self.source = source
        self.store = MemoryStore()
        self.applied = 0

    def follow(self, cuts: Iterator[int], until: int | None = None) -> None:
        """Restore what the source logged since the last call (up to record ``until``),
        cut into batches after ``next(cuts)`` records each (at least one)."""
        log = self.source.log
        last = len(log) if until is None else until
        while self.applied < last:
            end = min(last, self.applied + max(1, next(cuts)))
            self.restore(log[self.applied : end])
            self.applied = end

    def skip(self, records: int) -> None:
        """Never restore the next ``records`` records (the changelog never got them)."""
        self.applied = min(len(self.source.log), self.applied + records)

    def restore(self, records: list[tuple[int, bytes, bytes | None]]) -> None:
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition, key, value in records:
            by_partition.setdefault(partition, []).append((key, value))
        for partition, items in by_partition.items():
            store = self.store
            mark = restore_mark(lambda wanted, p=partition: store.get_many(p, wanted), items)
            for key, value in items:
                if value is None:
                    store.delete(partition, key)
                else:
                    store.put(partition, key, value)
            if mark:
                store.put(partition, keys.index_restored_key(), b"")
            elif mark is not None:
                store.delete(partition, keys.index_restored_key())
