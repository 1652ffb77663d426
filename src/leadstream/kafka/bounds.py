"""How big a message may get once decompressed: the one adapter that bounds aiokafka.

Why this module exists. A producer may compress a record batch with gzip, snappy, lz4 or
zstd, and the broker keeps it as sent; the consumer decompresses it. 400 MB of zeros is
12 KB of zstd and 1.6 MB of lz4, so the size of what a consumer reads says nothing of what
it will hold once decompressed. Neither client library bounds that by itself:

- librdkafka (confluent-kafka 2.16) bounds only zstd, by ``receive.message.max.bytes``,
  and then reports the batch as an error at its first offset and fetches it again, every
  ``fetch.error.backoff.ms``, until the application seeks past it (the batch's last
  offset is not reported). gzip, snappy and lz4 batches are decompressed whole whatever
  their size (rdgz.c, snappy.c, rdkafka_lz4.c): a 400 MB lz4 value took a consumer to
  830 MB, the value copied once more into Python.
- aiokafka decompresses a batch whole (``aiokafka.codec``), with no bound at all.

So every consumer that reads what others may write (the input router, on the four input
topics) is an aiokafka consumer with :func:`install`\\ ed bounds, and so is faust's consumer
of the internal topics. What is installed, in the process that calls :func:`install`:

1. Bounded decoders in place of aiokafka's: each decompresses into a buffer of at most
   ``limit`` bytes (cramjam's ``decompress_into``) and raises :class:`BatchTooLarge` as
   soon as the output would not fit, having held no more than that. A snappy batch's size
   is read from its chunks' headers before anything is decompressed.
2. aiokafka's fetcher builds its per-partition record iterators from a subclass
   (:class:`_BoundedPartitionRecords`) that catches :class:`BatchTooLarge` per batch and,
   by ``policy``, either hands the consumer one record in the batch's place, whose value is
   an :class:`OversizeBatch` at the batch's last offset (``Oversize.REPORT``: the partition
   goes on after it), or raises :class:`OversizeBatchError` naming the topic, partition
   and offsets (``Oversize.STOP``: for topics only leadstream writes, where such a batch
   is a fault of the environment, never bad input).
3. :func:`read_budget`: a caller that polls can bound the bytes one poll returns; records
   beyond the budget stay in Kafka and are fetched again by a later poll. Without it, one
   poll of many just-under-the-bound batches would hold them all at once.

These touch aiokafka's private fetcher and record modules, pinned to ``aiokafka<0.15`` in
pyproject.toml; ``tests/unit/test_bounds.py`` fails if an upgrade moves them. librdkafka's
consumers (the replies reader, the progress view, ``leadstream recipients``) read only what
leadstream's own producers wrote: docs/contract.md, section 5, says why the bound holds
there.
"""

from __future__ import annotations

import contextvars
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import cramjam
from aiokafka.consumer import fetcher as _fetcher
from aiokafka.record import default_records as _default_records
from aiokafka.record import legacy_records as _legacy_records
from aiokafka.record._crecords import default_records as _c_default_records
from aiokafka.record._crecords import legacy_records as _c_legacy_records
from aiokafka.structs import TopicPartition

__all__ = [
    "BATCH_OVERHEAD",
    "BatchTooLarge",
    "BoundedDecoders",
    "Oversize",
    "OversizeBatch",
    "OversizeBatchError",
    "ReadBudget",
    "install",
    "read_budget",
]

logger = logging.getLogger(__name__)

# A batch holds its records' framing besides their values (a few bytes each, ~70 for a
# batch of one): the decompression bound is the message bound plus this much, so that a
# message of exactly the bound still decompresses and is then judged by its own size.
BATCH_OVERHEAD = 64 * 1024
# The first decompression buffer of a thread; it grows (x4) up to the bound as batches
# need, and is kept for the next batch.
_FIRST_BUFFER = 256 * 1024
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = 16


class BatchTooLarge(Exception):
    """A compressed batch would decompress to more than ``limit`` bytes."""

    def __init__(self, codec: str, limit: int) -> None:
        super().__init__(f"a batch compressed with {codec} decompresses to more than {limit} bytes")
        self.codec = codec
        self.limit = limit


