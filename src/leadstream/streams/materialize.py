"""Materialization with exactly-once output, using Kafka transactions directly.

faust's ``exactly_once`` ties each transaction to the partition of the topic a message
is sent to, which fits tables but not an output topic keyed by send. So the output of a
send is written here with confluent-kafka transactional producers, one per (role,
partition), named ``{app}-mat-{p}`` and ``{app}-sum-{p}``:

* A partition's share of a send (all its chunks) and its ``done`` report on the progress
  topic (partition p) are one transaction. A new owner of partition p initializes the
  same transactional id, which fences the old owner and aborts its open transaction, then
  reads the progress topic (read_committed) up to its end before deciding what is done.
* The summary is emitted by the send's home partition once all partitions reported, in
  one transaction with a ``summarized`` marker on the progress topic.

Commit order, documented once here: chunks and report are produced and committed
together; only then is the partition's local state updated (``finish_send``: done marker,
held trigger and filters dropped), and a crash in between is repaired on restart because
the progress topic already says "done".

A held send whose moment is near (``LEADSTREAM_PREPARE_SECONDS``) is evaluated ahead, a step
at a time between other work, and kept current through the store's watch
(:mod:`leadstream.domain.prepared`): at the moment only the leads written since are read
again. Nothing about the output changes: the result is the one a full pass would give then.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from leadstream.domain.partitioning import send_partition
from leadstream.domain.prepared import PreparedShare
from leadstream.domain.send_state import (
    PendingRecord,
    audience_filter_for,
    due_sends,
    finish_send,
    held_sends,
    is_due,
)
from leadstream.domain.sends import (
    AudienceFilterSpec,
    Counts,
    SendRules,
    SendTrigger,
    done_record,
    encode_chunks,
    materialize_partition,
    recipient_json,
    send_key,
    summary_record,
)
from leadstream.kafka_admin import LARGE_MESSAGE_BYTES, poll_batch, produce
from leadstream.streams.topology import Topology, now_ms

__all__ = ["Materializer", "ProgressView"]

logger = logging.getLogger(__name__)

SendId = tuple[str, str]
ShareId = tuple[int, str, str]  # (partition, organizationId, sendId)
_json = msgspec.json.Encoder()


class ProgressView:
    """The progress topic as this worker has read it (read_committed), in a thread."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._topic = topic
        self._partitions = partitions
        self._lock = threading.Lock()
        self._done: dict[SendId, dict[int, dict[str, Any]]] = {}
        self._summarized: set[SendId] = set()
        self._positions: dict[int, int] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"leadstream-progress-view-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        self._probe = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "leadstream-progress-probe"}
        )
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
                msgs = poll_batch(self._consumer)
                for msg in msgs:
                    value = msg.value()
                    if msg.error() is None and value:
                        self._apply_value(value)
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

    def _apply_value(self, value: bytes) -> None:
        try:
            self._apply(msgspec.json.decode(value))
        except (msgspec.DecodeError, AttributeError, KeyError, TypeError, ValueError):
            # Not written by a materializer: skipped alone. (Raising would lose the rest of
            # the poll, since the consumer's position has moved past it.)
            logger.warning("progress view: skipped an unreadable record")

    def _apply(self, record: dict[str, Any]) -> None:
        key = (str(record["organizationId"]), str(record["sendId"]))
        if record.get("type") == "done":
            self.record_done(key, int(record["partition"]), record)
        elif record.get("type") == "summarized":
            self.record_summarized(key)

    def record_done(self, key: SendId, partition: int, record: dict[str, Any]) -> None:
        with self._lock:
            self._done.setdefault(key, {})[partition] = record

    def record_summarized(self, key: SendId) -> None:
        with self._lock:
            self._summarized.add(key)

    def is_done(self, key: SendId, partition: int) -> bool:
        with self._lock:
            return partition in self._done.get(key, {})

    def is_summarized(self, key: SendId) -> bool:
        with self._lock:
            return key in self._summarized

    def complete(self) -> Iterator[tuple[SendId, list[dict[str, Any]]]]:
        """Sends every partition has reported on and no summary was emitted for."""
        with self._lock:
            ready = [
                (key, [parts[p] for p in sorted(parts)])
                for key, parts in self._done.items()
                if len(parts) == self._partitions and key not in self._summarized
            ]
        yield from ready

    def end_offset(self, partition: int) -> int:
        _low, high = self._probe.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=10, cached=False
        )
        return int(high)

    def position(self, partition: int) -> int:
        with self._lock:
            return self._positions.get(partition, 0)


