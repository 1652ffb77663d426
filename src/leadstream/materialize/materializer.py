"""The materializer: turns each held send into its recipient list on ``send-recipients``,
exactly once, per partition, and emits each send's summary from its home partition.

How a send comes out exactly once, end to end:

1. Input is delivered at least once and applied idempotently. The lead-events router
   commits a batch's offsets only once every command it produced is delivered
   (:mod:`leadstream.streams.router`); faust commits the other input topics after their
   agents sent on. A replay changes nothing: events are deduplicated, memberships are
   set-like, the first claim of a send wins, a filter part is keyed by its own position.
2. The apply agent writes each partition's commands in one order into the lead table,
   whose changelog faust keeps, so a new owner restores the same state
   (:mod:`leadstream.streams.apply`).
3. Before a worker decides anything for a partition, it initializes that partition's
   transactional producers (``{app}-mat-{p}``, ``{app}-sum-{p}``): this fences any earlier
   owner and aborts what it left open. Then it reads the progress topic's partition p to
   its end, read_committed (:meth:`TransactionalOutput.ready`).
4. A due send whose ``done`` for partition p is already on the progress topic is out:
   only step 7 remains.
5. The partition's recipients and counts are computed from its index
   (:func:`leadstream.domain.evaluate.evaluate`), and what the send did to each member is
   recorded for explain (a repeat of 5 after a crash records it again).
6. All the partition's chunks on ``send-recipients`` and its ``done`` record on the
   progress topic (partition p) are one transaction.
7. Only then is the local state finished: the send's recipients enter the partition's
   send history (what frequency caps count), then the done marker is written and the
   held trigger and filters are dropped, changelogged. A crash between 6 and 7 is
   repaired by step 4, which does 7; a send therefore counts once against the caps,
   and only once its output is committed.
8. The send's home partition, once the progress topic holds every partition's ``done``,
   writes the summary and a ``summarized`` marker in one transaction of ``{app}-sum-{home}``
   (after the same fence and read, step 3), unless the marker is there already.

A dispatcher reading with ``isolation.level=read_committed`` therefore sees each
recipient once and one summary, after every chunk, across crashes and rebalances.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from opentelemetry.trace import Span

from leadstream import tracing
from leadstream.domain.evaluate import evaluate
from leadstream.domain.explain import deliver_send, record_send
from leadstream.domain.partitioning import send_partition
from leadstream.domain.policies.us_tcpa import policy_file
from leadstream.domain.send_state import (
    PendingRecord,
    audience_filter_for,
    due_sends,
    ensure_bucket_key,
    finish_send,
    held_sends,
    ready_at,
)
from leadstream.domain.sends import AudienceFilterSpec, SendId, SendRules, SendTrigger
from leadstream.index.table import IndexedStore
from leadstream.kafka.config import KafkaConnection
from leadstream.logs import log_fields
from leadstream.materialize.output import OutMessage, Role, TransactionalOutput
from leadstream.materialize.progress import ProgressView
from leadstream.materialize.schedule import Schedule
from leadstream.metrics import Metrics
from leadstream.settings import Settings
from leadstream.streams.topology import now_ms
from leadstream.wire.records import (
    PartitionDone,
    Summarized,
    done_record,
    encode_chunks,
    encode_json,
    send_headers,
    send_key,
    summary_record,
)

__all__ = ["Materializer", "summary_delay_seconds"]

logger = logging.getLogger(__name__)


class Materializer:
    """Materializes due sends of this worker's partitions; emits summaries it is home for."""

    def __init__(
        self,
        store: IndexedStore,
        settings: Settings,
        connection: KafkaConnection,
        metrics: Metrics,
        *,
        owned: Callable[[], list[int]],
        ready: Callable[[], bool],
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._owned = owned
        self._ready = ready
        self.progress = ProgressView(connection, settings.topics.send_progress, settings.partitions)
        self.output = TransactionalOutput(connection, settings.app_id, self.progress)
        self.schedule = Schedule()
        self._lead_ms = settings.materialize_lead_seconds * 1000
        # When the next held send may be materialized (None: none held), as of the last round.
        self._next_ready_ms: int | None = None

    def wake(self) -> None:
        """A send was held: look now rather than at the next tick."""
        self.schedule.wake()

    def send_due_within(self, ms: int) -> bool:
        """Whether a held send may be materialized in the next ``ms`` (as of the last
        round): background work keeps off the interpreter meanwhile."""
        return self._next_ready_ms is not None and self._next_ready_ms <= now_ms() + ms

    async def run(self) -> None:
        """The loop: every wake-up, due moment or half second, do what is due."""
        self.progress.start()
        try:
            while True:
                await self.schedule.wait()
                if not self._ready():
                    self.schedule.idle()
                    continue
                try:
                    await self._round()
                except Exception:  # noqa: BLE001 - retried on the next round
                    logger.exception("materialize round failed; retrying")
                    await asyncio.sleep(1.0)
        finally:
            self.progress.stop()

    async def _round(self) -> None:
        active = set(self._owned())
        self.output.keep_only(active)
        store = self._store
        # Fencing and reading the progress topic take a while (a broker round trip or
        # more each): not at a send's moment, and the partitions' all at once, not one
        # after another. (Their indexes are built ahead too: leadstream.materialize.warmup.)
        await asyncio.gather(*(self.output.ready(role, p) for p in sorted(active) for role in Role))
        for partition in sorted(active):  # members kept before holdouts existed
            ensure_bucket_key(store, partition)
        # Partitions side by side: one's transaction commits while the next is computed.
        await asyncio.gather(*(self._materialize_due(p) for p in sorted(active)))
        held = [r for p in sorted(active) for r in held_sends(store, p)]
        now = now_ms()
        self.schedule.plan(held, now_ms=now, lead_ms=self._lead_ms)
        for send, dones in self.progress.complete():
            home = send_partition(send.organization_id, send.send_id, self._settings.partitions)
            if home in active:
                await self._summarize(home, send, dones)
        self._next_ready_ms = min((ready_at(r, lead_ms=self._lead_ms) for r in held), default=None)

    async def _materialize_due(self, partition: int) -> None:
        store = self._store
        for record in due_sends(store, partition, now_ms=now_ms(), lead_ms=self._lead_ms):
            try:
                await self._materialize(partition, record)
            except Exception:  # noqa: BLE001 - one failing send must not hold up the others
                trigger = record.trigger
                logger.exception(
                    "send %s:%s partition %d failed; retrying next round",
                    trigger.organization_id,
                    trigger.send_id,
                    partition,
                    extra=log_fields(organization=trigger.organization_id, send_id=trigger.send_id),
                )

    def _rules(self, trigger: SendTrigger, audience_filter: AudienceFilterSpec | None) -> SendRules:
        settings = self._settings
        return SendRules.of(
            trigger,
            audience_filter,
            opt_out_type=settings.opt_out_event_type,
            opt_in_type=settings.opt_in_event_type,
            policy=policy_file(settings.quiet_hours_policy_file),
        )

    async def _materialize(self, partition: int, record: PendingRecord) -> None:
        """Steps 3 to 7 of the protocol above, for one send and one partition, in a span
        that is a child of the trigger's (leadstream.tracing)."""
        trigger = record.trigger
        with tracing.start(
            "materialize",
            parent=record.trace,
            attributes=_send_attributes(trigger.organization_id, trigger.send_id, partition),
        ) as span:
            await self._materialize_share(partition, record, span)

    async def _materialize_share(self, partition: int, record: PendingRecord, span: Span) -> None:
        store, settings = self._store, self._settings
        trigger = record.trigger
        send = SendId(trigger.organization_id, trigger.send_id)
        await self.output.ready(Role.SHARE, partition)  # 3
        if self.progress.is_done(send, partition):  # 4
            deliver_send(store, partition, *send)
            finish_send(store, partition, *send)
            return
        started = time.perf_counter()
        behind_ms = now_ms() - trigger.due_at(self._lead_ms)
        audience_filter, late_filters = audience_filter_for(store, partition, trigger)
        rules = self._rules(trigger, audience_filter)
        evaluation = evaluate(  # 5
            store.index(partition), rules, store=store, partition=partition
        )
        recipients, counts = evaluation.entries(), evaluation.counts()
        materialized_at = now_ms()
        record_send(store, partition, rules, evaluation, materialized_at=materialized_at)
        chunks = encode_chunks(trigger, partition, recipients, settings.chunk_size)
        done = done_record(
            trigger,
            partition=partition,
            late=record.late,
            materialized_at=materialized_at,
            recipient_count=len(recipients),
            counts=counts,
            chunk_count=len(chunks),
            late_audience_filters=late_filters,
            received_at=record.received_at,
            variants={s.name: len(evaluation.variants.get(s.name, ())) for s in trigger.splits},
            trace=record.trace,
        )
        key = send_key(*send).encode()
        carried = tracing.kafka_headers()
        messages = [
            OutMessage(
                settings.topics.send_recipients,
                key,
                chunk,
                headers=[*send_headers(*send, "recipients", index), *carried],
            )
            for index, chunk in enumerate(chunks)
        ]
        messages.append(
            OutMessage(settings.topics.send_progress, key, encode_json(done), partition)
        )
        span.set_attribute("leadstream.recipients", len(recipients))
        span.set_attribute("leadstream.chunks", len(chunks))
        computed = time.perf_counter()
        with tracing.start("commit", attributes={"leadstream.messages": len(messages)}):
            await self.output.commit(Role.SHARE, partition, messages)  # 6
        self.progress.record_done(send, done)
        deliver_send(store, partition, *send)  # 7
        finish_send(store, partition, *send)
        self._metrics.materialize_seconds.observe(time.perf_counter() - started)
        logger.info(
            "send %s:%s partition %d: %d recipients in %d chunks; began %d ms after the"
            " moment, computed in %d ms, committed in %d ms",
            *send,
            partition,
            len(recipients),
            len(chunks),
            behind_ms,
            1000 * (computed - started),
            1000 * (time.perf_counter() - computed),
            extra=log_fields(organization=send.organization_id, send_id=send.send_id),
        )

    async def _summarize(self, home: int, send: SendId, dones: list[PartitionDone]) -> None:
        """Step 8 of the protocol above."""
        await self.output.ready(Role.SUMMARY, home)
        if self.progress.is_summarized(send):
            return
        summary = summary_record(dones)
        key = send_key(*send).encode()
        marker = encode_json(Summarized(*send))
        with tracing.start(
            "summary", parent=dones[0].trace, attributes=_send_attributes(*send, home)
        ):
            headers = [*send_headers(*send, "summary"), *tracing.kafka_headers()]
            await self.output.commit(
                Role.SUMMARY,
                home,
                [
                    OutMessage(
                        self._settings.topics.send_recipients,
                        key,
                        encode_json(summary),
                        headers=headers,
                    ),
                    OutMessage(self._settings.topics.send_progress, key, marker, home),
                ],
            )
        delay = summary_delay_seconds(dones, lead_ms=self._lead_ms, committed_at=now_ms())
        self._metrics.send_summary_seconds.observe(delay)
        self.progress.record_summarized(send)
        logger.info(
            "send %s:%s summary: %d recipients, committed %.3f s after the moment",
            *send,
            summary.recipient_count,
            delay,
            extra=log_fields(organization=send.organization_id, send_id=send.send_id),
        )


def _send_attributes(org: str, send: str, partition: int) -> dict[str, str | int]:
    return {tracing.ORGANIZATION: org, tracing.SEND: send, tracing.PARTITION: partition}


def summary_delay_seconds(
    dones: Sequence[PartitionDone], *, lead_ms: int, committed_at: int
) -> float:
    """Seconds from a send's moment to ``committed_at`` (UTC ms), the commit of its summary.

    The moment is when it was due, ``scheduledFor - lead``, or when its trigger arrived if
    that was later (a late trigger is not the materializer's delay). Never negative: the
    arrival is the broker's clock and the commit this worker's, and a histogram cannot
    take a negative value."""
    moment = max(dones[0].scheduled_for - lead_ms, max(d.received_at for d in dones))
    return max(0.0, (committed_at - moment) / 1000)
