"""Which time zones each lead's phone number lies in, for quiet hours.

libphonenumber answers that in ~30 us a number, too slow for a 1,000,000-lead send at its
moment, and a number's zones never change: so each partition remembers them per lead id,
as one bitmap of leads per distinct zone set (a few hundred sets exist). They are worked
out ahead, a slice per materializer round (:meth:`LeadZones.warm`), and for any lead still
unknown when a send needs it. A cache: nothing of it is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from pyroaring import BitMap

from leadstream.domain.controls import QuietHours, phone_zones

__all__ = ["LeadZones"]

PhoneOf = Callable[[int], str | None]


class LeadZones:
    def __init__(self) -> None:
        self.known = BitMap()
        self._sets: dict[tuple[str, ...], BitMap] = {}
        self._cursor = 0

    def learn(self, leads: BitMap, phone_of: PhoneOf) -> None:
        """Work out the zones of every lead of ``leads`` not known yet."""
        for lead in leads - self.known:
            phone = phone_of(lead)
            if phone is None:
                continue
            zones = phone_zones(phone)
            members = self._sets.get(zones)
            if members is None:
                members = self._sets[zones] = BitMap()
            members.add(lead)
            self.known.add(lead)

    def warm(self, leads: int, phone_of: PhoneOf, budget: int) -> bool:
        """Learn up to ``budget`` leads among ids ``0 .. leads - 1``, continuing where the
        last call stopped; True once every id has been passed (then it starts over, for
        leads that had no phone to look at before)."""
        start = self._cursor
        stop = min(leads, start + budget)
        self.learn(BitMap(range(start, stop)), phone_of)
        self._cursor = 0 if stop >= leads else stop
        return stop >= leads

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

    def zones_of(self, lead: int) -> tuple[str, ...] | None:
        for zones, members in self._sets.items():
            if lead in members:
                return zones
        return None
