"""The lead table as the domain uses it: the partition store plus each partition's index.

A partition's index is read back from what is kept of it beside the keys (and logged with
them, so a standby's copy has it too) the first time it is asked for
(:mod:`leadstream.index.durable`), or built from the store's keys when there is nothing
to read back that agrees with them; it is dropped from memory when the
store is written behind the port's back (a changelog restore, see
:class:`leadstream.state.rocksdb.LeadStore`) or when the partition leaves this worker. The
writers that keep an index current take an :class:`IndexedStore` and change it inside
:meth:`IndexedStore.updating`, which keeps the journal of what they changed; every other
reader and writer sees a plain :class:`~leadstream.state.port.PartitionStore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from leadstream.index import durable
from leadstream.index.durable import Kept
from leadstream.index.partition import EntryCodec, OptTypes, PartitionIndex, build
from leadstream.state.port import PartitionReader, PartitionStore

__all__ = ["Ahead", "IndexedStore"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Ahead:
    """A partition's index read ahead (:meth:`IndexedStore.ahead`): :meth:`read` does
    the reads (on any thread: it writes nothing), :meth:`IndexedStore.take` keeps it."""

    partition: int
    version: int
    _load: Callable[[], tuple[PartitionIndex, Kept] | None]
    _build: Callable[[], PartitionIndex]
    loaded: tuple[PartitionIndex, Kept] | None = None
    built: PartitionIndex | None = None
    seconds: float = 0.0

    def read(self) -> None:
        """Read the kept index back, or (nothing readable kept) build it from the keys."""
        started = time.perf_counter()
        self.loaded = self._load()
        if self.loaded is None:
            self.built = self._build()
        self.seconds = time.perf_counter() - started


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
        keep: bool = True,
        reader: Callable[[int], PartitionReader] | None = None,
    ) -> None:
        self._inner = inner
        self._reader = reader
        self._opt = opt
        self._codec = codec
        self._on_build = on_build
        # The key of suppression hashes (LEADSTREAM_SUPPRESSION_KEY); None: each
        # partition's own, kept in its state.
        self._hash_key = hash_key
        self._indexes: dict[int, PartitionIndex] = {}
        # Whether indexes are kept on disk (False: built from the keys at every start).
        self._keep = keep
        self._kept: dict[int, Kept] = {}
        # Partitions in an update whose journal entry goes in its one write batch.
        self._one_write: set[int] = set()
        # Bumped each time a partition's index is dropped (see take()).
        self._versions: dict[int, int] = {}

    def index(self, partition: int) -> PartitionIndex:
        """The partition's index: in memory, else read back from disk, else built from
        the store (and then kept)."""
        index = self._indexes.get(partition)
        if index is not None:
            return index
        ahead = self._ahead(partition, self._inner)
        ahead.read()
        self.take(ahead)
        return self._indexes[partition]

    def ahead(self, partition: int) -> Ahead | None:
        """What reads the partition's index ahead of its use on another thread (None: it
        is in memory): :meth:`Ahead.read` there, then :meth:`take` here, on the thread
        that writes the store. The reads go through ``reader`` of the partition when the
        store was given one (a DB handle taken here, see
        :meth:`leadstream.state.rocksdb.TableStore.reader`)."""
        if partition in self._indexes:
            return None
        reader = self._reader
        return self._ahead(partition, self._inner if reader is None else reader(partition))

    def _ahead(self, partition: int, reader: PartitionReader) -> Ahead:
        def load() -> tuple[PartitionIndex, Kept] | None:
            if not self._keep:
                return None
            return durable.load(reader, partition, self._opt, self._codec, hash_key=self._hash_key)

        def make() -> PartitionIndex:
            return build(reader, partition, self._opt, self._codec, hash_key=self._hash_key)

        return Ahead(partition, self._versions.get(partition, 0), load, make)

    def take(self, ahead: Ahead) -> bool:
        """Keep the index ``ahead`` read, unless the partition changed meanwhile: then
        False, and the index is read again when asked for. Changed: indexed since (a
        writer asked for it: its writes are in that index, and maybe not in this one),
        or dropped since (a restore wrote the store, the partition left)."""
        partition = ahead.partition
        if partition in self._indexes or self._versions.get(partition, 0) != ahead.version:
            return False
        started = time.perf_counter()
        if ahead.loaded is not None:
            index, kept = ahead.loaded
            self._kept[partition] = kept
            if index.erased:
                # Erased in the journal, and still named in what is kept (restored from a
                # changelog cut between the erase and its scrub).
                durable.scrub_erased(self._inner, partition, kept, index.erased)
                index.erased = []
            how = "read back"
        elif ahead.built is not None:
            index = ahead.built
            self._kept_anew(partition, index)
            how = "built from its keys"
        else:
            raise RuntimeError(f"partition {partition}: take() before read()")
        self._indexes[partition] = index
        took = ahead.seconds + time.perf_counter() - started
        logger.info(
            "partition %d index %s in %.2f s: %d leads", partition, how, took, index.next_id
        )
        if self._on_build is not None:
            self._on_build(partition, took)
        return True

    def _kept_anew(self, partition: int, index: PartitionIndex) -> None:
        """After a build: the keys of erased leads it found deleted again, and (indexes
        kept) whatever an earlier process kept replaced by a snapshot of this build."""
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
        if self._keep:
            kept = self._kept[partition] = Kept()
            durable.survey(self._inner, partition, kept)
            durable.write_snapshot(self._inner, partition, index, kept)

    @contextmanager
    def updating(self, partition: int, *, one_write: bool = False) -> Iterator[PartitionIndex]:
        """The partition's index, for a writer that changes the store and the index.

        If anything raises meanwhile, the index is dropped (and read back or built again
        when next needed), so a half-applied update is never kept. With indexes kept on
        disk (:mod:`leadstream.index.durable`), the open mark is written first and the
        journal entry of the changes last; a writer whose keys are ``one_write`` (one
        :meth:`put_batch`) changes the index before that write instead, and its journal
        entry goes in the same write batch as the keys."""
        index = self.index(partition)
        if index.journal is not None or not self._keep:  # nested, or nothing kept
            try:
                yield index
            except BaseException:
                self._indexes.pop(partition, None)
                raise
            return
        kept = self._kept[partition]
        if not one_write:
            durable.begin_update(self._inner, partition)
        index.journal = []
        if one_write:
            self._one_write.add(partition)
        try:
            yield index
            if not one_write:
                kept.touched(index, index.journal)
                durable.end_update(self._inner, partition, kept, index.journal)
            elif index.journal:
                # Changed after its one write: nothing on disk may say so. Built again.
                durable.begin_update(self._inner, partition)
                raise RuntimeError(f"partition {partition}: the index changed after the write")
        except BaseException:
            self._indexes.pop(partition, None)
            raise
        finally:
            index.journal = None
            self._one_write.discard(partition)
        if index.erased:
            durable.scrub_erased(self._inner, partition, kept, index.erased)
            index.erased = []
        if kept.due(index):
            durable.write_snapshot(self._inner, partition, index, kept)

    def has_index(self, partition: int) -> bool:
        return partition in self._indexes

    def indexed_partitions(self) -> list[int]:
        return list(self._indexes)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the indexes of ``partitions`` (their store changed behind the port, or they
        are no longer this worker's)."""
        for partition in partitions:
            self._indexes.pop(partition, None)
            self._kept.pop(partition, None)
            # An index read ahead from before this is not taken (see take()).
            self._versions[partition] = self._versions.get(partition, 0) + 1

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
        self,
        partition: int,
        items: Sequence[tuple[bytes, bytes]],
        *,
        created_ms: int,
        index: Sequence[tuple[bytes, bytes | None]] = (),
    ) -> None:
        if partition in self._one_write:
            held = self._indexes[partition]
            if held.journal:
                kept = self._kept[partition]
                kept.touched(held, held.journal)
                index = [*index, *durable.journal_entry(kept, held.journal)]
                held.journal = []
        self._inner.put_batch(partition, items, created_ms=created_ms, index=index)

    def put_memberships(
        self, partition: int, items: Sequence[tuple[bytes, bytes | None]], *, group: int
    ) -> None:
        self._inner.put_memberships(partition, items, group=group)

    def write_index(self, partition: int, items: Sequence[tuple[bytes, bytes | None]]) -> None:
        self._inner.write_index(partition, items)

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self._inner.iter_range(partition, lower, upper, reverse=reverse)
