"""Logging the lead table's batches again: the groups that hold a lead, without it (an
erase), and, once, the batches logged before groups existed.

A logged batch is one changelog record carrying many keys, so deleting a key locally
(a tombstone of its own) leaves it inside the batch, and the compacted changelog keeps
it. The records of a group (see :mod:`leadstream.state.keys`) are found from the values
of a lead's keys, which name the groups that logged them. A group's live items are read
from its records' markers: the event keys they name, and for memberships the keys of the
leads they name, each kept when its value still names the group (so its latest record
is one of the group's). Logging a group again is: log those items (their values as they
are now, the erased lead's left out) as new records of the same group, then tombstone the
group's old records.

Every step works from the current state only, so it can be interrupted and repeated: a
restore replays the old records, then the new ones (the same keys, current values), then
the tombstones; an erase applied again finds the group's records old and new and logs
them again once more. Nothing is lost of another lead: an item left out of a group's new
records is either the erased lead's, or a key no longer there (an event folded since,
whose count its folded record holds), and a deletion the group logged is logged again as
long as its key is still absent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pyroaring import BitMap

from leadstream.domain.send_state import relog_all_memberships
from leadstream.index.partition import PartitionIndex
from leadstream.state import keys
from leadstream.state.keys import BatchMarker
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = [
    "LeadGroups",
    "lead_groups",
    "relog_event_groups",
    "relog_legacy_batches",
    "relog_member_groups",
]

# Keys of one group when batches logged before groups existed are logged again.
LEGACY_CHUNK = 4_000


class LeadGroups:
    """The groups holding any key of one lead: event batches and membership batches."""

    __slots__ = ("events", "members")

    def __init__(self) -> None:
        self.events: set[int] = set()
        self.members: set[int] = set()


def lead_groups(
    store: PartitionStore, partition: int, index: PartitionIndex, org: str, phone: str
) -> LeadGroups:
    """Read from the lead's own values: its events' groups, the groups its folded records
    name, its memberships' groups and those its ``L`` key keeps of removed ones."""
    found = LeadGroups()
    for _, value in iter_prefix(store, partition, keys.lead_events_prefix(org, phone)):
        found.events.update(keys.value_refs(value))
    for _, value in iter_prefix(store, partition, keys.compacted_key(org, phone, "")):
        found.events.update(keys.compacted_refs(value))
    lead = index.lead_id(org, phone)
    member_keys = [keys.lead_key(org, phone)]
    org_index = index.orgs.get(org)
    if lead is not None and org_index is not None:
        member_keys += [
            keys.member_key(org, campaign, phone)
            for campaign, members in org_index.campaigns.items()
            if lead in members.members
        ]
    for held in store.get_many(partition, member_keys):
        if held is not None:
            found.members.update(keys.value_refs(held))
    return found


def _records(
    store: PartitionStore, partition: int, prefixes: Iterable[tuple[int, bytes]]
) -> tuple[dict[int, list[bytes]], dict[int, list[BatchMarker]]]:
    """Per group, its records' keys and their markers."""
    records: dict[int, list[bytes]] = {}
    markers: dict[int, list[BatchMarker]] = {}
    for group, prefix in prefixes:
        mine = records.setdefault(group, [])
        theirs = markers.setdefault(group, [])
        for key, value in iter_prefix(store, partition, prefix):
            mine.append(key)
            marker = keys.decode_batch_marker(value)
            if marker is not None:
                theirs.append(marker)
    return records, markers


def _rewrite(
    store: PartitionStore,
    partition: int,
    records: dict[int, list[bytes]],
    items: dict[int, list[tuple[bytes, bytes | None]]],
    log: Callable[[list[tuple[bytes, bytes | None]], int], None],
) -> int:
    """Log each group's items as new records of it, then tombstone its old records."""
    relogged = 0
    for group, record_keys in records.items():
        if items[group]:
            log(items[group], group)
            relogged += len(items[group])
        for key in record_keys:
            store.delete(partition, key)
    return relogged


