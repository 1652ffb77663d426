"""Which time zones each lead's phone number lies in, for quiet hours.

libphonenumber answers that in ~30 us a number, too slow for a 1,000,000-lead send at its
moment, and a number's zones never change: so each partition remembers them per lead id,
as one bitmap of leads per distinct zone set (a few hundred sets exist). They are worked
out ahead, off the event loop (:class:`ZoneLearner`: numbers a thread looks up, whose
answers the loop files), and by a send for any member still unknown when it needs it. A
cache: nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from pyroaring import BitMap

from leadstream.domain.controls import QuietHours, phone_zones

__all__ = ["LeadZones", "ZoneLearner"]


PhoneOf = Callable[[int], str | None]
Zones = tuple[str, ...]


class LeadZones:
    def __init__(self) -> None:
        self.known = BitMap()
        self._sets: dict[Zones, BitMap] = {}
        self._cursor = 0

    def add(self, lead: int, zones: Zones) -> None:
        members = self._sets.get(zones)
        if members is None:
            members = self._sets[zones] = BitMap()
        members.add(lead)
        self.known.add(lead)

    def learn(self, leads: BitMap, phone_of: PhoneOf) -> None:
        """Work out, here and now, the zones of every lead of ``leads`` not known yet."""
        for lead in leads - self.known:
            phone = phone_of(lead)
            if phone is not None:
                self.add(lead, phone_zones(phone))

    def unknown(self, leads: int, phone_of: PhoneOf, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` leads among ids ``0 .. leads - 1`` whose zones are not known and
        that have a phone to look at, with it; each call goes on where the last stopped,
        and starts over once past the end."""
        out: list[tuple[int, str]] = []
        start = self._cursor
        while len(out) < limit and start < leads:
            stop = min(leads, start + limit)
            for lead in BitMap(range(start, stop)) - self.known:
                phone = phone_of(lead)
                if phone is not None:
                    out.append((lead, phone))
            start = stop
        self._cursor = 0 if start >= leads else start
        return out

    def forget(self, lead: int) -> None:
        self.known.discard(lead)
        for members in self._sets.values():
            members.discard(lead)

    def quiet(self, leads: BitMap, rule: QuietHours, at_ms: int, phone_of: PhoneOf) -> BitMap:
        """The leads of ``leads`` that are in quiet hours at ``at_ms``: decided once per
        zone set, then one union of bitmaps."""
        self.learn(leads, phone_of)
        quiet = BitMap()
        for zones, members in self._sets.items():
            if rule.decide(zones, at_ms).quiet:
                quiet |= members
        return quiet & leads

    def zones_of(self, lead: int) -> Zones | None:
        for zones, members in self._sets.items():
            if lead in members:
                return zones
        return None


def _look_up(phones: list[str]) -> list[Zones]:
    return [phone_zones(phone) for phone in phones]


class ZoneLearner:
    """Works out members' zones ahead: each step takes a batch of unknown members from
    the partitions ``targets`` names (``(partition, zones, phone_of)`` of each current
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
