"""The per-lead event index: dedupe on apply, and the questions filters ask of it.

Stored form (see :mod:`leadstream.state.keys`): one key per distinct event
``(org, phone, eventType, occurredAt)``, so that

* "has the lead an event of type X" is one seek under ``E org phone X``;
* "how many distinct X in [a, b]" is one bounded range scan;
* "latest opt event" is one reverse seek per opt event type.

Compaction folds events older than the retention horizon into one ``C`` record per
(lead, eventType) holding their count and latest time, so sticky filters (any minCount)
and opt-out answers never change, and windows up to the retention still see every event.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from leadstream.domain.ingest import LeadEvent
from leadstream.index.ids import BATCH_FROM
from leadstream.index.partition import PartitionIndex
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = [
    "ApplyResult",
    "LeadHistory",
    "OrgScan",
    "OptState",
    "apply_events",
    "compact_partition",
    "count_events",
    "latest_opt",
    "lead_events",
    "lead_history",
]

SEP = keys.SEP
_U64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    inserted: int
    duplicates: int


def apply_events(
    store: IndexedStore,
    partition: int,
    events: Iterable[LeadEvent],
    *,
    horizon_ms: int,
    now_ms: int,
    logged_ms: int | None = None,
) -> ApplyResult:
    """Insert events not seen before; a duplicate changes nothing but the count.

    The new event keys are written in one
    :meth:`~leadstream.state.port.PartitionStore.put_batch` of the group ``logged_ms``
    (the command's own time, the same each time it is applied; default ``now_ms``),
    which each value names. A duplicate whose value names this same group is written
    again as it is (the first metadata wins): after a crash the local RocksDB can hold a
    write whose changelog record never left the process; the command is then applied
    again, and re-writing makes the changelog whole again. A duplicate from another
    command is not logged again: that command's records reached the changelog before its
    offset was committed, or it is applied again first. So every record holding an event
    key is in the one group its value names, which is how an erase finds them
    (:mod:`leadstream.domain.erase`).

    ``horizon_ms`` is the current compaction horizon: an event older than the newest event
    already folded for its (lead, eventType) cannot be told apart from a replay, so it
    counts as a duplicate (retries stay safe; counts never double).

    Each key's value is its lead's id (a new lead gets the next one); the partition's
    index learns the new keys before this returns.
    """
    with store.updating(partition, one_write=True) as index:
        group = now_ms if logged_ms is None else logged_ms
        return _apply_events(store, partition, index, events, horizon_ms, group)


def _apply_events(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    events: Iterable[LeadEvent],
    horizon_ms: int,
    group: int,
) -> ApplyResult:
    # Hot path (every ingested event): locals, no per-event method calls where avoidable.
    duplicates = 0
    puts: dict[bytes, bytes] = {}
    added: list[LeadEvent] = []
    leads: list[int] = []
    value_of = keys.event_value
    folded_through = index.folded_through
    events = events if isinstance(events, list) else list(events)
    # A big batch's leads are looked up at once, after this loop; a few events' here.
    assign = None if len(events) >= BATCH_FROM else index.assign
    for ev in events:
        org, phone, ts = ev.organization_id, ev.phone, ev.occurred_at
        key = keys.event_key(org, phone, ev.event_type, ts)
        # Before the horizon, or before the last compaction's (the horizon can move back:
        # retention raised, another worker's clock), an event may replay a folded one.
        if ts < horizon_ms or ts <= folded_through:
            folded = store.get(partition, keys.compacted_key(org, phone, ev.event_type))
            if folded is not None and ts <= keys.decode_compacted(folded)[1]:
                duplicates += 1
                continue
        if key in puts:
            duplicates += 1  # twice in this call
            continue
        if assign is None:
            puts[key] = b""  # its value once its lead's id is known
        else:
            lead = assign(org, phone)[0]
            puts[key] = value_of(lead, group, ev.metadata)
            leads.append(lead)
        added.append(ev)
    if not puts:
        return ApplyResult(0, duplicates)
    if assign is None:
        # The leads' ids, looked up at once; a new lead's given now (once: the second
        # event of a lead new in this batch finds the id the first was given).
        leads = index.assign_all([ev.organization_id for ev in added], [ev.phone for ev in added])
        for (key, _), ev, lead in zip(list(puts.items()), added, leads, strict=True):
            puts[key] = value_of(lead, group, ev.metadata)
    # One lookup call for the whole batch, not one per event (see PartitionStore.get_many).
    seen = store.get_many(partition, list(puts))
    refs_of = keys.value_refs
    for key, before in zip(list(puts), seen, strict=True):
        if before is not None:
            if group in refs_of(before):
                puts[key] = before  # this command again: log it again, as it is
            else:
                del puts[key]
    new: dict[tuple[str, str], list[tuple[int, int]]] = {}
    inserted = 0
    for ev, lead, before in zip(added, leads, seen, strict=True):
        if before is None:
            inserted += 1
            kind = (ev.organization_id, ev.event_type)
            rows = new.get(kind)
            if rows is None:
                rows = new[kind] = []
            rows.append((lead, ev.occurred_at))
    # The index learns the new keys first: their write then carries its journal entry.
    for (org, event_type), rows in new.items():
        index.events_added(org, event_type, rows)
    if puts:
        store.put_batch(partition, list(puts.items()), created_ms=group)
    return ApplyResult(inserted, duplicates + len(added) - inserted)


def lead_history(
    store: PartitionStore,
    partition: int,
    org: str,
    phone: str,
    *,
    index: PartitionIndex | None = None,
) -> LeadHistory:
    """One lead's history: one scan of its event keys, one of its folded records; and,
    given the partition's index, whether the phone was erased while opted out (its
    suppression, see :mod:`leadstream.domain.erase`)."""
    history = OrgScan(store, partition, org, start=phone).history(phone)
    suppressed = index.suppressed_at(org, phone) if index is not None else None
    if suppressed is None:
        return history
    return LeadHistory(history.times, history.folded, history.metadata, suppressed)


def count_events(
    store: PartitionStore,
    partition: int,
    org: str,
    phone: str,
    event_type: str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int | None = None,
) -> int:
    """Distinct events of ``event_type`` with ``since_ms <= occurredAt <= until_ms`` (see
    :meth:`LeadHistory.count`)."""
    history = lead_history(store, partition, org, phone)
    return history.count(event_type.encode(), since_ms=since_ms, until_ms=until_ms, limit=limit)


@dataclass(frozen=True, slots=True)
class OptState:
    opted_out: bool
    latest_type: str | None
    latest_at: int | None


def latest_opt(
    store: PartitionStore,
    partition: int,
    org: str,
    phone: str,
    *,
    opt_out_type: str,
    opt_in_type: str,
    index: PartitionIndex | None = None,
) -> OptState:
    """The lead's latest opt event (see :meth:`LeadHistory.opt_state`)."""
    history = lead_history(store, partition, org, phone, index=index)
    return history.opt_state(opt_out_type, opt_in_type)


