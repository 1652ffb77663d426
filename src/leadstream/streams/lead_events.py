"""The ``lead-events`` router: validate, reject bad rows alone, route events by lead.

This one input is read outside faust, by a confluent-kafka consumer in a thread of its own.
Source systems often publish one event per message, and faust's per-message machinery
(stream, event, acks; ~130 us a message on the event loop) capped that at ~7,500 events/s
on a 2-core machine, all of it on the loop that also applies state and serves HTTP. Here
messages are taken in batches straight from librdkafka, parsed, grouped by the lead's
partition and produced as :class:`~leadstream.commands.EventsBatch` commands.

Delivery, documented once here: a batch's commands and rejects are produced and flushed
(acks=all, idempotent) before its offsets are committed, so a crash replays at most
uncommitted batches; replayed events are duplicates and change nothing (dedupe), a replayed
reject is written again (rejects are at least once, as before). The consumer group is
``{app_id}-lead-events``: faust's own group speaks a protocol a plain consumer cannot join.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from leadstream import codec
from leadstream.commands import EventsBatch, encode_command
from leadstream.domain.ingest import (
    IngestRules,
    LeadEvent,
    ParsedMessage,
    Rejected,
    decode_json,
    parse_lead_events,
)
from leadstream.domain.partitioning import group_by_partition
from leadstream.domain.rejects import RowError
from leadstream.kafka_admin import LARGE_MESSAGE_BYTES, poll_batch, produce
from leadstream.settings import Settings
from leadstream.streams.topology import COMMAND_ROWS

__all__ = ["LeadEventsRouter", "router_group"]

logger = logging.getLogger(__name__)

# Messages taken per batch at most; a batch is whatever has arrived, never waited for.
ROUTE_BATCH = 2_000


def router_group(settings: Settings) -> str:
    """The consumer group that reads ``lead-events``."""
    return f"{settings.app_id}-lead-events"


class LeadEventsRouter:
    """Reads ``lead-events`` in a thread; see the module docstring."""

    def __init__(self, settings: Settings, on_rejected: Callable[[int], None]) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)
        self._on_rejected = on_rejected
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._lags: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name="lead-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, messages behind) of the partitions this worker reads."""
        with self._lock:
            return [(self._topics.lead_events, p, lag) for p, lag in sorted(self._lags.items())]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception:  # noqa: BLE001 - start over from the committed offsets
                logger.exception("lead-events router failed; starting again in 1 s")
                self._stop.wait(1.0)

    def _consume(self) -> None:
        s = self._settings
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": router_group(s),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.message.max.bytes": LARGE_MESSAGE_BYTES,
                "on_commit": _log_failed_commit,
            }
        )
        producer = Producer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
                "message.max.bytes": LARGE_MESSAGE_BYTES,
            }
        )
        consumer.subscribe(
            [self._topics.lead_events], on_revoke=self._forget_lags, on_lost=self._forget_lags
        )
        try:
            while not self._stop.is_set():
                msgs = [m for m in poll_batch(consumer, 0.1, ROUTE_BATCH) if _usable(m)]
                if not msgs:
                    continue
                self._route(producer, msgs)
                # Everything the batch caused is on the broker: only now may it be skipped.
                consumer.commit(asynchronous=True)
                self._note_lags(consumer, msgs)
        finally:
            producer.flush(10)
            consumer.close()

    def _route(self, producer: Producer, msgs: list[Message]) -> None:
        """Produce the batch's commands and rejects, and wait until all are delivered."""
        now = time.time_ns() // 1_000_000
        events: list[LeadEvent] = []
        failed: list[BaseException] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(KafkaException(err))

        for msg in msgs:
            value = msg.value() or b""
            try:
                parsed = parse_lead_events(decode_json(value), now_ms=now, rules=self._rules)
            except RowError as err:
                parsed = ParsedMessage(received=1)
                parsed.rejects.append(Rejected(err.reason, err.detail, raw=value))
            events.extend(parsed.events)
            for rejected in parsed.rejects:
                topic, partition, offset = _position(msg)
                record = codec.reject_record(
                    rejected, source=topic, partition=partition, offset=offset
                )
                produce(
                    producer,
                    self._topics.rejects,
                    codec.encode_json(record),
                    msg.key(),
                    on_delivery=delivered,
                )
            if parsed.rejects:
                self._on_rejected(len(parsed.rejects))
                logger.info(
                    "%s[%s]@%s: %d of %d rows rejected",
                    *_position(msg),
                    len(parsed.rejects),
                    parsed.received,
                )
        for partition, rows in group_by_partition(events, self._settings.partitions).items():
            for i in range(0, len(rows), COMMAND_ROWS):
                command = encode_command(EventsBatch(rows[i : i + COMMAND_ROWS]))
                produce(
                    producer,
                    self._topics.by_lead,
                    command,
                    partition=partition,
                    on_delivery=delivered,
                )
        left = producer.flush(60)
        if failed:
            raise failed[0]
        if left:
            raise KafkaException(f"{left} routed messages not delivered in 60 s")

    def _note_lags(self, consumer: Consumer, msgs: list[Message]) -> None:
        last: dict[int, int] = {}
        for msg in msgs:
            _topic, partition, offset = _position(msg)
            last[partition] = max(offset, last.get(partition, -1))
        lags = {}
        for partition, offset in last.items():
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(self._topics.lead_events, partition), cached=True
            )
            lags[partition] = max(0, high - offset - 1)
        with self._lock:
            self._lags.update(lags)

    def _forget_lags(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._lags.pop(tp.partition, None)


def _position(msg: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a message read without error (all are set then)."""
    return str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)


def _usable(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's own constant
        logger.warning("lead-events: %s", err)
    return False


def _log_failed_commit(err: Any, partitions: list[TopicPartition]) -> None:
    if err is not None:
        logger.warning("lead-events: commit failed (the batch will be routed again): %s", err)