class Materializer:
    """Materializes due sends of this worker's partitions; emits summaries it is home for."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        s = topo.settings
        self.view = ProgressView(s.kafka_bootstrap, s.topics.send_progress, s.partitions)
        self._producers: dict[tuple[str, int], Producer] = {}
        self._wake = asyncio.Event()
        self._sleep = 0.5
        # Held sends evaluated ahead of their moment (domain/prepared.py), valid while no
        # rebalance starts: restores write the store without the watch seeing it.
        self._prepared: dict[ShareId, PreparedShare] = {}
        self._prepared_in = -1
        self._to_build: list[ShareId] = []
        self._builder: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """The loop: every wake-up, due moment or half second, do what is due."""
        self.view.start()
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._sleep)
                except TimeoutError:
                    pass
                self._wake.clear()
                if not self.topo.is_ready():
                    self._sleep = 0.5
                    continue
                try:
                    await self._step()
                except Exception:  # noqa: BLE001 - retried on the next round
                    logger.exception("materialize round failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            if self._builder is not None:
                self._builder.cancel()
            self.view.stop()

    async def _step(self) -> None:
        s = self.topo.settings
        active = set(self.topo.active_partitions())
        for role, partition in list(self._producers):
            if partition not in active:
                self._producers.pop((role, partition))
        # Fencing and reading the progress topic take a while: not at a send's moment.
        for partition in sorted(active):
            for role in ("mat", "sum"):
                await self._producer(role, partition)
        if self._prepared_in != self.topo.rebalances():
            for share_id in list(self._prepared):
                self._drop(share_id)
            self._prepared_in = self.topo.rebalances()
        lead_ms = s.materialize_lead_seconds * 1000
        # Partitions side by side: one's transaction commits while the next is computed.
        await asyncio.gather(*(self._materialize_due(p, lead_ms) for p in sorted(active)))
        next_due: int | None = None
        for partition in sorted(active):
            held = held_sends(self.topo.store, partition)
            self._prepare(partition, held, lead_ms)
            for record in held:
                if not is_due(record, now_ms=now_ms(), lead_ms=lead_ms):
                    at = record.trigger.due_at(lead_ms)
                    next_due = at if next_due is None else min(next_due, at)
        for share_id in [i for i in self._prepared if i[0] not in active]:
            self._drop(share_id)
        # Wake at the next due moment rather than up to half a second after it.
        self._sleep = 0.5 if next_due is None else min(0.5, max(0.0, next_due - now_ms()) / 1000)
        n = self.topo.settings.partitions
        for key, dones in self.view.complete():
            home = send_partition(key[0], key[1], n)
            if home in active:
                await self._summarize(home, key, dones)

    async def _materialize_due(self, partition: int, lead_ms: int) -> None:
        for record in due_sends(self.topo.store, partition, now_ms=now_ms(), lead_ms=lead_ms):
            try:
                await self._materialize(partition, record)
            except Exception:  # noqa: BLE001 - one failing send must not hold up the others
                t = record.trigger
                logger.exception(
                    "send %s:%s partition %d failed; retrying next round",
                    t.organization_id,
                    t.send_id,
                    partition,
                )

    def _prepare(self, partition: int, held: list[PendingRecord], lead_ms: int) -> None:
        """Start evaluating the held sends whose moment is near; forget the ones no longer
        held (materialized, or finished by a previous owner)."""
        s = self.topo.settings
        horizon = now_ms() + s.prepare_seconds * 1000
        held_ids = set()
        for record in held:
            t = record.trigger
            share_id = (partition, t.organization_id, t.send_id)
            held_ids.add(share_id)
            if (
                s.prepare_seconds == 0
                or share_id in self._prepared
                or is_due(record, now_ms=now_ms(), lead_ms=lead_ms)
                or t.due_at(lead_ms) > horizon
            ):
                continue
            audience_filter, _late = audience_filter_for(self.topo.store, partition, t)
            share = PreparedShare(self._rules(t, audience_filter), partition)
            # Watch first: a write during the pass is then evaluated again at the moment.
            self.topo.store.watch(partition, t.organization_id, share.changed)
            self._prepared[share_id] = share
            self._to_build.append(share_id)
        for share_id in [i for i in self._prepared if i[0] == partition and i not in held_ids]:
            self._drop(share_id)
        if self._to_build and (self._builder is None or self._builder.done()):
            self._builder = asyncio.create_task(self._build_prepared())

    async def _build_prepared(self) -> None:
        """Evaluate prepared shares one at a time, a step at a time, between other work."""
        while self._to_build:
            share_id = self._to_build.pop(0)
            share = self._prepared.get(share_id)
            started = time.perf_counter()
            for _ in share.steps(self.topo.store) if share is not None else ():
                await asyncio.sleep(0)
                if self._prepared.get(share_id) is not share:
                    break  # dropped (a rebalance, or materialized meanwhile)
            else:
                if share is not None and share.complete:
                    logger.info(
                        "send %s:%s partition %d prepared: %d members in %.2f s",
                        share_id[1],
                        share_id[2],
                        share_id[0],
                        len(share.outcomes),
                        time.perf_counter() - started,
                    )

    def _drop(self, share_id: ShareId) -> PreparedShare | None:
        share = self._prepared.pop(share_id, None)
        if share is not None:
            self.topo.store.unwatch(share_id[0], share_id[1], share.changed)
        return share

    def _rules(self, trigger: SendTrigger, audience_filter: AudienceFilterSpec | None) -> SendRules:
        s = self.topo.settings
        return SendRules.of(
            trigger,
            audience_filter,
            opt_out_type=s.opt_out_event_type,
            opt_in_type=s.opt_in_event_type,
        )

    def _partition_result(
        self, partition: int, rules: SendRules, share: PreparedShare | None
    ) -> tuple[list[bytes], Counts, str]:
        """The partition's recipients (encoded) and counts: from its prepared share when
        that is still valid (same rules, few changes since), otherwise by a full pass; and
        which of the two it was."""
        store = self.topo.store
        if share is not None and share.rules == rules:
            share.finish(store)
            if share.worth_refreshing():
                changed = share.refresh(store)
                how = f"prepared, {changed} leads evaluated again"
                return list(share.recipients.values()), share.counts(), how
        result = materialize_partition(
            store,
            partition,
            rules.trigger,
            rules.audience_filter,
            opt_out_type=rules.opt_out_type,
            opt_in_type=rules.opt_in_type,
        )
        entries = [recipient_json(phone, external_id) for phone, external_id in result.recipients]
        return entries, result.counts, "full pass"

    async def _producer(self, role: str, partition: int) -> Producer:
        existing = self._producers.get((role, partition))
        if existing is not None:
            return existing
        s = self.topo.settings
        producer = Producer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "transactional.id": f"{s.app_id}-{role}-{partition}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.max.bytes": LARGE_MESSAGE_BYTES,
                "transaction.timeout.ms": 60_000,
            }
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, producer.init_transactions, 60)
        # Fenced and aborted: what the progress topic says now is final for this partition.
        end = await loop.run_in_executor(None, self.view.end_offset, partition)
        for _ in range(600):
            if self.view.position(partition) >= end:
                break
            await asyncio.sleep(0.1)
        else:
            raise TimeoutError(f"progress partition {partition} not read up to {end}")
        self._producers[(role, partition)] = producer
        return producer

    async def _transaction(
        self, role: str, partition: int, messages: list[tuple[str, bytes, bytes, int | None]]
    ) -> None:
        producer = await self._producer(role, partition)

        def run() -> None:
            producer.begin_transaction()
            try:
                for topic, key, value, target in messages:
                    produce(producer, topic, value, key, partition=target)
                producer.commit_transaction(60)
            except KafkaException:
                try:
                    producer.abort_transaction(30)
                except KafkaException:
                    pass
                raise

        try:
            await asyncio.get_running_loop().run_in_executor(None, run)
        except KafkaException:
            # Fenced (the partition moved) or failed: a fresh producer starts clean next time.
            self._producers.pop((role, partition), None)
            raise

    async def _materialize(self, partition: int, record: PendingRecord) -> None:
        topo, s = self.topo, self.topo.settings
        t = record.trigger
        key = (t.organization_id, t.send_id)
        await self._producer("mat", partition)
        if self.view.is_done(key, partition):
            self._drop((partition, *key))
            finish_send(topo.store, partition, *key)
            return
        started = time.perf_counter()
        behind_ms = now_ms() - t.due_at(s.materialize_lead_seconds * 1000)
        share = self._drop((partition, *key))
        audience_filter, late_filters = audience_filter_for(topo.store, partition, t)
        rules = self._rules(t, audience_filter)
        recipients, counts, how = self._partition_result(partition, rules, share)
        chunks = encode_chunks(t, partition, recipients, s.chunk_size)
        done = done_record(
            t,
            partition=partition,
            late=record.late,
            materialized_at=now_ms(),
            recipient_count=len(recipients),
            counts=counts,
            chunk_count=len(chunks),
            late_audience_filters=late_filters,
        )
        out_key = send_key(*key).encode()
        messages: list[tuple[str, bytes, bytes, int | None]] = [
            (s.topics.send_recipients, out_key, chunk, None) for chunk in chunks
        ]
        messages.append((s.topics.send_progress, out_key, _json.encode(done), partition))
        computed = time.perf_counter()
        await self._transaction("mat", partition, messages)
        self.view.record_done(key, partition, done)
        finish_send(topo.store, partition, *key)
        topo.metrics.materialize_seconds.observe(time.perf_counter() - started)
        logger.info(
            "send %s:%s partition %d: %d recipients in %d chunks (%s); began %d ms after the"
            " moment, computed in %d ms, committed in %d ms",
            key[0],
            key[1],
            partition,
            len(recipients),
            len(chunks),
            how,
            behind_ms,
            1000 * (computed - started),
            1000 * (time.perf_counter() - computed),
        )

    async def _summarize(
        self, home: int, key: tuple[str, str], dones: list[dict[str, Any]]
    ) -> None:
        s = self.topo.settings
        await self._producer("sum", home)
        if self.view.is_summarized(key):
            return
        summary = summary_record(dones)
        out_key = send_key(*key).encode()
        marker = {"type": "summarized", "organizationId": key[0], "sendId": key[1]}
        await self._transaction(
            "sum",
            home,
            [
                (s.topics.send_recipients, out_key, _json.encode(summary), None),
                (s.topics.send_progress, out_key, _json.encode(marker), home),
            ],
        )
        self.view.record_summarized(key)
        logger.info("send %s:%s summary: %d recipients", key[0], key[1], summary["recipientCount"])