def lead_events(
    store: PartitionStore, partition: int, org: str, phone: str
) -> list[tuple[str, int]]:
    """Every stored (eventType, occurredAt) of a lead in key order (for inspection)."""
    return [
        keys.decode_event_key(k)[2:]
        for k, _ in iter_prefix(store, partition, keys.lead_events_prefix(org, phone))
    ]


def compact_partition(
    store: IndexedStore, partition: int, *, horizon_ms: int, max_future_skew_ms: int
) -> int:
    """Fold every event older than ``horizon_ms`` into its (lead, eventType) record, then
    retire the logged batches whose events are all folded by now.

    Safe to repeat or to interrupt: an event key at or below the folded maximum is already
    counted and is only deleted. Returns how many event keys were removed.

    A logged batch created at T holds events with occurredAt <= T + ``max_future_skew_ms``,
    so once that is below the horizon every one of them was folded by the pass above; its
    changelog record is then tombstoned. Until Kafka's compaction drops it, a restore
    brings those event keys back at or below the folded maximum, where they count nothing
    and the next pass deletes them again.
    """
    with store.updating(partition) as index:
        retire_before = max(horizon_ms - max_future_skew_ms, 0)
        removed = _fold_and_delete(store, partition, horizon_ms, retire_before)
        prefix = keys.logged_batch_prefix()
        upper = prefix + keys.ts_bytes(retire_before)
        for key, _ in list(store.iter_range(partition, prefix, upper)):
            store.delete(partition, key)
        index.compacted(horizon_ms)
    return removed


