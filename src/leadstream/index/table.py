"""The lead table as the domain uses it: the partition store plus each partition's index.

An index is built from the store the first time a partition's is asked for, and dropped
when the store is written behind the port's back (a changelog restore, see
:class:`leadstream.state.rocksdb.LeadStore`) or when the partition leaves this worker. The
writers that keep an index current take an :class:`IndexedStore`; every other reader and
writer sees a plain :class:`~leadstream.state.port.PartitionStore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from leadstream.index.partition import EntryCodec, OptTypes, PartitionIndex, build
from leadstream.state.port import PartitionStore

__all__ = ["IndexedStore"]

logger = logging.getLogger(__name__)


class IndexedStore:
    """A :class:`PartitionStore` that also holds the partitions' indexes."""

    def __init__(
        self,
        inner: PartitionStore,
        opt: OptTypes,
        codec: EntryCodec,
        *,
        on_build: Callable[[int, float], None] | None = None,
        hash_key: bytes | None = None,
    ) -> None:
        self._inner = inner
        self._opt = opt
        self._codec = codec
        self._on_build = on_build
        # The key of suppression hashes (LEADSTREAM_SUPPRESSION_KEY); None: each
        # partition's own, kept in its state.
        self._hash_key = hash_key
        self._indexes: dict[int, PartitionIndex] = {}

    def index(self, partition: int) -> PartitionIndex:
        """The partition's index, built from the store first if there is none."""
        index = self._indexes.get(partition)
        if index is None:
            started = time.perf_counter()
            index = self._indexes[partition] = build(
                self._inner, partition, self._opt, self._codec, hash_key=self._hash_key
            )
            took = time.perf_counter() - started
            logger.info("partition %d indexed in %.2f s: %d leads", partition, took, index.next_id)
            if index.purge:
                # Keys of erased leads a changelog restore brought back: deleted again.
                for key in index.purge:
                    self._inner.delete(partition, key)
                logger.info(
                    "partition %d: %d keys of erased leads deleted again",
                    partition,
                    len(index.purge),
                )
                index.purge = []
            if self._on_build is not None:
                self._on_build(partition, took)
        return index

    @contextmanager
    def updating(self, partition: int) -> Iterator[PartitionIndex]:
        """The partition's index, for a writer that changes the store and then the index:
        if anything in between raises, the index is dropped (and built again from the
        store when next needed), so a half-applied update is never kept."""
        try:
            yield self.index(partition)
        except BaseException:
            self._indexes.pop(partition, None)
            raise

    def has_index(self, partition: int) -> bool:
        return partition in self._indexes

    def indexed_partitions(self) -> list[int]:
        return list(self._indexes)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the indexes of ``partitions`` (their store changed behind the port, or they
        are no longer this worker's)."""
        for partition in partitions:
            self._indexes.pop(partition, None)

    def keep_only(self, partitions: Iterable[int]) -> None:
        kept = set(partitions)
        self.drop([p for p in self._indexes if p not in kept])

    # -- the store port --------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._inner.get(partition, key)

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._inner.get_many(partition, keys)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._inner.put(partition, key, value)

    def delete(self, partition: int, key: bytes) -> None:
        self._inner.delete(partition, key)

    def put_batch(
        self, partition: int, items: Sequence[tuple[bytes, bytes]], *, created_ms: int
    ) -> None:
        self._inner.put_batch(partition, items, created_ms=created_ms)

    def put_memberships(
        self, partition: int, items: Sequence[tuple[bytes, bytes | None]], *, group: int
    ) -> None:
        self._inner.put_memberships(partition, items, group=group)

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self._inner.iter_range(partition, lower, upper, reverse=reverse)
