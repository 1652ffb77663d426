"""The one agent that writes lead state: applies lead-keyed commands to its partition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from leadstream.commands import (
    ApplyReply,
    BroadcastTrigger,
    ClaimTrigger,
    EventsBatch,
    FilterPart,
    FilterReply,
    FilterRequest,
    MembersBatch,
    decode_command,
    encode_reply,
)
from leadstream.domain.ingest import retention_horizon
from leadstream.domain.lead_index import apply_events, compact_partition
from leadstream.domain.send_state import (
    Claim,
    FilterDecision,
    apply_members,
    claim_trigger,
    decide_filter,
    store_filter_part,
    store_pending,
)
from leadstream.domain.sends import AudienceFilterSpec
from leadstream.streams.topology import Topology, now_ms

__all__ = ["register_apply"]

logger = logging.getLogger(__name__)


def register_apply(topo: Topology, on_pending: Callable[[], None]) -> None:
    """Declare the apply agent and the compaction timer; ``on_pending`` wakes the materializer."""
    app, settings, store = topo.app, topo.settings, topo.store

    @app.agent(topo.by_lead, name="apply-lead-commands")
    async def apply(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            await topo.process(msg, partial(_apply_command, topo, msg, on_pending))

    @app.timer(interval=settings.compaction_interval_seconds)  # type: ignore[untyped-decorator]
    async def compact() -> None:
        if not topo.is_ready():
            return
        horizon = retention_horizon(now_ms(), settings.event_retention_days)
        for partition in topo.active_partitions():
            removed = compact_partition(
                store,
                partition,
                horizon_ms=horizon,
                max_future_skew_ms=settings.max_future_skew_seconds * 1000,
            )
            if removed:
                logger.info("compacted partition %d: folded %d old events", partition, removed)
            await asyncio.sleep(0)


async def _apply_command(topo: Topology, msg: Any, on_pending: Callable[[], None]) -> None:
    """Apply one lead-keyed command to the message's partition."""
    settings, store, partition = topo.settings, topo.store, msg.partition
    command = decode_command(msg.value)
    if isinstance(command, EventsBatch):
        now = now_ms()
        horizon = retention_horizon(now, settings.event_retention_days)
        with topo.metrics.apply_seconds.time():
            result = apply_events(store, partition, command.events, horizon_ms=horizon, now_ms=now)
        topo.metrics.rows.labels("inserted").inc(result.inserted)
        topo.metrics.rows.labels("duplicate").inc(result.duplicates)
        if command.reply_to is not None:
            reply = ApplyReply(command.reply_to, result.inserted, result.duplicates)
            await topo.replies.send(key=command.reply_to.encode(), value=encode_reply(reply))
    elif isinstance(command, MembersBatch):
        apply_members(store, partition, command.ops)
    elif isinstance(command, ClaimTrigger):
        if claim_trigger(store, partition, command.send) is Claim.DUPLICATE:
            topo.metrics.duplicate_triggers.inc()
            logger.warning(
                "duplicate trigger for organization %s send %s ignored: the first wins",
                command.send.trigger.organization_id,
                command.send.trigger.send_id,
            )
            return
        for target in range(settings.partitions):
            await topo.send_command(target, BroadcastTrigger(command.send))
    elif isinstance(command, BroadcastTrigger):
        if store_pending(store, partition, command.send):
            on_pending()
    elif isinstance(command, FilterRequest):
        await _filter_request(topo, msg, command)
    elif isinstance(command, FilterPart):
        store_filter_part(
            store,
            partition,
            org=command.organization_id,
            send=command.send_id,
            received_at=command.received_at,
            seq=command.seq,
            part=command.part,
            parts=command.parts,
            mode=command.mode,
            external_ids=command.external_ids,
            phones=command.phones,
        )


async def _filter_request(topo: Topology, msg: Any, request: FilterRequest) -> None:
    """Decide on an HTTP audience filter in the send's home partition, pass it on to every
    partition unless it repeats the last one, and answer the waiting request."""
    # The message's own timestamp: the same when this command is processed again.
    received_at = int(msg.timestamp * 1000) if msg.timestamp else now_ms()
    spec = AudienceFilterSpec(
        "include" if request.mode == "include" else "exclude",
        frozenset(request.external_ids),
        frozenset(request.phones),
    )
    org, send = request.organization_id, request.send_id
    decision = decide_filter(topo.store, msg.partition, org, send, spec.digest(), received_at)
    if decision is not FilterDecision.ALREADY_RECEIVED:
        seq = (msg.partition << 48) | msg.offset
        await topo.broadcast_filter(
            org, request.campaign_id, send, spec, received_at=received_at, seq=seq
        )
    lead_count = len(spec.external_ids) + len(spec.phones)
    reply = FilterReply(request.reply_to, decision.value, lead_count)
    await topo.replies.send(key=request.reply_to.encode(), value=encode_reply(reply))
