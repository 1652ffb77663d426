"""The index kept on disk beside a partition's keys and logged with them, so that a
restart, a standby taking a partition over and a restore from the changelog read it back
instead of building it from a scan of every key.

Kept under ``I`` keys of the partition's own RocksDB and written with
:meth:`~leadstream.state.port.PartitionStore.write_index`: in one local write batch, and
on the changelog as records of their own, each value cut in pieces
(:func:`~leadstream.state.keys.index_piece_key`, at most :data:`PIECE` bytes) so that any
part fits one record. A standby restores them with the keys, so its copy of the index is
as current as its copy of the keys. Three parts:

* a **snapshot** (``I s``): everything the index holds, as bytes (bitmaps serialized,
  packed events as they are in memory, lead names as the integers
  :class:`~leadstream.index.ids.LeadIds` keeps, entries as lists), in parts, so that a
  new snapshot rewrites only the parts changed since the last one (:meth:`Kept.touched`);
  its ``meta`` part names the first journal entry after it;
* a **journal** (``I j n``): each update of the index since the snapshot, as the calls
  that made it (:attr:`~leadstream.index.partition.PartitionIndex.journal`), one entry
  per writer's update (``IndexedStore.updating``), replayed in order on top of the
  snapshot; entries are numbered without gaps, and one missing (a record the changelog
  never got: a crash between a write's records) makes the index unreadable;
* the **open mark** (``I o``, local, never logged): written before a writer touches the
  keys, deleted in the same write batch as the journal entry of what it did (a writer
  whose keys are one write batch, as an ingest's, puts its journal entry in that batch,
  after its keys, and needs no mark: ``IndexedStore.updating(one_write=True)``). Found
  at a start, it says that the keys may hold a write the journal does not (a crash or a
  store fault between the two). A restore that wrote keys the index derives from after
  the last record of the index it restored leaves a mark of its own (``I r``, see
  :class:`leadstream.state.rocksdb.LeadStore`).

With a mark, a gap in the journal, or a part that cannot be read, the index is built
from the keys, as it always could be, and a whole new snapshot written (and logged). So
what is read back agrees with the keys, or is not used: it is never trusted past a write
it did not see. A new snapshot is written once the journal holds a quarter of what the
index holds (at most :data:`SNAPSHOT_AFTER` changes), so a start replays at most that
much; an erase's phone leaves the snapshot and journal at once (:func:`scrub_erased`),
on disk and, once the changelog is compacted, there.
"""

from __future__ import annotations

import logging
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from pyroaring import BitMap

from leadstream.index.ids import ERASED, LeadIds
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
from leadstream.state.port import PartitionReader, PartitionStore, iter_prefix

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
    "survey",
    "write_snapshot",
]

# The format of the snapshot; another one is not read (the index is built again).
VERSION = 3
# A kept value is logged in pieces of at most this many bytes (one changelog record each).
PIECE = 256 * 1024
# At the head of a value's first piece: how many pieces, the CRC-32 of the whole value
# (pieces of two versions put together do not pass), and the snapshot that wrote it (its
# first journal entry; 0 for an entry).
_HEAD = struct.Struct(">HIQ")

Items = list[tuple[bytes, bytes | None]]
# Lead names and entries are kept in parts of this many leads: an erase rewrites one.
CHUNK = 65_536
# A snapshot is written again once the journal holds this many changes, or a quarter as
# many as the index has leads (at least MIN_SNAPSHOT_AFTER). An event added counts one,
# so does any other change; each entry counts ENTRY_WEIGHT more (replaying an entry of
# one event costs about as much as twenty events in one).
SNAPSHOT_AFTER = 100_000
MIN_SNAPSHOT_AFTER = 10_000
ENTRY_WEIGHT = 20
# Below SNAPSHOT_AFTER, a snapshot also waits until the journal's bytes are at least
# 1/REWRITE_RATIO of what it would rewrite (the parts changed since the last): a bulk load
# into a big partition changes every hour of its timelines between two snapshots, and
# writing them whole each quarter would log several times the events' own bytes.
REWRITE_RATIO = 2


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
    first_entry: int
    next_id: int
    folded_through: int
    hash_key: bytes | None
    legacy_batches_checked: bool
    zones: list[tuple[tuple[str, ...], bytes]]
    orgs: list[str]
    timelines: list[tuple[str, str]]
    # The organizations by the code the names are kept with (leadstream.index.ids).
    lead_orgs: list[str]


