"""Per-partition state of audiences and sends: what each lead-keyed command does to it.

``decide``-style functions over the store port: they read and write one partition and
return what the caller must send on (a trigger claim returns whether to broadcast).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from enum import StrEnum

import msgspec

from leadstream.domain.audience import MemberOp
from leadstream.domain.buckets import new_partition_key
from leadstream.domain.sends import (
    FILTER_DEADLINE_MS,
    AudienceFilterSpec,
    SendTrigger,
    resolve_audience_filter,
)
from leadstream.index.partition import PartitionIndex
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = [
    "CAP_SETTLE_MS",
    "Claim",
    "FilterDecision",
    "PendingRecord",
    "apply_members",
    "audience_filter_for",
    "claim_trigger",
    "ensure_bucket_key",
    "decide_filter",
    "due_sends",
    "finish_send",
    "held_sends",
    "is_due",
    "ready_at",
    "is_done",
    "relog_all_memberships",
    "relog_memberships",
    "store_filter_part",
    "store_pending",
]


class PendingRecord(msgspec.Struct, array_like=True, frozen=True):
    """A trigger as received: late when it arrived after its scheduledFor."""

    trigger: SendTrigger
    received_at: int
    late: bool
    # The W3C traceparent the send's spans are children of (empty: not traced; absent
    # from records held before traces).
    trace: str = ""

    @classmethod
    def on_receipt(cls, trigger: SendTrigger, received_at: int, trace: str = "") -> PendingRecord:
        return cls(trigger, received_at, received_at > trigger.scheduled_for, trace)


_pending_decoder = msgspec.msgpack.Decoder(PendingRecord)
_encoder = msgspec.msgpack.Encoder()


class FilterRecord(msgspec.Struct, array_like=True, frozen=True):
    parts: int
    mode: str
    external_ids: list[str]
    phones: list[str]


_filter_decoder = msgspec.msgpack.Decoder(FilterRecord)


# Memberships are re-logged once their logged batches hold more than twice the live
# memberships plus this many items (see relog_memberships).
RELOG_SLACK = 100_000
# Items of one group when memberships are logged again: an erase logs again, without the
# erased lead, every group that holds it, so a group stays about one record.
RELOG_CHUNK = 4_000


def apply_members(
    store: IndexedStore, partition: int, ops: Iterable[MemberOp], *, group: int
) -> int:
    """Add (or update the externalId of) and remove audience members, in the store and
    the partition's index; returns ops applied.

    What changes is written in one :meth:`~leadstream.state.port.PartitionStore.put_memberships`
    call of the group ``group`` (the command's own time, the same each time it is
    applied). A member added again as it is (a daily re-upload) writes nothing, unless
    its value names this group: then this is the same command applied again (after a
    crash its record may never have reached the changelog), and it is logged again.

    Each written value adds ``group`` to its refs, and a removal hands the member key's
    refs to the lead's ``L`` key, so that the groups holding any of a lead's membership
    keys are read from its values (see :mod:`leadstream.state.keys`)."""
    with store.updating(partition) as index:
        return _apply_members(store, partition, index, list(ops), group)


def _apply_members(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    ops: list[MemberOp],
    group: int,
) -> int:
    # The ids first, in order (a removal gives none): the journal holds them as one entry,
    # and the members set as another, instead of two entries a member. Looked up at once.
    added = [op for op in ops if not op.remove]
    leads = index.assign_all([op.organization_id for op in added], [op.phone for op in added])
    ids = {(op.organization_id, op.phone): lead for op, lead in zip(added, leads, strict=True)}
    member_keys = [keys.member_key(op.organization_id, op.campaign_id, op.phone) for op in ops]
    stored = dict(zip(member_keys, store.get_many(partition, member_keys), strict=True))
    writes: dict[bytes, bytes | None] = {}
    for op, key in zip(ops, member_keys, strict=True):
        org, campaign = op.organization_id, op.campaign_id
        current = writes[key] if key in writes else stored[key]
        if op.remove:
            if current is None:
                continue
            writes[key] = None
            # A membership logged before batches existed is a record of its own on the
            # changelog: a tombstone retires it (the batch's deletion covers the rest).
            store.delete(partition, key)
            lead = index.lead_id(org, op.phone)
            if lead is not None:
                # The member key carried the lead's id; keep it (it may be the last key),
                # with the groups that logged the member key, and this one.
                lead_key = keys.lead_key(org, op.phone)
                held = writes[lead_key] if lead_key in writes else store.get(partition, lead_key)
                refs = {group, *keys.value_refs(current)}
                if held is not None:
                    refs.update(keys.value_refs(held))
                writes[lead_key] = keys.lead_value(lead, sorted(refs))
                index.member_removed(org, campaign, lead)
        else:
            lead = ids[(org, op.phone)]
            had = keys.value_refs(current) if current is not None else ()
            if current is not None and current[:4] == keys.lead_id_bytes(lead):
                if keys.decode_external_id(current) == op.external_id:
                    if group in had:
                        writes[key] = current  # this command again: log it again
                    continue
            writes[key] = keys.member_value(lead, sorted({*had, group}), op.external_id)
            index.member_set(org, campaign, lead, op.phone, op.external_id)
    if writes:
        store.put_memberships(partition, list(writes.items()), group=group)
        # The key of the partition's holdout buckets, before any send can need it.
        ensure_bucket_key(store, partition)
    return len(ops)


def ensure_bucket_key(store: PartitionStore, partition: int) -> None:
    """Make the partition's key of holdout buckets if it has none: with its first
    membership, or (a partition whose members came before holdouts existed) when the
    materializer first takes the partition."""
    if store.get(partition, keys.bucket_key_key()) is None:
        store.put(partition, keys.bucket_key_key(), new_partition_key())


def relog_memberships(
    store: IndexedStore, partition: int, *, now_ms: int, force: bool = False
) -> int:
    """Log the partition's memberships (``M`` and ``L`` keys) again as new batches and
    tombstone the old ones, once those hold more than twice the live memberships (plus
    ``RELOG_SLACK``), or when ``force``: a membership batch is never retired by age, and
    without this the changelog would keep every membership ever written. Returns the
    items logged again (0: not due).

    Each chunk of ``RELOG_CHUNK`` items is a group of its own (``now_ms``, then one more
    for each chunk), and its values name only that group now.

    Safe to interrupt: until the old batches are tombstoned, a restore replays them and
    then the new ones, which hold the same keys with the same values."""
    index = store.index(partition)
    live = sum(len(c.members) for org in index.orgs.values() for c in org.campaigns.values())
    logged = sum(
        keys.decode_member_batch_items(value)
        for _, value in iter_prefix(store, partition, keys.member_batch_prefix())
    )
    if not force and logged <= 2 * live + RELOG_SLACK:
        return 0
    return relog_all_memberships(store, partition, now_ms=now_ms)


def relog_all_memberships(store: PartitionStore, partition: int, *, now_ms: int) -> int:
    """Log every membership again and tombstone every membership batch logged before
    (:func:`relog_memberships` without its test); returns the items logged again."""
    old = list(iter_prefix(store, partition, keys.member_batch_prefix()))
    relogged = 0
    group = now_ms
    for prefix in (keys.members_kind_prefix(), keys.lead_prefix()):
        chunk: list[tuple[bytes, bytes | None]] = []
        for key, value in iter_prefix(store, partition, prefix):
            chunk.append((key, keys.with_refs(value, (group,))))
            if len(chunk) == RELOG_CHUNK:
                store.put_memberships(partition, chunk, group=group)
                relogged, chunk, group = relogged + len(chunk), [], group + 1
        if chunk:
            store.put_memberships(partition, chunk, group=group)
            relogged, group = relogged + len(chunk), group + 1
    for key, _ in old:
        store.delete(partition, key)
    return relogged


class Claim(StrEnum):
    FIRST = "first"  # this trigger owns the send
    REPEAT = "repeat"  # the same trigger again (a retry): broadcasting again is harmless
    DUPLICATE = "duplicate"  # another trigger for a claimed send: produces nothing


def claim_trigger(store: PartitionStore, partition: int, pending: PendingRecord) -> Claim:
    """The first trigger for (organizationId, sendId) wins; later ones produce nothing."""
    trigger = pending.trigger
    key = keys.claim_key(trigger.organization_id, trigger.send_id)
    existing = store.get(partition, key)
    if existing is None:
        store.put(partition, key, _encoder.encode(pending))
        return Claim.FIRST
    if _pending_decoder.decode(existing).trigger == trigger:
        # Re-broadcast: if the first broadcast was lost in a crash, this completes it.
        return Claim.REPEAT
    return Claim.DUPLICATE


def is_done(store: PartitionStore, partition: int, org: str, send: str) -> bool:
    return store.get(partition, keys.done_key(org, send)) is not None


def store_pending(store: PartitionStore, partition: int, pending: PendingRecord) -> bool:
    """Hold the trigger in this partition until due; False when already held or done."""
    trigger = pending.trigger
    key = keys.pending_key(trigger.organization_id, trigger.send_id)
    done = is_done(store, partition, trigger.organization_id, trigger.send_id)
    if done or store.get(partition, key):
        return False
    store.put(partition, key, _encoder.encode(pending))
    return True


def held_sends(store: PartitionStore, partition: int) -> list[PendingRecord]:
    """Every trigger this partition holds, due or not."""
    return [
        _pending_decoder.decode(value)
        for _key, value in iter_prefix(store, partition, keys.pending_prefix())
    ]


# A send with a frequency cap whose trigger arrives at or after its materialize moment
# waits this long after the trigger's arrival: other triggers published with it (they are
# passed on from other partitions, in no fixed order) are then held here too, and the
# earliest-scheduled of them is materialized first, so that it counts against the cap.
CAP_SETTLE_MS = 2000


def ready_at(record: PendingRecord, *, lead_ms: int) -> int:
    """When the held send may be materialized: its moment (``scheduledFor`` - lead), at
    once when its trigger came late; a capped one not before its settle time is over."""
    trigger = record.trigger
    at = 0 if record.late else trigger.due_at(lead_ms)
    if trigger.frequency_cap is not None:
        at = max(at, record.received_at + CAP_SETTLE_MS)
    return at


def is_due(record: PendingRecord, *, now_ms: int, lead_ms: int) -> bool:
    return ready_at(record, lead_ms=lead_ms) <= now_ms


def due_sends(
    store: PartitionStore, partition: int, *, now_ms: int, lead_ms: int
) -> list[PendingRecord]:
    """Held triggers whose materialize time has come (late ones at once), earliest first."""
    due = [r for r in held_sends(store, partition) if is_due(r, now_ms=now_ms, lead_ms=lead_ms)]
    due.sort(
        key=lambda r: (r.trigger.due_at(lead_ms), r.trigger.organization_id, r.trigger.send_id)
    )
    return due


def store_filter_part(
    store: PartitionStore,
    partition: int,
    *,
    org: str,
    send: str,
    received_at: int,
    seq: int,
    part: int,
    parts: int,
    mode: str,
    external_ids: list[str],
    phones: list[str],
) -> None:
    """Keep one received audience filter (part) until the send is materialized."""
    if is_done(store, partition, org, send):
        return
    store.put(
        partition,
        keys.filter_key(org, send, received_at, seq, part),
        _encoder.encode(FilterRecord(parts, mode, external_ids, phones)),
    )


def audience_filter_for(
    store: PartitionStore, partition: int, trigger: SendTrigger
) -> tuple[AudienceFilterSpec | None, int]:
    """The applicable audience filter of the send in this partition, and the late count.

    A filter counts only once all of its parts have arrived.
    """
    groups: dict[tuple[int, int], list[FilterRecord]] = defaultdict(list)
    prefix = keys.filter_prefix(trigger.organization_id, trigger.send_id)
    for key, value in iter_prefix(store, partition, prefix):
        received_at, seq, _part = keys.decode_filter_key(key)
        groups[(received_at, seq)].append(_filter_decoder.decode(value))
    received = []
    for (received_at, _seq), parts in sorted(groups.items()):
        if len(parts) != parts[0].parts:
            continue
        spec = AudienceFilterSpec(
            "include" if parts[0].mode == "include" else "exclude",
            frozenset(e for p in parts for e in p.external_ids),
            frozenset(ph for p in parts for ph in p.phones),
        )
        received.append((received_at, spec))
    return resolve_audience_filter(received, scheduled_for=trigger.scheduled_for)


def finish_send(store: PartitionStore, partition: int, org: str, send: str) -> None:
    """After the partition's output is committed: mark done, drop the held trigger and filters."""
    store.put(partition, keys.done_key(org, send), b"\x01")
    store.delete(partition, keys.pending_key(org, send))
    for key, _ in list(iter_prefix(store, partition, keys.filter_prefix(org, send))):
        store.delete(partition, key)


class FilterDecision(StrEnum):
    ACCEPTED = "accepted"
    ALREADY_RECEIVED = "already_received"  # identical to the last one accepted: a no-op
    LATE = "late"  # after the deadline of a known trigger: ignored at materialization, counted


def decide_filter(
    store: PartitionStore, partition: int, org: str, send: str, digest: str, received_at: int
) -> FilterDecision:
    """In the send's home partition: what an audience filter received over HTTP does."""
    accepted_key = keys.accepted_filter_key(org, send)
    if store.get(partition, accepted_key) == digest.encode():
        return FilterDecision.ALREADY_RECEIVED
    claim = store.get(partition, keys.claim_key(org, send))
    if claim is not None:
        scheduled_for = _pending_decoder.decode(claim).trigger.scheduled_for
        if received_at > scheduled_for - FILTER_DEADLINE_MS:
            return FilterDecision.LATE
    store.put(partition, accepted_key, digest.encode())
    return FilterDecision.ACCEPTED
