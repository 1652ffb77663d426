"""One organization's events of one type in one partition, organized for the filters'
two questions: "has the lead at least n of them" (sticky) and "at least n within
``[lo, hi]``" (a window).

* Sticky: ``ever`` holds every lead with one event or more (folded ones included, as
  :meth:`leadstream.domain.lead_index.LeadHistory.count` counts them); the leads with two or
  more keep their count, and ``at least k`` bitmaps answer ``minCount`` up to
  :data:`TRACKED_COUNTS` without looking at a lead. A sticky count only grows: compaction
  folds events without changing it.
* Windows: one bucket per hour that holds an event, with the bitmap of its leads and every
  event key in it packed as ``(ms into the hour) << 32 | lead id`` (one machine word each).
  A window unions the bitmaps of the hours it covers whole and looks at the packed events
  of its two edge hours only. ``minCount`` above one counts packed events per lead.

Only event keys are in the hours (a window never sees folded events); compaction drops
what it deleted with :meth:`Timeline.drop_before`.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Iterable

from pyroaring import BitMap

__all__ = ["HOUR_MS", "TRACKED_COUNTS", "Hour", "Timeline"]

HOUR_MS = 3_600_000
# Sticky minCount answered from a bitmap up to this count; above it, from the counts.
TRACKED_COUNTS = 8
_ID_MASK = 0xFFFFFFFF


class Hour:
    """The leads with an event in one hour, and those events packed."""

    __slots__ = ("events", "leads")

    def __init__(self) -> None:
        self.leads = BitMap()
        self.events = array("Q")

    def add(self, lead: int, offset_ms: int) -> None:
        self.leads.add(lead)
        self.events.append(offset_ms << 32 | lead)

    def between(self, lo_ms: int, hi_ms: int) -> Iterable[int]:
        """Lead id of every event at ``lo_ms <= ms into the hour <= hi_ms`` (one per event)."""
        lo, hi = lo_ms << 32, hi_ms << 32 | _ID_MASK
        return [e & _ID_MASK for e in self.events if lo <= e <= hi]


class Timeline:
    """See the module docstring."""

    __slots__ = ("_at_least", "_counts", "_order", "ever", "hours")

    def __init__(self) -> None:
        self.hours: dict[int, Hour] = {}
        self._order: list[int] = []  # the keys of ``hours``, ascending
        self.ever = BitMap()
        self._counts: dict[int, int] = {}  # sticky count of the leads with two or more
        self._at_least = [BitMap() for _ in range(2, TRACKED_COUNTS + 1)]

    # -- writes ----------------------------------------------------------------------

    def add_many(self, events: list[tuple[int, int]]) -> None:
        """New event keys ``(lead, ts)``: in their hours (a window sees them) and in their
        leads' sticky counts."""
        self.add_times(events)
        self.count_many([lead for lead, _ in events])

    def add_times(self, events: list[tuple[int, int]]) -> None:
        """Every ``(lead, ts)`` in its hour; each hour's bitmap is updated once (an ingest
        batch spreads over few hours, a build over all of them)."""
        by_hour: dict[int, list[int]] = {}
        get = by_hour.get
        for lead, ts in events:
            number = ts // HOUR_MS
            packed = get(number)
            if packed is None:
                packed = by_hour[number] = []
            packed.append((ts - number * HOUR_MS) << 32 | lead)
        for number, packed in by_hour.items():
            hour = self.hours.get(number)
            if hour is None:
                hour = self.hours[number] = Hour()
                bisect.insort(self._order, number)
            hour.leads.update([e & _ID_MASK for e in packed])
            hour.events.extend(packed)

    def count_many(self, leads: list[int]) -> None:
        """One more event in the sticky count of each of ``leads`` (a lead may repeat); the
        bitmaps are updated once (a batch is mostly leads' first event of a type)."""
        batch = BitMap(leads)
        repeated: Counter[int] = Counter()
        if len(batch) != len(leads):  # a lead twice in the batch
            repeated = Counter(leads)
        for lead in batch & self.ever:  # leads with events before this batch
            self.count(lead, repeated.get(lead, 1))
        for lead, n in repeated.items():
            if n > 1 and lead not in self.ever:
                self.count(lead, n)
        self.ever |= batch

    def count(self, lead: int, n: int = 1) -> None:
        """``n`` more events in the lead's sticky count."""
        old = self.sticky_count(lead)
        new = old + n
        self.ever.add(lead)
        if new >= 2:
            self._counts[lead] = new
            for k in range(max(old + 1, 2), min(new, TRACKED_COUNTS) + 1):
                self._at_least[k - 2].add(lead)

    def drop_before(self, horizon_ms: int) -> None:
        """Forget every event key before ``horizon_ms`` (compaction deleted them)."""
        first_kept = horizon_ms // HOUR_MS
        cut = bisect.bisect_left(self._order, first_kept)
        for number in self._order[:cut]:
            del self.hours[number]
        del self._order[:cut]
        hour = self.hours.get(first_kept)
        if hour is not None and horizon_ms % HOUR_MS:
            lo = (horizon_ms % HOUR_MS) << 32
            kept = array("Q", (e for e in hour.events if e >= lo))
            if not kept:
                del self.hours[first_kept]
                self._order.remove(first_kept)
            else:
                hour.events = kept
                hour.leads = BitMap(e & _ID_MASK for e in kept)

    def remove(self, lead: int) -> None:
        """Forget every event of ``lead`` (it was erased)."""
        if lead not in self.ever:
            return
        self.ever.discard(lead)
        self._counts.pop(lead, None)
        for at_least in self._at_least:
            at_least.discard(lead)
        for number in list(self._order):
            hour = self.hours[number]
            if lead in hour.leads:
                hour.leads.discard(lead)
                hour.events = array("Q", (e for e in hour.events if e & _ID_MASK != lead))
                if not hour.events:
                    del self.hours[number]
                    self._order.remove(number)

    # -- reads -----------------------------------------------------------------------

    def sticky_count(self, lead: int) -> int:
        if lead not in self.ever:
            return 0
        return self._counts.get(lead, 1)

    def sticky(self, min_count: int) -> BitMap:
        """Leads with at least ``min_count`` events, folded ones included."""
        if min_count <= 1:
            return self.ever
        if min_count <= TRACKED_COUNTS:
            return self._at_least[min_count - 2]
        return BitMap(lead for lead, n in self._counts.items() if n >= min_count)

    def within(self, lo_ms: int, hi_ms: int, min_count: int, candidates: BitMap) -> BitMap:
        """The ``candidates`` with at least ``min_count`` event keys at ``lo_ms <= ts <=
        hi_ms``."""
        if hi_ms < lo_ms:
            return BitMap()
        first, last = lo_ms // HOUR_MS, hi_ms // HOUR_MS
        order = self._order
        numbers = order[bisect.bisect_left(order, first) : bisect.bisect_right(order, last)]
        whole: list[Hour] = []
        edges: list[tuple[Hour, int, int]] = []
        for number in numbers:
            hour = self.hours[number]
            start = number * HOUR_MS
            lo = max(lo_ms - start, 0)
            hi = min(hi_ms - start, HOUR_MS - 1)
            if lo == 0 and hi == HOUR_MS - 1:
                whole.append(hour)
            else:
                edges.append((hour, lo, hi))
        if min_count <= 1:
            found = BitMap.union(*(h.leads for h in whole)) if whole else BitMap()
            for hour, lo, hi in edges:
                found.update(hour.between(lo, hi))
            return found & candidates
        counts: Counter[int] = Counter()
        for hour in whole:
            counts.update(e & _ID_MASK for e in hour.events)
        for hour, lo, hi in edges:
            counts.update(hour.between(lo, hi))
        return BitMap(lead for lead, n in counts.items() if n >= min_count) & candidates

    def times(self, lo_ms: int, hi_ms: int, leads: BitMap) -> dict[int, list[int]]:
        """The occurredAt of each event key of ``leads`` at ``lo_ms <= ts <= hi_ms``, per
        lead, ascending (what a sequence without metadata needs, without a store read)."""
        out: dict[int, list[int]] = {}
        if hi_ms < lo_ms or not leads:
            return out
        first, last = lo_ms // HOUR_MS, hi_ms // HOUR_MS
        order = self._order
        for number in order[bisect.bisect_left(order, first) : bisect.bisect_right(order, last)]:
            hour = self.hours[number]
            if not hour.leads.intersect(leads):
                continue
            start = number * HOUR_MS
            for packed in hour.events:
                lead = packed & _ID_MASK
                if lead in leads:
                    ts = start + (packed >> 32)
                    if lo_ms <= ts <= hi_ms:
                        out.setdefault(lead, []).append(ts)
        for found in out.values():
            found.sort()
        return out

    # -- kept form (leadstream.index.durable) ----------------------------------------

    def parts(self) -> tuple[list[tuple[int, bytes, bytes]], bytes, bytes, bytes, list[bytes]]:
        """Everything this timeline holds, as bytes: each hour's number, leads and packed
        events; the sticky leads; the leads with two or more and their counts; the at
        least k bitmaps."""
        hours = [
            (n, self.hours[n].leads.serialize(), self.hours[n].events.tobytes())
            for n in self._order
        ]
        counted = array("I", self._counts)
        counts = array("Q", self._counts.values())
        at_least = [b.serialize() for b in self._at_least]
        return hours, self.ever.serialize(), counted.tobytes(), counts.tobytes(), at_least

    @classmethod
    def from_parts(
        cls,
        hours: list[tuple[int, bytes, bytes]],
        ever: bytes,
        counted: bytes,
        counts: bytes,
        at_least: list[bytes],
    ) -> Timeline:
        """The timeline :meth:`parts` described."""
        timeline = cls()
        for number, leads, events in hours:
            hour = Hour()
            hour.leads = BitMap.deserialize(leads)
            hour.events.frombytes(events)
            timeline.hours[number] = hour
            timeline._order.append(number)
        timeline.ever = BitMap.deserialize(ever)
        ids, values = array("I"), array("Q")
        ids.frombytes(counted)
        values.frombytes(counts)
        timeline._counts = dict(zip(ids, values, strict=True))
        timeline._at_least = [BitMap.deserialize(b) for b in at_least]
        return timeline

    def snapshot(self) -> tuple[object, ...]:
        """Everything this timeline holds, in a comparable form (tests compare a rebuilt
        index with one kept current)."""
        return (
            {n: (list(h.leads), sorted(h.events)) for n, h in self.hours.items() if h.events},
            list(self.ever),
            dict(sorted(self._counts.items())),
            [list(b) for b in self._at_least],
        )
