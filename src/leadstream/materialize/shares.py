"""Held sends evaluated ahead of their moment, one :class:`PreparedShare` per (partition,
send), kept current through the store's watch.

A share is started when its moment is less than ``LEADSTREAM_PREPARE_SECONDS`` away,
evaluated a step at a time between other work, and taken at the moment by the
materializer (which then reads again only the leads written since). Every share is
dropped when a rebalance starts: restores write the store without the watch seeing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from leadstream.domain.prepared import PreparedShare
from leadstream.domain.send_state import PendingRecord, audience_filter_for, is_due
from leadstream.domain.sends import AudienceFilterSpec, SendId, SendRules, SendTrigger
from leadstream.logs import log_fields
from leadstream.state.watch import WatchedStore
from leadstream.wire.records import encode_recipient

__all__ = ["PreparedShares", "ShareId"]

logger = logging.getLogger(__name__)


class ShareId(NamedTuple):
    partition: int
    send: SendId


RulesOf = Callable[[SendTrigger, AudienceFilterSpec | None], SendRules]


class PreparedShares:
    """The shares being evaluated or ready, and the one task that evaluates them."""

    def __init__(self, store: WatchedStore, rules_of: RulesOf, prepare_seconds: int) -> None:
        self._store = store
        self._rules_of = rules_of
        self._prepare_ms = prepare_seconds * 1000
        self._shares: dict[ShareId, PreparedShare] = {}
        self._generation = -1
        self._to_build: list[ShareId] = []
        self._builder: asyncio.Task[None] | None = None

    def valid_in(self, generation: int) -> None:
        """Drop every share made before rebalance ``generation`` began."""
        if generation != self._generation:
            for share_id in list(self._shares):
                self.take(share_id)
            self._generation = generation

    def take(self, share_id: ShareId) -> PreparedShare | None:
        """The share of ``share_id``, no longer kept nor watched (None if there is none)."""
        share = self._shares.pop(share_id, None)
        if share is not None:
            self._store.unwatch(share_id.partition, share_id.send.organization_id, share.changed)
        return share

    def keep_only(self, partitions: set[int]) -> None:
        for share_id in [i for i in self._shares if i.partition not in partitions]:
            self.take(share_id)

    def prepare(
        self, partition: int, held: list[PendingRecord], *, now_ms: int, lead_ms: int
    ) -> None:
        """Start evaluating the held sends whose moment is near; forget the ones no longer
        held (materialized, or finished by a previous owner)."""
        held_ids = set()
        for record in held:
            trigger = record.trigger
            share_id = ShareId(partition, SendId(trigger.organization_id, trigger.send_id))
            held_ids.add(share_id)
            if (
                self._prepare_ms == 0
                or share_id in self._shares
                or is_due(record, now_ms=now_ms, lead_ms=lead_ms)
                or trigger.due_at(lead_ms) > now_ms + self._prepare_ms
            ):
                continue
            audience_filter, _late = audience_filter_for(self._store, partition, trigger)
            share = PreparedShare(
                self._rules_of(trigger, audience_filter), partition, encode=encode_recipient
            )
            # Watch first: a write during the pass is then evaluated again at the moment.
            self._store.watch(partition, trigger.organization_id, share.changed)
            self._shares[share_id] = share
            self._to_build.append(share_id)
        for share_id in [i for i in self._shares if i.partition == partition]:
            if share_id not in held_ids:
                self.take(share_id)
        if self._to_build and (self._builder is None or self._builder.done()):
            self._builder = asyncio.create_task(self._build())

    def close(self) -> None:
        if self._builder is not None:
            self._builder.cancel()

    async def _build(self) -> None:
        """Evaluate the shares one at a time, a step at a time, between other work."""
        while self._to_build:
            share_id = self._to_build.pop(0)
            share = self._shares.get(share_id)
            started = time.perf_counter()
            for _ in share.steps(self._store) if share is not None else ():
                await asyncio.sleep(0)
                if self._shares.get(share_id) is not share:
                    break  # taken (a rebalance, or materialized meanwhile)
            else:
                if share is not None and share.complete:
                    logger.info(
                        "send %s:%s partition %d prepared: %d members in %.2f s",
                        share_id.send.organization_id,
                        share_id.send.send_id,
                        share_id.partition,
                        len(share.outcomes),
                        time.perf_counter() - started,
                        extra=log_fields(
                            organization=share_id.send.organization_id,
                            send_id=share_id.send.send_id,
                        ),
                    )
