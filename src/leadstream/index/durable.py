"""The index a worker keeps on disk beside its partition's keys, so that a restart reads
it back instead of building it from a scan of every key.

Kept under ``I`` keys of the partition's own RocksDB, written only locally
(:meth:`~leadstream.state.port.PartitionStore.write_local`), never on the changelog: it is
derived from the logged keys, and the changelog stays what it was (and an erase leaves
nothing of it there). Three parts:

* a **snapshot** (``I s``): everything the index holds, as bytes (bitmaps serialized,
  packed events as they are in memory, names and entries as lists);
* a **journal** (``I j n``): each update of the index since the snapshot, as the calls
  that made it (:attr:`~leadstream.index.partition.PartitionIndex.journal`), one entry
  per writer's update (``IndexedStore.updating``), replayed in order on top of the
  snapshot;
* the **open mark** (``I o``): written before a writer touches the keys, deleted in the
  same write batch as the journal entry of what it did (a writer whose keys are one
  write batch, as an ingest's, puts its journal entry in that batch and needs no mark:
  ``IndexedStore.updating(one_write=True)``). Found at a start, it says that
  the keys may hold a write the journal does not: a crash (or a store fault) between
  the two, or a changelog restore, which writes the keys behind the index and leaves the
  mark in its own write batch when it changed anything
  (:class:`leadstream.state.rocksdb.LeadStore`). The index is then built from the keys,
  as it always could be, and a new snapshot written.

So what is read back agrees with the keys, or is not used: it is never trusted past a
write it did not see. A new snapshot is written once the journal holds a quarter of what
the index holds (at most :data:`SNAPSHOT_AFTER` changes), so a start replays at most that
much; an erase's phone leaves the snapshot and journal at once (:func:`scrub_erased`).
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from pyroaring import BitMap

from leadstream.index.partition import (
    Campaign,
    EntryCodec,
    OptTypes,
    OrgIndex,
    PartitionIndex,
)
from leadstream.index.timeline import Timeline
from leadstream.index.zones import LeadZones
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

logger = logging.getLogger(__name__)

__all__ = [
    "SNAPSHOT_AFTER",
    "Kept",
    "begin_update",
    "end_update",
    "journal_entry",
    "load",
    "replay",
    "scrub_erased",
    "write_snapshot",
]

# The format of the snapshot; another one is not read (the index is built again).
VERSION = 1
# Lead names and entries are kept in parts of this many leads: an erase rewrites one.
CHUNK = 65_536
# A snapshot is written again once the journal holds this many changes, or a quarter as
# many as the index has leads (at least MIN_SNAPSHOT_AFTER). An event added counts one,
# so does any other change; each entry counts ENTRY_WEIGHT more (replaying an entry of
# one event costs about as much as twenty events in one).
SNAPSHOT_AFTER = 100_000
MIN_SNAPSHOT_AFTER = 10_000
ENTRY_WEIGHT = 20


class _Timeline(msgspec.Struct, array_like=True):
    event_type: str
    hours: list[tuple[int, bytes, bytes]]
    ever: bytes
    counted: bytes
    counts: bytes
    at_least: list[bytes]


class _Campaign(msgspec.Struct, array_like=True):
    name: str
    members: bytes
    external_leads: list[int]
    external_ids: list[str]
    entries: list[bytes]


class _Org(msgspec.Struct, array_like=True):
    opted_out: bytes
    opt_leads: bytes
    opt_out_at: bytes
    opt_in_at: bytes
    sends: list[tuple[str, int, bytes]]
    suppressed: list[tuple[bytes, int]]


class _Meta(msgspec.Struct, array_like=True):
    version: int
    next_id: int
    folded_through: int
    hash_key: bytes | None
    legacy_batches_checked: bool
    zones: list[tuple[tuple[str, ...], bytes]]
    orgs: list[str]
    timelines: list[tuple[str, str]]


_encoder = msgspec.msgpack.Encoder()
_meta = msgspec.msgpack.Decoder(_Meta)
_org = msgspec.msgpack.Decoder(_Org)
_campaigns = msgspec.msgpack.Decoder(list[_Campaign])
_timeline = msgspec.msgpack.Decoder(_Timeline)
_names = msgspec.msgpack.Decoder(list[str])
_plain = msgspec.msgpack.Decoder(list[bytes | None])
_ops = msgspec.msgpack.Decoder(list[list[Any]])


@dataclass(slots=True)
class Kept:
    """What a worker knows of a partition's kept index: the number of its next journal
    entry, the first one since the snapshot, how many changes they hold, and which parts
    of the snapshot they changed (None: all of them, none written yet)."""

    next_entry: int = 0
    first_entry: int = 0
    changes: int = 0
    dirty: set[str] | None = None
    # Leads the snapshot's names and entries hold (those given since are in new chunks);
    # the parts it has (a new organization's or event type's are written whole).
    leads: int = 0
    parts: set[str] = field(default_factory=set)

    def due(self, index: PartitionIndex) -> bool:
        """Is a new snapshot due (the journal holds enough to replay)?"""
        return self.changes >= min(SNAPSHOT_AFTER, max(index.next_id // 4, MIN_SNAPSHOT_AFTER))

    def touched(self, index: PartitionIndex, ops: Iterable[Any]) -> None:
        """Note the parts of the snapshot that ``ops`` changed."""
        dirty = self.dirty
        if dirty is None:
            return
        for op in ops:
            kind, org = op[0], op[1]
            if kind == "e":
                dirty.add(_timeline_part(org, op[2]))
                if op[2] in (index.opt.opt_out, index.opt.opt_in):
                    dirty.add(f"org:{org}")  # its opt state
            elif kind in "mr":
                dirty.add(f"campaigns:{org}")
                dirty.add(f"plain:{op[3] // CHUNK}")
            elif kind == "a":
                org_index = index.orgs.get(org)
                if org_index is not None and org_index.suppressed:
                    dirty.add(f"org:{org}")  # a suppressed phone comes back opted out
            elif kind == "x":
                chunk = op[2] // CHUNK
                dirty.update((f"names:{chunk}", f"plain:{chunk}", f"campaigns:{org}", f"org:{org}"))
                org_index = index.orgs.get(org)
                for event_type in org_index.timelines if org_index is not None else ():
                    dirty.add(_timeline_part(org, event_type))
            elif kind in "dfsu":
                dirty.add(f"org:{org}")
            elif kind == "c":
                for name, org_index in index.orgs.items():
                    dirty.update(_timeline_part(name, t) for t in org_index.timelines)


def begin_update(store: PartitionStore, partition: int) -> None:
    """Before a writer changes the keys: the open mark."""
    store.write_local(partition, [(keys.index_open_key(), b"")])


def end_update(
    store: PartitionStore, partition: int, kept: Kept, journal: list[tuple[Any, ...]]
) -> None:
    """After the writer: its changes as one journal entry, and the open mark gone, in one
    write batch."""
    puts = [journal_entry(kept, journal)] if journal else []
    store.write_local(partition, puts, [keys.index_open_key()])


def journal_entry(kept: Kept, journal: list[tuple[Any, ...]]) -> tuple[bytes, bytes]:
    """The next journal entry, of ``journal``'s changes (counted in ``kept``)."""
    entry = (keys.index_journal_key(kept.next_entry), _encoder.encode(journal))
    kept.next_entry += 1
    kept.changes += _weight(journal)
    return entry


