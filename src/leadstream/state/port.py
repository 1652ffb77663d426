"""The store port: what the domain needs from per-partition key/value state."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from leadstream.state.keys import prefix_upper_bound

__all__ = ["PartitionReader", "PartitionStore", "StoreError", "iter_prefix"]


class StoreError(Exception):
    """The store could not read or write (no space, I/O error, read-only, file too large,
    a store that will not open): a fault of the environment, never of the message being
    applied. Raised by a store adapter in place of whatever its database raised."""


class PartitionReader(Protocol):
    """The reads of a :class:`PartitionStore` (what reading an index back or building it
    needs); see :meth:`~leadstream.state.rocksdb.TableStore.reader`."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


class PartitionStore(Protocol):
    """Byte keys and values, per partition; the partition is always passed explicitly.

    Writes are visible to reads at once (read-your-writes inside one partition).
    """

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def get_many(self, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        """``get`` of every key, in order, in one call: a store behind a C extension then
        gives the interpreter lock up once per batch, not once per key (with another
        thread parsing, each hand-back can wait a whole switch interval)."""
        ...

    def put(self, partition: int, key: bytes, value: bytes) -> None: ...

    def delete(self, partition: int, key: bytes) -> None: ...

    def put_batch(
        self,
        partition: int,
        items: Sequence[tuple[bytes, bytes]],
        *,
        created_ms: int,
        index: Sequence[tuple[bytes, bytes | None]] = (),
    ) -> None:
        """Put every item, logged as few changelog records as possible (see
        :func:`leadstream.state.keys.encode_logged_batch`) of the group ``created_ms``;
        each record's key is also kept, with its marker
        (:func:`~leadstream.state.keys.batch_marker` of the items it logged), under
        :func:`~leadstream.state.keys.logged_batch_group`. ``index`` items (the kept
        index's, see :meth:`write_index`) are written in the same write batch and logged
        after the items (in the same record when the items take one, out of its
        marker)."""
        ...

    def put_memberships(
        self, partition: int, items: Sequence[tuple[bytes, bytes | None]], *, group: int
    ) -> None:
        """Put (or, for None, delete) every item, logged as few changelog records as
        possible of the group ``group``; each record's key is kept, with its marker,
        under :func:`~leadstream.state.keys.member_batch_group`."""
        ...

    def write_index(self, partition: int, items: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Put (or, for None, delete) every item at once (one write batch), and log each
        as a changelog record of its own, in order, but the index's marks
        (:func:`~leadstream.state.keys.index_marks`, this copy's own): for the index kept
        beside the keys (:mod:`leadstream.index.durable`), whose values are cut small
        enough for a record."""
        ...

    def iter_range(
        self, partition: int, lower: bytes, upper: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``lower <= key < upper`` in key order (or reversed)."""
        ...


def iter_prefix(
    store: PartitionReader, partition: int, prefix: bytes, *, reverse: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """Items whose key starts with ``prefix``: one bounded range scan."""
    return store.iter_range(partition, prefix, prefix_upper_bound(prefix), reverse=reverse)
