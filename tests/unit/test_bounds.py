"""The decompression bound of every aiokafka consumer (kafka/bounds.py), on real record
batches: aiokafka's own batch reader and per-partition record iterator, as its fetcher
builds them, with the bounds installed. If an aiokafka upgrade moved what bounds.py
replaces, these fail."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import cramjam
import pytest
from aiokafka import codec
from aiokafka.consumer import fetcher
from aiokafka.record import default_records, legacy_records
from aiokafka.record._crecords import default_records as c_default_records
from aiokafka.record._crecords import legacy_records as c_legacy_records
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadstream.kafka import bounds
from tests.support.bombs import CODECS, bomb_batch

TP = TopicPartition("t", 0)
MiB = 1024 * 1024
ENCODERS = {
    "gzip": codec.gzip_encode,
    "snappy": codec.snappy_encode,
    "lz4": codec.lz4_encode,
    "zstd": codec.zstd_encode,
}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever a test installs is undone after it (install patches the process)."""
    for module in (default_records, c_default_records, legacy_records, c_legacy_records):
        for name in ("gzip_decode", "snappy_decode", "lz4_decode", "zstd_decode"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(fetcher, "PartitionRecords", fetcher.PartitionRecords)
    yield


def batch(codec_name: str | None, values: list[bytes], base_offset: int) -> bytes:
    """A v2 batch of ``values`` from ``base_offset``, as a producer writes it."""
    builder = DefaultRecordBatchBuilder(2, CODECS.get(codec_name or "", 0), 0, -1, -1, -1, 1 << 30)
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=1_780_000_000_000, key=None, value=value, headers=[])
    data = builder.build()
    struct.pack_into(">q", data, 0, base_offset)  # the offset is outside the CRC
    return bytes(data)


def bomb_at(codec_name: str, size: int, base_offset: int) -> bytes:
    data = bytearray(bomb_batch(codec_name, size, b'{"x":'))
    struct.pack_into(">q", data, 0, base_offset)
    return bytes(data)


def read(data: bytes, fetch_offset: int = 0) -> list[Any]:
    """Every record aiokafka's fetcher hands out of ``data``, a fetch response's batches
    for a fetch at ``fetch_offset`` (the broker's answer starts with the batch holding it)."""
    records = fetcher.PartitionRecords(
        TP, MemoryRecords(data), [], fetch_offset, None, None, True, 0
    )
    return list(records)


@pytest.mark.parametrize("codec_name", sorted(CODECS))
def test_each_codec_decodes_up_to_the_bound_and_refuses_beyond(codec_name: str) -> None:
    decoders = bounds.BoundedDecoders(2 * MiB)
    decode = getattr(decoders, codec_name)
    for size in (0, 1, 300_000, 2 * MiB):
        value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert decode(ENCODERS[codec_name](value)) == value
    with pytest.raises(bounds.BatchTooLarge) as refused:
        decode(ENCODERS[codec_name](b"\0" * (2 * MiB + 1)))
    assert refused.value.codec == codec_name and refused.value.limit == 2 * MiB


@pytest.mark.parametrize("codec_name", ["gzip", "lz4", "zstd"])
def test_a_bomb_is_refused_having_held_no_more_than_the_bound(codec_name: str) -> None:
    decoders = bounds.BoundedDecoders(1 * MiB)
    bomb = bomb_batch(codec_name, 200 * MiB)
    records = bomb[61:]  # a one-record batch's records section starts after its header
    with pytest.raises(bounds.BatchTooLarge):
        getattr(decoders, codec_name)(records)
    assert len(decoders._local.buffer) <= 1 * MiB + 1  # the only output buffer it made


def test_a_snappy_bomb_is_refused_from_its_chunk_headers() -> None:
    decoders = bounds.BoundedDecoders(1 * MiB)
    with pytest.raises(bounds.BatchTooLarge):
        decoders.snappy(bomb_batch("snappy", 40 * MiB)[61:])


def test_corrupt_data_is_not_taken_for_a_large_batch() -> None:
    decoders = bounds.BoundedDecoders(1 * MiB)
    good = codec.zstd_encode(b"abc" * 1000)
    with pytest.raises(cramjam.DecompressionError):
        decoders.zstd(good[:-5] + b"\xff" * 5)


@pytest.mark.usefixtures("installed")
def test_every_decoder_aiokafka_reads_batches_with_is_replaced() -> None:
    decoders = bounds.install(1 * MiB, bounds.Oversize.REPORT)
    modules = (default_records, c_default_records, legacy_records, c_legacy_records)
    found = {
        (module.__name__, name): getattr(module, name)
        for module in modules
        for name in dir(module)
        if name.endswith("_decode") and callable(getattr(module, name))
    }
    assert len(found) == 14  # gzip, snappy and lz4 in four modules, zstd in two
    assert all(getattr(f, "__self__", None) is decoders for f in found.values()), found
    assert issubclass(fetcher.PartitionRecords, bounds._AIOKAFKA_PARTITION_RECORDS)


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize("codec_name", sorted(CODECS))
def test_an_oversize_batch_is_one_stand_in_record_and_the_partition_goes_on(
    codec_name: str,
) -> None:
    bounds.install(1 * MiB, bounds.Oversize.REPORT)
    data = (
        batch(codec_name, [b"before"], 0)
        + bomb_at(codec_name, 30 * MiB, 1)
        + batch(codec_name, [b"after-1", b"after-2"], 2)
    )
    got = read(data)
    assert [r.offset for r in got] == [0, 1, 2, 3]
    assert [r.value for r in got if not isinstance(r.value, bounds.OversizeBatch)] == [
        b"before",
        b"after-1",
        b"after-2",
    ]
    (oversize,) = [r.value for r in got if isinstance(r.value, bounds.OversizeBatch)]
    assert oversize == bounds.OversizeBatch(1, 1, codec_name, 1 * MiB)


