"""The one agent that writes lead state: each lead-keyed command is handed to its handler
(:mod:`leadstream.streams.handlers`), and what the handler returns is sent on.

Step 2 of the exactly-once protocol in :mod:`leadstream.materialize.materializer`: a
partition's commands are applied in one order into the lead table, whose changelog faust
keeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from leadstream import tracing
from leadstream.domain.explain import expire_send_records
from leadstream.domain.ingest import retention_horizon
from leadstream.domain.lead_index import compact_partition
from leadstream.domain.relog import relog_legacy_batches
from leadstream.domain.send_state import relog_memberships
from leadstream.logs import log_fields
from leadstream.streams.handlers import ApplyRules, Arrival, Effects, handle
from leadstream.streams.topology import Topology, now_ms, received_ms
from leadstream.wire.commands import (
    ClaimTrigger,
    EraseLead,
    EventsBatch,
    MembersBatch,
    Reply,
    decode_command,
    encode_reply,
)

__all__ = ["ApplyActivity", "register_apply"]

logger = logging.getLogger(__name__)


class ApplyActivity:
    """When the apply agent last applied a command: background work (members' time zones)
    steps back while it is busy."""

    def __init__(self) -> None:
        self._at = float("-inf")

    def applied(self) -> None:
        self._at = time.monotonic()

    def busy(self, within_seconds: float = 1.0) -> bool:
        """Whether a command was applied in the last ``within_seconds``."""
        return time.monotonic() - self._at < within_seconds


def register_apply(
    topo: Topology, on_held: Callable[[], None], deliver: Callable[[Reply], bool]
) -> ApplyActivity:
    """Declare the apply agent and the compaction timer; ``on_held`` wakes the materializer,
    ``deliver`` hands a reply to a request waiting in this process (False: none waits).
    Returns how busy the agent is."""
    app, settings = topo.app, topo.settings
    rules = ApplyRules(settings.partitions, settings.event_retention_days)
    activity = ApplyActivity()

    @app.agent(topo.by_lead, name="apply-lead-commands")
    async def apply(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            work = partial(_apply_one, topo, rules, msg, on_held, deliver, activity)
            await topo.process(msg, work)

    @app.timer(interval=settings.compaction_interval_seconds)  # type: ignore[untyped-decorator]
    async def compact() -> None:
        if topo.is_ready():
            await _compact(topo)

    return activity


async def _apply_one(
    topo: Topology,
    rules: ApplyRules,
    msg: Any,
    on_held: Callable[[], None],
    deliver: Callable[[Reply], bool],
    activity: ApplyActivity,
) -> None:
    command = decode_command(msg.value)
    at = Arrival(msg.partition, msg.offset, received_ms(msg), now_ms())
    # A child of the context the command carries (leadstream.tracing); with tracing off
    # the headers are not even looked at.
    parent = tracing.context_of(tracing.headers_of(msg.headers)) if tracing.enabled() else None
    with tracing.start(
        "apply",
        parent=parent,
        kind=tracing.SpanKind.CONSUMER,
        attributes=_attributes(command, msg.partition) if tracing.enabled() else None,
    ) as span:
        started = time.perf_counter()
        effects = handle(topo.store, at, command, rules)
        activity.applied()
        if isinstance(command, EventsBatch):
            topo.metrics.apply_seconds.observe(time.perf_counter() - started)
            span.set_attribute("leadstream.inserted", effects.inserted)
            span.set_attribute("leadstream.duplicates", effects.duplicates)
        if isinstance(command, EraseLead) and effects.erased is not None:
            erased = effects.erased
            # The audit record: the request, the organization and what was removed; never
            # the phone.
            logger.info(
                "erase request %s: organization %s, partition %d: %d events, %d memberships"
                " removed; suppression kept: %s",
                command.reply_to,
                command.organization_id,
                at.partition,
                erased.events,
                erased.memberships,
                erased.suppression_kept,
                extra=log_fields(organization=command.organization_id, request_id=command.reply_to),
            )
        await _carry_out(topo, effects, on_held, deliver)


def _attributes(command: Any, partition: int) -> dict[str, Any]:
    """What an apply span says of its command: the partition, the command's kind, its
    organizations (one, or up to 20 of a mixed batch) and send; never a phone."""
    rows = (
        command.events
        if isinstance(command, EventsBatch)
        else command.ops
        if isinstance(command, MembersBatch)
        else ()
    )
    orgs = sorted({row.organization_id for row in rows})
    send = command.send.trigger if isinstance(command, ClaimTrigger) else command
    org = getattr(send, "organization_id", None)
    attributes: dict[str, Any] = {
        tracing.PARTITION: partition,
        "leadstream.command": type(command).__name__,
        tracing.SEND: getattr(send, "send_id", None),
    }
    if len(orgs) > 1:
        attributes["leadstream.organization_ids"] = orgs[:20]
    else:
        attributes[tracing.ORGANIZATION] = orgs[0] if orgs else org
    return attributes


async def _carry_out(
    topo: Topology,
    effects: Effects,
    on_held: Callable[[], None],
    deliver: Callable[[Reply], bool],
) -> None:
    """Send on what a handler returned, count it, and wake the materializer if need be."""
    if effects.inserted or effects.duplicates:
        topo.metrics.rows.labels("inserted").inc(effects.inserted)
        topo.metrics.rows.labels("duplicate").inc(effects.duplicates)
    if effects.members:
        topo.metrics.members.inc(effects.members)
    duplicate = effects.duplicate_trigger
    if duplicate is not None:
        topo.metrics.duplicate_triggers.inc()
        logger.warning(
            "duplicate trigger for organization %s send %s ignored: the first wins",
            *duplicate,
            extra=log_fields(organization=duplicate.organization_id, send_id=duplicate.send_id),
        )
    for partition, command in effects.commands:
        await topo.send_command(partition, command)
    for reply in effects.replies:
        if not deliver(reply):
            await topo.replies.send(key=reply.request.encode(), value=encode_reply(reply))
    if effects.held:
        on_held()


async def _compact(topo: Topology) -> None:
    settings = topo.settings
    horizon = retention_horizon(now_ms(), settings.event_retention_days)
    for partition in topo.active_partitions():
        removed = compact_partition(
            topo.store,
            partition,
            horizon_ms=horizon,
            max_future_skew_ms=settings.max_future_skew_seconds * 1000,
        )
        if removed:
            logger.info("compacted partition %d: folded %d old events", partition, removed)
        expired = expire_send_records(
            topo.store, partition, now_ms=now_ms(), retention_days=settings.send_retention_days
        )
        if expired:
            logger.info("partition %d: %d send records past retention deleted", partition, expired)
        relogged = relog_memberships(topo.store, partition, now_ms=now_ms())
        if relogged:
            logger.info("partition %d: %d memberships logged again", partition, relogged)
        legacy = relog_legacy_batches(
            topo.store, partition, topo.store.index(partition), now_ms=now_ms()
        )
        if legacy:
            logger.info(
                "partition %d: %d keys of batches logged before groups logged again",
                partition,
                legacy,
            )
        await asyncio.sleep(0)
