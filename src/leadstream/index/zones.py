"""Which time zones each lead's phone number lies in, for quiet hours.

libphonenumber answers that in ~30 us a number, too slow for a 1,000,000-lead send at its
moment, and a number's zones never change: so each partition remembers them per lead id,
as one bitmap of leads per distinct zone set (a few hundred sets exist). They are worked
out ahead, off the event loop (:mod:`leadstream.materialize.warmup`), and by a send for
any member still unknown when it needs it. Kept with the rest of the index, in its
snapshots (:mod:`leadstream.index.durable`). Which zones
a number lies in, and whether a zone set is quiet, are the rules' to say
(:mod:`leadstream.domain.controls`): they are handed in as ``locate`` and ``is_quiet``.
"""

from __future__ import annotations

from collections.abc import Callable

from pyroaring import BitMap

__all__ = ["LeadZones", "Locate", "PhoneOf", "Zones"]


Zones = tuple[str, ...]
# The phone of a lead id (None: none known); the zones of a phone number.
PhoneOf = Callable[[int], str | None]
Locate = Callable[[str], Zones]


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

    def learn(self, leads: BitMap, phone_of: PhoneOf, locate: Locate) -> None:
        """Work out, here and now, the zones of every lead of ``leads`` not known yet."""
        for lead in leads - self.known:
            phone = phone_of(lead)
            if phone is not None:
                self.add(lead, locate(phone))

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

    def quiet(
        self,
        leads: BitMap,
        is_quiet: Callable[[Zones], bool],
        phone_of: PhoneOf,
        locate: Locate,
    ) -> BitMap:
        """The leads of ``leads`` whose zone set ``is_quiet``: decided once per zone set,
        then one union of bitmaps."""
        self.learn(leads, phone_of, locate)
        quiet = BitMap()
        for zones, members in self._sets.items():
            if is_quiet(zones):
                quiet |= members
        return quiet & leads

    def parts(self) -> list[tuple[Zones, bytes]]:
        """Each zone set with its leads (serialized), as :meth:`from_parts` takes them."""
        return [(zones, members.serialize()) for zones, members in self._sets.items()]

    @classmethod
    def from_parts(cls, parts: list[tuple[Zones, bytes]]) -> LeadZones:
        made = cls()
        for zones, members in parts:
            leads = made._sets[tuple(zones)] = BitMap.deserialize(members)
            made.known |= leads
        return made

    def zones_of(self, lead: int) -> Zones | None:
        for zones, members in self._sets.items():
            if lead in members:
                return zones
        return None
