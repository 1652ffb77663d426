"""The indexes of one partition: lead ids, and per organization its campaigns' members,
its opted-out leads and one :class:`~leadstream.index.timeline.Timeline` per event type.

Everything here is derived from the partition's keys (:mod:`leadstream.state.keys`):
:func:`build` makes it from a scan of them, and the writers of those keys keep it current
in the same synchronous call that writes the store (``apply_events``, ``apply_members``,
``compact_partition``), so between two awaits the index and the store agree. What they
change is also recorded, call by call, in :attr:`PartitionIndex.journal`, which
:mod:`leadstream.index.durable` keeps on disk beside a snapshot, so that a restart reads
the index back instead of building it (tests hold the index kept current, the one read
back and the one built from the keys equal).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyroaring import BitMap

from leadstream.index.ids import BATCH_FROM, LeadIds
from leadstream.index.timeline import Timeline
from leadstream.index.zones import LeadZones
from leadstream.state import keys
from leadstream.state.port import PartitionReader, iter_prefix

__all__ = [
    "Campaign",
    "EntryCodec",
    "OptTypes",
    "OrgIndex",
    "PartitionIndex",
    "build",
    "lead_digest",
]
_U64 = struct.Struct(">Q")
_NONE = -1


class EntryCodec(NamedTuple):
    """How a member's entry (``phoneE164`` and ``externalId`` as a chunk carries them) is
    made once and read back: the index keeps entries, the wire format is not its to know."""

    encode: Callable[[str, str | None], bytes]
    decode: Callable[[bytes], tuple[str, str | None]]


@dataclass(frozen=True, slots=True)
class OptTypes:
    """The event types that opt a lead out and in (settings)."""

    opt_out: str
    opt_in: str


@dataclass(slots=True)
class Campaign:
    """A campaign's members in one partition: their ids, and for the members with an
    externalId that id and their entry as a chunk carries it (the others' entries are the
    partition's :attr:`PartitionIndex.plain` ones)."""

    members: BitMap = field(default_factory=BitMap)
    external_ids: dict[int, str] = field(default_factory=dict)
    with_external: BitMap = field(default_factory=BitMap)
    entries: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class OrgIndex:
    """One organization's share of a partition."""

    campaigns: dict[str, Campaign] = field(default_factory=dict)
    timelines: dict[str, Timeline] = field(default_factory=dict)
    opted_out: BitMap = field(default_factory=BitMap)
    # lead id -> [latest opt-out, latest opt-in] occurredAt (-1: none), leads with either.
    opt_times: dict[int, list[int]] = field(default_factory=dict)
    # Committed sends (for frequency caps): sendId -> (scheduledFor, recipients).
    sends: dict[str, tuple[int, BitMap]] = field(default_factory=dict)
    # Erased leads that were opted out: keyed hash of the phone -> erased at (UTC ms).
    suppressed: dict[bytes, int] = field(default_factory=dict)

    def holds_anything(self) -> bool:
        """False for an organization whose last member and events are gone from the
        partition (it is kept, empty, until the index is built again)."""
        return bool(
            any(c.members for c in self.campaigns.values())
            or any(t.ever for t in self.timelines.values())
            or self.opt_times
            or self.sends
            or self.suppressed
        )

    def timeline(self, event_type: str) -> Timeline:
        timeline = self.timelines.get(event_type)
        if timeline is None:
            timeline = self.timelines[event_type] = Timeline()
        return timeline


class PartitionIndex:
    """See the module docstring."""

    def __init__(self, opt: OptTypes, codec: EntryCodec) -> None:
        self.opt = opt
        self.codec = codec
        # (organization, phone) <-> lead id.
        self.ids = LeadIds()
        self.next_id = 0
        # No folded (compacted) event is later than this: an event at or before it may be
        # a replay of one, and the writer must look at its lead's folded record.
        self.folded_through = -1
        self.orgs: dict[str, OrgIndex] = {}
        # By lead id: the entry of a member without externalId (``{"phoneE164": ...}``),
        # encoded once for every campaign. A list, not a dict: a 1,000,000-recipient send
        # gathers its entries with one C call (see Evaluation.entries).
        self.plain: list[bytes | None] = []
        self.zones = LeadZones()
        # The key of the partition's suppression hashes (None until the first erase).
        self.hash_key: bytes | None = None
        # Keys of erased leads that a changelog restore brought back: the table deletes
        # them once this index is built (see IndexedStore.index).
        self.purge: list[bytes] = []
        # Whether the partition was looked at for batches logged before groups existed
        # (and they were logged again): once per index (leadstream.domain.relog).
        self.legacy_batches_checked = False
        # While a writer updates the index (IndexedStore.updating): every change, as the
        # call that made it, for the journal kept with the index (leadstream.index.durable).
        self.journal: list[tuple[Any, ...]] | None = None
        # The leads erased in that update, by name: what is kept of them is scrubbed.
        self.erased: list[tuple[str, str, int]] = []

    # -- lead ids --------------------------------------------------------------------

    def lead_id(self, org: str, phone: str) -> int | None:
        return self.ids.get(org, phone)

    def assign(self, org: str, phone: str) -> tuple[int, bool]:
        """The lead's id, and whether it was given just now (the id travels in the values
        of the keys the caller writes)."""
        lead, new = self.ids.get_or_add(org, phone, self.next_id)
        if new:
            self.next_id += 1
            self._given(org, phone, lead)
        return lead, new

    def assign_new(self, org: str, phone: str) -> int:
        """:meth:`assign` of a lead known to have no id (a journal replays ids so)."""
        lead = self.next_id
        self.ids.add(org, phone, lead)
        self.next_id += 1
        self._given(org, phone, lead)
        return lead

    def _given(self, org: str, phone: str, lead: int) -> None:
        """What giving ``lead`` to a name records, and does if the phone was erased."""
        journal = self.journal
        if journal is not None:
            # Ids given one after another are one entry ("A", org, [phone, ...]).
            last = journal[-1] if journal else None
            if last is not None and last[0] == "A" and last[1] == org:
                last[2].append(phone)
            else:
                journal.append(("A", org, [phone]))
        self._check_suppressed(org, phone, lead)

    def assign_all(self, orgs: list[str], phones: list[str]) -> list[int]:
        """:meth:`assign` of each (``orgs[i]``, ``phones[i]``), in order: looked up at
        once, and the new ones given their ids at once."""
        if len(phones) < BATCH_FROM:  # one by one: a batch search costs more for a few
            assign = self.assign
            return [assign(org, phone)[0] for org, phone in zip(orgs, phones, strict=True)]
        leads, fresh = self.ids.assign_many(orgs, phones, self.next_id)
        self.next_id += len(fresh)
        for i in fresh:
            self._given(orgs[i], phones[i], leads[i])
        return leads

    def name_of(self, lead: int) -> tuple[str, str] | None:
        """``(org, phone)`` of a lead id the partition knows (an erase asks it of the
        leads that share a logged batch with the erased one)."""
        return self.ids.name_of(lead)

    def phone_of(self, lead: int) -> str | None:
        """The phone of a member, from its entry (None: not a member here)."""
        plain = self.plain
        entry = plain[lead] if lead < len(plain) else None
        return None if entry is None else self.codec.decode(entry)[0]

    def suppressed_at(self, org: str, phone: str) -> int | None:
        """When the phone was erased while opted out (None: it was not)."""
        index = self.orgs.get(org)
        if index is None or not index.suppressed or self.hash_key is None:
            return None
        return index.suppressed.get(lead_digest(self.hash_key, org, phone))

    def _check_suppressed(self, org: str, phone: str, lead: int) -> None:
        """A new lead whose phone was erased while opted out is opted out (at the erase)."""
        index = self.orgs.get(org)
        if index is None or not index.suppressed or self.hash_key is None:
            return
        erased_at = index.suppressed.get(lead_digest(self.hash_key, org, phone))
        if erased_at is not None:
            self._opt_event(index, lead, self.opt.opt_out, erased_at)

    def org(self, org: str) -> OrgIndex:
        index = self.orgs.get(org)
        if index is None:
            index = self.orgs[org] = OrgIndex()
        return index

    # -- what the writers of the store call ------------------------------------------

    def events_added(self, org: str, event_type: str, events: list[tuple[int, int]]) -> None:
        """New event keys ``(lead, occurredAt)`` of one organization and type."""
        if self.journal is not None:
            self.journal.append(("e", org, event_type, events))
        index = self.org(org)
        index.timeline(event_type).add_many(events)
        if event_type == self.opt.opt_out or event_type == self.opt.opt_in:
            for lead, ts in events:
                self._opt_event(index, lead, event_type, ts)

    def member_set(
        self, org: str, campaign: str, lead: int, phone: str, external_id: str | None
    ) -> None:
        journal = self.journal
        if journal is not None:
            # Members set one after another in a campaign are one entry ("M", org,
            # campaign, [lead, ...], [externalId, ...]); the phone is the lead's own (a
            # replay reads it from the ids given before).
            last = journal[-1] if journal else None
            if last is not None and last[0] == "M" and last[1] == org and last[2] == campaign:
                last[3].append(lead)
                last[4].append(external_id)
            else:
                journal.append(("M", org, campaign, [lead], [external_id]))
        members = self._campaign(org, campaign)
        members.members.add(lead)
        self._member(members, lead, phone, external_id)

    def members_replayed(
        self, org: str, campaign: str, leads: list[int], external_ids: list[str | None]
    ) -> None:
        """:meth:`member_set` of each lead, in order, not journaled (a journal's ``M`` op
        replayed), each phone read from the lead's name: an erase further on took the
        name of a lead it erases, and its entry goes with it then."""
        members = self._campaign(org, campaign)
        members.members.update(leads)
        member = self._member
        for lead, external_id in zip(leads, external_ids, strict=True):
            member(members, lead, None, external_id)

    def _campaign(self, org: str, campaign: str) -> Campaign:
        campaigns = self.org(org).campaigns
        members = campaigns.get(campaign)
        if members is None:
            members = campaigns[campaign] = Campaign()
        return members

    def _member(
        self, members: Campaign, lead: int, phone: str | None, external_id: str | None
    ) -> None:
        """A member's entries (``phone`` None: the lead's own, read when needed)."""
        plain = self.plain
        if len(plain) <= lead:
            plain.extend([None] * (lead + 1 - len(plain)))
        if plain[lead] is None:
            if phone is None:
                phone = self._phone(lead)
            plain[lead] = self.codec.encode(phone, None)
        if external_id is None:
            if members.external_ids:  # else none to forget
                members.external_ids.pop(lead, None)
                members.entries.pop(lead, None)
                members.with_external.discard(lead)
        else:
            if phone is None:
                phone = self._phone(lead)
            members.external_ids[lead] = external_id
            members.entries[lead] = self.codec.encode(phone, external_id)
            members.with_external.add(lead)

    def _phone(self, lead: int) -> str:
        name = self.name_of(lead)
        return "" if name is None else name[1]

    def member_removed(self, org: str, campaign: str, lead: int) -> None:
        if self.journal is not None:
            self.journal.append(("r", org, campaign, lead))
        self._member_removed(org, campaign, lead)

    def _member_removed(self, org: str, campaign: str, lead: int) -> None:
        members = self.orgs.get(org, OrgIndex()).campaigns.get(campaign)
        if members is not None:
            members.members.discard(lead)
            members.entries.pop(lead, None)
            members.external_ids.pop(lead, None)
            members.with_external.discard(lead)

    def send_delivered(self, org: str, send: str, scheduled_for: int, recipients: BitMap) -> None:
        """A send's output is committed: its recipients count against frequency caps."""
        if self.journal is not None:
            self.journal.append(("d", org, send, scheduled_for, recipients.serialize()))
        self.org(org).sends[send] = (scheduled_for, recipients)

    def send_forgotten(self, org: str, send: str) -> None:
        if self.journal is not None:
            self.journal.append(("f", org, send))
        index = self.orgs.get(org)
        if index is not None:
            index.sends.pop(send, None)

    def lead_erased(self, org: str, phone: str, lead: int) -> None:
        """Forget the lead everywhere (its keys were deleted)."""
        if self.journal is not None:  # its id only: the journal keeps no erased phone
            self.journal.append(("x", org, lead))
            self.erased.append((org, phone, lead))
        self._lead_erased(org, phone, lead)

    def _lead_erased(self, org: str, phone: str, lead: int) -> None:
        self.ids.remove(org, phone, lead)
        index = self.orgs.get(org)
        if index is not None:
            for campaign in list(index.campaigns):
                self._member_removed(org, campaign, lead)
            for timeline in index.timelines.values():
                timeline.remove(lead)
            index.opted_out.discard(lead)
            index.opt_times.pop(lead, None)
            for _, recipients in index.sends.values():
                recipients.discard(lead)
        if lead < len(self.plain):
            self.plain[lead] = None
        self.zones.forget(lead)

    def suppress(self, org: str, digest: bytes, erased_at: int) -> None:
        if self.journal is not None:
            self.journal.append(("s", org, digest, erased_at))
        self.org(org).suppressed[digest] = erased_at

    def unsuppress(self, org: str, digest: bytes) -> None:
        if self.journal is not None:
            self.journal.append(("u", org, digest))
        self.org(org).suppressed.pop(digest, None)

    def set_hash_key(self, hash_key: bytes) -> None:
        """The partition's key of suppression hashes (made at its first erase)."""
        if self.journal is not None:
            self.journal.append(("k", hash_key))
        self.hash_key = hash_key

    def erased_by_id(self, org: str, lead: int) -> None:
        """:meth:`lead_erased` known by its id (a journal replays it so)."""
        name = self.name_of(lead)
        self._lead_erased(org, "" if name is None else name[1], lead)

    def compacted(self, horizon_ms: int) -> None:
        """Compaction deleted every event key before ``horizon_ms`` (and folded them)."""
        if self.journal is not None:
            self.journal.append(("c", horizon_ms))
        self.folded_through = max(self.folded_through, horizon_ms - 1)
        for index in self.orgs.values():
            for timeline in index.timelines.values():
                timeline.drop_before(horizon_ms)

    def _opt_event(self, index: OrgIndex, lead: int, event_type: str, ts: int) -> None:
        if event_type == self.opt.opt_out:
            slot = 0
        elif event_type == self.opt.opt_in:
            slot = 1
        else:
            return
        times = index.opt_times.setdefault(lead, [_NONE, _NONE])
        if ts <= times[slot]:
            return
        times[slot] = ts
        out_at, in_at = times
        # The latest opt event wins; on the same instant the opt-out does.
        if out_at != _NONE and out_at >= in_at:
            index.opted_out.add(lead)
        else:
            index.opted_out.discard(lead)

    def snapshot(self) -> dict[str, object]:
        """Everything this index holds, comparable (a rebuild must equal it)."""
        return {
            "ids": {f"{org}\0{phone}": lead for (org, phone), lead in sorted(self.ids.items())},
            "orgs": {
                name: {
                    "campaigns": {
                        c: (
                            list(m.members),
                            [m.entries.get(lead, self.plain[lead]) for lead in m.members],
                            sorted(m.external_ids.items()),
                            list(m.with_external),
                        )
                        for c, m in sorted(index.campaigns.items())
                        if m.members
                    },
                    "timelines": {
                        t: tl.snapshot() for t, tl in sorted(index.timelines.items()) if tl.ever
                    },
                    "opted_out": list(index.opted_out),
                    "opt_times": dict(sorted(index.opt_times.items())),
                    "sends": {s: (t, list(r)) for s, (t, r) in sorted(index.sends.items())},
                    "suppressed": dict(sorted(index.suppressed.items())),
                }
                for name, index in sorted(self.orgs.items())
                if index.holds_anything()
            },
        }


def build(
    store: PartitionReader,
    partition: int,
    opt: OptTypes,
    codec: EntryCodec,
    *,
    hash_key: bytes | None = None,
) -> PartitionIndex:
    """The partition's index, from one scan of its folded records, event keys and members.

    A lead's id is the one its keys carry. Sticky counts follow
    :meth:`~leadstream.domain.lead_index.LeadHistory.count`: the folded count plus the
    event keys after the folded maximum (keys at or below it are already in the count;
    they exist only between a restore and the next compaction)."""
    index = PartitionIndex(opt, codec)
    ids = index.ids
    highest = -1
    index.hash_key = hash_key or store.get(partition, keys.hash_key_key())
    # Erased leads: a changelog restore can bring their keys back (from logged batches
    # replayed before their tombstones, or that an erase of an older version left
    # whole); they are left out and purged.
    erased: set[int] = set()
    for key, _ in iter_prefix(store, partition, keys.erased_prefix()):
        lead = keys.decode_erased_key(key)[1]
        erased.add(lead)
        highest = max(highest, lead)
    purge = index.purge
    folded_max: dict[tuple[str, str, str], int] = {}
    for key, value in iter_prefix(store, partition, keys.lead_prefix()):
        org_b, phone_b = key[2:].split(keys.SEP, 1)
        lead = keys.decode_lead_id(value)
        if lead in erased:
            purge.append(key)
            continue
        ids.setdefault(org_b.decode(), phone_b.decode(), lead)
        highest = max(highest, lead)
    for key, value in iter_prefix(store, partition, keys.compacted_key("", "", "")[:2]):
        org_b, phone_b, type_b = key[2:].split(keys.SEP, 2)
        org, phone, event_type = org_b.decode(), phone_b.decode(), type_b.decode()
        count, max_ts, lead = keys.decode_compacted(value)
        if lead in erased:
            purge.append(key)
            continue
        ids.setdefault(org, phone, lead)
        highest = max(highest, lead)
        folded_max[(org, phone, event_type)] = max_ts
        index.folded_through = max(index.folded_through, max_ts)
        org_index = index.org(org)
        org_index.timeline(event_type).count(lead, count)
        index._opt_event(org_index, lead, event_type, max_ts)  # noqa: SLF001
    decode_id = keys.decode_lead_id
    unpack_ts = _U64.unpack
    # Gathered per (organization, event type), then given to each timeline at once: its
    # bitmaps are updated once per hour, not once per key.
    times: dict[tuple[str, str], list[tuple[int, int]]] = {}
    counted: dict[tuple[str, str], list[int]] = {}
    head = b"\xff"
    org = event_type = ""
    these_times: list[tuple[int, int]] = []
    these_counted: list[int] = []
    opt_types = (opt.opt_out, opt.opt_in)
    after = -1
    for key, value in iter_prefix(store, partition, keys.events_kind_prefix()):
        ts = unpack_ts(key[-8:])[0]
        lead = decode_id(value)
        if erased and lead in erased:
            purge.append(key)
            continue
        if not key.startswith(head):
            head = key[:-8]  # E org phone type SEP
            org_b, phone_b, type_b = head[2:-1].split(keys.SEP, 2)
            org, phone, event_type = org_b.decode(), phone_b.decode(), type_b.decode()
            ids.setdefault(org, phone, lead)
            highest = max(highest, lead)
            group = (org, event_type)
            these_times = times.setdefault(group, [])
            these_counted = counted.setdefault(group, [])
            after = folded_max.get((org, phone, event_type), -1)
        these_times.append((lead, ts))
        if ts > after:
            these_counted.append(lead)
            if event_type in opt_types:
                index._opt_event(index.org(org), lead, event_type, ts)  # noqa: SLF001
    for (org, event_type), group_times in times.items():
        timeline = index.org(org).timeline(event_type)
        timeline.add_times(group_times)
        timeline.count_many(counted[(org, event_type)])
    for key, value in iter_prefix(store, partition, keys.member_prefix("", "")[:2]):
        org_b, campaign_b, phone_b = key[2:].split(keys.SEP, 2)
        org, phone = org_b.decode(), phone_b.decode()
        lead = decode_id(value)
        if lead in erased:
            purge.append(key)
            continue
        ids.setdefault(org, phone, lead)
        highest = max(highest, lead)
        index.member_set(org, campaign_b.decode(), lead, phone, keys.decode_external_id(value))
    for key, value in iter_prefix(store, partition, keys.history_prefix()):
        org_b, send_b = key[2:].split(keys.SEP, 1)
        scheduled_for, recipients = keys.decode_history(value)
        index.send_delivered(
            org_b.decode(), send_b.decode(), scheduled_for, BitMap.deserialize(recipients)
        )
    _suppressions(store, partition, index)
    index.next_id = highest + 1
    return index


def lead_digest(hash_key: bytes, org: str, phone: str) -> bytes:
    """The keyed hash a suppression is stored under: no phone is kept, and without the
    partition's key a phone cannot be tested against it."""
    return hmac.digest(hash_key, f"{org}\0{phone}".encode(), hashlib.sha256)


def _suppressions(store: PartitionReader, partition: int, index: PartitionIndex) -> None:
    """The organizations' suppressions, and the leads they opt out."""
    for key, value in iter_prefix(store, partition, keys.suppression_prefix("")[:2]):
        org_b, digest = key[2:].split(keys.SEP, 1)
        index.suppress(org_b.decode(), digest, _U64.unpack(value)[0])
    for name in [n for n, org in index.orgs.items() if org.suppressed]:
        for phone, lead in list(index.ids.of_organization(name)):
            index._check_suppressed(name, phone, lead)  # noqa: SLF001
