"""Agents on the input topics: validate, reject bad rows alone, route commands by lead."""

from __future__ import annotations

import logging
from typing import Any

from leadstream.commands import ClaimTrigger, EventsBatch, MembersBatch
from leadstream.domain.audience import parse_audience_members
from leadstream.domain.ingest import (
    IngestRules,
    LeadEvent,
    ParsedMessage,
    Rejected,
    decode_json,
    parse_lead_events,
)
from leadstream.domain.partitioning import group_by_partition, send_partition
from leadstream.domain.rejects import RowError
from leadstream.domain.send_state import PendingRecord
from leadstream.domain.sends import parse_audience_filter, parse_trigger
from leadstream.streams.topology import Topology, now_ms

__all__ = ["register_routers"]

logger = logging.getLogger(__name__)

ROUTE_BATCH = 1_000
ROUTE_WITHIN = 0.02


def _received_ms(msg: Any) -> int:
    # The broker's timestamp (the topics are created with LogAppendTime): the same on
    # every reprocessing, so a replayed trigger or filter is judged exactly as before.
    return int(msg.timestamp * 1000) if msg.timestamp else now_ms()


def register_routers(topo: Topology) -> None:
    """Declare the agents of the four input topics."""
    app, settings = topo.app, topo.settings
    n = settings.partitions
    rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)

    @app.agent(topo.lead_events, name="route-lead-events")
    async def route_lead_events(stream: Any) -> None:
        # Messages are taken in groups (up to ROUTE_BATCH, or what arrived within
        # ROUTE_WITHIN): one command per partition per group, not per message, so a stream
        # of single-event messages is applied in batches too. faust acks the group's
        # messages only after this body has handled them.
        async for group in stream.take_events(ROUTE_BATCH, within=ROUTE_WITHIN):
            events: list[LeadEvent] = []
            for event in group:
                msg = event.message
                try:
                    doc = decode_json(msg.value or b"")
                    parsed = parse_lead_events(doc, now_ms=now_ms(), rules=rules)
                except RowError as err:
                    parsed = ParsedMessage(received=1)
                    parsed.rejects.append(Rejected(err.reason, err.detail, raw=msg.value))
                events.extend(parsed.events)
                for rejected in parsed.rejects:
                    await topo.reject(rejected, msg)
                if parsed.rejects:
                    logger.info(
                        "%s[%s]@%s: %d of %d rows rejected",
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        len(parsed.rejects),
                        parsed.received,
                    )
            for partition, rows in group_by_partition(events, n).items():
                await topo.send_rows(partition, rows, EventsBatch)

    @app.agent(topo.audience_members, name="route-audience-members")
    async def route_audience_members(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                ops, rejects, _ = parse_audience_members(
                    decode_json(msg.value or b""), region=settings.default_region
                )
            except RowError as err:
                ops, rejects = [], [Rejected(err.reason, err.detail, raw=msg.value)]
            for partition, members in group_by_partition(ops, n).items():
                await topo.send_rows(partition, members, MembersBatch)
            for rejected in rejects:
                await topo.reject(rejected, msg)

    @app.agent(topo.send_triggers, name="route-send-triggers")
    async def route_send_triggers(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                trigger = parse_trigger(decode_json(msg.value or b""))
            except RowError as err:
                await topo.reject(Rejected(err.reason, err.detail, raw=msg.value), msg)
                continue
            pending = PendingRecord.on_receipt(trigger, _received_ms(msg))
            home = send_partition(trigger.organization_id, trigger.send_id, n)
            await topo.send_command(home, ClaimTrigger(pending))

    @app.agent(topo.audience_filters, name="route-audience-filters")
    async def route_audience_filters(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                org, campaign, send, spec = parse_audience_filter(
                    decode_json(msg.value or b""), region=settings.default_region
                )
            except RowError as err:
                await topo.reject(Rejected(err.reason, err.detail, raw=msg.value), msg)
                continue
            seq = (msg.partition << 48) | msg.offset
            await topo.broadcast_filter(
                org, campaign, send, spec, received_at=_received_ms(msg), seq=seq
            )
