"""Erasing a lead (docs/contract.md, section 3.6): every key of the lead in its partition,
its place in the recorded sends and in audience filters held for sends to come, and its
index entries; for a lead that was opted out, a suppression under a keyed hash.

The lead's keys are deleted through the store port, so the changelog gets a tombstone for
each. Its keys also travel inside logged batches (``B`` and ``G`` records, see
:mod:`leadstream.state.keys`): first, every group of batches holding any of them is
logged again without the lead and its old records are tombstoned
(:mod:`leadstream.domain.relog`), so that the compacted changelog holds nothing of the
lead. A restore from a changelog not yet compacted still replays the old records before
their tombstones; so the erase also leaves a ``Z org leadId`` marker, and the index build
deletes, once more, any key carrying an erased lead's id
(:func:`leadstream.index.partition.build`). The marker names a number, not the phone.

The order matters for an erase cut short (the changelog keeps the order of the writes):
the groups are logged again, the sends, filters and suppression are done, then the
``Z`` marker is written, and only then are the lead's own keys deleted. Whatever part of
the erase reached the changelog, a restore followed by the erase applied again (commands
are applied at least once) ends where the whole erase does: before the marker, the lead
is still known by its keys, which still name every group not yet logged again, and the
erase does everything once more; after it, the index build purges the keys left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgspec
from pyroaring import BitMap

from leadstream.domain.explain import SendRecord
from leadstream.domain.relog import (
    lead_groups,
    relog_event_groups,
    relog_legacy_batches,
    relog_member_groups,
)
from leadstream.domain.send_state import FilterRecord
from leadstream.index.partition import PartitionIndex, lead_digest
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = ["Erased", "erase_lead"]

_record_decoder = msgspec.msgpack.Decoder(SendRecord)
_filter_decoder = msgspec.msgpack.Decoder(FilterRecord)
_encoder = msgspec.msgpack.Encoder()
HASH_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Erased:
    events: int
    memberships: int
    suppression_kept: bool


def erase_lead(store: IndexedStore, partition: int, org: str, phone: str, *, now_ms: int) -> Erased:
    """Erase the lead; safe to repeat (a second call finds nothing and says so).

    A lead opted out at the erase leaves a suppression; one that is not (it came back
    after an earlier erase and opted in) takes the earlier suppression with it."""
    with store.updating(partition) as index:
        relog_legacy_batches(store, partition, index, now_ms=now_ms)
        lead = index.lead_id(org, phone)
        if lead is None:  # never seen, or erased already: only held filters may name it
            _forget_in_filters(store, partition, org, phone)
            return Erased(0, 0, index.suppressed_at(org, phone) is not None)
        org_index = index.org(org)
        opted_out = lead in org_index.opted_out
        # Everything but the lead's own keys first: while one of them is left, the lead is
        # known, and an erase applied again after a crash does all of it again.
        groups = lead_groups(store, partition, index, org, phone)
        relog_event_groups(store, partition, groups.events, org, phone)
        relog_member_groups(store, partition, index, groups.members, lead, org, phone)
        _forget_in_sends(store, partition, org, lead)
        _forget_in_filters(store, partition, org, phone)
        suppressed: bytes | None = None
        unsuppressed: bytes | None = None
        if opted_out:
            suppressed = lead_digest(_hash_key(store, partition, index), org, phone)
            store.put(partition, keys.suppression_key(org, suppressed), now_ms.to_bytes(8, "big"))
        elif org_index.suppressed and index.hash_key is not None:
            digest = lead_digest(index.hash_key, org, phone)
            if digest in org_index.suppressed:
                store.delete(partition, keys.suppression_key(org, digest))
                unsuppressed = digest
        # From here a restore purges whatever is left of the lead (index/partition.py).
        store.put(partition, keys.erased_key(org, lead), now_ms.to_bytes(8, "big"))
        events = _delete_events(store, partition, org, phone)
        memberships = _delete_memberships(store, partition, index, org, phone, lead)
        store.delete(partition, keys.lead_key(org, phone))
        index.lead_erased(org, phone, lead)
        if suppressed is not None:
            index.suppress(org, suppressed, now_ms)
        if unsuppressed is not None:
            index.unsuppress(org, unsuppressed)
    return Erased(events, memberships, opted_out)


def _hash_key(store: PartitionStore, partition: int, index: PartitionIndex) -> bytes:
    """The key of suppression hashes: ``LEADSTREAM_SUPPRESSION_KEY``, or else the
    partition's own, made at its first use."""
    if index.hash_key is not None:
        return index.hash_key
    made = os.urandom(HASH_KEY_BYTES)
    index.set_hash_key(made)
    store.put(partition, keys.hash_key_key(), made)
    return made


