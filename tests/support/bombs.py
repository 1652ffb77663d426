"""Compression bombs on a real topic: one record whose value decompresses to hundreds of MB
from a batch of a few KB (zstd) or about a MB (lz4).

No producer sends such a record: each refuses a value above its own ``message.max.bytes``
before compressing it. So the record batch (Kafka's v2 format) is written here, its
records compressed as a stream of pieces (the test never holds the whole value), and sent
with a plain ProduceRequest over aiokafka's protocol client. The broker checks the batch
(CRC, and it walks the records as a stream) and stores it as sent.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import cramjam
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c, encode_varint
from aiokafka.structs import TopicPartition

__all__ = ["CODECS", "bomb_batch", "produce_batch"]

# The attribute bits of each codec in a record batch.
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_PIECE = 1 << 20


def _varint(value: int) -> bytes:
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


def _record_head(value_size: int, prefix: bytes) -> bytes:
    """A record's bytes up to its value's first byte (``prefix`` included); the value then
    continues with zeros to ``value_size`` bytes, and an empty header list ends it."""
    body_size = (
        1  # attributes
        + 1  # timestamp delta: varint 0
        + 1  # offset delta: varint 0
        + 1  # key: null (varint -1)
        + len(_varint(value_size))
        + value_size
        + 1  # headers: varint 0
    )
    return _varint(body_size) + b"\x00\x00\x00\x01" + _varint(value_size) + prefix


def _stream(value_size: int, prefix: bytes) -> Iterator[bytes]:
    """The uncompressed records section, in pieces of about a MB."""
    yield _record_head(value_size, prefix)
    left = value_size - len(prefix)
    zeros = bytes(_PIECE)
    while left > 0:
        n = min(left, _PIECE)
        yield zeros[:n]
        left -= n
    yield b"\x00"  # no headers


def _compress(codec: str, pieces: Iterator[bytes]) -> bytes:
    if codec == "gzip":
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(z.compress(p) for p in pieces) + z.flush()
    if codec == "snappy":
        # snappy-java framing, as Kafka's Java clients write it: chunks of raw snappy.
        out = [b"\x82SNAPPY\x00", struct.pack(">ii", 1, 1)]
        for piece in pieces:
            chunk = bytes(cramjam.snappy.compress_raw(piece))
            out += [struct.pack(">i", len(chunk)), chunk]
        return b"".join(out)
    # Kafka reads LZ4 frames of independent blocks only.
    compressor: Any = (
        cramjam.lz4.Compressor(block_linked=False) if codec == "lz4" else cramjam.zstd.Compressor()
    )
    for piece in pieces:
        compressor.compress(piece)
    return bytes(compressor.finish())


def bomb_batch(codec: str, value_size: int, prefix: bytes = b"") -> bytes:
    """A v2 record batch of one record, compressed with ``codec``, whose value is
    ``prefix`` then zeros up to ``value_size`` bytes."""
    records = _compress(codec, _stream(value_size, prefix))
    now = int(time.time() * 1000)
    after_crc = (
        struct.pack(">hiqqqhii", CODECS[codec], 0, now, now, -1, -1, -1, 1) + records
    )  # attributes, last offset delta, timestamps, producer id/epoch, sequence, count
    crc = calc_crc32c(after_crc)
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc  # leader epoch, magic, crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def produce_batch(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    """Send ``batch`` to ``topic``/``partition`` (acks=all); its first record's offset."""
    return asyncio.run(_produce(bootstrap, topic, partition, batch))


async def _produce(bootstrap: str, topic: str, partition: int, batch: bytes) -> int:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        request = ProduceRequest(None, -1, 60_000, [(topic, [(partition, batch)])])
        response = await client.send(leader, request)
        _topic, partitions = response.topics[0]
        _p, code, offset, *_rest = partitions[0]
        if code:
            raise for_code(code)()
        return int(offset)
    finally:
        await client.close()
