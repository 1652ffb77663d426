"""Ingest: ``lead-events`` -> normalize -> lead-keyed topic -> apply to the event table."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import faust

from leadstream import codec
from leadstream.domain.ingest import (
    IngestRules,
    ParsedMessage,
    Rejected,
    decode_json,
    group_by_partition,
    parse_lead_events,
    retention_horizon,
)
from leadstream.domain.lead_index import apply_events, compact_partition
from leadstream.domain.rejects import RowError
from leadstream.settings import Settings
from leadstream.state.port import PartitionStore

if TYPE_CHECKING:
    from faust.tables import TableManager

__all__ = ["IngestTopology", "register_ingest"]

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IngestTopology:
    """Handles of the ingest half, for web views and other agents to use."""

    def __init__(self, table: Any, store: PartitionStore, by_lead: Any) -> None:
        self.table = table
        self.store = store
        self.by_lead = by_lead

    def active_partitions(self, app: faust.App) -> list[int]:
        name = self.by_lead.get_topic_name()
        return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == name)


def register_ingest(
    app: faust.App, settings: Settings, table: Any, store: PartitionStore
) -> IngestTopology:
    """Declare the ingest topics and agents on ``app``."""
    topics = settings.topics
    rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)
    lead_events = app.topic(topics.lead_events, key_type=bytes, value_type=bytes)
    rejects = app.topic(topics.rejects, key_type=bytes, value_type=bytes)
    by_lead = app.topic(
        topics.events_by_lead,
        partitions=settings.partitions,
        internal=True,
        key_type=bytes,
        value_type=bytes,
    )

    @app.agent(lead_events, name="normalize-lead-events")
    async def normalize(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                parsed = parse_lead_events(
                    decode_json(msg.value or b""), now_ms=_now_ms(), rules=rules
                )
            except RowError as err:
                parsed = ParsedMessage(received=1)
                parsed.rejects.append(Rejected(err.reason, err.detail, raw=msg.value))
            for partition, group in group_by_partition(parsed.events, settings.partitions).items():
                await by_lead.send(
                    key=None, value=codec.encode_event_batch(group), partition=partition
                )
            for rejected in parsed.rejects:
                record = codec.reject_record(
                    rejected, source=msg.topic, partition=msg.partition, offset=msg.offset
                )
                await rejects.send(key=msg.key, value=codec.encode_json(record))
            if parsed.rejects:
                logger.info(
                    "lead-events %s[%s]@%s: %d of %d rows rejected",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    len(parsed.rejects),
                    parsed.received,
                )

    @app.agent(by_lead, name="apply-lead-events")
    async def apply(stream: Any) -> None:
        async for event in stream.events():
            events = codec.decode_event_batch(event.message.value)
            apply_events(
                store,
                event.message.partition,
                events,
                horizon_ms=retention_horizon(_now_ms(), settings.event_retention_days),
            )

    topology = IngestTopology(table, store, by_lead)

    # faust declares App.timer as returning a bare ``Callable``.
    @app.timer(interval=settings.compaction_interval_seconds)  # type: ignore[untyped-decorator]
    async def compact() -> None:
        # ``recovery`` is on faust's TableManager, not on the TableManagerT of App.tables.
        if app.rebalancing or not cast("TableManager", app.tables).recovery.completed.is_set():
            return
        horizon = retention_horizon(_now_ms(), settings.event_retention_days)
        for partition in topology.active_partitions(app):
            removed = compact_partition(store, partition, horizon_ms=horizon)
            if removed:
                logger.info("compacted partition %d: folded %d old events", partition, removed)
            await asyncio.sleep(0)

    return topology
