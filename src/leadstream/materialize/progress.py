"""The progress topic as this worker has read it: which partitions have committed their
share of a send, and which sends have their summary.

Read with ``isolation.level=read_committed`` in a thread of its own, from the beginning,
every partition (assigned, no group offsets): a record is here only once the transaction
that wrote it is committed, which is what makes it safe to decide on (materializer.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator

import msgspec
from confluent_kafka import TopicPartition

from leadstream.domain.sends import SendId
from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.io import poll_batch
from leadstream.wire.records import PartitionDone, decode_progress

__all__ = ["ProgressView"]

logger = logging.getLogger(__name__)

# How long a new owner waits to have read a progress partition to its end.
READ_TO_END_SECONDS = 60.0


class ProgressView:
    """The progress records read so far, kept by send."""

    def __init__(self, connection: KafkaConnection, topic: str, partitions: int) -> None:
        self._topic = topic
        self._partitions = partitions
        self._lock = threading.Lock()
        self._done: dict[SendId, dict[int, PartitionDone]] = {}
        self._summarized: set[SendId] = set()
        self._positions: dict[int, int] = {}
        self._stop = threading.Event()
        # Assigned, never subscribed: the groups only name the readers.
        self._consumer = connection.consumer(
            connection.private_group("progress-view", uuid.uuid4().hex),
            {"isolation.level": "read_committed", "auto.offset.reset": "earliest"},
        )
        self._probe = connection.consumer(connection.private_group("progress-probe"))
        self._thread = threading.Thread(target=self._run, name="progress-view", daemon=True)

    def start(self) -> None:
        self._consumer.assign([TopicPartition(self._topic, p, 0) for p in range(self._partitions)])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        self._probe.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for msg in poll_batch(self._consumer):
                    value = msg.value()
                    if msg.error() is None and value:
                        self._read(value)
                positions = self._consumer.position(
                    [TopicPartition(self._topic, p) for p in range(self._partitions)]
                )
                with self._lock:
                    for tp in positions:
                        if tp.offset >= 0:
                            self._positions[tp.partition] = tp.offset
            except Exception:  # noqa: BLE001 - the view must outlive a broker hiccup
                logger.exception("progress view: read failed; retrying")
                self._stop.wait(1.0)

    def _read(self, value: bytes) -> None:
        try:
            record = decode_progress(value)
        except msgspec.DecodeError:
            # Not written by a materializer: skipped alone. (Raising would lose the rest of
            # the poll, since the consumer's position has moved past it.)
            logger.warning("progress view: skipped an unreadable record")
            return
        send = SendId(record.organization_id, record.send_id)
        if isinstance(record, PartitionDone):
            self.record_done(send, record)
        else:
            self.record_summarized(send)

    def record_done(self, send: SendId, done: PartitionDone) -> None:
        with self._lock:
            self._done.setdefault(send, {})[done.partition] = done

    def record_summarized(self, send: SendId) -> None:
        with self._lock:
            self._summarized.add(send)

    def is_done(self, send: SendId, partition: int) -> bool:
        with self._lock:
            return partition in self._done.get(send, {})

    def is_summarized(self, send: SendId) -> bool:
        with self._lock:
            return send in self._summarized

    def sends_of(self, org: str) -> list[tuple[list[PartitionDone], bool]]:
        """The organization's sends read so far: each one's done reports, in partition
        order, and whether its summary is committed."""
        with self._lock:
            return [
                ([parts[p] for p in sorted(parts)], send in self._summarized)
                for send, parts in self._done.items()
                if send.organization_id == org
            ]

    def complete(self) -> Iterator[tuple[SendId, list[PartitionDone]]]:
        """Sends every partition has reported on and no summary was emitted for."""
        with self._lock:
            ready = [
                (send, [parts[p] for p in sorted(parts)])
                for send, parts in self._done.items()
                if len(parts) == self._partitions and send not in self._summarized
            ]
        yield from ready

    async def read_to_end(self, partition: int) -> None:
        """Until this view has read ``partition`` up to the end it has now (what a fenced,
        new owner must know before it decides anything); TimeoutError after a minute."""
        loop = asyncio.get_running_loop()
        end = await loop.run_in_executor(None, self._end_offset, partition)
        deadline = loop.time() + READ_TO_END_SECONDS
        while self._position(partition) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"progress partition {partition} not read up to {end}")
            await asyncio.sleep(0.1)

    def _end_offset(self, partition: int) -> int:
        _low, high = self._probe.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=10, cached=False
        )
        return int(high)

    def _position(self, partition: int) -> int:
        with self._lock:
            return self._positions.get(partition, 0)
