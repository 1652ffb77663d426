"""The input router: ``lead-events`` and ``audience-members`` validated, bad rows rejected
alone, events and memberships routed by lead.

These two inputs are read outside faust, by a confluent-kafka consumer in a process of its
own (:class:`RouterProcess`, spawned by the worker). Source systems often publish one event
per message, and faust's per-message machinery (stream, event, acks; ~130 us a message on
the event loop) capped that at ~7,500 events/s on a 2-core machine, all of it on the loop
that also applies state and serves HTTP; and parsing a marketer's daily audiences (1,000,000
members) on that loop took a third of its time while it applied them. Here messages are
taken in batches straight from librdkafka, parsed, grouped by the lead's partition and
produced as :class:`~leadstream.wire.commands.EventsBatch` and
:class:`~leadstream.wire.commands.MembersBatch` commands. A process rather than a thread:
parsing and applying then each have an interpreter lock, and a core, of their own.

Delivery (step 1 of the exactly-once protocol in :mod:`leadstream.materialize.materializer`):
a batch's offsets are committed only once every command and reject it produced is
delivered (acks=all, idempotent), batches in order, so a crash replays at most uncommitted
batches; replayed events are duplicates and change nothing (dedupe), a replayed reject is
written again (rejects are at least once). The consumer group is ``{app_id}-lead-events``
(its name from when it read that topic alone): faust's own group speaks a protocol a plain
consumer cannot join. Offsets of ``audience-members`` that faust's group committed before
this process read that topic are where it starts (:meth:`InputRouter._assigned`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from leadstream.domain.audience import MemberOp, ParsedMembers, parse_audience_members_message
from leadstream.domain.ingest import (
    IngestRules,
    LeadEvent,
    ParsedMessage,
    Rejected,
    parse_lead_events_message,
)
from leadstream.domain.partitioning import group_by_partition
from leadstream.domain.rejects import Reason
from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.io import poll_batch, produce
from leadstream.logs import configure_logging
from leadstream.settings import Settings
from leadstream.streams.retry import with_retries
from leadstream.wire.commands import EventsBatch, MembersBatch, encode_command, row_slices
from leadstream.wire.records import encode_json, reject_record

__all__ = ["InputRouter", "RouterProcess", "router_group", "size_slices"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Messages taken per batch at most; a batch is whatever has arrived, never waited for.
ROUTE_BATCH = 2_000
# Bytes of message values parsed at most before their commands are produced: a poll after
# a burst returns many 50,000-event messages at once, and routing them as one batch kept
# the apply agent idle until the whole poll was parsed.
ROUTE_BYTES = 1 << 20
# Batches produced but not yet all delivered, at most: their offsets are committed in
# order as each completes, so parsing the next batch overlaps the broker's acks.
MAX_IN_FLIGHT = 4
# The child counts rejects per topic and reason in shared memory, one slot for each, in
# this order (topic-major).
REASONS = tuple(Reason)


def router_group(settings: Settings) -> str:
    """The consumer group that reads ``lead-events`` and ``audience-members``."""
    return f"{settings.app_id}-lead-events"


def routed_topics(settings: Settings) -> tuple[str, str]:
    """The topics the router reads, in the order of its shared counters."""
    return settings.topics.lead_events, settings.topics.audience_members


class InputRouter:
    """Reads ``lead-events`` and ``audience-members`` in a thread; see the module docstring.

    ``on_rejected(topic, counts)`` and ``on_dead_letter(topic)`` count what it refused."""

    def __init__(
        self,
        settings: Settings,
        on_rejected: Callable[[str, Mapping[Reason, int]], None],
        on_dead_letter: Callable[[str], None] = lambda _topic: None,
    ) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)
        self._on_rejected = on_rejected
        self._on_dead_letter = on_dead_letter
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] = {}
        self._thread = threading.Thread(target=self._run, name="input-router", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, messages behind) of the partitions this worker reads."""
        with self._lock:
            return [(topic, p, lag) for (topic, p), lag in sorted(self._lags.items())]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception:  # noqa: BLE001 - start over from the committed offsets
                logger.exception("input router failed; starting again in 1 s")
                self._stop.wait(1.0)

    def _clients(self) -> tuple[Consumer, Producer]:
        settings = self._settings
        connection = KafkaConnection.of(settings)
        consumer = connection.consumer(
            router_group(settings),
            {
                "auto.offset.reset": "earliest",
                "on_commit": _log_failed_commit,
                # Static membership, as the worker's own group (worker.py).
                **(
                    {"group.instance.id": settings.group_instance_id}
                    if settings.group_instance_id
                    else {}
                ),
            },
        )
        return consumer, connection.producer({"linger.ms": 2, "compression.type": "lz4"})

    def _consume(self) -> None:
        consumer, producer = self._clients()
        commits = _Commits(consumer, producer)

        def revoked(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            commits.settle(wait=True)  # what was routed is committed before another reads on
            self._forget_lags(partitions)

        consumer.subscribe(
            list(routed_topics(self._settings)),
            on_assign=self._assigned,
            on_revoke=revoked,
            on_lost=lambda _c, partitions: self._forget_lags(partitions),
        )
        try:
            while not self._stop.is_set():
                timeout = 0.005 if commits.in_flight else 0.1
                msgs = [m for m in poll_batch(consumer, timeout, ROUTE_BATCH) if _usable(m)]
                for part in size_slices(msgs, lambda m: len(m.value() or b""), ROUTE_BYTES):
                    batch = _InFlight(_next_offsets(part))
                    self._route(producer, part, batch)
                    commits.in_flight.append(batch)
                    self._note_lags(consumer, batch.offsets)
                    commits.settle(wait=len(commits.in_flight) > MAX_IN_FLIGHT)
                commits.settle(wait=False)
            commits.settle(wait=True)
        finally:
            consumer.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """``audience-members`` partitions this group never committed start where faust's
        group had got to (the worker's agents read that topic before this process did),
        not from the beginning of the topic."""
        members = [tp for tp in partitions if tp.topic == self._topics.audience_members]
        if not members:
            return
        committed = consumer.committed(members, timeout=30)
        fresh = [TopicPartition(tp.topic, tp.partition) for tp in committed if tp.offset < 0]
        if not fresh:
            return
        connection = KafkaConnection.of(self._settings)
        earlier = connection.consumer(self._settings.app_id)
        try:
            start = {
                (tp.topic, tp.partition): tp.offset
                for tp in earlier.committed(fresh, timeout=30)
                if tp.offset >= 0
            }
        finally:
            earlier.close()
        if start:
            logger.info("audience-members: starting where the worker group committed: %s", start)
            # Committed for this group too at once: until then it has no offset there, and
            # its lag (as Kafka's tools compute it) would be the whole topic.
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in start.items()],
                asynchronous=False,
            )
            consumer.assign(
                [
                    TopicPartition(tp.topic, tp.partition, start[(tp.topic, tp.partition)])
                    if (tp.topic, tp.partition) in start
                    else tp
                    for tp in partitions
                ]
            )

    def _route(self, producer: Producer, msgs: list[Message], batch: _InFlight) -> None:
        """Produce the batch's commands and rejects; ``batch`` counts their deliveries."""
        now = time.time_ns() // 1_000_000
        events: list[LeadEvent] = []
        members: list[MemberOp] = []
        for msg in msgs:
            parsed = self._parse(msg, now)
            if isinstance(parsed, ParsedMembers):
                members.extend(parsed.members)
            else:
                events.extend(parsed.events)
            for rejected in parsed.rejects:
                topic, partition, offset = _position(msg)
                record = reject_record(rejected, source=topic, partition=partition, offset=offset)
                batch.waiting += 1
                produce(
                    producer,
                    self._topics.rejects,
                    encode_json(record),
                    msg.key(),
                    on_delivery=batch.delivered,
                )
            if parsed.rejects:
                self._on_rejected(_position(msg)[0], Counter(r.reason for r in parsed.rejects))
                logger.info(
                    "%s[%s]@%s: %d of %d rows rejected",
                    *_position(msg),
                    len(parsed.rejects),
                    parsed.received,
                )
        partitions = self._settings.partitions
        by_partition = [
            (partition, encode_command(EventsBatch(part)))
            for partition, rows in group_by_partition(events, partitions).items()
            for part in row_slices(rows)
        ] + [
            (partition, encode_command(MembersBatch(part)))
            for partition, rows in group_by_partition(members, partitions).items()
            for part in row_slices(rows)
        ]
        for partition, command in by_partition:
            batch.waiting += 1
            produce(
                producer,
                self._topics.by_lead,
                command,
                partition=partition,
                on_delivery=batch.delivered,
            )

    def _parse(self, msg: Message, now: int) -> ParsedMessage | ParsedMembers:
        """One message's events (or memberships) and rejects; a message whose parsing
        raised something unexpected on every attempt is one ``internal_error`` reject
        (streams/retry.py)."""
        value = msg.value() or b""
        topic = _position(msg)[0]
        region = self._settings.default_region

        def parse() -> ParsedMessage | ParsedMembers:
            if topic == self._topics.audience_members:
                return parse_audience_members_message(value, region=region)
            return parse_lead_events_message(value, now_ms=now, rules=self._rules)

        outcome: ParsedMessage | ParsedMembers | Rejected = with_retries(
            parse, raw=value, what="{}[{}]@{}".format(*_position(msg))
        )
        if isinstance(outcome, Rejected):
            self._on_dead_letter(topic)
            return ParsedMessage(rejects=[outcome], received=1)
        return outcome

    def _note_lags(self, consumer: Consumer, next_offsets: dict[tuple[str, int], int]) -> None:
        lags = {}
        for (topic, partition), offset in next_offsets.items():
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
            lags[(topic, partition)] = max(0, high - offset)
        with self._lock:
            self._lags.update(lags)

    def _forget_lags(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._lags.pop((tp.topic, tp.partition), None)


@dataclass(slots=True)
class _InFlight:
    """A routed batch: the offsets to commit once its ``waiting`` messages are delivered."""

    offsets: dict[tuple[str, int], int]
    waiting: int = 0
    error: Any = None

    def delivered(self, err: Any, _msg: Any) -> None:
        self.waiting -= 1
        if err is not None and self.error is None:
            self.error = err


class _Commits:
    """Routed batches in the order they were read; each one's offsets are committed once
    it and every batch before it are delivered."""

    def __init__(self, consumer: Consumer, producer: Producer) -> None:
        self._consumer = consumer
        self._producer = producer
        self.in_flight: deque[_InFlight] = deque()

    def settle(self, *, wait: bool) -> None:
        """Commit, in order, the offsets of the batches whose every message is delivered;
        with ``wait``, first wait for all deliveries (and commit synchronously)."""
        if wait and self._producer.flush(60):
            raise KafkaException("routed messages not delivered in 60 s")
        self._producer.poll(0)
        offsets: dict[tuple[str, int], int] = {}
        while self.in_flight and self.in_flight[0].waiting == 0:
            batch = self.in_flight.popleft()
            if batch.error is not None:
                raise KafkaException(batch.error)
            offsets.update(batch.offsets)  # in order: a later batch's offset is higher
        if offsets:
            tps = [TopicPartition(topic, p, o) for (topic, p), o in offsets.items()]
            if wait:
                self._consumer.commit(offsets=tps, asynchronous=False)
            else:
                self._consumer.commit(offsets=tps, asynchronous=True)


def size_slices(items: list[T], size: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """``items`` in order, cut into runs of at most ``limit`` total size; an item larger
    than ``limit`` is a run of its own."""
    part: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if part and total + n > limit:
            yield part
            part, total = [], 0
        part.append(item)
        total += n
    if part:
        yield part


def _next_offsets(msgs: list[Message]) -> dict[tuple[str, int], int]:
    """Per topic partition, the offset after the batch's last message (what a commit
    names)."""
    offsets: dict[tuple[str, int], int] = {}
    for msg in msgs:
        topic, partition, offset = _position(msg)
        offsets[(topic, partition)] = max(offset + 1, offsets.get((topic, partition), 0))
    return offsets


def _position(msg: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a message read without error (all are set then)."""
    return str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)


def _usable(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's own constant
        logger.warning("input router: %s", err)
    return False


def _log_failed_commit(err: Any, partitions: list[TopicPartition]) -> None:
    if err is not None:
        logger.warning("input router: commit failed (the batch will be routed again): %s", err)


class RouterProcess:
    """An :class:`InputRouter` in a spawned child process.

    The child reports rejected rows (per topic and reason), dead letters (per topic) and
    per-partition lag through shared
    memory (no locks: one writer, and a lock held by a killed child would hang the worker),
    stops on SIGTERM (leaving its consumer group), and also when the worker that spawned it
    is gone, even killed with SIGKILL: an orphan must not keep reading."""

    def __init__(self, settings: Settings) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        # Pickled as it is: a JSON dump would mask the secrets and mark every field as set.
        self._settings = settings
        self._topics = routed_topics(settings)
        self._rejected = self._ctx.RawArray("q", len(self._topics) * len(REASONS))
        self._dead_letters = self._ctx.RawArray("q", len(self._topics))
        # Per topic, one slot per partition (up to LEADSTREAM_PARTITIONS of them).
        self._lags = self._ctx.RawArray("q", [-1] * (len(self._topics) * settings.partitions))
        self._reported = [0] * (len(self._topics) * len(REASONS))
        self._dead_reported = [0] * len(self._topics)
        self._stopping = False
        self._process = self._new_process()

    def _new_process(self) -> Any:
        return self._ctx.Process(
            target=_serve,
            args=(
                self._settings,
                self._rejected,
                self._dead_letters,
                self._lags,
                os.getpid(),
            ),
            name="leadstream-input-router",
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()

    def running(self) -> bool:
        return self._process.pid is not None and self._process.is_alive()

    def pid(self) -> int | None:
        """The running child's process id (None before it started or once it exited)."""
        return self._process.pid if self.running() else None

    def revive(self) -> int | None:
        """Start a new child if the running one exited unasked; its exit code if so."""
        if self._stopping or self._process.pid is None or self._process.is_alive():
            return None
        code: int | None = self._process.exitcode
        self._process = self._new_process()
        self._process.start()
        return code

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        if self._process.pid is None:
            return
        self._process.terminate()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()

    def rejects_since_last_call(self) -> dict[str, dict[Reason, int]]:
        """Rows the router rejected since the previous call, per topic and reason (for
        counters)."""
        now = list(self._rejected[:])
        out: dict[str, dict[Reason, int]] = {}
        for t, topic in enumerate(self._topics):
            for r, reason in enumerate(REASONS):
                i = t * len(REASONS) + r
                if now[i] > self._reported[i]:
                    out.setdefault(topic, {})[reason] = now[i] - self._reported[i]
        self._reported[:] = now
        return out

    def dead_letters_since_last_call(self) -> dict[str, int]:
        """Messages the router dead-lettered since the previous call, per topic."""
        now = list(self._dead_letters[:])
        out = {topic: now[t] - self._dead_reported[t] for t, topic in enumerate(self._topics)}
        self._dead_reported[:] = now
        return out

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, messages behind) of the partitions the router reads."""
        slots = self._settings.partitions
        return [
            (self._topics[i // slots], i % slots, lag)
            for i, lag in enumerate(self._lags[:])
            if lag >= 0
        ]


def _serve(settings: Settings, rejected: Any, dead_letters: Any, lags: Any, parent: int) -> None:
    """The child process: run the router until SIGTERM or until the parent is gone."""
    configure_logging(settings.log_level, settings.log_format)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # Ctrl-C in a terminal reaches the whole process group: the worker decides, via SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    topics = {topic: t for t, topic in enumerate(routed_topics(settings))}
    reasons = {reason: r for r, reason in enumerate(REASONS)}
    slots = settings.partitions

    def count(topic: str, by_reason: Mapping[Reason, int]) -> None:
        for reason, n in by_reason.items():
            rejected[topics[topic] * len(REASONS) + reasons[reason]] += n  # one writer: here

    def count_dead(topic: str) -> None:
        dead_letters[topics[topic]] += 1  # only this process writes it

    router = InputRouter(settings, on_rejected=count, on_dead_letter=count_dead)
    router.start()
    try:
        while not stopping.wait(0.5) and os.getppid() == parent:
            current = {
                topics[topic] * slots + p: lag for topic, p, lag in router.lags() if p < slots
            }
            lags[:] = [current.get(i, -1) for i in range(len(lags))]
    finally:
        router.stop()
