"""The RocksDB :class:`PartitionStore`: faust's per-partition rocksdict DBs plus changelog.

This is the one module that touches faust's store internals (``Store._db_for_partition``,
``Store.apply_changelog_batch``); ``tests/unit/test_store_contract.py`` runs the store
contract against it.

Write order, documented once here: a write goes to the partition's local RocksDB first and
is then queued on the table's changelog (same partition, same bytes). The source offset of
the message that caused it is committed by faust only after its producer has flushed, so
the changelog is never behind a committed offset. The local DB can be ahead of the
changelog after a crash; :func:`leadstream.domain.lead_index.apply_events` re-writes
duplicates so that reprocessing closes that gap.

Whatever RocksDB raises (rocksdict raises a bare ``Exception``: "IO error: ... File too
large", "No space left on device", a read-only file system) is the environment's fault:
the adapter reports it to ``on_fault`` (the worker then stops, :mod:`leadstream.lifecycle`)
and raises :class:`~leadstream.state.port.StoreError`, so that no caller can mistake it
for a bad message. From then on every call of the store raises at once, before it reads
or writes anything, until the worker is gone: a caller that swallows the error (faust's
recovery logs and drops a changelog batch that failed to apply, then goes on with the
next one) cannot carry on past it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

from faust.stores import STORES
from faust.stores.rocksdb import RocksDBOptions, Store
from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBPath,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
)

from leadstream.state import keys
from leadstream.state.port import PartitionReader, StoreError

__all__ = [
    "STORE_URL",
    "FaultReport",
    "BoundedOptions",
    "LeadStore",
    "Memory",
    "TableStore",
    "restore_mark",
    "write_batch",
    "write_restored",
]

# Told the cause of a store fault (the worker stops on it).
FaultReport = Callable[[str], None]


class _Broken:
    """The first fault of a store, once there was one: every later call raises it again."""

    cause: str | None = None

    def check(self) -> None:
        if self.cause is not None:
            raise StoreError(f"the state store failed earlier: {self.cause}")

    def failed(self, on_fault: FaultReport | None, what: str, exc: Exception) -> NoReturn:
        cause = f"the state store failed to {what}: {exc}"
        if self.cause is None:
            self.cause = cause
        if on_fault is not None:
            on_fault(cause)
        raise StoreError(cause) from exc


# A logged batch record holds at most this many items and about this many bytes: ~45-byte
# event keys make ~50 KB records; the byte bound keeps long ids (a key can reach ~200
# bytes) well under the producer's and broker's 1 MB message limit. An erase logs again,
# whole, each record holding the erased lead: the item bound is what it costs per record
# (a thousand records a second are nothing to the producer; one a row was too many).
LOGGED_BATCH_ITEMS = 1_000
LOGGED_BATCH_BYTES = 256 * 1024


class Memory:
    """The memory RocksDB may take in one worker, every partition's DB together: one block
    cache of ``budget_bytes``, to which the memtables are charged (a write buffer manager
    over the cache: at most half of it, the rest of the cache holds what was read).

    faust's defaults gave each partition's DB a block cache of its own (2 GiB each) and
    up to three 64 MiB memtables: a worker's RocksDB grew with the partitions it held and
    the data it had read, to most of a worker's memory at a few million leads."""

    def __init__(self, budget_bytes: int, partitions: int) -> None:
        self.budget_bytes = budget_bytes
        self.cache = Cache(budget_bytes)
        self.buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            budget_bytes // 2, False, self.cache
        )
        # One memtable a partition fills before it is flushed: the budget's half shared
        # by the partitions (RocksDB flushes sooner when they are over it together).
        self.memtable_bytes = max(4 << 20, min(64 << 20, budget_bytes // 2 // max(partitions, 1)))

    def usage(self, dbs: Iterable[Rdict]) -> dict[str, int]:
        """Bytes in use now: ``block_cache`` (the memtables' share included),
        ``memtables``, ``table_readers`` (index and filter blocks held outside the cache)."""
        memtables = readers = 0
        for db in dbs:
            memtables += db.property_int_value("rocksdb.size-all-mem-tables") or 0
            readers += db.property_int_value("rocksdb.estimate-table-readers-mem") or 0
        return {
            "block_cache": self.cache.get_usage(),
            "memtables": memtables,
            "table_readers": readers,
        }


class BoundedOptions(RocksDBOptions):
    """faust's rocksdict options, on the worker's shared :class:`Memory` (the rest as
    ``template`` says: faust's defaults when not given)."""

    def __init__(self, memory: Memory, template: RocksDBOptions | None = None) -> None:
        template = template or RocksDBOptions()
        super().__init__(
            max_open_files=template.max_open_files,
            target_file_size_base=template.target_file_size_base,
            bloom_filter_size=template.bloom_filter_size,
            use_rocksdict=True,
            ttl=template.ttl,
        )
        self.memory = memory

    def open(self, path: Any, *, read_only: bool = False) -> Rdict:
        access = AccessType.read_write() if self.ttl is None else AccessType.with_ttl(self.ttl)
        db = Rdict(str(path), options=self.as_options(path), access_type=access)
        db.set_read_options(ReadOptions())
        return db

    def as_options(self, path: Any = None) -> Options:
        memory = self.memory
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        if path is not None:
            options.set_db_paths([DBPath(str(path), self.target_file_size_base)])
        options.set_max_open_files(self.max_open_files or -1)
        options.set_write_buffer_size(memory.memtable_bytes)
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(memory.buffers)
        options.set_target_file_size_base(self.target_file_size_base)
        table = BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(memory.cache)
        # Index and filter blocks in the cache too (bounded with the rest), the top
        # levels pinned there so that a point read never waits for them.
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class LeadStore(Store):
    """faust's RocksDB store, restoring logged batches (one changelog record holding many
    puts) by expanding them: the other half of :meth:`TableStore.put_batch`.

    A restore writes RocksDB without the store port: ``on_restore`` is told which
    partitions were written (their index in memory is stale). The index kept on disk comes
    with the keys (its records follow the keys they describe, see
    :mod:`leadstream.index.durable`); a restore that leaves keys the index is derived from
    changed after the last index record it wrote (the rest of a write that a crash cut
    short, or a write by a version that logged no index) marks it, locally
    (:func:`~leadstream.state.keys.index_restored_key`), in the same write batch: the
    index is then built from the keys. A later journal entry or snapshot clears the mark
    (the entry of that write, or a snapshot that holds it; an entry after a lost one
    leaves a gap in the journal, which is not read back either)."""

    on_restore: Callable[[Iterable[int]], None] | None = None
    on_fault: FaultReport | None = None
    broken: _Broken | None = None  # shared with the TableStore over it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The table's options carry the worker's Memory (leadstream.app); faust keeps
        # what it does not know in extra_options.
        memory = self.rocksdb_options.extra_options.get("memory")
        if isinstance(memory, Memory):
            self.rocksdb_options = BoundedOptions(memory, self.rocksdb_options)

    def open_dbs(self) -> list[Rdict]:
        """The partition DBs open now."""
        return list(self._dbs.values())

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        if self.broken is None:
            self.broken = _Broken()
        self.broken.check()
        writes: dict[int, list[tuple[bytes, bytes | None]]] = {}
        offsets: dict[Any, int] = {}
        for event in batch:
            msg = event.message
            offsets[msg.tp] = max(msg.offset, offsets.get(msg.tp, -1))
            items = writes.get(msg.partition)
            if items is None:
                items = writes[msg.partition] = []
            items.extend(keys.expand_changelog_record(msg.key, msg.value))
        try:
            for partition, items in writes.items():
                write_restored(self._db_for_partition(partition), items)
            for tp, offset in offsets.items():
                self.set_persisted_offset(tp, offset)
        except Exception as exc:  # noqa: BLE001 - whatever RocksDB raised: see module doc
            self.broken.failed(self.on_fault, "apply a changelog batch", exc)
        if writes and self.on_restore is not None:
            self.on_restore(list(writes))


def write_batch(items: Iterable[tuple[bytes, bytes | None]]) -> WriteBatch:
    """A raw-mode write batch of ``items`` in order (None deletes)."""
    wb = WriteBatch(raw_mode=True)
    for key, value in items:
        if value is None:
            wb.delete(key)
        else:
            wb.put(key, value)
    return wb


def write_restored(db: Rdict, items: list[tuple[bytes, bytes | None]]) -> None:
    """Write what a restore brought of a partition (None deletes), with the index's
    restore mark (:func:`restore_mark`), in one write batch."""
    wb = write_batch(items)
    mark = restore_mark(functools.partial(_get_many, db), items)
    if mark:
        wb.put(keys.index_restored_key(), b"")
    elif mark is not None:
        wb.delete(keys.index_restored_key())
    db.write(wb)


def _get_many(db: Rdict, wanted: list[bytes]) -> list[bytes | None]:
    found: list[Any] = db.get(list[Any](wanted)) or [None] * len(wanted)
    return [None if value is None else bytes(value) for value in found]


def restore_mark(
    get_many: Callable[[list[bytes]], list[bytes | None]],
    items: Sequence[tuple[bytes, bytes | None]],
) -> bool | None:
    """What restoring ``items`` (in order) does to the index's restore mark: True to set
    it (keys the index is derived from change after the last record that commits an
    update of the index: a journal entry or a snapshot's meta part), False to clear it
    (such a record comes after every such change), None to leave it. A worker
    restarted on its own data replays records its DB holds already: they change nothing,
    and only what the index reads of a value counts
    (:func:`~leadstream.state.keys.index_view`), so a membership logged again in another
    group does not mark it."""
    commit = keys.is_index_commit
    last = len(items)
    while last > 0 and not commit(*items[last - 1]):
        last -= 1
    trailing = {key: value for key, value in items[last:] if keys.is_indexed(key)}
    clear = False if last > 0 else None
    if not trailing:
        return clear
    if clear is None and get_many([keys.index_restored_key()])[0] is not None:
        return None  # marked already
    # Compared with what the key held just before: earlier in the batch, or in the store.
    earlier = {key: value for key, value in items[:last] if key in trailing}
    stored = get_many([key for key in trailing if key not in earlier])
    view = keys.index_view
    for key, want in trailing.items():
        have = earlier[key] if key in earlier else stored.pop(0)
        if view(key, have) != view(key, want):
            return True
    return clear


# faust finds stores by URL scheme; this one is ours.
STORES.aliases["leadstream"] = f"{__name__}:LeadStore"
STORE_URL = "leadstream://"


class TableStore:
    """A :class:`~leadstream.state.port.PartitionStore` over a rocksdict-driver faust ``Table``;
    ``on_fault`` hears of every store error before it is raised as
    :class:`~leadstream.state.port.StoreError`."""

    def __init__(self, table: Any, on_fault: FaultReport | None = None) -> None:
        self._table = table
        self._on_fault = on_fault
        self._broken = _Broken()
        store = table.data
        if isinstance(store, LeadStore):
            store.on_fault = on_fault
            if store.broken is None:
                store.broken = self._broken
            self._broken = store.broken

    def on_restore(self, callback: Callable[[Iterable[int]], None]) -> None:
        """Call ``callback`` with the partitions a changelog restore wrote."""
        store = self._table.data
        if isinstance(store, LeadStore):
            store.on_restore = callback

    def memory_usage(self) -> dict[str, int]:
        """:meth:`Memory.usage` of the DBs open now (nothing when the table's store is not
        on a :class:`Memory`)."""
        store = self._table.data
        options = getattr(store, "rocksdb_options", None)
        if not isinstance(store, LeadStore) or not isinstance(options, BoundedOptions):
            return {}
        return options.memory.usage(store.open_dbs())

    def _db(self, partition: int) -> Rdict:
        self._broken.check()
        try:
            db: Rdict = self._table.data._db_for_partition(partition)  # noqa: SLF001 - the one adapter
        except Exception as exc:  # noqa: BLE001 - a DB that will not open: see module doc
            self._broken.failed(self._on_fault, f"open partition {partition}", exc)
        return db

    def reader(self, partition: int) -> PartitionReader:
        """The reads of ``partition``, for another thread (an index read back off the event
        loop): its DB is opened here, on the caller's thread, and the reader never opens
        one (faust opens a partition's DB when first asked for it, and a revoked
        partition's again: a thread doing so beside the loop could open it twice)."""
        return _Pinned(self, self._db(partition))

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._get(self._db(partition), key)

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        return self._get_many(self._db(partition), keys)

    def _get(self, db: Rdict, key: bytes) -> bytes | None:
        try:
            value = db.get(key)
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "read", exc)
        return value if value is None else bytes(value)

    def _get_many(self, db: Rdict, keys: Sequence[bytes]) -> list[bytes | None]:
        try:
            values = db.get(list(keys))
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "read", exc)
        return [value if value is None else bytes(value) for value in values or ()]

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        db = self._db(partition)
        try:
            db.put(key, value)
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "write", exc)
        self._table.send_changelog(
            partition, key, value, key_serializer="raw", value_serializer="raw"
        )

    def delete(self, partition: int, key: bytes) -> None:
        db = self._db(partition)
        try:
            db.delete(key)
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "write", exc)
        self._table.send_changelog(
            partition, key, None, key_serializer="raw", value_serializer="raw"
        )

    def put_batch(
        self,
        partition: int,
        items: Sequence[tuple[bytes, bytes]],
        *,
        created_ms: int,
        index: Sequence[tuple[bytes, bytes | None]] = (),
    ) -> None:
        """One local write batch, and one changelog record per ``LOGGED_BATCH_ITEMS`` items
        (or ``LOGGED_BATCH_BYTES``) instead of one per item: per-record producer work was
        most of the ingest cost. ``index`` items go in the same write batch and are logged
        after the items: inside their record when there is one and it stays small, else a
        record each."""
        self._write_logged(
            partition,
            items,
            lambda: keys.logged_batch_key(created_ms),
            keys.event_batch_marker,
            index,
        )

    def put_memberships(
        self, partition: int, items: Sequence[tuple[bytes, bytes | None]], *, group: int
    ) -> None:
        """As :meth:`put_batch`, for memberships (None deletes): one changelog record per
        thousands of members, not one each, which made an audience upload and its restore
        run at a few thousand members a second."""
        self._write_logged(
            partition, items, lambda: keys.member_batch_key(group), keys.member_batch_marker
        )

    def _write_logged(
        self,
        partition: int,
        items: Sequence[tuple[bytes, bytes | None]],
        batch_key: Callable[[], bytes],
        marker: Callable[[Sequence[tuple[bytes, bytes | None]]], bytes],
        index: Sequence[tuple[bytes, bytes | None]] = (),
    ) -> None:
        """``items`` in one local write batch and as logged batches on the changelog;
        ``batch_key()`` gives each record's key, kept locally with the record's marker
        (what a restore of the record writes there too)."""
        wb = WriteBatch(raw_mode=True)
        records: list[tuple[bytes, bytes | None]] = []
        chunk: list[tuple[bytes, bytes | None]] = []
        size = 0

        def close_chunk() -> None:
            log_key = batch_key()
            wb.put(log_key, marker(chunk))
            records.append((log_key, keys.encode_logged_batch(chunk)))

        for key, value in items:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
            chunk.append((key, value))
            size += len(key) + len(value or b"") + 8
            if len(chunk) == LOGGED_BATCH_ITEMS or size >= LOGGED_BATCH_BYTES:
                close_chunk()
                chunk, size = [], 0
        marks = keys.index_marks()
        riding: list[tuple[bytes, bytes | None]] = []
        alone: list[tuple[bytes, bytes | None]] = []
        for key, maybe in index:
            if maybe is None:
                wb.delete(key)
            else:
                wb.put(key, maybe)
            if key in marks:
                continue
            # The index's items ride in the write's record, after its keys (a record less
            # each write: each costs faust a callback and a store write), while it stays
            # small and is the only one (an erase logs again the records that hold the
            # lead: the one whose journal names its phone is then among them).
            size += len(key) + len(maybe or b"") + 8
            rides = not records and not alone and size <= 2 * LOGGED_BATCH_BYTES
            (riding if rides else alone).append((key, maybe))
        if chunk:
            log_key = batch_key()
            wb.put(log_key, marker(chunk))
            records.append((log_key, keys.encode_logged_batch([*chunk, *riding])))
        else:
            alone = [*riding, *alone]
        records += alone
        db = self._db(partition)
        try:
            db.write(wb)
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "write", exc)
        for log_key, value in records:
            self._table.send_changelog(
                partition, log_key, value, key_serializer="raw", value_serializer="raw"
            )

    def write_index(self, partition: int, items: Sequence[tuple[bytes, bytes | None]]) -> None:
        """One local write batch; each item a changelog record of its own, in order, but
        the marks (:func:`~leadstream.state.keys.index_marks`): they speak of this
        worker's copy only (a standby's are its restore's)."""
        wb = write_batch(items)
        db = self._db(partition)
        try:
            db.write(wb)
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "write", exc)
        send = self._table.send_changelog
        marks = keys.index_marks()
        for key, value in items:
            if key not in marks:
                send(partition, key, value, key_serializer="raw", value_serializer="raw")

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return self._iter_range(self._db(partition), lower, upper, reverse)

    def _iter_range(
        self, db: Rdict, lower: bytes, upper: bytes, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        items = iter_rdict_range(db, lower, upper, reverse=reverse)
        try:
            yield from items
        except Exception as exc:  # noqa: BLE001 - see module doc
            self._broken.failed(self._on_fault, "read", exc)


class _Pinned:
    """:meth:`TableStore.reader`: one partition's reads through the DB handle taken when
    it was made (the partition argument names it, as the port's calls do)."""

    def __init__(self, store: TableStore, db: Rdict) -> None:
        self._store = store
        self._db = db

    # Each call refused up front once the store failed, as the store's own calls are.

    def get(self, partition: int, key: bytes) -> bytes | None:
        self._store._broken.check()  # noqa: SLF001 - its own reader
        return self._store._get(self._db, key)  # noqa: SLF001

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        self._store._broken.check()  # noqa: SLF001
        return self._store._get_many(self._db, keys) if keys else []  # noqa: SLF001

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._store._broken.check()  # noqa: SLF001
        return self._store._iter_range(self._db, lower, upper, reverse)  # noqa: SLF001


def iter_rdict_range(
    db: Rdict, lower: bytes, upper: bytes, *, reverse: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """``lower <= key < upper`` on a raw-mode Rdict, bounded inside RocksDB itself."""
    opts = ReadOptions()
    opts.set_iterate_lower_bound(lower)
    opts.set_iterate_upper_bound(upper)
    it = db.iter(opts)
    # RocksDB honours the bounds in next()/prev(), but SeekToFirst ignores the lower bound
    # here, so position explicitly and keep the checks: they cost a comparison a key.
    if reverse:
        it.seek_for_prev(upper)
        if it.valid() and it.key() >= upper:
            it.prev()
        while it.valid() and it.key() >= lower:
            yield it.key(), it.value()
            it.prev()
    else:
        it.seek(lower)
        while it.valid() and it.key() < upper:
            yield it.key(), it.value()
            it.next()
