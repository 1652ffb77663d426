"""Ahead of sends: the index of every partition this worker owns is built, and its
members' time zones are looked up, before a send needs them. A send would otherwise pay
for both at its moment (the index is built on demand all the same; this only moves the
cost away from the moment).

One job, apart from the materializer: it needs the partitions owned (``owned``), whether
the worker is ready, whether input is being applied (``busy``: lookups then step back)
and whether a send is due in the next moments (``send_soon``: then it keeps off the
interpreter the send shares with it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from leadstream.domain.controls import phone_zones
from leadstream.index.table import IndexedStore
from leadstream.index.zones import LeadZones, PhoneOf, Zones

__all__ = ["Warmup", "ZoneLearner"]

logger = logging.getLogger(__name__)


class Warmup:
    """See the module docstring."""

    def __init__(
        self,
        store: IndexedStore,
        *,
        owned: Callable[[], list[int]],
        ready: Callable[[], bool],
        busy: Callable[[], bool],
        send_soon: Callable[[], bool],
        interval_seconds: float = 0.1,
    ) -> None:
        self._store = store
        self._owned = owned
        self._ready = ready
        self._send_soon = send_soon
        self._interval = interval_seconds
        self._learner = ZoneLearner(busy=busy)
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="leadstream-index")

    async def run(self) -> None:
        """Both loops, until cancelled."""
        indexes = asyncio.create_task(self._build_indexes(), name="build-indexes")
        try:
            await self._learn_zones()
        finally:
            indexes.cancel()
            self._learner.close()
            self._reads.shutdown(wait=False, cancel_futures=True)

    async def _build_indexes(self) -> None:
        """Keep the indexes of the partitions owned, one at a time; drop those of
        partitions that left. Looked at every ``interval_seconds``: the worker is ready
        once every owned partition has its index, so this is how late readiness can be
        after a rebalance (a look costs a set operation).

        Each index is read back (or built) on a thread of its own, off the event loop:
        at 5,000,000 leads that took the loop for seconds a partition, and a health
        check waiting behind it timed out. The loop only keeps what was read, unless a
        writer indexed the partition meanwhile (:meth:`IndexedStore.take`)."""
        store = self._store
        loop = asyncio.get_running_loop()
        while True:
            if self._ready():
                owned = self._owned()
                store.keep_only(owned)
                for partition in owned:
                    ahead = store.ahead(partition)
                    if ahead is None:
                        continue
                    try:
                        await loop.run_in_executor(self._reads, ahead.read)
                    except Exception:  # noqa: BLE001 - a writer indexes it when it needs it
                        # (a store fault has been reported: the worker is stopping).
                        logger.exception("reading partition %d's index ahead failed", partition)
                        await asyncio.sleep(1.0)  # not a line every look
                        continue
                    store.take(ahead)
            await asyncio.sleep(self._interval)

    async def _learn_zones(self) -> None:
        """Quiet hours need each member's time zones: worked out ahead, on a thread
        (:class:`ZoneLearner`), except while a send is due in the next moments."""
        store = self._store
        while True:
            if self._send_soon() or not self._ready():
                await asyncio.sleep(0.2)
                continue
            indexes = [store.index(p) for p in self._owned() if store.has_index(p)]
            try:
                looked_up = await self._learner.step(
                    ((ix.zones, len(ix.plain), ix.phone_of) for ix in indexes),
                    lambda zones: _still_indexed(store, zones),
                )
            except Exception:  # noqa: BLE001 - a send learns what this has not
                logger.exception("learning members' time zones failed; retrying")
                looked_up = 0
            if not looked_up:
                await asyncio.sleep(1.0)


def _still_indexed(store: IndexedStore, zones: LeadZones) -> bool:
    """Is ``zones`` the cache of an index the store still holds (not one dropped by a
    restore or a revocation while its numbers were looked up)?"""
    return any(store.index(p).zones is zones for p in store.indexed_partitions())


def _look_up(phones: list[str]) -> list[Zones]:
    return [phone_zones(phone) for phone in phones]


class ZoneLearner:
    """Works out members' zones ahead: each step takes a batch of unknown members from
    the partitions ``targets`` names (``(zones, leads, phone_of)`` of each current
    index), looks their numbers up on a thread, and files the answers on the loop, unless
    the partition's index was replaced meanwhile (``current``)."""

    def __init__(
        self,
        batch: int = 2000,
        pause_seconds: float | None = None,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._batch = batch
        # After each batch: this long, or by default as long as its lookups took (at most
        # half of a core), nine times as long while ``busy()`` says the worker is applying
        # input (a tenth of a core: ingest and audience uploads come first).
        self._pause = pause_seconds
        self._busy = busy
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="leadstream-zones")

    async def step(
        self,
        targets: Iterable[tuple[LeadZones, int, PhoneOf]],
        current: Callable[[LeadZones], bool],
    ) -> int:
        """One batch; how many numbers were looked up (0: every member is known)."""
        todo: list[tuple[LeadZones, int, str]] = []
        for zones, leads, phone_of in targets:
            for lead, phone in zones.unknown(leads, phone_of, self._batch - len(todo)):
                todo.append((zones, lead, phone))
            if len(todo) >= self._batch:
                break
        if not todo:
            return 0
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        found = await loop.run_in_executor(self._executor, _look_up, [p for _, _, p in todo])
        took = time.perf_counter() - started
        for (zones, lead, _), answer in zip(todo, found, strict=True):
            if current(zones):
                zones.add(lead, answer)
        if self._pause is not None:
            await asyncio.sleep(self._pause)
        else:
            await asyncio.sleep(took * (9 if self._busy() else 1))
        return len(todo)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
