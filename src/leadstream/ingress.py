"""The worker's ingress service: what the HTTP API asks (:class:`leadstream.web.ingress.Ingress`),
done with the stream layer's handles. Built in ``create_app``; the web views see only the
protocol."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

from leadstream.domain.audience import MemberOp
from leadstream.domain.evaluate import evaluate
from leadstream.domain.explain import explain_lead, read_send_record
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import latest_opt, lead_events
from leadstream.domain.partitioning import group_by_partition, lead_partition, send_partition
from leadstream.domain.policies.us_tcpa import policy_file
from leadstream.domain.sends import AudienceFilterSpec, Counts, SendId, SendRules, SendTrigger
from leadstream.kafka.admin import broker_reachable
from leadstream.kafka.config import KafkaConnection
from leadstream.materialize.progress import ProgressView
from leadstream.streams.replies import ReplyWaiter
from leadstream.streams.topology import Topology
from leadstream.web.ingress import (
    Erasure,
    Explained,
    LeadState,
    NotServedHere,
    PreviewShare,
    SendReports,
)
from leadstream.wire.commands import (
    ApplyReply,
    EraseLead,
    EraseReply,
    EventsBatch,
    FilterReply,
    FilterRequest,
    MembersBatch,
    row_slices,
)

if TYPE_CHECKING:
    from faust.assignor import PartitionAssignor

__all__ = ["StreamIngress"]


class StreamIngress:
    """Writes go to the lead-keyed topic (acks=all); answers come back on the replies
    topic; reads come from this worker's store."""

    def __init__(
        self,
        topo: Topology,
        replies: ReplyWaiter,
        connection: KafkaConnection,
        routing: Callable[[], bool],
        healthy: Callable[[], bool],
        progress: ProgressView,
    ) -> None:
        self._topo = topo
        self._progress = progress  # the materializer's view of the progress topic
        self._replies = replies
        self._routing = routing  # is the lead-events router running?
        self._healthy = healthy  # no environment fault (lifecycle.py)?
        self._admin = connection.admin()
        # The broker is asked on a thread of its own: the default pool also parses large
        # request bodies, and readiness must not wait behind them.
        self._probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broker-probe")

    async def apply_events(self, events: list[LeadEvent]) -> tuple[int, int]:
        """Send the rows by lead with acks=all, then sum the apply agent's counts."""
        request = uuid.uuid4().hex
        queue = self._replies.expect(request)
        try:
            expected = 0
            partitions = self._topo.settings.partitions
            for partition, rows in group_by_partition(events, partitions).items():
                for part in row_slices(rows):
                    command = EventsBatch(part, reply_to=request)
                    await self._topo.send_command(partition, command, wait=True)
                    expected += 1
            inserted = duplicates = 0
            for _ in range(expected):
                reply = await queue.get()
                if isinstance(reply, ApplyReply):
                    inserted += reply.inserted
                    duplicates += reply.duplicates
            return inserted, duplicates
        finally:
            self._replies.forget(request)

    async def send_members(self, ops: list[MemberOp]) -> None:
        partitions = self._topo.settings.partitions
        for partition, members in group_by_partition(ops, partitions).items():
            await self._topo.send_rows(partition, members, MembersBatch, wait=True)

    async def decide_audience_filter(
        self, send: SendId, campaign: str, spec: AudienceFilterSpec
    ) -> str:
        request = uuid.uuid4().hex
        queue = self._replies.expect(request)
        try:
            command = FilterRequest(
                send.organization_id,
                campaign,
                send.send_id,
                spec.mode,
                sorted(spec.external_ids),
                sorted(spec.phones),
                request,
            )
            home = send_partition(*send, self._topo.settings.partitions)
            await self._topo.send_command(home, command, wait=True)
            while True:
                reply = await queue.get()
                if isinstance(reply, FilterReply):
                    return reply.status
        finally:
            self._replies.forget(request)

    async def erase(self, org: str, phone: str, request_id: str) -> Erasure:
        queue = self._replies.expect(request_id)
        try:
            partition = lead_partition(org, phone, self._topo.settings.partitions)
            await self._topo.send_command(partition, EraseLead(org, phone, request_id), wait=True)
            while True:
                reply = await queue.get()
                if isinstance(reply, EraseReply):
                    return Erasure(reply.events, reply.memberships, reply.suppression_kept)
        finally:
            self._replies.forget(request_id)

    def read_lead(self, org: str, phone: str) -> LeadState | NotServedHere:
        topo, s = self._topo, self._topo.settings
        partition = lead_partition(org, phone, s.partitions)
        ready = topo.is_ready()
        if not ready or partition not in topo.active_partitions():
            return NotServedHere(partition, ready, self._owner(partition))
        opt = latest_opt(
            topo.store,
            partition,
            org,
            phone,
            opt_out_type=s.opt_out_event_type,
            opt_in_type=s.opt_in_event_type,
            index=topo.store.index(partition),
        )
        return LeadState(partition, opt.opted_out, lead_events(topo.store, partition, org, phone))

    def preview(
        self,
        trigger: SendTrigger,
        audience_filter: AudienceFilterSpec | None,
        *,
        sample: int,
        partitions: list[int] | None = None,
    ) -> PreviewShare | NotServedHere:
        topo, s = self._topo, self._topo.settings
        wanted = list(range(s.partitions)) if partitions is None else sorted(set(partitions))
        ready = topo.is_ready()
        active = set(topo.active_partitions()) if ready else set()
        for partition in wanted:
            if partition not in active:
                return NotServedHere(partition, ready, self._owner(partition))
        rules = SendRules.of(
            trigger,
            audience_filter,
            opt_out_type=s.opt_out_event_type,
            opt_in_type=s.opt_in_event_type,
            policy=policy_file(s.quiet_hours_policy_file),
        )
        counts = Counts()
        recipients = 0
        chosen: list[tuple[str, str | None, str | None]] = []
        variants = {split.name: 0 for split in trigger.splits}
        for partition in wanted:
            evaluation = evaluate(
                topo.store.index(partition), rules, store=topo.store, partition=partition
            )
            counts.add(evaluation.counts())
            recipients += len(evaluation.recipients)
            for name, members in evaluation.variants.items():
                variants[name] += len(members)
            if len(chosen) < sample:
                chosen.extend(evaluation.sample(sample - len(chosen)))
        return PreviewShare(wanted, counts, recipients, chosen, variants)

    def partition_owners(self) -> dict[int, str | None]:
        return {p: self._owner(p) for p in range(self._topo.settings.partitions)}

    def explain(self, org: str, send: str, phone: str) -> Explained | NotServedHere | None:
        topo, s = self._topo, self._topo.settings
        partition = lead_partition(org, phone, s.partitions)
        ready = topo.is_ready()
        if not ready or partition not in topo.active_partitions():
            return NotServedHere(partition, ready, self._owner(partition))
        record = read_send_record(topo.store, partition, org, send)
        if record is None:
            return None
        explanation = explain_lead(
            topo.store,
            partition,
            topo.store.index(partition),
            record,
            phone,
            opt_out_type=s.opt_out_event_type,
            opt_in_type=s.opt_in_event_type,
            policy=policy_file(s.quiet_hours_policy_file),
        )
        return Explained(record, explanation)

    def sends_reported(self, org: str) -> list[SendReports]:
        return [
            SendReports(dones, summarized) for dones, summarized in self._progress.sends_of(org)
        ]

    async def ready_partitions(self) -> list[int] | None:
        reachable = await asyncio.get_running_loop().run_in_executor(
            self._probe, broker_reachable, self._admin, self._topo.settings.topics.lead_events
        )
        topo = self._topo
        serving = self._healthy() and self._routing() and self._replies.running()
        if reachable and serving and topo.is_ready():
            active = topo.active_partitions()
            # Ready means a send is fast: every partition's index is built.
            if all(topo.store.has_index(p) for p in active):
                return active
        return None

    def count_rejected(self, rows: int) -> None:
        self._topo.metrics.rows.labels("rejected").inc(rows)

    def metrics_text(self) -> str:
        return self._topo.metrics.exposition().decode()

    def _owner(self, partition: int) -> str | None:
        """The worker that holds ``partition``, as the group's assignment says."""
        name = self._topo.by_lead.get_topic_name()
        assignor = cast("PartitionAssignor", self._topo.app.assignor)
        for host, topics in assignor.external_topics_metadata().items():
            if partition in topics.get(name, ()):
                return str(host)
        return None
