"""The worker's RocksDB adapter with its changelog recorded, for unit tests: a stand-in for
a faust table whose per-partition DBs are real raw-mode rocksdict Rdicts (as faust's
rocksdict driver opens them), what Kafka's log cleaner leaves of a changelog, and the
state a restore writes from it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rocksdict

from leadstream.state import keys
from leadstream.state.memory import MemoryStore

__all__ = [
    "ChangelogRecord",
    "FakeTable",
    "RdictPerPartition",
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
    """What TableStore reaches through ``table.data``: one real raw-mode Rdict per partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = rocksdict.Rdict(
                str(self.root / f"p{partition}"), rocksdict.Options(raw_mode=True)
            )
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
