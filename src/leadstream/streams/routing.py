"""Agents on the input topics: validate, reject bad rows alone, route commands by lead.

``lead-events`` is the exception: :mod:`leadstream.streams.router` reads it."""

from __future__ import annotations

from functools import partial
from typing import Any

from leadstream.domain.audience import parse_audience_members
from leadstream.domain.decode import decode_json
from leadstream.domain.ingest import Rejected
from leadstream.domain.partitioning import group_by_partition, send_partition
from leadstream.domain.rejects import RowError
from leadstream.domain.send_state import PendingRecord
from leadstream.domain.sends import SendId, parse_audience_filter, parse_trigger
from leadstream.streams.topology import Topology, received_ms
from leadstream.wire.commands import ClaimTrigger, MembersBatch, filter_commands

__all__ = ["register_routers"]


def register_routers(topo: Topology) -> None:
    """Declare the agents of the audience, filter and trigger topics: each message is
    handled by one function below, with bounded retries (``Topology.process``)."""
    app = topo.app

    @app.agent(topo.audience_members, name="route-audience-members")
    async def route_audience_members(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            await topo.process(msg, partial(_route_members, topo, msg))

    @app.agent(topo.send_triggers, name="route-send-triggers")
    async def route_send_triggers(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            await topo.process(msg, partial(_route_trigger, topo, msg))

    @app.agent(topo.audience_filters, name="route-audience-filters")
    async def route_audience_filters(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            await topo.process(msg, partial(_route_filter, topo, msg))


async def _route_members(topo: Topology, msg: Any) -> None:
    try:
        ops, rejects, _ = parse_audience_members(
            decode_json(msg.value or b""), region=topo.settings.default_region
        )
    except RowError as err:
        ops, rejects = [], [Rejected(err.reason, err.detail, raw=msg.value)]
    for partition, members in group_by_partition(ops, topo.settings.partitions).items():
        await topo.send_rows(partition, members, MembersBatch)
    for rejected in rejects:
        await topo.reject(rejected, msg)


async def _route_trigger(topo: Topology, msg: Any) -> None:
    try:
        trigger = parse_trigger(decode_json(msg.value or b""))
    except RowError as err:
        await topo.reject(Rejected(err.reason, err.detail, raw=msg.value), msg)
        return
    pending = PendingRecord.on_receipt(trigger, received_ms(msg))
    home = send_partition(trigger.organization_id, trigger.send_id, topo.settings.partitions)
    await topo.send_command(home, ClaimTrigger(pending))


async def _route_filter(topo: Topology, msg: Any) -> None:
    try:
        org, campaign, send, spec = parse_audience_filter(
            decode_json(msg.value or b""), region=topo.settings.default_region
        )
    except RowError as err:
        await topo.reject(Rejected(err.reason, err.detail, raw=msg.value), msg)
        return
    for partition, part in filter_commands(
        SendId(org, send),
        campaign,
        spec,
        received_at=received_ms(msg),
        seq=(msg.partition << 48) | msg.offset,
        partitions=topo.settings.partitions,
    ):
        await topo.send_command(partition, part)