def write_snapshot(
    store: PartitionStore, partition: int, index: PartitionIndex, kept: Kept
) -> None:
    """The index as the new snapshot (the parts changed since the last one, see
    :meth:`Kept.touched`), the journal before it gone and the open mark too, in one write
    batch."""
    parts = _snapshot_parts(index, kept.dirty, kept.leads, kept.parts)
    kept.parts.update(name for name, _ in parts)
    puts = [(keys.index_snapshot_key(name), value) for name, value in parts]
    stale = [keys.index_journal_key(n) for n in range(kept.first_entry, kept.next_entry)]
    store.write_local(partition, puts, [*stale, keys.index_open_key()])
    kept.first_entry = kept.next_entry
    kept.changes = 0
    kept.dirty = set()
    kept.leads = index.next_id


def scrub_erased(
    store: PartitionStore, partition: int, kept: Kept, erased: list[tuple[str, str, int]]
) -> None:
    """Take erased leads' phones and externalIds out of what is kept: the snapshot's
    names, entries and campaigns, and the journal's entries (an id given to one is then
    given to a placeholder name, so that replaying it gives the same ids). One write
    batch; the journal's own entry of the erase removes the leads when replayed."""
    puts: list[tuple[bytes, bytes]] = []
    phones = {(org, phone): lead for org, phone, lead in erased}
    leads = {(org, lead) for org, _, lead in erased}
    for key, value in iter_prefix(store, partition, keys.index_journal_prefix()):
        ops = _ops.decode(value)
        changed = False
        for i, op in enumerate(ops):
            if op[0] == "a" and (op[1], op[2]) in phones:
                ops[i] = ["a", op[1], f"\0{phones[(op[1], op[2])]}"]
                changed = True
            elif op[0] == "m" and (op[1], op[3]) in leads:
                ops[i] = ["m", op[1], op[2], op[3], "", None]
                changed = True
        if changed:
            puts.append((key, _encoder.encode(ops)))
    meta_value = store.get(partition, keys.index_snapshot_key("meta"))
    if meta_value is not None:
        meta = _meta.decode(meta_value)
        for org, _, lead in erased:
            if lead >= meta.next_id:
                continue  # given after the snapshot: only in the journal
            chunk, at = divmod(lead, CHUNK)
            names_key = keys.index_snapshot_key(f"names:{chunk}")
            plain_key = keys.index_snapshot_key(f"plain:{chunk}")
            names = _names.decode(
                _latest(puts, names_key) or _part(store, partition, f"names:{chunk}")
            )
            plain = _plain.decode(
                _latest(puts, plain_key) or _part(store, partition, f"plain:{chunk}")
            )
            names[at], plain[at] = "", None
            puts.extend([(names_key, _encoder.encode(names)), (plain_key, _encoder.encode(plain))])
            if org in meta.orgs:
                campaigns_key = keys.index_snapshot_key(f"campaigns:{org}")
                held = _latest(puts, campaigns_key) or _part(store, partition, f"campaigns:{org}")
                campaigns = _campaigns.decode(held)
                for c in campaigns:
                    if lead in c.external_leads:
                        i = c.external_leads.index(lead)
                        del c.external_leads[i], c.external_ids[i], c.entries[i]
                puts.append((campaigns_key, _encoder.encode(campaigns)))
    if puts:
        store.write_local(partition, puts)