def _fold_and_delete(
    store: PartitionStore, partition: int, horizon_ms: int, retire_before: int
) -> int:
    """Fold the events before ``horizon_ms``; each folded record keeps the groups that
    still log some of its events (those not retired with this pass: created at or after
    ``retire_before``), for an erase to find them."""
    removed = 0
    stale: list[tuple[bytes, str, str, str, int, int, tuple[int, ...]]] = []
    for key, value in iter_prefix(store, partition, keys.events_kind_prefix()):
        org, phone, event_type, ts = keys.decode_event_key(key)
        if ts < horizon_ms:
            lead, refs = keys.decode_lead_id(value), keys.value_refs(value)
            stale.append((key, org, phone, event_type, ts, lead, refs))
    folded: dict[bytes, tuple[int, int, int, set[int]]] = {}
    for _key, org, phone, event_type, ts, lead, refs in stale:
        ckey = keys.compacted_key(org, phone, event_type)
        if ckey not in folded:
            known = store.get(partition, ckey)
            if known is None:
                folded[ckey] = (0, -1, lead, set())
            else:
                kept = {r for r in keys.compacted_refs(known) if r >= retire_before}
                folded[ckey] = (*keys.decode_compacted(known), kept)
        count, max_ts, lead, groups = folded[ckey]
        groups.update(r for r in refs if r >= retire_before)
        if ts > max_ts:
            # Keys come in time order per (lead, type), so max_ts only grows here.
            folded[ckey] = (count + 1, ts, lead, groups)
    for ckey, (count, max_ts, lead, groups) in folded.items():
        if count > 0:
            store.put(partition, ckey, keys.compacted_value(count, max_ts, lead, sorted(groups)))
    for key, *_ in stale:
        store.delete(partition, key)
        removed += 1
    return removed


@dataclass(slots=True)
class LeadHistory:
    """Everything the index holds on one lead: its events' times per type (ascending) and
    its folded records per type; the filters' and opt-outs' questions are answered here."""

    times: dict[bytes, list[int]]
    folded: dict[bytes, tuple[int, int]]
    # Per type, beside ``times``: each event key's stored metadata (compact JSON or None).
    metadata: dict[bytes, list[bytes | None]] = field(default_factory=dict)
    # The phone was erased at this time while opted out: an opt-out at that instant.
    suppressed_at: int | None = None

    def count(
        self,
        event_type: bytes,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int | None = None,
        where: Callable[[bytes | None], bool] | None = None,
    ) -> int:
        """Distinct events of ``event_type`` with ``since_ms <= occurredAt <= until_ms``,
        at most ``limit`` (a ``minCount`` question needs no more).

        Without ``since_ms`` (sticky) the folded count is included; event keys at or
        below the folded maximum are already in it (they exist only while a compaction
        is between its summary write and its deletes). A window sees event keys only.
        With ``where`` (a metadata condition) only event keys count, those whose stored
        metadata meets it: folded events keep none."""
        times = self.times.get(event_type, ())
        upper = until_ms if until_ms is not None else 2**64
        if where is not None:
            lower = since_ms if since_ms is not None else -1
            metadata = self.metadata.get(event_type) or [None] * len(times)
            count = sum(
                1
                for ts, meta in zip(times, metadata, strict=True)
                if lower <= ts <= upper and where(meta)
            )
        elif since_ms is None:
            count, max_folded = self.folded.get(event_type, (0, -1))
            count += sum(1 for ts in times if max_folded < ts <= upper)
        else:
            count = sum(1 for ts in times if since_ms <= ts <= upper)
        return count if limit is None else min(count, limit)

    def latest(self, event_type: bytes) -> int | None:
        times = self.times.get(event_type)
        latest = times[-1] if times else None
        folded = self.folded.get(event_type)
        if folded is not None:
            latest = folded[1] if latest is None else max(latest, folded[1])
        return latest

    def opt_state(self, opt_out_type: str, opt_in_type: str) -> OptState:
        """The latest opt event by occurredAt; on the same instant opt-out wins. A
        suppression counts as an opt-out at the erase."""
        out_at, in_at = self.latest(opt_out_type.encode()), self.latest(opt_in_type.encode())
        if self.suppressed_at is not None and (out_at is None or self.suppressed_at > out_at):
            out_at = self.suppressed_at
        if out_at is None and in_at is None:
            return OptState(False, None, None)
        if in_at is None or (out_at is not None and out_at >= in_at):
            return OptState(True, opt_out_type, out_at)
        return OptState(False, opt_in_type, in_at)


