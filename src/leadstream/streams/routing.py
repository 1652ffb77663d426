"""Agents on the input topics: validate, reject bad rows alone, route commands by lead."""

from __future__ import annotations

import logging
from typing import Any

from leadstream.commands import ClaimTrigger, EventsBatch, FilterPart, MembersBatch
from leadstream.domain.audience import parse_audience_members
from leadstream.domain.ingest import (
    IngestRules,
    ParsedMessage,
    Rejected,
    decode_json,
    group_by_partition,
    parse_lead_events,
)
from leadstream.domain.partitioning import lead_partition, send_partition
from leadstream.domain.rejects import RowError
from leadstream.domain.send_state import PendingRecord
from leadstream.domain.sends import parse_audience_filter, parse_trigger
from leadstream.streams.topology import Topology, now_ms

__all__ = ["COMMAND_ROWS", "register_routers", "split_filter"]

logger = logging.getLogger(__name__)

# Rows per internal command message: keeps each well under Kafka's default 1 MB limit.
COMMAND_ROWS = 5_000


def split_filter(
    external_ids: list[str], phones: list[str], rows: int = COMMAND_ROWS
) -> list[tuple[list[str], list[str]]]:
    """Cut one partition's view of an audience filter into parts of at most ``rows`` leads."""
    items = [("e", x) for x in external_ids] + [("p", x) for x in phones]
    parts = [items[i : i + rows] for i in range(0, len(items), rows)] or [[]]
    return [([x for k, x in part if k == "e"], [x for k, x in part if k == "p"]) for part in parts]


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
        async for event in stream.events():
            msg = event.message
            try:
                doc = decode_json(msg.value or b"")
                parsed = parse_lead_events(doc, now_ms=now_ms(), rules=rules)
            except RowError as err:
                parsed = ParsedMessage(received=1)
                parsed.rejects.append(Rejected(err.reason, err.detail, raw=msg.value))
            for partition, group in group_by_partition(parsed.events, n).items():
                for i in range(0, len(group), COMMAND_ROWS):
                    await topo.send_command(partition, EventsBatch(group[i : i + COMMAND_ROWS]))
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
            by_partition: dict[int, list[Any]] = {}
            for op in ops:
                by_partition.setdefault(lead_partition(op.organization_id, op.phone, n), []).append(
                    op
                )
            for partition, group in by_partition.items():
                for i in range(0, len(group), COMMAND_ROWS):
                    await topo.send_command(partition, MembersBatch(group[i : i + COMMAND_ROWS]))
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
            received = _received_ms(msg)
            pending = PendingRecord(trigger, received, received > trigger.scheduled_for)
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
            received = _received_ms(msg)
            seq = (msg.partition << 48) | msg.offset
            external_ids = sorted(spec.external_ids)
            phones_by_partition: dict[int, list[str]] = {p: [] for p in range(n)}
            for phone in sorted(spec.phones):
                phones_by_partition[lead_partition(org, phone, n)].append(phone)
            for partition, phones in phones_by_partition.items():
                parts = split_filter(external_ids, phones)
                for index, (ext, ph) in enumerate(parts):
                    await topo.send_command(
                        partition,
                        FilterPart(
                            org,
                            campaign,
                            send,
                            received,
                            seq,
                            index,
                            len(parts),
                            spec.mode,
                            ext,
                            ph,
                        ),
                    )