@pytest.mark.usefixtures("installed")
def test_an_oversize_batch_of_many_records_is_skipped_whole_and_named_by_its_range() -> None:
    bounds.install(1 * MiB, bounds.Oversize.REPORT)
    many = [b"\0" * 200_000 for _ in range(10)]  # 2 MB of small messages in one batch
    data = batch("zstd", many, 5) + batch("zstd", [b"next"], 15)
    got = read(data, fetch_offset=5)
    assert [(r.offset, r.value) for r in got] == [
        (14, bounds.OversizeBatch(5, 14, "zstd", 1 * MiB)),
        (15, b"next"),
    ]


@pytest.mark.usefixtures("installed")
def test_a_bomb_in_the_old_message_format_is_refused_too() -> None:
    """Message format v1 (brokers before 4.0 may still hold it): a gzip wrapper message."""
    bounds.install(1 * MiB, bounds.Oversize.REPORT)
    builder = LegacyRecordBatchBuilder(1, CODECS["gzip"], 1 << 30)
    builder.append(0, timestamp=1_780_000_000_000, key=None, value=b"\0" * (30 * MiB))
    got = read(bytes(builder.build()))
    assert [(r.offset, r.value) for r in got] == [(0, bounds.OversizeBatch(0, 0, "gzip", 1 * MiB))]


@pytest.mark.usefixtures("installed")
def test_on_topics_only_leadstream_writes_an_oversize_batch_stops_the_reader(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bounds.install(1 * MiB, bounds.Oversize.STOP)
    data = batch("lz4", [b"before"], 0) + bomb_at("lz4", 30 * MiB, 1)
    records = fetcher.PartitionRecords(TP, MemoryRecords(data), [], 0, None, None, True, 0)
    assert next(records).value == b"before"
    with pytest.raises(bounds.OversizeBatchError) as stopped:
        next(records)
    assert stopped.value.tp == TP and stopped.value.batch.first_offset == 1
    assert "t[0] offsets 1..1" in caplog.text and "stopping" in caplog.text


@pytest.mark.usefixtures("installed")
def test_a_poll_stops_where_its_budget_is_spent_and_leaves_the_rest_for_the_next() -> None:
    bounds.install(1 * MiB, bounds.Oversize.REPORT)
    batches = [batch("zstd", [b"v" * 300_000], offset) for offset in range(5)]
    records = fetcher.PartitionRecords(
        TP, MemoryRecords(b"".join(batches)), [], 0, None, None, True, 0
    )
    with bounds.read_budget(500_000):
        first = list(records)
    # 300,000 spent after the first, 600,000 after the second: the third waits.
    assert [r.offset for r in first] == [0, 1]
    assert records.next_fetch_offset == 2  # where aiokafka fetches again
    with bounds.read_budget(10 * MiB):
        rest = read(b"".join(batches[2:]), fetch_offset=2)
    assert [r.offset for r in rest] == [2, 3, 4]


@pytest.mark.usefixtures("installed")
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=12),
    per_batch=st.integers(min_value=1, max_value=4),
    codec_name=st.sampled_from(sorted(CODECS)),
    limit=st.integers(min_value=1, max_value=9000),
)
def test_budgeted_polls_hand_out_every_record_once_in_order(
    sizes: list[int], per_batch: int, codec_name: str, limit: int
) -> None:
    bounds.install(1 * MiB, bounds.Oversize.REPORT)
    values = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    starts = range(0, len(values), per_batch)
    batches = {
        start: batch(codec_name, values[start : start + per_batch], start) for start in starts
    }
    position, seen = 0, []
    while position < len(values):
        # The broker answers from the batch that holds the position.
        first = max(start for start in batches if start <= position)
        fetched = b"".join(data for start, data in batches.items() if start >= first)
        records = fetcher.PartitionRecords(
            TP, MemoryRecords(fetched), [], position, None, None, True, 0
        )
        with bounds.read_budget(limit) as budget:
            polled = list(records)
        assert polled, "a poll always makes progress"
        assert budget.spent - len(polled[-1].value) < limit  # over by one value at most
        seen += polled
        position = records.next_fetch_offset
    assert [(r.offset, r.value) for r in seen] == list(enumerate(values))


@pytest.mark.parametrize("length", [-4, -1, 1 << 30])
def test_a_snappy_java_chunk_length_no_chunk_can_have_is_corrupt_data(length: int) -> None:
    """A negative length used to leave the reader where it was, for ever."""
    header = bounds._XERIAL_MAGIC.ljust(bounds._XERIAL_HEADER, b"\0")
    decoders = bounds.BoundedDecoders(1 << 20)
    for framed in (header + struct.pack(">i", length) + b"abcd", header + b"\0\1"):
        with pytest.raises(cramjam.DecompressionError):
            decoders.snappy(framed)
