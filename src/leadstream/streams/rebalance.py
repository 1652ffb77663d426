"""faust's consumer, mended so that a rebalance never loses an input record.

This is the one module that reaches into faust's consumer and flow control; it is covered
by ``tests/integration/test_rebalance.py`` and by the kill-and-trigger cycles of
``tests/integration/test_failover.py``.

faust (faust-streaming 0.15 on aiokafka 0.14) lost records around a rebalance in two ways:

1. Records read and dropped. faust never pauses a partition inside aiokafka: during a
   rebalance it keeps its own set of active partitions and hands that set, live, to the
   fetch it runs on aiokafka's thread. Emptied meanwhile, the set means "every partition"
   to aiokafka; and ``Consumer.getmany`` drops the records of a partition that is not in
   the set by the time it looks, after aiokafka has moved past them. faust seeks the
   partitions back to their committed offsets before it resumes the streams, but not a
   partition that has no committed offset (its first records, or records its dead owner
   read and never committed): those records are never processed, and the next commit
   goes past them. That is how a trigger published during a failover, the first record
   of a partition of the dead worker, never came out (no claim, no chunk, no summary).
2. Records delivered and discarded. Once the streams are resumed and sought, faust calls
   ``flow_control.resume()`` again, and resuming empties every agent's and the tables'
   queues, even though the flow was not suspended. A record fetched after its
   partition's seek and thrown away there is past aiokafka's position and never read
   again (a window of one round of committed-offset requests; a by-lead command was
   lost in it once the window was wider).

The mends: a fetch returns only the records of partitions faust will take right now (the
partitions active when it asked, still active, flow running); aiokafka is put back to the
first of any other's records, so that they are read again when faust takes them. And
resuming a flow that was not suspended leaves the queues alone: what they hold was
delivered in this generation of the group. Records read twice are applied idempotently
(step 1 of the protocol in ``materialize/materializer.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, TransportT
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

__all__ = ["LosslessFlowControl", "RebalanceSafeApp", "keep_taken"]


def keep_taken(
    consumer: Any, records: Mapping[TP, Sequence[Any]], taken: frozenset[TP]
) -> dict[TP, Any]:
    """The records of a fetch whose partitions are in ``taken`` (what faust will take);
    ``consumer`` (aiokafka's, on its own thread) is put back to the first record of every
    other partition, so that they are read again, not lost."""
    kept: dict[TP, Any] = {}
    for tp, batch in records.items():
        if tp in taken:
            kept[tp] = batch
        elif batch:
            try:
                consumer.seek(tp, batch[0].offset)
            except IllegalStateError:
                pass  # no longer assigned here: its next owner reads from the commit
    return kept


class _ConsumerThread(AIOKafkaConsumerThread):
    """aiokafka's thread of a faust consumer: a fetch consumes only what faust takes."""

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        # A copy: the set is faust's, changed on its own thread while this fetch waits
        # (None: a client-only app, which takes every partition).
        asked: Any = active_partitions
        if asked is not None:
            asked = frozenset(asked)
            if not asked:  # aiokafka reads "none" as "every partition"
                return {}
        records = await super()._fetch_records(
            consumer, asked, timeout=timeout, max_records=max_records
        )
        return records if asked is None else keep_taken(consumer, records, self._taken())

    def _taken(self) -> frozenset[TP]:
        """The partitions whose records faust's ``getmany`` passes on right now."""
        owner: Any = self.consumer
        if not owner.flow_active:
            return frozenset()
        active = owner._active_partitions or ()  # noqa: SLF001 - the one adapter
        return frozenset(active) | frozenset(owner._buffered_partitions)  # noqa: SLF001


class _Consumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(Transport):
    Consumer = _Consumer


class LosslessFlowControl(FlowControlEvent):
    """faust's flow control of the stream and table queues, whose ``resume`` empties the
    queues only when the flow was suspended (their records are then from a generation
    of the group that is gone)."""

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()


class RebalanceSafeApp(faust.App):
    """A faust app on the mended consumer and flow control above."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return LosslessFlowControl(loop=self.loop)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
