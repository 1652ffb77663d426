"""The fetch of the worker's faust consumer (streams/rebalance.py) against a real broker:
records of a partition faust does not take are not consumed, and are read again, from
the first of them, once faust takes the partition."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from leadstream.streams.rebalance import keep_taken
from tests.support.kafka import producer

pytestmark = pytest.mark.integration

RECORDS = 5


def make_topic(bootstrap: str) -> str:
    name = f"rebalance-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
    p = producer(bootstrap)
    for partition in (0, 1):
        for i in range(RECORDS):
            p.produce(name, value=f"{partition}-{i}".encode(), partition=partition)
    assert p.flush(30) == 0
    return name


async def read(
    consumer: AIOKafkaConsumer, taken: frozenset[TopicPartition], until: int, seen: int
) -> tuple[dict[int, list[int]], set[int]]:
    """Fetch as the worker does, faust taking ``taken``, until ``until`` records were kept
    and aiokafka returned records of partition ``seen``: the offsets kept by partition,
    and the partitions aiokafka returned records of."""
    kept: dict[int, list[int]] = {}
    returned: set[int] = set()
    deadline = time.monotonic() + 60
    while sum(map(len, kept.values())) < until or seen not in returned:
        assert time.monotonic() < deadline, f"kept {kept}, returned {returned}"
        records = await consumer.getmany(timeout_ms=500)
        returned |= {tp.partition for tp, batch in records.items() if batch}
        for tp, batch in keep_taken(consumer, records, taken).items():
            kept.setdefault(tp.partition, []).extend(r.offset for r in batch)
    return kept, returned


def test_records_of_a_partition_faust_does_not_take_are_read_again_from_the_first(
    kafka_bootstrap: str,
) -> None:
    topic = make_topic(kafka_bootstrap)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def scenario() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, max_poll_records=2
        )
        await consumer.start()
        try:
            consumer.assign([p0, p1])
            consumer.seek(p0, 0)
            consumer.seek(p1, 0)
            # Partition 1 paused on faust's side: aiokafka returned its records (and
            # moved past them), they were put back.
            kept, _ = await read(consumer, frozenset({p0}), RECORDS, seen=1)
            assert kept == {0: list(range(RECORDS))}
            assert await consumer.position(p1) == 0
            # Taken again: every record of partition 1, from its first, none of 0 twice.
            kept, _ = await read(consumer, frozenset({p0, p1}), RECORDS, seen=1)
            assert kept == {1: list(range(RECORDS))}
        finally:
            await consumer.stop()

    asyncio.run(scenario())
