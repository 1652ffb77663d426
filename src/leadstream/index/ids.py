"""A partition's lead ids: "organization, phone" to id and back, in 20-28 bytes a lead.

A phone in E.164 form (``+`` and at most 15 digits, the first not 0), the form every phone
has once normalized, is a number below 2**50; with its organization's code (the order in
which the partition first saw it) in the bits above, a lead's name is one 64-bit integer.
The names are kept by id in one array, and, for the way from name to id, sorted with their
ids in two more; the ids given since the last sort are in a small dict, merged into the
sorted arrays once it holds an eighth as many (the array by id grows by doubling: 8-16
bytes a lead, the sorted two 12). A dict of strings, as this replaced, took
~150 bytes a lead (the string, its slot, the id's int object): 750 MB at 5,000,000 leads.

A name that does not fit (a phone of another form, as an erased lead's placeholder in a
scrubbed journal, or an organization beyond :data:`MAX_ORGS` in one partition) is kept
in a plain dict beside, so nothing is refused here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

__all__ = ["BATCH_FROM", "ERASED", "MAX_ORGS", "LeadIds"]

_PHONE_BITS = 50  # 10**15 - 1 < 2**50
_PHONE_MASK = (1 << _PHONE_BITS) - 1
# Codes 0 .. MAX_ORGS - 1 keep the name below 2**63 (a signed 64-bit integer).
MAX_ORGS = 1 << (63 - _PHONE_BITS)
# In the array by id: no lead has this id (never given, or erased) ...
ERASED = -1
# ... or its name is in the dict of names that do not fit.
_ODD = -2
# In the sorted ids: an erased lead's place, until the next merge drops it.
_GONE = 0xFFFFFFFF
# From this many names on, a batch is looked up with arrays (assign_many); fewer cost less
# one by one.
BATCH_FROM = 64
# The dict of recent names is merged once it holds this many, or an eighth of the sorted.
_MERGE_AT = 4_096

Keys = npt.NDArray[np.int64]
_POW10 = 10 ** np.arange(16, dtype=np.int64)


class LeadIds:
    """See the module docstring. Ids are given by the caller (the partition's index)."""

    __slots__ = (
        "_bases",
        "_by_id",
        "_codes",
        "_n",
        "_odd",
        "_odd_names",
        "_orgs",
        "_recent",
        "_sids",
        "_skeys",
        "_views",
    )

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._bases: dict[str, int] = {}  # the code, shifted to its place in a name
        self._orgs: list[str] = []
        self._by_id: Keys = np.empty(0, np.int64)
        self._n = 0  # ids below this have a place in _by_id
        # Name -> id, sorted by name (None: not made yet; made at the first lookup).
        self._skeys: Keys | None = None
        self._sids: npt.NDArray[np.uint32] | None = None
        self._views: tuple[memoryview, memoryview] | None = None  # of the two above
        self._recent: dict[int, int] = {}
        self._odd: dict[tuple[str, str], int] = {}
        self._odd_names: dict[int, tuple[str, str]] = {}

    # -- names as integers -------------------------------------------------------------

    def _code(self, org: str, give: bool) -> int | None:
        code = self._codes.get(org)
        if code is None and give and len(self._orgs) < MAX_ORGS:
            code = self._codes[org] = len(self._orgs)
            self._bases[org] = code << _PHONE_BITS
            self._orgs.append(org)
        return code

    def _key(self, org: str, phone: str, give: bool = False) -> int | None:
        """The name as an integer; None when it does not fit (or, unless ``give``, its
        organization has no code: no lead of it is here). One call a name on the way of
        a single event: kept to a few C-level string checks."""
        base = self._bases.get(org)
        if base is None:
            code = self._code(org, give)
            if code is None:
                return None
            base = code << _PHONE_BITS
        if (
            1 < len(phone) < 17
            and phone[0] == "+"
            and phone[1] != "0"
            and phone.isascii()
            and phone[1:].isdigit()
        ):
            return base | int(phone[1:])
        return None

    # -- name to id --------------------------------------------------------------------

    def get(self, org: str, phone: str) -> int | None:
        key = self._key(org, phone)
        if key is None:
            return self._odd.get((org, phone)) if self._odd else None
        return self._find(key)

    def get_or_add(self, org: str, phone: str, lead: int) -> tuple[int, bool]:
        """The name's id, or ``lead`` given to it; and whether it was given (the name made
        an integer once, as one event's lead is looked up and, new, added)."""
        key = self._key(org, phone, give=True)
        if key is None:
            known = self._odd.get((org, phone))
        else:
            known = self._find(key)
        if known is not None:
            return known, False
        self._add(org, phone, lead, key)
        return lead, True

    def _find(self, key: int) -> int | None:
        lead = self._recent.get(key)
        if lead is not None:
            return lead
        # One name: bisect on memoryviews, whose items are Python ints (numpy's
        # searchsorted and scalars cost twice as much for one).
        skeys, sids = self._views or self._sorted_views()
        at = bisect_left(skeys, key)
        if at < len(skeys) and skeys[at] == key:
            found: int = sids[at]
            return None if found == _GONE else found
        return None

    def _sorted_views(self) -> tuple[memoryview, memoryview]:
        skeys, sids = self._sorted()
        return skeys.data, sids.data

    def assign_many(
        self, orgs: list[str], phones: list[str], first: int
    ) -> tuple[list[int], list[int]]:
        """Each name's id; a name without one is given the next from ``first`` on, in
        the order first met (a name twice in the batch, once). Returns the ids, and the
        places in the batch of the names given theirs, in the order of their ids."""
        for org in set(orgs):
            self._code(org, give=True)
        keys = self._keys(orgs, phones)
        found = self._lookup(keys, orgs, phones)
        fresh: list[int] = []
        names = keys.tolist()
        given: dict[object, int] = {}
        for i, lead in enumerate(found):
            if lead is None:
                key = names[i]
                name = key if key >= 0 else (orgs[i], phones[i])
                lead = given.get(name)
                if lead is None:
                    lead = given[name] = first + len(fresh)
                    fresh.append(i)
                found[i] = lead
        if fresh:
            self._reserve(first + len(fresh))
            self._by_id[first : first + len(fresh)] = keys[fresh]
            self._n = max(self._n, first + len(fresh))
            for lead, i in enumerate(fresh, first):
                if names[i] < 0:  # of another form
                    self._add(orgs[i], phones[i], lead, None)
                elif self._skeys is not None:
                    self._recent[names[i]] = lead
            if self._skeys is not None and len(self._recent) >= max(
                _MERGE_AT, len(self._skeys) >> 3
            ):
                self._merge()
        return cast("list[int]", found), fresh

    def _lookup(self, keys: Keys, orgs: Sequence[str], phones: Sequence[str]) -> list[int | None]:
        skeys, sids = self._sorted()
        found: list[int | None]
        if len(skeys):
            order = keys.argsort()  # sorted needles: each search starts where the last ended
            places = np.empty_like(order)
            places[order] = skeys.searchsorted(keys[order])
            places = places.clip(0, len(skeys) - 1)
            leads = sids[places]
            hit = (skeys[places] == keys) & (leads != _GONE)
            found = [
                lead if ok else None for ok, lead in zip(hit.tolist(), leads.tolist(), strict=True)
            ]
        else:
            found = [None] * len(phones)
        recent, odd = self._recent, self._odd
        if recent:
            for i, key in enumerate(keys.tolist()):
                if key >= 0 and (lead := recent.get(key)) is not None:
                    found[i] = lead
        if odd:
            for i in np.flatnonzero(keys == _ODD).tolist():
                found[i] = odd.get((orgs[i], phones[i]))
        return found

    def _keys(self, orgs: Sequence[str], phones: Sequence[str]) -> Keys:
        """:meth:`_key` of each name, computed on the phones' bytes as arrays; :data:`_ODD`
        where it does not fit, :data:`ERASED` where the organization has no code."""
        n = len(phones)
        lengths = np.fromiter(map(len, phones), np.int64, n)
        raw = "".join(phones).encode()
        if len(raw) != int(lengths.sum()):  # a character beyond ASCII: one by one
            return np.array(
                [
                    _ODD if (key := self._key(o, p)) is None else key
                    for o, p in zip(orgs, phones, strict=True)
                ],
                np.int64,
            )
        chars = np.frombuffer(raw + b"\0" * 16, np.uint8)
        starts = np.cumsum(lengths) - lengths
        at = np.arange(16)
        seen = at < lengths[:, None]
        grid = chars[starts[:, None] + at].astype(np.int64)
        digits = grid[:, 1:] - 48
        fits = (
            (grid[:, 0] == 43)  # "+"
            & (lengths >= 2)
            & (lengths <= 16)
            & (digits[:, 0] >= 1)
            & (((digits >= 0) & (digits <= 9)) | ~seen[:, 1:]).all(axis=1)
        )
        # Digit j of a phone of L characters is worth 10 ** (L - 2 - j).
        scale = _POW10[(lengths[:, None] - 2 - at[:15]).clip(0, 15)]
        value = (np.where(seen[:, 1:], digits, 0) * scale).sum(axis=1)
        codes = self._codes
        if len(set(orgs)) == 1:
            first = orgs[0]
            code = codes.get(first)
            bases = np.full(n, -1 if code is None else code << _PHONE_BITS, np.int64)
        else:
            bases = np.array([codes.get(org, -1) for org in orgs], np.int64)
            bases = np.where(bases >= 0, bases << _PHONE_BITS, -1)
        keys = np.where(fits, bases | value, _ODD)
        # An organization without a code: no lead of it is here, unless kept as odd (one
        # beyond MAX_ORGS).
        return np.where(fits & (bases < 0), ERASED if len(self._orgs) < MAX_ORGS else _ODD, keys)

    def _sorted(self) -> tuple[Keys, npt.NDArray[np.uint32]]:
        skeys, sids = self._skeys, self._sids
        if skeys is None or sids is None:
            keys = self._by_id[: self._n]
            ids = np.flatnonzero(keys >= 0)
            keys = keys[ids]
            order = keys.argsort(kind="stable")
            skeys = self._skeys = keys[order]
            sids = self._sids = ids[order].astype(np.uint32)
            self._views = (skeys.data, sids.data)
            self._recent = {}
        return skeys, sids

    def _merge(self) -> None:
        """The recent names into the sorted arrays (erased places dropped)."""
        skeys, sids = self._sorted()
        live = sids != _GONE
        if not live.all():
            skeys, sids = skeys[live], sids[live]
        new_keys = np.fromiter(self._recent.keys(), np.int64, len(self._recent))
        new_ids = np.fromiter(self._recent.values(), np.uint32, len(self._recent))
        order = new_keys.argsort(kind="stable")
        new_keys, new_ids = new_keys[order], new_ids[order]
        places = skeys.searchsorted(new_keys)
        self._skeys = np.insert(skeys, places, new_keys)
        self._sids = np.insert(sids, places, new_ids)
        self._views = (self._skeys.data, self._sids.data)
        self._recent = {}

    # -- changes -----------------------------------------------------------------------

    def add(self, org: str, phone: str, lead: int) -> None:
        """``lead`` is this name's id (the caller knows the name has none)."""
        self._add(org, phone, lead, self._key(org, phone, give=True))

    def _add(self, org: str, phone: str, lead: int, key: int | None) -> None:
        if lead >= self._n:
            if lead >= len(self._by_id):
                self._reserve(lead + 1)
            self._n = lead + 1
        if key is None:
            self._odd[(org, phone)] = lead
            self._odd_names[lead] = (org, phone)
            self._by_id[lead] = _ODD
            return
        self._by_id[lead] = key
        if self._skeys is not None:
            recent = self._recent
            recent[key] = lead
            if len(recent) >= max(_MERGE_AT, len(self._skeys) >> 3):
                self._merge()

    def _reserve(self, size: int) -> None:
        if size > len(self._by_id):
            grown = np.full(max(size, 2 * len(self._by_id), 1024), ERASED, np.int64)
            grown[: self._n] = self._by_id[: self._n]
            self._by_id = grown

    def setdefault(self, org: str, phone: str, lead: int) -> None:
        """:meth:`add`, unless ``lead`` already has this name (a scan meets a lead once
        per key it has)."""
        if lead < self._n:
            known = int(self._by_id[lead])
            if known >= 0 and known == self._key(org, phone):
                return
            if known == _ODD and self._odd_names.get(lead) == (org, phone):
                return
        self.add(org, phone, lead)

    def remove(self, org: str, phone: str, lead: int) -> None:
        """Forget ``lead`` (erased), whatever its name."""
        if lead >= self._n:
            return
        known = int(self._by_id[lead])
        self._by_id[lead] = ERASED
        if known == _ODD:
            name = self._odd_names.pop(lead, None)
            if name is not None:
                self._odd.pop(name, None)
            return
        if known < 0 or self._skeys is None or self._sids is None:
            return
        if self._recent.get(known) == lead:
            del self._recent[known]
            return
        at = int(self._skeys.searchsorted(known))
        if at < len(self._skeys) and int(self._skeys[at]) == known and self._sids[at] == lead:
            self._sids[at] = _GONE

    # -- id to name --------------------------------------------------------------------

    def name_of(self, lead: int) -> tuple[str, str] | None:
        if not 0 <= lead < self._n:
            return None
        key = int(self._by_id[lead])
        if key == _ODD:
            return self._odd_names[lead]
        if key < 0:
            return None
        return self._orgs[key >> _PHONE_BITS], f"+{key & _PHONE_MASK}"

    def phone_numbers(self, leads: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """The E.164 digits of each of ``leads`` as one integer (``+12125550100`` is
        12125550100), at once; -1 for an id whose name is not kept as an integer (ask
        :meth:`name_of`) or that has no name."""
        if not len(leads):
            return np.empty(0, np.int64)
        inside = leads < self._n
        keys = np.full(len(leads), ERASED, np.int64)
        keys[inside] = self._by_id[leads[inside]]
        return np.where(keys >= 0, keys & _PHONE_MASK, -1)

    def items(self) -> Iterator[tuple[tuple[str, str], int]]:
        """((organization, phone), id) of every lead, by id."""
        by_id = self._by_id[: self._n].tolist()
        orgs = self._orgs
        for lead, key in enumerate(by_id):
            if key >= 0:
                yield (orgs[key >> _PHONE_BITS], f"+{key & _PHONE_MASK}"), lead
            elif key == _ODD:
                yield self._odd_names[lead], lead

    def of_organization(self, org: str) -> Iterator[tuple[str, int]]:
        """(phone, id) of the organization's leads."""
        code = self._codes.get(org)
        if code is not None:
            by_id = self._by_id[: self._n]
            low, high = code << _PHONE_BITS, (code + 1) << _PHONE_BITS
            leads = np.flatnonzero((by_id >= low) & (by_id < high))
            for lead, key in zip(leads.tolist(), by_id[leads].tolist(), strict=True):
                yield f"+{key & _PHONE_MASK}", lead
        for (of, phone), lead in list(self._odd.items()):
            if of == org:
                yield phone, lead

    # -- kept on disk (leadstream.index.durable) ---------------------------------------

    @property
    def size(self) -> int:
        """One more than the highest id with a place (a name, or :data:`ERASED`)."""
        return self._n

    @property
    def organizations(self) -> list[str]:
        """The organizations by code."""
        return list(self._orgs)

    def chunk(self, start: int, stop: int) -> tuple[bytes, list[tuple[int, str, str]]]:
        """The names of ids ``start`` .. ``stop - 1``: as integers (little-endian int64,
        :data:`ERASED` for none), and those that do not fit."""
        part = np.full(stop - start, ERASED, "<i8")
        held = self._by_id[start : min(stop, self._n)]
        part[: len(held)] = held
        odd = np.flatnonzero(part == _ODD).tolist()
        return part.tobytes(), [(start + at, *self._odd_names[start + at]) for at in odd]

    @classmethod
    def from_chunks(
        cls,
        organizations: list[str],
        chunks: Sequence[bytes],
        odd: Sequence[tuple[int, str, str]],
    ) -> LeadIds:
        """The ids :meth:`chunk` wrote, in order; the sorted arrays are made at the first
        lookup (a send needs none)."""
        ids = cls()
        ids._orgs = list(organizations)
        ids._codes = {org: code for code, org in enumerate(ids._orgs)}
        ids._bases = {org: code << _PHONE_BITS for org, code in ids._codes.items()}
        by_id = np.concatenate([np.frombuffer(c, "<i8") for c in chunks]) if chunks else None
        ids._by_id = np.empty(0, np.int64) if by_id is None else by_id.astype(np.int64)
        ids._n = len(ids._by_id)
        if len(ids._by_id) and int(ids._by_id.max()) >> _PHONE_BITS >= len(ids._orgs):
            raise ValueError("a kept lead name of an unknown organization")
        for lead, org, phone in odd:
            if not 0 <= lead < ids._n or ids._by_id[lead] != _ODD:
                raise ValueError(f"a kept name for lead {lead}, not one of another form")
            ids._odd[(org, phone)] = lead
            ids._odd_names[lead] = (org, phone)
        if len(ids._odd) != int((ids._by_id == _ODD).sum()):
            raise ValueError("a lead name of another form is missing")
        return ids
