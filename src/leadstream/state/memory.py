"""An in-memory :class:`PartitionStore` for unit tests and reference evaluations."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from leadstream.state import keys

__all__ = ["MemoryStore"]


class MemoryStore:
    """Sorted keys per partition; the same semantics as the RocksDB adapter."""

    def __init__(self) -> None:
        self._data: dict[int, dict[bytes, bytes]] = {}
        self._sorted: dict[int, list[bytes]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._data.get(partition, {}).get(key)

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        data = self._data.get(partition, {})
        return [data.get(key) for key in keys]

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        data = self._data.setdefault(partition, {})
        if key not in data:
            bisect.insort(self._sorted.setdefault(partition, []), key)
        data[key] = value

    def delete(self, partition: int, key: bytes) -> None:
        data = self._data.get(partition, {})
        if data.pop(key, None) is not None:
            keys = self._sorted[partition]
            del keys[bisect.bisect_left(keys, key)]

    def put_batch(
        self,
        partition: int,
        items: Sequence[tuple[bytes, bytes]],
        *,
        created_ms: int,
        index: Sequence[tuple[bytes, bytes | None]] = (),
    ) -> None:
        for key, value in items:
            self.put(partition, key, value)
        self.put(partition, keys.logged_batch_key(created_ms), keys.event_batch_marker(items))
        self.write_index(partition, index)

    def put_memberships(
        self, partition: int, items: Sequence[tuple[bytes, bytes | None]], *, group: int
    ) -> None:
        for key, value in items:
            if value is None:
                self.delete(partition, key)
            else:
                self.put(partition, key, value)
        self.put(partition, keys.member_batch_key(group), keys.member_batch_marker(items))

    def write_index(self, partition: int, items: Sequence[tuple[bytes, bytes | None]]) -> None:
        for key, value in items:
            if value is None:
                self.delete(partition, key)
            else:
                self.put(partition, key, value)

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._sorted.get(partition, [])
        data = self._data.get(partition, {})
        selected = keys[bisect.bisect_left(keys, lower) : bisect.bisect_left(keys, upper)]
        for key in reversed(selected) if reverse else selected:
            # Like a RocksDB iterator, a scan outlives writes made while it is suspended.
            value = data.get(key)
            if value is not None:
                yield key, value

    def partitions(self) -> list[int]:
        return sorted(self._data)
