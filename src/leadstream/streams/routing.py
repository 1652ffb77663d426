"""Agents on the send-trigger and audience-filter topics: validate, reject bad input, route
commands to the partitions that hold them.

``lead-events`` and ``audience-members`` are read by :mod:`leadstream.streams.router`."""

from __future__ import annotations

from functools import partial
from typing import Any

from leadstream.domain.decode import decode_json
from leadstream.domain.ingest import Rejected
from leadstream.domain.partitioning import send_partition
from leadstream.domain.rejects import RowError
from leadstream.domain.send_state import PendingRecord
from leadstream.domain.sends import SendId, parse_audience_filter, parse_trigger
from leadstream.streams.topology import Topology, received_ms
from leadstream.wire.commands import ClaimTrigger, filter_commands

__all__ = ["register_routers"]


def register_routers(topo: Topology) -> None:
    """Declare the agents of the filter and trigger topics: each message is handled by one
    function below, with bounded retries (``Topology.process``)."""
    app = topo.app

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
