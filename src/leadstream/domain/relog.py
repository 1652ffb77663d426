"""Logging the lead table's batches again: the groups that hold a lead, without it (an
erase), and, once, the batches logged before groups existed.

A logged batch is one changelog record carrying many keys, so deleting a key locally
(a tombstone of its own) leaves it inside the batch, and the compacted changelog keeps
it. The records of a group (see :mod:`leadstream.state.keys`) are found from the values
of a lead's keys, which name the groups that logged them, and among them the ones holding
the lead from their markers. A record's live items are read from its marker: the event
keys it names, and for memberships the keys of the leads it names, each kept when its
value still names the group (so its latest record is one of the group's). Logging a
record again is: log those items (their values as they are now, the erased lead's left
out) as a new record of the same group, then tombstone the old one; the group's other
records are left as they are.

Every step works from the current state only, so it can be interrupted and repeated: a
restore replays the old records, then the new ones (the same keys, current values), then
the tombstones; an erase applied again finds whichever of the group's records, old or
new, still hold the lead and logs them again once more. Nothing is lost of another lead:
an item left out of a record's new one is either the erased lead's, or a key no longer
there (an event folded since, whose count its folded record holds), and a deletion the
record logged is logged again as long as its key is still absent.
"""

from __future__ import annotations

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
WEEK_MS = 7 * 86_400_000


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
    store: PartitionStore, partition: int, group_prefix: bytes
) -> list[tuple[bytes, BatchMarker | None]]:
    """The group's records (their keys, kept locally) and their markers, listed before
    anything is written to the group."""
    return [
        (key, keys.decode_batch_marker(value))
        for key, value in iter_prefix(store, partition, group_prefix)
    ]


def relog_event_groups(
    store: PartitionStore, partition: int, groups: set[int], org: str, phone: str
) -> int:
    """Log again, without the lead (``org``, ``phone``), each record of the event groups
    ``groups`` that holds any of its keys: every other event key its marker names that is
    still there and still names the group, with its value as it is, as a new record of
    the group; then tombstone the old record. Returns the items logged again."""
    own = keys.lead_events_prefix(org, phone)
    relogged = 0
    for group in sorted(groups):
        for record, marker in _records(store, partition, keys.logged_batch_group(group)):
            if marker is None or not any(k.startswith(own) for k in marker.event_keys):
                continue  # nothing of the lead in it
            others = [k for k in marker.event_keys if not k.startswith(own)]
            items = [
                (key, value)
                for key, value in zip(others, store.get_many(partition, others), strict=True)
                if value is not None and group in keys.value_refs(value)
            ]
            if items:
                store.put_batch(partition, items, created_ms=group)
                relogged += len(items)
            store.delete(partition, record)
    return relogged


def relog_member_groups(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    groups: set[int],
    lead: int,
    org: str,
    phone: str,
) -> int:
    """Log again, without the lead (id ``lead``, ``org``, ``phone``), each record of the
    membership groups ``groups`` that holds any of its keys: the membership and ``L`` keys
    of the other leads its marker names that still name the group, with their values as
    they are, and the deletions it logged whose keys are still absent; then tombstone the
    old record. Returns the items logged again."""
    head, tail = keys.member_prefix(org, "")[:-1], keys.SEP + phone.encode()  # M org SEP

    def the_leads(key: bytes) -> bool:
        return key.startswith(head) and key.endswith(tail)

    relogged = 0
    for group in sorted(groups):
        for record, marker in _records(store, partition, keys.member_batch_group(group)):
            if marker is None:
                continue
            leads = keys.batch_marker_leads(marker)
            if lead not in leads and not any(the_leads(k) for k in marker.deleted):
                continue  # nothing of the lead in it
            leads.discard(lead)
            items = _member_items(store, partition, index, leads, group)
            gone = [k for k in marker.deleted if not the_leads(k)]
            for key, value in zip(gone, store.get_many(partition, gone), strict=True):
                if value is None:  # still removed: the deletion still matters
                    items.append((key, None))
            if items:
                store.put_memberships(partition, items, group=group)
                relogged += len(items)
            store.delete(partition, record)
    return relogged


def _member_items(
    store: PartitionStore, partition: int, index: PartitionIndex, leads: BitMap, group: int
) -> list[tuple[bytes, bytes | None]]:
    """The ``M`` and ``L`` keys of ``leads`` whose values name ``group``, with those values
    (a superset of what the group's record logged of them is harmless: current values)."""
    names = {other: name for other in leads if (name := index.name_of(other)) is not None}
    candidates = [keys.lead_key(o, p) for o, p in names.values()]
    for org_name, org_index in index.orgs.items():
        for campaign, members in org_index.campaigns.items():
            for other in members.members & leads:
                name = names.get(other)
                if name is not None:
                    candidates.append(keys.member_key(org_name, campaign, name[1]))
    return [
        (key, value)
        for key, value in zip(candidates, store.get_many(partition, candidates), strict=True)
        if value is not None and group in keys.value_refs(value)
    ]


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
        if keys.is_old_marker(value)
    ]
    old_members = any(
        keys.is_old_marker(value)
        for _, value in iter_prefix(store, partition, keys.member_batch_prefix())
    )
    relogged = 0
    if old_events:
        # In one pass, gathered by week of occurredAt, each chunk a group named after its
        # latest event: retired as soon as its events are folded, as a batch created then
        # would be (and the pass holds at most a chunk a week in memory).
        weeks: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in iter_prefix(store, partition, keys.events_kind_prefix()):
            if keys.value_refs(value):
                continue
            week = weeks.setdefault(keys.decode_event_key(key)[3] // WEEK_MS, [])
            week.append((key, value))
            if len(week) == LEGACY_CHUNK:
                relogged += _relog_legacy_events(store, partition, week)
                week.clear()
        for week in weeks.values():
            if week:
                relogged += _relog_legacy_events(store, partition, week)
        for key in old_events:
            store.delete(partition, key)
    if old_members:
        relogged += relog_all_memberships(store, partition, now_ms=now_ms)
    index.legacy_batches_checked = True
    return relogged


def _relog_legacy_events(
    store: PartitionStore, partition: int, chunk: list[tuple[bytes, bytes]]
) -> int:
    group = max(keys.decode_event_key(key)[3] for key, _ in chunk)
    store.put_batch(
        partition, [(k, keys.with_refs(v, (group,))) for k, v in chunk], created_ms=group
    )
    return len(chunk)
