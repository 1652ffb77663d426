"""The input router: every input topic read, validated and routed by lead, bad messages
and rows rejected alone.

The four input topics (``lead-events``, ``audience-members``, ``send-triggers``,
``audience-filters``) are read outside faust, in a process of its own
(:class:`RouterProcess`, spawned by the worker); faust's agents read only the internal
topics leadstream writes itself. Source systems often publish one event per message, and
faust's per-message machinery (stream, event, acks; ~130 us a message on the event loop)
capped that at ~7,500 events/s on a 2-core machine, all of it on the loop that also applies
state and serves HTTP; and parsing a marketer's daily audiences (1,000,000 members) on that
loop took a third of its time while it applied them. Here messages are taken in batches,
parsed, grouped by the lead's partition and produced as
:class:`~leadstream.wire.commands.EventsBatch` and
:class:`~leadstream.wire.commands.MembersBatch` commands; a trigger becomes a
:class:`~leadstream.wire.commands.ClaimTrigger` to its send's home partition and an
audience filter the :class:`~leadstream.wire.commands.FilterPart` commands of every
partition. A process rather than a thread: parsing and applying then each have an
interpreter lock, and a core, of their own.

Bounds: whoever can write an input topic chooses what the router holds, so nothing read
is ever bigger than ``LEADSTREAM_MAX_MESSAGE_BYTES``. The consumer is aiokafka's, with the
bounded decompression of :mod:`leadstream.kafka.bounds` (librdkafka decompresses gzip,
snappy and lz4 batches whole, whatever their size; that module says how it was measured):
a batch that would decompress beyond the bound is one ``too_large`` reject naming its first
offset, a message beyond it after decompression is one too, and one poll returns about that
many bytes of values at most. Producing stays with confluent-kafka (idempotent, acks=all).

Delivery (step 1 of the exactly-once protocol in :mod:`leadstream.materialize.materializer`):
a batch's offsets are committed only once every command and reject it produced is
delivered (acks=all, idempotent), batches in order, so a crash replays at most uncommitted
batches; replayed events are duplicates and change nothing (dedupe), a replayed trigger
claims a send already claimed and a replayed filter part is the same part again (same
receive time and sequence number), a replayed reject is written again (rejects are at least
once). The consumer group is ``{app_id}-lead-events`` (its name from when it read that
topic alone). ``audience-members``, ``send-triggers`` and ``audience-filters`` were read by
faust's agents, in the worker's group, before this process read them: where this group has
no offset yet, it starts where that group committed (:meth:`InputRouter._assigned`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition
from confluent_kafka import KafkaException, Producer
from confluent_kafka import TopicPartition as LibrdkafkaPartition

from leadstream import tracing
from leadstream.domain.audience import MemberOp, parse_audience_members_message
from leadstream.domain.decode import decode_json
from leadstream.domain.ingest import IngestRules, LeadEvent, Rejected, parse_lead_events_message
from leadstream.domain.partitioning import group_by_partition, send_partition
from leadstream.domain.rejects import Reason, RowError
from leadstream.domain.send_state import PendingRecord
from leadstream.domain.sends import SendId, parse_audience_filter, parse_trigger
from leadstream.kafka import bounds
from leadstream.kafka.config import LARGE_MESSAGE_BYTES, KafkaConnection
from leadstream.kafka.io import produce
from leadstream.logs import configure_logging
from leadstream.settings import Settings
from leadstream.streams.retry import with_retries
from leadstream.wire.commands import (
    ClaimTrigger,
    Command,
    EventsBatch,
    MembersBatch,
    encode_command,
    filter_commands,
    row_slices,
)
from leadstream.wire.records import encode_json, reject_headers, reject_record

__all__ = ["InputRouter", "RouterProcess", "routed_topics", "router_group", "size_slices"]

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
# A reject keeps its message's key up to this size, and has none beyond.
MAX_REJECT_KEY_BYTES = 1024
# How long produced commands may take to be delivered before the router starts over.
DELIVERY_SECONDS = 60.0
# Bytes fetched per partition, and per request (as stored, compressed or not): a larger
# batch still comes whole, alone.
FETCH_PARTITION_BYTES = 1 << 20
FETCH_BYTES = LARGE_MESSAGE_BYTES
# The child counts rejects per topic and reason in shared memory, one slot for each, in
# this order (topic-major).
REASONS = tuple(Reason)


def router_group(settings: Settings) -> str:
    """The consumer group that reads the input topics."""
    return f"{settings.app_id}-lead-events"


def routed_topics(settings: Settings) -> tuple[str, str, str, str]:
    """The topics the router reads, in the order of its shared counters."""
    t = settings.topics
    return t.lead_events, t.audience_members, t.send_triggers, t.audience_filters


def inherited_topics(settings: Settings) -> tuple[str, str, str]:
    """The input topics faust's agents read, in the worker's group, before the router."""
    t = settings.topics
    return t.audience_members, t.send_triggers, t.audience_filters


@dataclass(slots=True)
class _Routed:
    """What one input message becomes: events and memberships (grouped by lead later),
    commands for given partitions, and rejects; ``rows`` it held (for the log)."""

    events: list[LeadEvent] = field(default_factory=list)
    members: list[MemberOp] = field(default_factory=list)
    commands: list[tuple[int, Command]] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    rows: int = 1


class InputRouter:
    """Reads the input topics in a thread; see the module docstring.

    ``on_rejected(topic, counts)`` and ``on_dead_letter(topic)`` count what it refused."""

    def __init__(
        self,
        settings: Settings,
        on_rejected: Callable[[str, Mapping[Reason, int]], None],
        on_dead_letter: Callable[[str], None] = lambda _topic: None,
    ) -> None:
        self._settings = settings
        self._connection = KafkaConnection.of(settings)  # every client of this process
        self._topics = settings.topics
        self._rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)
        self._on_rejected = on_rejected
        self._on_dead_letter = on_dead_letter
        self._stop = threading.Event()
        # Set from a failure (Kafka refused a write, the consumer broke) until the next
        # consumer read again: the worker is not ready meanwhile.
        self._failing = threading.Event()
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] = {}
        self._thread = threading.Thread(target=self._run, name="input-router", daemon=True)
        # One parser per topic: a message's bytes (within the bound), the message, the time.
        t = self._topics
        self._parsers: dict[str, Callable[[bytes, ConsumerRecord[Any, Any], int], _Routed]] = {
            t.lead_events: self._events,
            t.audience_members: self._members,
            t.send_triggers: self._trigger,
            t.audience_filters: self._filter,
        }

    def start(self) -> None:
        # Before the consumer exists: every batch it reads is then decompressed within
        # the bound (a message at the bound fits, with its batch's framing).
        bounds.install(
            self._settings.max_message_bytes + bounds.BATCH_OVERHEAD, bounds.Oversize.REPORT
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, messages behind) of the partitions this worker reads."""
        with self._lock:
            return [(topic, p, lag) for (topic, p), lag in sorted(self._lags.items())]

    def failing(self) -> bool:
        """Did the router fail, and has it not read again since?"""
        return self._failing.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                asyncio.run(self._consume())
            except Exception:  # noqa: BLE001 - start over from the committed offsets
                # Nothing was committed past what was delivered: the next consumer reads
                # it again (a fault of Kafka is never a reject, nor a skip).
                self._failing.set()
                logger.exception("input router failed; starting again in 1 s")
                self._stop.wait(1.0)

    async def _consume(self) -> None:
        settings, connection = self._settings, self._connection
        producer = connection.producer({"linger.ms": 2, "compression.type": "lz4"})
        consumer = connection.aiokafka_consumer(
            router_group(settings),
            client_id=f"{settings.app_id}-input-router",
            # Static membership, as the worker's own group (worker.py).
            group_instance_id=settings.group_instance_id,
            auto_offset_reset="earliest",
            # As librdkafka did: a source system writing in transactions is read as
            # committed.
            isolation_level="read_committed",
            max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
            fetch_max_bytes=FETCH_BYTES,
        )
        commits = _Commits(consumer, producer)
        rebalance = _Rebalance(self, consumer, commits)
        consumer.subscribe(list(routed_topics(settings)), listener=rebalance)
        await consumer.start()
        try:
            while not self._stop.is_set():
                if rebalance.failed is not None:
                    raise rebalance.failed
                timeout_ms = 5 if commits.in_flight else 100
                with bounds.read_budget(settings.max_message_bytes):
                    polled = await consumer.getmany(timeout_ms=timeout_ms, max_records=ROUTE_BATCH)
                if not polled and not commits.in_flight:
                    self._failing.clear()  # caught up, everything read delivered
                msgs = [msg for records in polled.values() for msg in records]
                for part in size_slices(msgs, _record_size, ROUTE_BYTES):
                    batch = _InFlight(_next_offsets(part))
                    self._route(producer, part, batch)
                    commits.in_flight.append(batch)
                    self._note_lags(consumer, batch.offsets)
                    if await commits.settle(wait=len(commits.in_flight) > MAX_IN_FLIGHT):
                        self._failing.clear()  # a batch was delivered whole
                if await commits.settle(wait=False):
                    self._failing.clear()
            await commits.settle(wait=True)
        finally:
            await consumer.stop()

    @property
    def settings(self) -> Settings:
        return self._settings

    async def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """Partitions of ``audience-members``, ``send-triggers`` and ``audience-filters``
        that this group never committed start where the worker's group had got to (faust's
        agents read those topics before this process did), not from the beginning."""
        if not partitions:
            return
        candidates = sorted(partitions)
        loop = asyncio.get_running_loop()
        start = await loop.run_in_executor(None, self._inherited_offsets, candidates)
        if not start:
            return
        logger.info(
            "starting where the worker group committed: %s",
            {f"{tp.topic}[{tp.partition}]": offset for tp, offset in start.items()},
        )
        # Committed for this group too at once: until then it has no offset there, and
        # its lag (as Kafka's tools compute it) would be the whole topic.
        await consumer.commit(start)
        for tp, offset in start.items():
            consumer.seek(tp, offset)

    def _inherited_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Of ``partitions``, those this group has no offset for, at the offset the
        worker's group committed (none where it has none either)."""
        connection = self._connection
        asked = [LibrdkafkaPartition(tp.topic, tp.partition) for tp in partitions]
        ours = connection.consumer(router_group(self._settings))
        try:
            fresh = [
                LibrdkafkaPartition(tp.topic, tp.partition)
                for tp in ours.committed(asked, timeout=30)
                if tp.offset < 0
            ]
        finally:
            ours.close()
        if not fresh:
            return {}
        earlier = connection.consumer(self._settings.app_id)
        try:
            return {
                TopicPartition(tp.topic, tp.partition): tp.offset
                for tp in earlier.committed(fresh, timeout=30)
                if tp.offset >= 0
            }
        finally:
            earlier.close()

    def _route(
        self, producer: Producer, msgs: list[ConsumerRecord[Any, Any]], batch: _InFlight
    ) -> None:
        """Produce the batch's commands and rejects; ``batch`` counts their deliveries.

        With tracing on, the batch is a span linked to each traced message, and a traced
        message is routed in a span of its own, a child of the producer's: its commands are
        produced apart from the others', carrying that span's context (leadstream.tracing).
        """
        now = time.time_ns() // 1_000_000
        parents = (
            [tracing.context_of(tracing.headers_of(msg.headers)) for msg in msgs]
            if tracing.enabled()
            else [None] * len(msgs)
        )
        with tracing.start(
            "route batch",
            links=tracing.links_of([p for p in parents if p is not None]),
            attributes={"messaging.batch.message_count": len(msgs)},
        ):
            untraced = _Routed()
            for msg, parent in zip(msgs, parents, strict=True):
                if parent is None or not self._route_traced(producer, msg, parent, now, batch):
                    self._route_one(producer, msg, now, batch, into=untraced)
            self._produce_commands(producer, untraced, batch)

    def _route_traced(
        self,
        producer: Producer,
        msg: ConsumerRecord[Any, Any],
        parent: Any,
        now: int,
        batch: _InFlight,
    ) -> bool:
        """Route ``msg`` in a span of its own, child of ``parent`` and linked to the batch's
        (the current span), its commands apart from the batch's; False, having done
        nothing, when the sampler does not record it (it then costs what an untraced
        message does)."""
        batch_span = tracing.current()
        with tracing.start(
            "route",
            parent=parent,
            kind=tracing.SpanKind.CONSUMER,
            links=[tracing.Link(batch_span.get_span_context())],
            attributes={
                "messaging.destination.name": msg.topic,
                "messaging.destination.partition.id": str(msg.partition),
                "messaging.kafka.offset": msg.offset,
            },
        ) as span:
            if not span.is_recording():
                return False
            own = _Routed()
            self._route_one(producer, msg, now, batch, into=own)
            self._produce_commands(producer, own, batch)
        return True

    def _route_one(
        self,
        producer: Producer,
        msg: ConsumerRecord[Any, Any],
        now: int,
        batch: _InFlight,
        *,
        into: _Routed,
    ) -> None:
        """Parse ``msg``: its rejects are produced, what it became is added to ``into``."""
        routed = self._parse(msg, now)
        into.events.extend(routed.events)
        into.members.extend(routed.members)
        into.commands.extend(routed.commands)
        if not routed.rejects:
            return
        topic, partition, offset = _position(msg)
        if isinstance(msg.value, bounds.OversizeBatch):
            offset = msg.value.first_offset  # named where a reader finds the batch
        for rejected in routed.rejects:
            record = reject_record(rejected, source=topic, partition=partition, offset=offset)
            batch.waiting += 1
            produce(
                producer,
                self._topics.rejects,
                encode_json(record),
                _reject_key(msg.key),
                on_delivery=batch.delivered,
                headers=reject_headers(topic, rejected.reason),
            )
        self._on_rejected(topic, Counter(r.reason for r in routed.rejects))
        logger.info(
            "%s[%s]@%s: %d of %d rows rejected",
            topic,
            partition,
            offset,
            len(routed.rejects),
            routed.rows,
        )

    def _produce_commands(self, producer: Producer, routed: _Routed, batch: _InFlight) -> None:
        """``routed``'s rows grouped by partition into commands, and its own commands, on
        the lead-keyed topic, with the current span's context."""
        partitions = self._settings.partitions
        by_partition = (
            [
                (partition, encode_command(EventsBatch(part)))
                for partition, rows in group_by_partition(routed.events, partitions).items()
                for part in row_slices(rows)
            ]
            + [
                (partition, encode_command(MembersBatch(part)))
                for partition, rows in group_by_partition(routed.members, partitions).items()
                for part in row_slices(rows)
            ]
            + [(partition, encode_command(command)) for partition, command in routed.commands]
        )
        headers = tracing.kafka_headers()
        for partition, command in by_partition:
            batch.waiting += 1
            produce(
                producer,
                self._topics.by_lead,
                command,
                partition=partition,
                on_delivery=batch.delivered,
                headers=headers,
            )

    def _parse(self, msg: ConsumerRecord[Any, Any], now: int) -> _Routed:
        """One message's commands and rejects. A message beyond the size bound is one
        ``too_large`` reject; a message whose parsing raised something unexpected on every
        attempt is one ``internal_error`` reject (streams/retry.py)."""
        topic, partition, offset = _position(msg)
        value = msg.value
        limit = self._settings.max_message_bytes
        if isinstance(value, bounds.OversizeBatch):
            span = (
                f"offsets {value.first_offset} to {value.last_offset}"
                if value.last_offset > value.first_offset
                else f"offset {value.first_offset}"
            )
            logger.warning(
                "%s[%s]: a batch compressed with %s (%s) decompresses beyond %d bytes: skipped",
                topic,
                partition,
                value.codec,
                span,
                limit,
            )
            detail = (
                f"the batch at {span}, compressed with {value.codec}, decompresses to more"
                f" than {limit} bytes; none of its messages was read"
            )
            return _Routed(rejects=[Rejected(Reason.TOO_LARGE, detail, raw=b"")])
        raw: bytes = value or b""
        size = len(raw) + len(msg.key or b"")
        if size > limit:
            detail = f"the message (key and value) is {size} bytes; at most {limit} are read"
            return _Routed(rejects=[Rejected(Reason.TOO_LARGE, detail, raw=raw)])
        parse = self._parsers[topic]
        outcome: _Routed | Rejected = with_retries(
            lambda: parse(raw, msg, now), raw=raw, what=f"{topic}[{partition}]@{offset}"
        )
        if isinstance(outcome, Rejected):
            self._on_dead_letter(topic)
            return _Routed(rejects=[outcome])
        return outcome

    def _events(self, raw: bytes, _msg: Any, now: int) -> _Routed:
        parsed = parse_lead_events_message(raw, now_ms=now, rules=self._rules)
        return _Routed(events=parsed.events, rejects=parsed.rejects, rows=parsed.received)

    def _members(self, raw: bytes, _msg: Any, _now: int) -> _Routed:
        parsed = parse_audience_members_message(raw, region=self._settings.default_region)
        return _Routed(members=parsed.members, rejects=parsed.rejects, rows=parsed.received)

    def _trigger(self, raw: bytes, msg: ConsumerRecord[Any, Any], now: int) -> _Routed:
        """A trigger is claimed in its send's home partition, the first claim wins."""
        try:
            trigger = parse_trigger(decode_json(raw))
        except RowError as err:
            return _Routed(rejects=[Rejected(err.reason, err.detail, raw=raw)])
        # Its send's spans are children of the span it is routed in (leadstream.tracing).
        pending = PendingRecord.on_receipt(trigger, _received_ms(msg, now), tracing.traceparent())
        home = send_partition(trigger.organization_id, trigger.send_id, self._settings.partitions)
        return _Routed(commands=[(home, ClaimTrigger(pending))])

    def _filter(self, raw: bytes, msg: ConsumerRecord[Any, Any], now: int) -> _Routed:
        """An audience filter goes to every partition: all its externalIds, and each
        partition's own phones. Its sequence number orders filters received in the same
        millisecond, the same on every reprocessing."""
        try:
            org, campaign, send, spec = parse_audience_filter(
                decode_json(raw), region=self._settings.default_region
            )
        except RowError as err:
            return _Routed(rejects=[Rejected(err.reason, err.detail, raw=raw)])
        parts = filter_commands(
            SendId(org, send),
            campaign,
            spec,
            received_at=_received_ms(msg, now),
            seq=(msg.partition << 48) | msg.offset,
            partitions=self._settings.partitions,
        )
        return _Routed(commands=list(parts))

    def _note_lags(self, consumer: Any, next_offsets: dict[tuple[str, int], int]) -> None:
        lags = {}
        for (topic, partition), offset in next_offsets.items():
            high = consumer.highwater(TopicPartition(topic, partition))
            if high is not None:
                lags[(topic, partition)] = max(0, high - offset)
        with self._lock:
            self._lags.update(lags)

    def _forget_lags(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._lags.pop((tp.topic, tp.partition), None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """What was routed is committed before a partition goes to another reader; a partition
    that comes may start where the worker's group had got to.

    aiokafka logs and swallows what a listener raises: the first failure is kept in
    ``failed`` for the router to raise (and start over), and a partition whose start
    could not be decided stays paused meanwhile."""

    def __init__(self, router: InputRouter, consumer: Any, commits: _Commits) -> None:
        self._router = router
        self._consumer = consumer
        self._commits = commits
        self.failed: BaseException | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self._commits.settle(wait=True)
        except Exception as exc:
            self.failed = self.failed or exc
            raise
        finally:
            self._router._forget_lags(revoked)  # noqa: SLF001 - the listener is the router's

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Paused before anything is awaited: no record of these partitions is handed out
        # before their start is decided (the fetcher runs while this awaits).
        held = [tp for tp in assigned if tp.topic in set(inherited_topics(self._router.settings))]
        self._consumer.pause(*held)
        try:
            await self._router._assigned(self._consumer, held)  # noqa: SLF001
        except Exception as exc:
            self.failed = self.failed or exc
            raise
        self._consumer.resume(*held)


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
    it and every batch before it are delivered. Delivery reports are served on the
    router's own thread only (producer.poll and flush there), so the counts above are
    never touched by two threads.

    One commit is under way at a time; what is settled meanwhile waits, merged, for the
    next. aiokafka holds a group's commit lock for one attempt only: a commit that meets a
    moving coordinator (or a group still loading) lets go, backs off and tries again, so a
    later commit can land first and the earlier one then move the group's offset back,
    for good where no more messages come (seen when a broker was killed)."""

    def __init__(self, consumer: Any, producer: Producer) -> None:
        self._consumer = consumer
        self._producer = producer
        self.in_flight: deque[_InFlight] = deque()
        self._lock = asyncio.Lock()
        self._committing: asyncio.Future[Any] | None = None
        # Settled offsets not yet handed to a commit, the highest per partition.
        self._unsent: dict[tuple[str, int], int] = {}

    async def settle(self, *, wait: bool) -> int:
        """Commit, in order, the offsets of the batches whose every message is delivered;
        with ``wait``, first wait for all deliveries, then for every commit. Returns how
        many batches were settled; a batch whose delivery failed raises, and so does a
        failed commit waited for."""
        async with self._lock:
            if wait:
                await _deliver_all(self._producer, DELIVERY_SECONDS)
            self._producer.poll(0)
            settled = 0
            while self.in_flight and self.in_flight[0].waiting == 0:
                batch = self.in_flight.popleft()
                if batch.error is not None:
                    raise KafkaException(batch.error)
                self._unsent.update(batch.offsets)  # in order: a later batch's offset is higher
                settled += 1
            self._commit_next()
            while wait and self._committing is not None:
                committing = self._committing
                try:
                    await committing
                finally:
                    if self._committing is committing:
                        self._committing = None
                self._commit_next()
            return settled

    def _commit_next(self) -> None:
        """Start committing what is settled, unless a commit is still under way."""
        if self._committing is not None:
            if not self._committing.done():
                return
            self._committing = None
        if not self._unsent:
            return
        offsets, self._unsent = self._unsent, {}
        commit = asyncio.ensure_future(
            self._consumer.commit(
                {TopicPartition(topic, p): o for (topic, p), o in offsets.items()}
            )
        )
        commit.add_done_callback(lambda done: self._failed(done, offsets))
        self._committing = commit

    def _failed(self, commit: asyncio.Future[Any], offsets: dict[tuple[str, int], int]) -> None:
        """A failed commit's offsets go with the next commit, for the partitions still
        assigned here (one that moved is read again by its next reader, from the group's
        offset)."""
        if commit.cancelled() or commit.exception() is None:
            return
        logger.warning(
            "input router: commit failed (tried again with the next one): %s", commit.exception()
        )
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        for key, offset in offsets.items():
            if key in assigned:
                self._unsent.setdefault(key, offset)  # a later settled offset is higher


async def _deliver_all(producer: Producer, seconds: float) -> None:
    """Until every message produced is delivered, in short waits so that the consumer's
    heartbeats (on this event loop) go on meanwhile."""
    deadline = time.monotonic() + seconds
    while producer.flush(0.05) > 0:
        if time.monotonic() > deadline:
            raise KafkaException(f"routed messages not delivered in {seconds:.0f} s")
        await asyncio.sleep(0)


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


def _record_size(msg: ConsumerRecord[Any, Any]) -> int:
    return max(0, int(msg.serialized_value_size)) + max(0, int(msg.serialized_key_size))


def _reject_key(key: bytes | None) -> bytes | None:
    """A reject's key: the message's, unless it is too long to be one (a hostile key must
    not make the reject itself too large for the topic)."""
    return key if key is not None and len(key) <= MAX_REJECT_KEY_BYTES else None


def _received_ms(msg: ConsumerRecord[Any, Any], now: int) -> int:
    """When the broker took ``msg`` (``send-triggers`` and ``audience-filters`` are created
    with LogAppendTime): the same on every reprocessing, so a replayed trigger or filter is
    judged exactly as before."""
    return int(msg.timestamp) if msg.timestamp and msg.timestamp > 0 else now


def _next_offsets(msgs: list[ConsumerRecord[Any, Any]]) -> dict[tuple[str, int], int]:
    """Per topic partition, the offset after the batch's last message (what a commit
    names)."""
    offsets: dict[tuple[str, int], int] = {}
    for msg in msgs:
        topic, partition, offset = _position(msg)
        offsets[(topic, partition)] = max(offset + 1, offsets.get((topic, partition), 0))
    return offsets


def _position(msg: ConsumerRecord[Any, Any]) -> tuple[str, int, int]:
    return msg.topic, msg.partition, msg.offset


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
        self._failing = self._ctx.RawValue("b", 0)
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
                self._failing,
                os.getpid(),
            ),
            name="leadstream-input-router",
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()

    def running(self) -> bool:
        return self._process.pid is not None and self._process.is_alive()

    def routing(self) -> bool:
        """Running, and not failing (readiness asks this)."""
        return self.running() and not self._failing.value

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


def _serve(
    settings: Settings, rejected: Any, dead_letters: Any, lags: Any, failing: Any, parent: int
) -> None:
    """The child process: run the router until SIGTERM or until the parent is gone."""
    configure_logging(settings.log_level, settings.log_format)
    tracing.configure()
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
            failing.value = 1 if router.failing() else 0
    finally:
        router.stop()
        tracing.shutdown()