def _delete_events(store: PartitionStore, partition: int, org: str, phone: str) -> int:
    """Delete the lead's event keys and folded records; how many distinct events they
    held (an event key at or below its type's folded maximum is already in the folded
    count: it exists only between a restore and the next compaction)."""
    count = 0
    folded_max: dict[str, int] = {}
    for key, value in list(iter_prefix(store, partition, keys.compacted_key(org, phone, ""))):
        store.delete(partition, key)
        folded, latest, _ = keys.decode_compacted(value)
        count += folded
        folded_max[keys.decode_compacted_key(key)[2]] = latest
    for key, _ in list(iter_prefix(store, partition, keys.lead_events_prefix(org, phone))):
        store.delete(partition, key)
        _, _, event_type, at = keys.decode_event_key(key)
        count += at > folded_max.get(event_type, -1)
    return count


def _delete_memberships(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    org: str,
    phone: str,
    lead: int,
) -> int:
    count = 0
    for campaign, members in index.org(org).campaigns.items():
        if lead in members.members:
            store.delete(partition, keys.member_key(org, campaign, phone))
            count += 1
    return count


def _forget_in_sends(store: PartitionStore, partition: int, org: str, lead: int) -> None:
    """Take the lead out of the organization's send records and send history."""
    for key, value in list(iter_prefix(store, partition, keys.send_record_key(org, ""))):
        record = _record_decoder.decode(value)
        fields = {
            name: _without(getattr(record, name), lead)
            for name in (
                "opted_out",
                "dropped_by_audience_filter",
                "dropped_by_event_filter",
                "recipients",
                "audience_filter_named",
                "dropped_by_frequency_cap",
                "dropped_by_quiet_hours",
                "held_out",
            )
        }
        changed = msgspec.structs.replace(record, **fields)
        if changed != record:
            store.put(partition, key, _encoder.encode(changed))
    for key, value in list(iter_prefix(store, partition, keys.history_key(org, ""))):
        at, recipients = keys.decode_history(value)
        kept = _without(recipients, lead)
        if kept != recipients:
            store.put(partition, key, keys.history_value(at, kept))


def _without(serialized: bytes, lead: int) -> bytes:
    if not serialized:
        return serialized
    bitmap = BitMap.deserialize(serialized)
    if lead not in bitmap:
        return serialized
    bitmap.discard(lead)
    return bitmap.serialize()


def _forget_in_filters(store: PartitionStore, partition: int, org: str, phone: str) -> None:
    """Take the phone out of the audience filters held for sends not materialized yet
    (a filter may arrive before its trigger: every held one is looked at). A filter's
    externalIds stay: every partition holds all of them, and they may name other leads."""
    organization = keys.filter_prefix(org, "")[:-1]  # F org SEP
    for key, value in list(iter_prefix(store, partition, organization)):
        part = _filter_decoder.decode(value)
        if phone in part.phones:
            kept = [p for p in part.phones if p != phone]
            store.put(partition, key, _encoder.encode(msgspec.structs.replace(part, phones=kept)))