class _Names(msgspec.Struct, array_like=True):
    """The names of a chunk of ids (LeadIds.chunk)."""

    keys: bytes
    odd: list[tuple[int, str, str]]


_encoder = msgspec.msgpack.Encoder()
_meta = msgspec.msgpack.Decoder(_Meta)
_org = msgspec.msgpack.Decoder(_Org)
_campaigns = msgspec.msgpack.Decoder(list[_Campaign])
_timeline = msgspec.msgpack.Decoder(_Timeline)
_names = msgspec.msgpack.Decoder(_Names)
_plain = msgspec.msgpack.Decoder(list[bytes | None])
_ops = msgspec.msgpack.Decoder(list[list[Any]])


@dataclass(slots=True)
class Kept:
    """What a worker knows of a partition's kept index: the number of its next journal
    entry, how many changes the entries since the snapshot hold, and which parts of the
    snapshot they changed (None: all of them, none written yet)."""

    next_entry: int = 0
    changes: int = 0
    dirty: set[str] | None = None
    # Leads the snapshot's names and entries hold (those given since are in new chunks);
    # the parts it has (a new organization's or event type's are written whole).
    leads: int = 0
    parts: set[str] = field(default_factory=set)
    # How many pieces each kept value (snapshot part, journal entry) has on disk: those
    # a shorter value leaves are deleted with it.
    pieces: dict[bytes, int] = field(default_factory=dict)
    # The size of each part of the snapshot, and of the journal since it, in bytes.
    sizes: dict[str, int] = field(default_factory=dict)
    journal_bytes: int = 0

    def put(self, key: bytes, value: bytes, written_by: int = 0) -> Items:
        """The pieces of ``value`` under ``key`` (a value of the snapshot ``written_by``),
        then the deletion of the pieces of what it replaces that it does not overwrite."""
        count = max(1, -(-len(value) // PIECE))
        if count >= 1 << 16:
            raise ValueError(f"a kept value of {len(value)} bytes is too large")
        items: Items = [
            (keys.index_piece_key(key, i), value[i * PIECE : (i + 1) * PIECE]) for i in range(count)
        ]
        head = _HEAD.pack(count, zlib.crc32(value), written_by)
        items[0] = (items[0][0], head + value[:PIECE])
        held = self.pieces.get(key, 0)
        items += [(keys.index_piece_key(key, i), None) for i in range(count, held)]
        self.pieces[key] = count
        return items

    def delete(self, key: bytes) -> Items:
        """The deletion of ``key``'s value, piece by piece."""
        return [(keys.index_piece_key(key, i), None) for i in range(self.pieces.pop(key, 0))]

    def due(self, index: PartitionIndex) -> bool:
        """Is a new snapshot due (the journal holds enough to replay, and enough to be
        worth the parts it rewrites)?"""
        if self.changes >= SNAPSHOT_AFTER:
            return True
        if self.changes < max(index.next_id // 4, MIN_SNAPSHOT_AFTER):
            return False
        dirty = self.dirty
        if dirty is None:
            return True
        rewrite = sum(self.sizes.get(name, 0) for name in dirty)
        return self.journal_bytes * REWRITE_RATIO >= rewrite

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
            elif kind == "M":
                dirty.add(f"campaigns:{org}")
                dirty.update({f"plain:{lead // CHUNK}" for lead in op[3]})
            elif kind in "mr":
                dirty.add(f"campaigns:{org}")
                dirty.add(f"plain:{op[3] // CHUNK}")
            elif kind in "aA":
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
    store.write_index(partition, [(keys.index_open_key(), b"")])


def end_update(
    store: PartitionStore, partition: int, kept: Kept, journal: list[tuple[Any, ...]]
) -> None:
    """After the writer: its changes as one journal entry, and the open mark gone, in one
    write batch."""
    items = journal_entry(kept, journal) if journal else []
    store.write_index(partition, [*items, (keys.index_open_key(), None)])


def journal_entry(kept: Kept, journal: list[tuple[Any, ...]]) -> Items:
    """The next journal entry, of ``journal``'s changes (counted in ``kept``), in pieces."""
    value = _encoder.encode(journal)
    items = kept.put(keys.index_journal_key(kept.next_entry), value)
    kept.journal_bytes += len(value)
    kept.next_entry += 1
    kept.changes += _weight(journal)
    return items


def write_snapshot(
    store: PartitionStore, partition: int, index: PartitionIndex, kept: Kept
) -> None:
    """The index as the new snapshot (the parts changed since the last one, see
    :meth:`Kept.touched`), the journal before it gone and the marks too, in one write
    batch, logged in an order that a restore cut anywhere cannot misread: the parts, the
    meta part (which names the first journal entry after it), then the deletions."""
    whole = kept.dirty is None
    parts = _snapshot_parts(index, kept.next_entry, kept.dirty, kept.leads, kept.parts)
    written = {keys.index_snapshot_key(name) for name, _ in parts}
    kept.parts.update(name for name, _ in parts)
    items: Items = []
    for name, value in parts:  # the meta part last
        items += kept.put(keys.index_snapshot_key(name), value, kept.next_entry)
        kept.sizes[name] = len(value)
    journal = keys.index_journal_prefix()
    for key in list(kept.pieces):
        # The journal it folds in; after a build, every part it does not rewrite.
        if key.startswith(journal) or (whole and key not in written):
            items += kept.delete(key)
    items += [(mark, None) for mark in keys.index_marks()]
    store.write_index(partition, items)
    kept.changes = kept.journal_bytes = 0
    kept.dirty = set()
    kept.leads = index.next_id


def scrub_erased(
    store: PartitionStore, partition: int, kept: Kept, erased: list[tuple[str, str, int]]
) -> None:
    """Take erased leads' phones and externalIds out of what is kept: the snapshot's
    names, entries and campaigns, and the journal's entries (an id given to one is then
    given to a placeholder name, so that replaying it gives the same ids; a phone of ""
    is not looked for there). One write batch of the parts and entries that held them;
    the journal's own entry of the erase removes the leads when replayed."""
    rewrites: dict[bytes, bytes] = {}
    phones = {(org, phone): lead for org, phone, lead in erased}
    leads = {(org, lead) for org, _, lead in erased}
    for key, value in _journal(store, partition):
        ops = _ops.decode(value)
        changed = False
        for i, op in enumerate(ops):
            if op[0] == "A":
                for j, phone in enumerate(op[2]):
                    if (op[1], phone) in phones:
                        op[2][j] = f"\0{phones[(op[1], phone)]}"
                        changed = True
            elif op[0] == "M":
                for j, lead in enumerate(op[3]):
                    if (op[1], lead) in leads and op[4][j] is not None:
                        op[4][j] = None
                        changed = True
            elif op[0] == "a" and (op[1], op[2]) in phones:
                ops[i] = ["a", op[1], f"\0{phones[(op[1], op[2])]}"]
                changed = True
            elif op[0] == "m" and (op[1], op[3]) in leads and (op[4] or op[5] is not None):
                ops[i] = ["m", op[1], op[2], op[3], "", None]
                changed = True
        if changed:
            rewrites[key] = _encoder.encode(ops)

    generations: dict[bytes, int] = {}

    def part(name: str) -> bytes:
        key = keys.index_snapshot_key(name)
        held = rewrites.get(key)
        if held is None:
            held, generations[key] = _get_part(store, partition, name)
        return held

    meta_value = _get(store, partition, keys.index_snapshot_key("meta"))
    if meta_value is not None:
        meta = _meta.decode(meta_value[0])
        for org, _, lead in erased:
            if lead >= meta.next_id:
                continue  # given after the snapshot: only in the journal
            chunk, at = divmod(lead, CHUNK)
            names = _names.decode(part(f"names:{chunk}"))
            named = np.frombuffer(names.keys, "<i8").copy()
            plain = _plain.decode(part(f"plain:{chunk}"))
            if named[at] != ERASED or plain[at] is not None:
                named[at], plain[at] = ERASED, None
                names.keys = named.tobytes()
                names.odd = [odd for odd in names.odd if odd[0] != lead]
                rewrites[keys.index_snapshot_key(f"names:{chunk}")] = _encoder.encode(names)
                rewrites[keys.index_snapshot_key(f"plain:{chunk}")] = _encoder.encode(plain)
            if org in meta.orgs:
                campaigns = _campaigns.decode(part(f"campaigns:{org}"))
                held = [c for c in campaigns if lead in c.external_leads]
                for c in held:
                    i = c.external_leads.index(lead)
                    del c.external_leads[i], c.external_ids[i], c.entries[i]
                if held:
                    key = keys.index_snapshot_key(f"campaigns:{org}")
                    rewrites[key] = _encoder.encode(campaigns)
    items: Items = []
    for key, value in rewrites.items():
        items += kept.put(key, value, generations.get(key, 0))
    if items:
        store.write_index(partition, items)


def load(
    store: PartitionReader,
    partition: int,
    opt: OptTypes,
    codec: EntryCodec,
    *,
    hash_key: bytes | None = None,
) -> tuple[PartitionIndex, Kept] | None:
    """The kept index, read back and brought up to date from its journal; None when there
    is none, it may not agree with the keys (a mark), or it cannot be read (another
    format, a part missing or damaged, a journal entry missing: logged). A store error is
    raised as it is."""
    marks = store.get_many(partition, [keys.index_open_key(), keys.index_restored_key()])
    if any(mark is not None for mark in marks):
        return None
    try:
        return _read_back(store, partition, opt, codec, hash_key)
    except (msgspec.MsgspecError, struct.error, ValueError, TypeError, KeyError, IndexError) as exc:
        logger.warning(
            "partition %d: the index kept on disk cannot be read back (%s: %s);"
            " it is built from the keys",
            partition,
            type(exc).__name__,
            exc,
        )
        return None


def _read_back(
    store: PartitionReader,
    partition: int,
    opt: OptTypes,
    codec: EntryCodec,
    hash_key: bytes | None,
) -> tuple[PartitionIndex, Kept] | None:
    kept = Kept(dirty=set())
    meta_value = _get(store, partition, keys.index_snapshot_key("meta"), kept.pieces)
    if meta_value is None:
        return None
    meta = _meta.decode(meta_value[0])
    if meta.version != VERSION:
        return None

    def part(name: str) -> bytes:
        value, written_by = _get_part(store, partition, name, kept.pieces)
        if written_by > meta.first_entry:
            # Of a snapshot whose meta part never came (a restore of a changelog cut short).
            raise ValueError(f"part {name!r} is of a later snapshot than its meta part")
        kept.sizes[name] = len(value)
        return value

    index = PartitionIndex(opt, codec)
    index.next_id = meta.next_id
    index.folded_through = meta.folded_through
    index.hash_key = hash_key or meta.hash_key
    index.legacy_batches_checked = meta.legacy_batches_checked
    index.zones = LeadZones.from_parts(meta.zones)
    chunks = range((meta.next_id + CHUNK - 1) // CHUNK)
    names = [_names.decode(part(f"names:{c}")) for c in chunks]
    index.ids = LeadIds.from_chunks(
        meta.lead_orgs, [n.keys for n in names], [odd for n in names for odd in n.odd]
    )
    if index.ids.size != meta.next_id:
        raise ValueError(f"{index.ids.size} names for {meta.next_id} leads")
    index.plain = [e for c in chunks for e in _plain.decode(part(f"plain:{c}"))]
    for name in meta.orgs:
        org = index.orgs[name] = _org_from(_org.decode(part(f"org:{name}")))
        for c in _campaigns.decode(part(f"campaigns:{name}")):
            campaign = org.campaigns[c.name] = Campaign(BitMap.deserialize(c.members))
            campaign.external_ids = dict(zip(c.external_leads, c.external_ids, strict=True))
            campaign.entries = dict(zip(c.external_leads, c.entries, strict=True))
            campaign.with_external = BitMap(c.external_leads)
    for name, event_type in meta.timelines:
        t = _timeline.decode(part(_timeline_part(name, event_type)))
        index.orgs[name].timelines[event_type] = Timeline.from_parts(
            t.hours, t.ever, t.counted, t.counts, t.at_least
        )
    kept.parts = {f"{kind}:{name}" for name in meta.orgs for kind in ("org", "campaigns")}
    kept.parts.update(_timeline_part(name, event_type) for name, event_type in meta.timelines)
    kept.leads = meta.next_id
    kept.next_entry = meta.first_entry
    for key, value in _journal(store, partition, kept.pieces):
        entry = keys.decode_index_journal_key(key)
        if entry < meta.first_entry:
            continue  # in the snapshot (its deletion did not come): deleted by the next
        if entry != kept.next_entry:
            raise ValueError(f"journal entry {kept.next_entry} missing (next: {entry})")
        kept.next_entry += 1
        kept.journal_bytes += len(value)
        ops = _ops.decode(value)
        for op in ops:
            if op[0] == "x":
                # What is kept may hold the lead still (restored from a changelog cut
                # before the erase's scrub was whole): scrubbed again (IndexedStore.index).
                named = index.name_of(op[2])
                phone = "" if named is None or named[1].startswith("\0") else named[1]
                index.erased.append((op[1], phone, op[2]))
        replay(index, ops)
        kept.changes += _weight(ops)
        kept.touched(index, ops)
    return index, kept


def survey(store: PartitionReader, partition: int, kept: Kept) -> None:
    """Note in ``kept`` every kept value on disk (after a build, whose snapshot replaces
    them all), and a next journal entry past every entry and snapshot on disk, so that no
    part of the new snapshot passes for one of an older."""
    latest = -1
    for key, value in iter_prefix(store, partition, keys.index_prefix()):
        if len(key) < 4 or key[1:2] != keys.SEP or key[2:3] not in (b"s", b"j"):
            continue  # a mark
        value_key, piece = keys.index_piece_of(key)
        kept.pieces[value_key] = max(kept.pieces.get(value_key, 0), piece + 1)
        if key[2:3] == b"j":
            latest = max(latest, keys.decode_index_journal_key(value_key))
        elif piece == 0 and len(value) >= _HEAD.size:
            latest = max(latest, _HEAD.unpack_from(value)[2])
    kept.next_entry = max(kept.next_entry, latest + 1)


def _get(
    store: PartitionReader, partition: int, key: bytes, pieces: dict[bytes, int] | None = None
) -> tuple[bytes, int] | None:
    """The kept value of ``key``, its pieces put together, and the snapshot that wrote it
    (its pieces noted in ``pieces``); None when there is none."""
    first = store.get(partition, keys.index_piece_key(key, 0))
    if first is None:
        return None
    count, crc, written_by = _HEAD.unpack_from(first)
    rest = store.get_many(partition, [keys.index_piece_key(key, i) for i in range(1, count)])
    value = b"".join([first[_HEAD.size :], *(piece or b"" for piece in rest)])
    if any(piece is None for piece in rest) or zlib.crc32(value) != crc:
        raise ValueError(f"{key!r}: a piece is missing or of another version")
    if pieces is not None:
        pieces[key] = count
    return value, written_by


def _journal(
    store: PartitionReader, partition: int, pieces: dict[bytes, int] | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """The journal's entries (key, value), in order, their pieces put together."""
    key = b""
    held: list[bytes] = []
    count = crc = 0
    for piece_key, value in iter_prefix(store, partition, keys.index_journal_prefix()):
        entry_key, piece = keys.index_piece_of(piece_key)
        if piece == 0:
            if held:
                raise ValueError(f"{key!r}: a piece is missing")
            key, held = entry_key, [value[_HEAD.size :]]
            count, crc, _ = _HEAD.unpack_from(value)
        elif entry_key != key or piece != len(held):
            raise ValueError(f"{entry_key!r}: a piece is missing or left over")
        else:
            held.append(value)
        if len(held) == count:
            whole = b"".join(held)
            if zlib.crc32(whole) != crc:
                raise ValueError(f"{key!r}: pieces of another version")
            if pieces is not None:
                pieces[key] = count
            yield key, whole
            held = []
    if held:
        raise ValueError(f"{key!r}: a piece is missing")


def replay(index: PartitionIndex, ops: Iterable[list[Any]]) -> None:
    """Make the calls a journal entry recorded, in order (not recorded again)."""
    for op in ops:
        kind, args = op[0], op[1:]
        if kind == "A":
            org, phones = args
            for phone in phones:
                index.assign_new(org, phone)
        elif kind == "M":
            org, campaign, leads, external_ids = args
            if leads and max(leads) >= index.next_id:
                raise ValueError(f"a journal entry sets lead {max(leads)}, never given an id")
            index.members_replayed(org, campaign, leads, external_ids)
        elif kind == "a":  # entries written before ids and members were grouped
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
    return ENTRY_WEIGHT + sum(_changes(op) for op in ops)


def _changes(op: Any) -> int:
    """How many changes one op carries (events of a type, ids given, members set)."""
    kind = op[0]
    if kind in ("e", "M"):
        return len(op[3])
    if kind == "A":
        return len(op[2])
    return 1


def _get_part(
    store: PartitionReader, partition: int, name: str, pieces: dict[bytes, int] | None = None
) -> tuple[bytes, int]:
    """A part of the snapshot and the snapshot that wrote it."""
    held = _get(store, partition, keys.index_snapshot_key(name), pieces)
    if held is None:
        raise ValueError(f"partition {partition}: kept index without its part {name!r}")
    return held


def _snapshot_parts(
    index: PartitionIndex, first_entry: int, dirty: set[str] | None, leads: int, held: set[str]
) -> list[tuple[str, bytes]]:
    """The parts to write: those in ``dirty`` (every one when None), those the snapshot
    does not have yet (``held`` are those it has), the chunks of the leads given since it
    held ``leads``, and the meta part, last."""
    orgs = sorted(index.orgs)
    timelines = [(o, t) for o in orgs for t in sorted(index.orgs[o].timelines)]
    meta = _Meta(
        VERSION,
        first_entry,
        index.next_id,
        index.folded_through,
        index.hash_key,
        index.legacy_batches_checked,
        index.zones.parts(),
        orgs,
        timelines,
        index.ids.organizations,
    )

    def wanted(name: str) -> bool:
        return dirty is None or name in dirty or name not in held

    parts: list[tuple[str, bytes]] = []
    chunks = range((index.next_id + CHUNK - 1) // CHUNK)
    new_chunks = set(range(leads // CHUNK, len(chunks))) if dirty is not None else set(chunks)
    for c in chunks:
        if c in new_chunks or dirty is None or f"names:{c}" in dirty:
            names = _Names(*index.ids.chunk(c * CHUNK, min((c + 1) * CHUNK, index.next_id)))
            parts.append((f"names:{c}", _encoder.encode(names)))
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
    parts.append(("meta", _encoder.encode(meta)))  # last: it commits the snapshot
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
