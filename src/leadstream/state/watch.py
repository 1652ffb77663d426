"""A :class:`PartitionStore` that tells watchers which leads were written.

A send prepared ahead of its materialize moment (:mod:`leadstream.domain.prepared`) must
learn of every later change to its members' histories and memberships. Every write goes
through the store port, so the port is where changes are noticed: a watcher registers a
set for (partition, organization), and each put or delete of an ``E``, ``C`` or ``M`` key
(:func:`leadstream.state.keys.lead_of`) adds the lead's phone to every set registered for
it. With no watcher on a partition a write costs one dict lookup more.

Changelog restores bypass the port (faust writes RocksDB itself), so a watcher must not
outlive a rebalance: :class:`~leadstream.streams.materialize.Materializer` drops its
prepared sends whenever one starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from leadstream.state import keys
from leadstream.state.port import PartitionStore

__all__ = ["WatchedStore"]


class WatchedStore:
    """Wraps a store; see the module docstring."""

    def __init__(self, inner: PartitionStore) -> None:
        self._inner = inner
        # partition -> org (bytes) -> the registered sets of changed phones
        self._watchers: dict[int, dict[bytes, list[set[str]]]] = {}

    def watch(self, partition: int, org: str, changed: set[str]) -> None:
        """From now on, add to ``changed`` the phone of every lead of ``org`` written in
        ``partition``."""
        self._watchers.setdefault(partition, {}).setdefault(org.encode(), []).append(changed)

    def unwatch(self, partition: int, org: str, changed: set[str]) -> None:
        orgs = self._watchers.get(partition, {})
        sets = orgs.get(org.encode(), [])
        # By identity: two watchers' sets may be equal.
        sets[:] = [s for s in sets if s is not changed]
        if not sets:
            orgs.pop(org.encode(), None)
        if not orgs:
            self._watchers.pop(partition, None)

    def _notify(self, partition: int, written: Iterable[bytes]) -> None:
        orgs = self._watchers.get(partition)
        if not orgs:
            return
        for key in written:
            lead = keys.lead_of(key)
            if lead is None or not (sets := orgs.get(lead[0])):
                continue
            phone = lead[1].decode()
            for changed in sets:
                changed.add(phone)

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._inner.get(partition, key)

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._inner.get_many(partition, keys)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._inner.put(partition, key, value)
        self._notify(partition, (key,))

    def delete(self, partition: int, key: bytes) -> None:
        self._inner.delete(partition, key)
        self._notify(partition, (key,))

    def put_batch(
        self, partition: int, items: Sequence[tuple[bytes, bytes]], *, created_ms: int
    ) -> None:
        self._inner.put_batch(partition, items, created_ms=created_ms)
        self._notify(partition, (key for key, _ in items))

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self._inner.iter_range(partition, lower, upper, reverse=reverse)