_NO_LEAD = LeadHistory({}, {})


class OrgScan:
    """Histories of an organization's leads in one partition, for leads asked for in
    ascending phone order: two ordered scans (event keys, folded records) merged with the
    caller's order, instead of several seeks per lead.

    A scan that would have to step over more than ``reseek_after`` keys of leads nobody
    asks for (a small audience among many leads) starts again at the asked lead instead,
    so a lead costs at most one new scan, and a dense audience one step per key."""

    def __init__(
        self,
        store: PartitionStore,
        partition: int,
        org: str,
        *,
        reseek_after: int = 4,
        start: str = "",
    ) -> None:
        events = keys.lead_events_prefix(org, "")[:-1]  # "E org SEP"
        folded = keys.compacted_key(org, "", "")[:-1]  # "C org SEP"
        first = start.encode()
        self._events = _Merge(store, partition, events, first, reseek_after, timed=True)
        self._folded = _Merge(store, partition, folded, first, reseek_after, timed=False)

    def history(self, phone: str) -> LeadHistory:
        """The lead's history; ``phone`` must not sort before the previous call's."""
        key = phone.encode()
        events = self._events.take(key)
        folded = self._folded.take(key)
        if not events and not folded:
            return _NO_LEAD
        return LeadHistory(
            {t: [ts for ts, _ in rows] for t, rows in events.items()},
            {t: keys.decode_compacted(v)[:2] for t, v in folded.items()},
            {t: [keys.event_metadata(v) for _, v in rows] for t, rows in events.items()},
        )


class _Merge:
    """One ordered scan under ``prefix``, consumed lead by lead. Event keys end in
    ``SEP ts(u64)`` and gather as (time, value) pairs per type; folded keys end in the
    type and keep their value."""

    def __init__(
        self,
        store: PartitionStore,
        partition: int,
        prefix: bytes,
        first: bytes,
        reseek_after: int,
        *,
        timed: bool,
    ) -> None:
        self._store = store
        self._partition = partition
        self._prefix = prefix
        self._upper = keys.prefix_upper_bound(prefix)
        self._reseek_after = reseek_after
        self._timed = timed
        self._head: tuple[bytes, bytes, bytes, bytes] | None = None
        self._seek(prefix + first)

    def _seek(self, lower: bytes) -> None:
        self._items = self._store.iter_range(self._partition, lower, self._upper)
        self._advance()

    def _advance(self) -> None:
        skip = len(self._prefix)
        for key, value in self._items:
            if self._timed:
                phone, _, event_type = key[skip:-9].partition(SEP)
                self._head = (phone, event_type, key[-8:], value)
            else:
                phone, _, event_type = key[skip:].partition(SEP)
                self._head = (phone, event_type, value, value)
            return
        self._head = None

    def take(self, phone: bytes) -> dict[bytes, Any]:
        out: dict[bytes, Any] = {}
        steps = 0
        while self._head is not None and self._head[0] < phone:
            if steps == self._reseek_after:
                # Every key of this lead sorts at or after prefix + phone.
                self._seek(self._prefix + phone)
                break
            self._advance()
            steps += 1
        while self._head is not None and self._head[0] == phone:
            _, event_type, tail, value = self._head
            if self._timed:
                out.setdefault(event_type, []).append((_U64.unpack(tail)[0], value))
            else:
                out[event_type] = tail
            self._advance()
        return out
