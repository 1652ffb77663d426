"""The handles every agent shares: the lead table, its store port and the topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import faust

from leadstream import tracing
from leadstream.domain.ingest import Rejected
from leadstream.index.table import IndexedStore
from leadstream.lifecycle import environment_cause
from leadstream.metrics import Metrics
from leadstream.settings import Settings
from leadstream.streams.retry import EnvironmentFault, with_retries_async
from leadstream.wire.commands import Command, encode_command, row_slices
from leadstream.wire.records import encode_json, reject_headers, reject_record

if TYPE_CHECKING:
    from faust.assignor.partition_assignor import PartitionAssignor
    from faust.tables.manager import TableManager

__all__ = ["Topology", "now_ms", "received_ms"]

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def received_ms(msg: Any) -> int:
    """When the broker took ``msg`` (the topics that need it are created with
    LogAppendTime): the same on every reprocessing, so a replayed trigger or filter is
    judged exactly as before."""
    return int(msg.timestamp * 1000) if msg.timestamp else now_ms()


class Topology:
    """Topics, the lead table and its store, declared once on ``app``."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        table: Any,
        store: IndexedStore,
        metrics: Metrics,
        on_fault: Callable[[str], None],
    ) -> None:
        self.app = app
        self.settings = settings
        self.table = table
        self.store = store
        self.metrics = metrics
        self._on_fault = on_fault
        names = settings.topics
        self.rejects = app.topic(names.rejects, key_type=bytes, value_type=bytes)
        self.replies = app.topic(names.replies, key_type=bytes, value_type=bytes)
        self.by_lead = app.topic(
            names.by_lead,
            partitions=settings.partitions,
            internal=True,
            key_type=bytes,
            value_type=bytes,
        )
        # Every topic a dead letter can come from, at 0 from the start: an alert on
        # increase() misses a series whose first sample is already 1.
        for topic in (
            names.lead_events,
            names.audience_members,
            names.audience_filters,
            names.send_triggers,
            names.by_lead,
        ):
            metrics.dead_letters.labels(topic)

    def active_partitions(self) -> list[int]:
        """Partitions of lead state this worker owns right now."""
        assignor = cast("PartitionAssignor", self.app.assignor)
        name = self.by_lead.get_topic_name()
        return sorted(tp.partition for tp in assignor.assigned_actives() if tp.topic == name)

    def is_ready(self) -> bool:
        tables = cast("TableManager", self.app.tables)
        return bool(tables.recovery.completed.is_set() and not self.app.rebalancing)

    async def send_command(self, partition: int, command: Command, *, wait: bool = False) -> None:
        """Queue ``command`` for ``partition``; with ``wait``, until the broker acknowledged it
        (acks=all). It carries the current span's ``traceparent``, if any (the HTTP request
        that wrote it, the command applied that led to it)."""
        fut = await self.by_lead.send(
            key=None,
            value=encode_command(command),
            partition=partition,
            headers=tracing.kafka_headers() or None,
        )
        if wait:
            await fut

    async def send_rows(
        self,
        partition: int,
        rows: Sequence[T],
        make: Callable[[list[T]], Command],
        *,
        wait: bool = False,
    ) -> None:
        """``rows`` as commands of at most ``COMMAND_ROWS`` rows each."""
        for part in row_slices(rows):
            await self.send_command(partition, make(part), wait=wait)

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, messages behind) of every partition faust reads here."""
        monitor = self.app.monitor
        ends, read = monitor.tp_end_offsets or {}, monitor.tp_read_offsets or {}
        return [(tp.topic, tp.partition, max(0, end - read.get(tp, 0))) for tp, end in ends.items()]

    async def process(self, msg: Any, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` for the message ``msg`` with bounded retries; a message that fails
        every attempt is dead-lettered on ``rejects`` and counted, and the agent goes on.

        A fault of the environment is reported (the worker exits) and this never returns:
        the agent must not go on to acknowledge ``msg``, whose offset would be committed."""
        where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
        try:
            dead = await with_retries_async(work, raw=msg.value, what=where)
            if dead is not None:
                self.metrics.dead_letters.labels(msg.topic).inc()
                await self.reject(dead, msg)
        except EnvironmentFault as fault:
            await self._halt(str(fault))
        except Exception as exc:  # a dead letter that could not be written
            cause = environment_cause(exc)
            if cause is None:
                raise
            await self._halt(f"{where}: {cause}")

    async def _halt(self, cause: str) -> NoReturn:
        """Report an environment fault and wait for the process to end (lifecycle.py),
        never returning to the agent, which would acknowledge its message."""
        self._on_fault(cause)
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the process exits on a fault")

    async def reject(self, rejected: Rejected, msg: Any) -> None:
        """Write ``rejected``, read as ``msg``, on ``rejects``, and count it by reason."""
        record = reject_record(
            rejected, source=msg.topic, partition=msg.partition, offset=msg.offset
        )
        await self.rejects.send(
            key=msg.key,
            value=encode_json(record),
            headers=reject_headers(msg.topic, rejected.reason),
        )
        self.metrics.count_rejects(msg.topic, {rejected.reason: 1})