def relog_event_groups(
    store: PartitionStore, partition: int, index: PartitionIndex, groups: set[int], lead: int
) -> int:
    """Log the event batches of ``groups`` again without lead id ``lead``: every event key
    their markers name, of another lead, still there and still naming the group, with its
    value as it is. Returns the items logged again."""
    records, markers = _records(
        store, partition, ((g, keys.logged_batch_group(g)) for g in sorted(groups))
    )
    named: dict[tuple[int, bytes], None] = {}  # (group, key), once (a command logged again)
    for group, theirs in markers.items():
        for marker in theirs:
            for other, tail in marker.event_items():
                if other == lead:
                    continue
                name = index.name_of(other)
                if name is not None:
                    named[(group, keys.lead_events_prefix(*name) + tail)] = None
    items: dict[int, list[tuple[bytes, bytes | None]]] = {g: [] for g in records}
    values = store.get_many(partition, [key for _, key in named])
    for (group, key), value in zip(named, values, strict=True):
        if value is not None and group in keys.value_refs(value):
            items[group].append((key, value))

    def log(batch: list[tuple[bytes, bytes | None]], group: int) -> None:
        store.put_batch(partition, [(k, v) for k, v in batch if v is not None], created_ms=group)

    return _rewrite(store, partition, records, items, log)


def relog_member_groups(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    groups: set[int],
    lead: int,
    org: str,
    phone: str,
) -> int:
    """Log the membership batches of ``groups`` again without the lead (id ``lead``,
    ``org``, ``phone``); returns the items logged again."""
    records, markers = _records(
        store, partition, ((g, keys.member_batch_group(g)) for g in sorted(groups))
    )
    leads = BitMap()
    for theirs in markers.values():
        for marker in theirs:
            leads |= keys.batch_marker_leads(marker)
    leads.discard(lead)
    names = {other: name for other in leads if (name := index.name_of(other)) is not None}
    candidates = [keys.lead_key(o, p) for o, p in names.values()]
    for org_name, org_index in index.orgs.items():
        for campaign, members in org_index.campaigns.items():
            for other in members.members & leads:
                name = names.get(other)
                if name is not None:
                    candidates.append(keys.member_key(org_name, campaign, name[1]))
    items: dict[int, list[tuple[bytes, bytes | None]]] = {g: [] for g in records}
    for key, value in zip(candidates, store.get_many(partition, candidates), strict=True):
        if value is None:
            continue
        for ref in keys.value_refs(value):
            logged = items.get(ref)
            if logged is not None:
                logged.append((key, value))
    lead_tail = keys.SEP + phone.encode()
    lead_head = keys.member_prefix(org, "")[:-1]  # M org SEP
    for group, theirs in markers.items():
        gone = [
            k
            for marker in theirs
            for k in marker.deleted
            if not (k.startswith(lead_head) and k.endswith(lead_tail))
        ]
        for key, value in zip(gone, store.get_many(partition, gone), strict=True):
            if value is None:  # still removed: the deletion still matters
                items[group].append((key, None))

    def log(batch: list[tuple[bytes, bytes | None]], group: int) -> None:
        store.put_memberships(partition, batch, group=group)

    return _rewrite(store, partition, records, items, log)


def relog_legacy_batches(
    store: PartitionStore, partition: int, index: PartitionIndex, *, now_ms: int
) -> int:
    """Once per index: if the partition has batches logged before groups existed (their
    markers of the old form), log again every key whose latest record may be one of them
    (event keys whose values name no group; every membership), in groups, and tombstone
    those batches. Returns the items logged again."""
    if index.legacy_batches_checked:
        return 0
    old_events = [
        key
        for key, value in iter_prefix(store, partition, keys.logged_batch_prefix())
        if keys.decode_batch_marker(value) is None
    ]
    old_members = any(
        keys.decode_batch_marker(value) is None
        for _, value in iter_prefix(store, partition, keys.member_batch_prefix())
    )
    relogged = 0
    if old_events:
        unlogged = [
            (key, value)
            for key, value in iter_prefix(store, partition, keys.events_kind_prefix())
            if not keys.value_refs(value)
        ]
        # In time order, each chunk a group named after its latest event: it is retired
        # as soon as its events are folded, as a batch created then would be.
        unlogged.sort(key=lambda item: item[0][-8:])
        for start in range(0, len(unlogged), LEGACY_CHUNK):
            chunk = unlogged[start : start + LEGACY_CHUNK]
            group = keys.decode_event_key(chunk[-1][0])[3]
            store.put_batch(
                partition, [(k, keys.with_refs(v, (group,))) for k, v in chunk], created_ms=group
            )
            relogged += len(chunk)
        for key in old_events:
            store.delete(partition, key)
    if old_members:
        relogged += relog_all_memberships(store, partition, now_ms=now_ms)
    index.legacy_batches_checked = True
    return relogged