@dataclass(frozen=True, slots=True)
class OversizeBatch:
    """In place of a batch that decompresses beyond the bound (``Oversize.REPORT``): the
    value of the one record a consumer receives for it, at the batch's last offset."""

    first_offset: int
    last_offset: int
    codec: str
    limit: int

    def __len__(self) -> int:
        return 0  # aiokafka takes len() of every value it hands out


class OversizeBatchError(Exception):
    """A batch on a topic only leadstream writes decompresses beyond the bound
    (``Oversize.STOP``)."""

    def __init__(self, tp: TopicPartition, batch: OversizeBatch) -> None:
        super().__init__(
            f"{tp.topic}[{tp.partition}] offsets {batch.first_offset}..{batch.last_offset}: a"
            f" batch compressed with {batch.codec} decompresses to more than {batch.limit} bytes"
        )
        self.tp = tp
        self.batch = batch


class Oversize(Enum):
    """What a consumer does with a batch beyond the bound."""

    REPORT = "report"  # hand over an OversizeBatch in its place, and go on
    STOP = "stop"  # raise OversizeBatchError


class BoundedDecoders:
    """aiokafka's four decoders, each holding at most ``limit`` bytes of output."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._local = threading.local()

    def gzip(self, payload: Any) -> bytes:
        return self._into("gzip", cramjam.gzip.decompress_into, payload)

    def lz4(self, payload: Any) -> bytes:
        return self._into("lz4", cramjam.lz4.decompress_into, payload)

    def zstd(self, payload: Any) -> bytes:
        return self._into("zstd", cramjam.zstd.decompress_into, payload)

    def snappy(self, payload: Any) -> bytes:
        data = bytes(payload)
        if not (len(data) >= _XERIAL_HEADER and data.startswith(_XERIAL_MAGIC)):
            self._check("snappy", cramjam.snappy.decompress_raw_len(data))
            return bytes(cramjam.snappy.decompress_raw(data))
        # snappy-java's framing: chunks of raw snappy, each with its length in front; each
        # chunk's header says how big it decompresses, so the total is known first.
        chunks = []
        at, total = _XERIAL_HEADER, 0
        while at < len(data):
            (size,) = struct.unpack_from(">i", data, at) if at + 4 <= len(data) else (-1,)
            if not 0 <= size <= len(data) - at - 4:  # a length no chunk can have: corrupt
                raise cramjam.DecompressionError("snappy-java framing: a chunk length is wrong")
            chunk = data[at + 4 : at + 4 + size]
            total += cramjam.snappy.decompress_raw_len(chunk)
            self._check("snappy", total)
            chunks.append(chunk)
            at += 4 + size
        return b"".join(bytes(cramjam.snappy.decompress_raw(chunk)) for chunk in chunks)

    def _check(self, codec: str, size: int) -> None:
        if size > self.limit:
            raise BatchTooLarge(codec, self.limit)

    def _into(self, codec: str, decompress_into: Callable[[Any, Any], int], payload: Any) -> bytes:
        buffer: bytearray = getattr(self._local, "buffer", None) or bytearray(
            min(_FIRST_BUFFER, self.limit + 1)
        )
        while True:
            try:
                size = decompress_into(payload, buffer)
            except cramjam.DecompressionError as exc:
                if "whole buffer" not in str(exc):
                    raise  # not a matter of size: corrupt data
                if len(buffer) > self.limit:
                    raise BatchTooLarge(codec, self.limit) from None
                buffer = bytearray(min(len(buffer) * 4, self.limit + 1))
                self._local.buffer = buffer
                continue
            if size > self.limit:  # it fitted the last byte of limit + 1
                raise BatchTooLarge(codec, self.limit)
            self._local.buffer = buffer
            return bytes(memoryview(buffer)[:size])


@dataclass(slots=True)
class ReadBudget:
    """Bytes of record values one poll may still return (see :func:`read_budget`)."""

    limit: int
    spent: int = 0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.limit


_BUDGET: contextvars.ContextVar[ReadBudget | None] = contextvars.ContextVar(
    "leadstream_read_budget", default=None
)


@contextmanager
def read_budget(limit: int) -> Iterator[ReadBudget]:
    """Within this block (in this task), a poll returns records (keys and values) of about
    ``limit`` bytes at most: once they are spent, the next record of a partition is left
    for a later poll (aiokafka fetches that partition again from the position reached). A
    poll still returns at least one record, so it can exceed ``limit`` by one record."""
    budget = ReadBudget(limit)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


class _OversizeRecord:
    """What aiokafka's record iterator reads from a record, for the stand-in of an
    oversize batch."""

    __slots__ = ("headers", "offset", "timestamp", "timestamp_type", "value")

    key = None
    checksum = None

    def __init__(self, batch: Any, value: OversizeBatch) -> None:
        self.offset = value.last_offset
        # A batch of the old message formats (v0/v1) has no batch-level timestamp.
        self.timestamp = getattr(batch, "max_timestamp", -1)
        self.timestamp_type = getattr(batch, "timestamp_type", 0)
        self.value = value
        self.headers: list[tuple[str, bytes]] = []


class _BoundedBatch:
    """A record batch whose records, when it decompresses beyond the bound, are one
    :class:`OversizeBatch` stand-in, or an :class:`OversizeBatchError`."""

    def __init__(self, batch: Any, tp: TopicPartition, policy: Oversize) -> None:
        self._batch = batch
        self._tp = tp
        self._policy = policy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        try:
            records = iter(self._batch)
            record = next(records, None)  # the whole batch is decompressed here
        except BatchTooLarge as exc:
            batch = self._batch
            last = batch.next_offset - 1
            # The old message formats (v0/v1) name only the wrapper's (last) offset.
            first = getattr(batch, "base_offset", last)
            oversize = OversizeBatch(first, last, exc.codec, exc.limit)
            if self._policy is Oversize.STOP:
                error = OversizeBatchError(self._tp, oversize)
                logger.critical(
                    "%s; only leadstream writes this topic, so this is a fault of the"
                    " environment (another writer, or corruption), not input: stopping",
                    error,
                )
                raise error from None
            yield _OversizeRecord(batch, oversize)
            return
        while record is not None:
            yield record
            record = next(records, None)


class _BoundedBatches:
    """The fetched batches of one partition, each wrapped in :class:`_BoundedBatch`."""

    def __init__(self, records: Any, tp: TopicPartition, policy: Oversize) -> None:
        self._records = records
        self._tp = tp
        self._policy = policy

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        return None if batch is None else _BoundedBatch(batch, self._tp, self._policy)


# aiokafka's own, as imported (install() replaces the fetcher's name for it).
_AIOKAFKA_PARTITION_RECORDS: Any = _fetcher.PartitionRecords


def _partition_records(policy: Oversize) -> type:
    base = _AIOKAFKA_PARTITION_RECORDS

    class _BoundedPartitionRecords(base):  # type: ignore[valid-type,misc]
        """aiokafka's per-partition record iterator over bounded batches, stopping where
        the poll's :class:`ReadBudget` is spent."""

        def __init__(self, tp: TopicPartition, records: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(tp, _BoundedBatches(records, tp, policy), *args, **kwargs)

        def __next__(self) -> Any:
            budget = _BUDGET.get()
            if budget is not None and budget.exhausted:
                # aiokafka then takes this partition's position as it stands and drops
                # what it fetched beyond it, to fetch it again on a later poll.
                raise StopIteration
            record = super().__next__()
            if budget is not None:
                budget.spent += max(0, record.serialized_value_size)
                budget.spent += max(0, record.serialized_key_size)
            return record

    return _BoundedPartitionRecords


# Every module of aiokafka that decompresses a batch, and its decoders' names.
_DECODING_MODULES = (_default_records, _c_default_records, _legacy_records, _c_legacy_records)
_CODECS = ("gzip", "snappy", "lz4", "zstd")


def install(limit: int, policy: Oversize) -> BoundedDecoders:
    """Bound every aiokafka consumer of this process: no batch decompresses beyond
    ``limit`` bytes, and one that would is handled by ``policy``. Call it once per
    process, before the first consumer starts."""
    decoders = BoundedDecoders(limit)
    for module in _DECODING_MODULES:
        for codec in _CODECS:
            name = f"{codec}_decode"
            if hasattr(module, name):
                setattr(module, name, getattr(decoders, codec))
    _fetcher.PartitionRecords = _partition_records(policy)
    return decoders