def _latest(puts: list[tuple[bytes, bytes]], key: bytes) -> bytes | None:
    """The value last put under ``key`` in ``puts`` (an erase of several leads rewrites
    the same part more than once)."""
    for put_key, value in reversed(puts):
        if put_key == key:
            return value
    return None


def load(
    store: PartitionStore,
    partition: int,
    opt: OptTypes,
    codec: EntryCodec,
    *,
    hash_key: bytes | None = None,
) -> tuple[PartitionIndex, Kept] | None:
    """The kept index, read back and brought up to date from its journal; None when there
    is none, it may not agree with the keys (the open mark), or it cannot be read (another
    format, a part missing or damaged: logged). A store error is raised as it is."""
    if store.get(partition, keys.index_open_key()) is not None:
        return None
    try:
        return _read_back(store, partition, opt, codec, hash_key)
    except (msgspec.MsgspecError, ValueError, TypeError, KeyError, IndexError) as exc:
        logger.warning(
            "partition %d: the index kept on disk cannot be read back (%s: %s);"
            " it is built from the keys",
            partition,
            type(exc).__name__,
            exc,
        )
        return None


def _read_back(
    store: PartitionStore,
    partition: int,
    opt: OptTypes,
    codec: EntryCodec,
    hash_key: bytes | None,
) -> tuple[PartitionIndex, Kept] | None:
    meta_value = store.get(partition, keys.index_snapshot_key("meta"))
    if meta_value is None:
        return None
    meta = _meta.decode(meta_value)
    if meta.version != VERSION:
        return None
    index = PartitionIndex(opt, codec)
    index.next_id = meta.next_id
    index.folded_through = meta.folded_through
    index.hash_key = hash_key or meta.hash_key
    index.legacy_batches_checked = meta.legacy_batches_checked
    index.zones = LeadZones.from_parts(meta.zones)
    chunks = range((meta.next_id + CHUNK - 1) // CHUNK)
    names = [n for c in chunks for n in _names.decode(_part(store, partition, f"names:{c}"))]
    index.lead_ids = {name: lead for lead, name in enumerate(names) if name}
    index.plain = [e for c in chunks for e in _plain.decode(_part(store, partition, f"plain:{c}"))]
    for name in meta.orgs:
        org = index.orgs[name] = _org_from(_org.decode(_part(store, partition, f"org:{name}")))
        for c in _campaigns.decode(_part(store, partition, f"campaigns:{name}")):
            campaign = org.campaigns[c.name] = Campaign(BitMap.deserialize(c.members))
            campaign.external_ids = dict(zip(c.external_leads, c.external_ids, strict=True))
            campaign.entries = dict(zip(c.external_leads, c.entries, strict=True))
            campaign.with_external = BitMap(c.external_leads)
    for name, event_type in meta.timelines:
        t = _timeline.decode(_part(store, partition, _timeline_part(name, event_type)))
        index.orgs[name].timelines[event_type] = Timeline.from_parts(
            t.hours, t.ever, t.counted, t.counts, t.at_least
        )
    held = {f"{kind}:{name}" for name in meta.orgs for kind in ("org", "campaigns")}
    held.update(_timeline_part(name, event_type) for name, event_type in meta.timelines)
    kept = Kept(dirty=set(), leads=meta.next_id, parts=held)
    entries = list(iter_prefix(store, partition, keys.index_journal_prefix()))
    if entries:
        kept.first_entry = keys.decode_index_journal_key(entries[0][0])
        kept.next_entry = keys.decode_index_journal_key(entries[-1][0]) + 1
    for _, value in entries:
        ops = _ops.decode(value)
        replay(index, ops)
        kept.changes += _weight(ops)
        kept.touched(index, ops)
    return index, kept


def replay(index: PartitionIndex, ops: Iterable[list[Any]]) -> None:
    """Make the calls a journal entry recorded, in order (not recorded again)."""
    for op in ops:
        kind, args = op[0], op[1:]
        if kind == "a":
            index.assign(*args)
        elif kind == "e":
            org, event_type, events = args
            index.events_added(org, event_type, [(lead, ts) for lead, ts in events])
        elif kind == "m":
            index.member_set(*args)
        elif kind == "r":
            index.member_removed(*args)
        elif kind == "d":
            org, send, at, recipients = args
            index.send_delivered(org, send, at, BitMap.deserialize(recipients))
        elif kind == "f":
            index.send_forgotten(*args)
        elif kind == "x":
            index.erased_by_id(*args)
        elif kind == "s":
            index.suppress(*args)
        elif kind == "u":
            index.unsuppress(*args)
        elif kind == "k":
            index.set_hash_key(*args)
        elif kind == "c":
            index.compacted(*args)
        else:
            raise ValueError(f"unknown journal entry kind {kind!r}")


def _weight(ops: Iterable[Any]) -> int:
    """What replaying a journal entry of ``ops`` costs, in changes."""
    return ENTRY_WEIGHT + sum(len(op[3]) if op[0] == "e" else 1 for op in ops)


def _part(store: PartitionStore, partition: int, name: str) -> bytes:
    value = store.get(partition, keys.index_snapshot_key(name))
    if value is None:
        raise ValueError(f"partition {partition}: kept index without its part {name!r}")
    return value


def _snapshot_parts(
    index: PartitionIndex, dirty: set[str] | None, leads: int, held: set[str]
) -> list[tuple[str, bytes]]:
    """The parts to write: those in ``dirty`` (every one when None), those the snapshot
    does not have yet (``held`` are those it has), the chunks of the leads given since it
    held ``leads``, and the meta part."""
    orgs = sorted(index.orgs)
    timelines = [(o, t) for o in orgs for t in sorted(index.orgs[o].timelines)]
    meta = _Meta(
        VERSION,
        index.next_id,
        index.folded_through,
        index.hash_key,
        index.legacy_batches_checked,
        index.zones.parts(),
        orgs,
        timelines,
    )

    def wanted(name: str) -> bool:
        return dirty is None or name in dirty or name not in held

    parts = [("meta", _encoder.encode(meta))]
    chunks = range((index.next_id + CHUNK - 1) // CHUNK)
    new_chunks = set(range(leads // CHUNK, len(chunks))) if dirty is not None else set(chunks)
    names_of = None
    for c in chunks:
        if c in new_chunks or dirty is None or f"names:{c}" in dirty:
            if names_of is None:
                names_of = [""] * index.next_id
                for name, lead in index.lead_ids.items():
                    names_of[lead] = name
            parts.append((f"names:{c}", _encoder.encode(names_of[c * CHUNK : (c + 1) * CHUNK])))
        if c in new_chunks or dirty is None or f"plain:{c}" in dirty:
            plain = index.plain[c * CHUNK : (c + 1) * CHUNK]
            plain += [None] * (min(CHUNK, index.next_id - c * CHUNK) - len(plain))
            parts.append((f"plain:{c}", _encoder.encode(plain)))
    for name in orgs:
        org = index.orgs[name]
        if wanted(f"org:{name}"):
            parts.append((f"org:{name}", _encoder.encode(_org_parts(org))))
        if wanted(f"campaigns:{name}"):
            parts.append((f"campaigns:{name}", _encoder.encode(_campaign_parts(org))))
    for name, event_type in timelines:
        part = _timeline_part(name, event_type)
        if wanted(part):
            kept = _Timeline(event_type, *index.orgs[name].timelines[event_type].parts())
            parts.append((part, _encoder.encode(kept)))
    return parts


def _timeline_part(org: str, event_type: str) -> str:
    return f"timeline:{org}\0{event_type}"


def _campaign_parts(org: OrgIndex) -> list[_Campaign]:
    campaigns = []
    for campaign_name, campaign in sorted(org.campaigns.items()):
        leads = sorted(campaign.external_ids)
        campaigns.append(
            _Campaign(
                campaign_name,
                campaign.members.serialize(),
                leads,
                [campaign.external_ids[lead] for lead in leads],
                [campaign.entries[lead] for lead in leads],
            )
        )
    return campaigns


def _org_parts(org: OrgIndex) -> _Org:
    opt_leads = array("I", org.opt_times)
    outs = array("q", (times[0] for times in org.opt_times.values()))
    ins = array("q", (times[1] for times in org.opt_times.values()))
    return _Org(
        org.opted_out.serialize(),
        opt_leads.tobytes(),
        outs.tobytes(),
        ins.tobytes(),
        [(send, at, recipients.serialize()) for send, (at, recipients) in org.sends.items()],
        list(org.suppressed.items()),
    )


def _org_from(kept: _Org) -> OrgIndex:
    org = OrgIndex()
    org.opted_out = BitMap.deserialize(kept.opted_out)
    leads, outs, ins = array("I"), array("q"), array("q")
    leads.frombytes(kept.opt_leads)
    outs.frombytes(kept.opt_out_at)
    ins.frombytes(kept.opt_in_at)
    org.opt_times = {lead: [o, i] for lead, o, i in zip(leads, outs, ins, strict=True)}
    org.sends = {send: (at, BitMap.deserialize(r)) for send, at, r in kept.sends}
    org.suppressed = dict(kept.suppressed)
    return org
