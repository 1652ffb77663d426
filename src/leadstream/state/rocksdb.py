"""The RocksDB :class:`PartitionStore`: faust's per-partition rocksdict DBs plus changelog.

This is the one module that touches faust's store internals (``Store._db_for_partition``);
``tests/integration/test_store_contract.py`` runs the store contract against it.

Write order, documented once here: a write goes to the partition's local RocksDB first and
is then queued on the table's changelog (same partition, same bytes). The source offset of
the message that caused it is committed by faust only after its producer has flushed, so
the changelog is never behind a committed offset. The local DB can be ahead of the
changelog after a crash; :func:`leadstream.domain.lead_index.apply_events` re-writes
duplicates so that reprocessing closes that gap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from rocksdict import Rdict, ReadOptions

__all__ = ["TableStore"]

logger = logging.getLogger(__name__)


class TableStore:
    """A :class:`~leadstream.state.port.PartitionStore` over a rocksdict-driver faust ``Table``."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def _db(self, partition: int) -> Rdict:
        db: Rdict = self._table.data._db_for_partition(partition)  # noqa: SLF001 - the one adapter
        return db

    def get(self, partition: int, key: bytes) -> bytes | None:
        value = self._db(partition).get(key)
        return value if value is None else bytes(value)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self._db(partition).put(key, value)
        self._table.send_changelog(
            partition, key, value, key_serializer="raw", value_serializer="raw"
        )

    def delete(self, partition: int, key: bytes) -> None:
        self._db(partition).delete(key)
        self._table.send_changelog(
            partition, key, None, key_serializer="raw", value_serializer="raw"
        )

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return iter_rdict_range(self._db(partition), lower, upper, reverse=reverse)


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
