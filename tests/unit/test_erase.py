"""Erasing a lead (domain/erase.py): every key of the lead, its place in recorded sends,
send history and held audience filters, and its index entries go; a lead erased while
opted out leaves a suppression (a keyed hash, never the phone) that opts the phone out
again when it comes back; and a restore from the changelog, as written or compacted,
does not bring it back. (What the changelog itself keeps of the lead is
test_erase_changelog.py's.)

Every "nothing of the lead is left" check scans every key and value of the partition
for the phone's bytes.
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from pyroaring import BitMap

from leadstream.domain.audience import MemberOp
from leadstream.domain.buckets import Holdout, Split
from leadstream.domain.controls import FrequencyCap
from leadstream.domain.erase import Erased, erase_lead
from leadstream.domain.evaluate import Evaluation, evaluate
from leadstream.domain.explain import (
    Step,
    deliver_send,
    explain_lead,
    read_send_record,
    received_sends,
    record_send,
)
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import (
    LeadHistory,
    apply_events,
    compact_partition,
    lead_history,
)
from leadstream.domain.send_state import apply_members, audience_filter_for, store_filter_part
from leadstream.domain.sends import Counts, EventFilter, SendRules, SendTrigger
from leadstream.index.partition import OptTypes
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.memory import MemoryStore
from leadstream.state.port import PartitionStore, iter_prefix
from leadstream.state.rocksdb import TableStore
from leadstream.wire.records import RECIPIENT_ENTRIES
from tests.support.changelog import ChangelogRecord, FakeTable, kafka_compacted
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

MIN = 60_000
HOUR = 60 * MIN
T = calendar.timegm((2026, 6, 15, 12, 0, 0, 0, 0, 0)) * 1000
NOW = T + 10 * HOUR  # the erase
ORG = "o"
P = 0
OPT_OUT, OPT_IN = "opted_out", "opted_in"
OPT = {"opt_out_type": OPT_OUT, "opt_in_type": OPT_IN}
# No phone is a substring of another: a scan for one's bytes finds only its own.
VICTIM = "+12125550123"
OTHER = "+14155550123"
THIRD = "+447911123456"
EVERYTHING = (b"", b"\xff\xff")
# Each write its own group, as each command is (its broker timestamp).
GROUPS = itertools.count(T)


def event(phone: str, event_type: str, at: int, metadata: Any = None, org: str = ORG) -> LeadEvent:
    encoded = None if metadata is None else msgspec.json.encode(metadata)
    return LeadEvent(org, phone, event_type, at, encoded)


def events(store: IndexedStore, *evs: LeadEvent, now: int = T) -> None:
    apply_events(store, P, evs, horizon_ms=0, now_ms=now)


def members(store: IndexedStore, *ops: MemberOp) -> None:
    apply_members(store, P, ops, group=next(GROUPS))


def add(phone: str, campaign: str = "c1", external_id: str | None = None) -> MemberOp:
    return MemberOp(ORG, campaign, phone, external_id)


def rules(trigger: SendTrigger) -> SendRules:
    return SendRules.of(trigger, None, **OPT)


def run_send(store: IndexedStore, trigger: SendTrigger, *, deliver: bool) -> Evaluation:
    """Materialize ``trigger`` in the partition: its record, and when ``deliver``, its
    committed output (send history, for caps)."""
    r = rules(trigger)
    evaluation = evaluate(store.index(P), r, store=store, partition=P)
    record_send(store, P, r, evaluation, materialized_at=trigger.scheduled_for)
    if deliver:
        deliver_send(store, P, ORG, trigger.send_id)
    return evaluation


def counts(store: IndexedStore, trigger: SendTrigger) -> Counts:
    return evaluate(store.index(P), rules(trigger), store=store, partition=P).counts()


def explain(store: IndexedStore, send: str, phone: str) -> tuple[str, bool, bool]:
    record = read_send_record(store, P, ORG, send)
    assert record is not None
    got = explain_lead(store, P, store.index(P), record, phone, **OPT)
    return got.step, got.sent, got.consistent


def all_items(store: PartitionStore, partition: int = P) -> list[tuple[bytes, bytes]]:
    """Every key but the kept index's."""
    items = store.iter_range(partition, *EVERYTHING)
    return [(bytes(k), bytes(v)) for k, v in items if not k.startswith(keys.index_prefix())]


def holding(store: PartitionStore, phone: str, partition: int = P) -> list[bytes]:
    """Every key whose key or value carries the phone's bytes."""
    needle = phone.encode()
    return [k for k, v in all_items(store, partition) if needle in k or needle in v]


def suppressions(store: PartitionStore, org: str = ORG) -> list[tuple[bytes, bytes]]:
    return list(iter_prefix(store, P, keys.suppression_prefix(org)))


def history(store: IndexedStore, phone: str, org: str = ORG) -> LeadHistory:
    """The lead's history as the per-lead engine sees it (suppression included)."""
    return lead_history(store, P, org, phone, index=store.index(P))


def suppressed_at(store: IndexedStore, phone: str, org: str = ORG) -> int | None:
    at = store.index(P).suppressed_at(org, phone)
    assert history(store, phone, org).suppressed_at == at
    return at


def opted_out(store: IndexedStore, phone: str) -> tuple[bool, bool]:
    """(in the index, in the lead's history)."""
    index = store.index(P)
    lead = index.lead_id(ORG, phone)
    org = index.orgs.get(ORG)
    in_index = lead is not None and org is not None and lead in org.opted_out
    return in_index, history(store, phone).opt_state(OPT_OUT, OPT_IN).opted_out


# --- erase: nothing of the lead is left ------------------------------------------------------

H1 = SendTrigger(ORG, "c1", "h1", T - 3 * HOUR, (EventFilter("include", "click"),))
CAPPED = SendTrigger(ORG, "c1", "s1", T, (), frequency_cap=FrequencyCap(1, 24))
HELD = SendTrigger(ORG, "c1", "s9", T + 24 * HOUR)


def full_lead(store: IndexedStore) -> int:
    """The victim with everything a lead can have; OTHER beside it. Returns its id."""
    members(
        store,
        add(VICTIM, "c1", "x1"),
        add(VICTIM, "c2"),
        add(VICTIM, "c3"),
        add(OTHER, "c1"),
        add(OTHER, "c2", "x2"),
    )
    members(store, MemberOp(ORG, "c3", VICTIM, None, remove=True))  # an L key
    events(
        store,
        event(VICTIM, "buy", T - 30 * HOUR),  # folded below
        event(VICTIM, "buy", T - 29 * HOUR),  # folded below
        event(VICTIM, "buy", T - 2 * HOUR, {"plan": "a"}),
        event(VICTIM, "click", T - HOUR),
        event(OTHER, "buy", T - 2 * HOUR, {"plan": "a"}),
    )
    compact_partition(store, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=0)
    victim = store.index(P).lead_id(ORG, VICTIM)
    assert victim is not None
    assert store.get(P, keys.compacted_key(ORG, VICTIM, "buy")) is not None
    assert store.get(P, keys.lead_key(ORG, VICTIM)) is not None
    # A committed send that messaged the victim only, then one its cap drops it from.
    assert set(run_send(store, H1, deliver=True).recipients) == {victim}
    assert victim in run_send(store, CAPPED, deliver=False).dropped_by_frequency_cap
    assert explain(store, "s1", VICTIM) == (Step.FREQUENCY_CAP, False, True)
    assert explain(store, "h1", VICTIM) == (Step.RECIPIENT, True, True)
    # An audience filter held for a send to come names it by phone (and externalId).
    store_filter_part(
        store,
        P,
        org=ORG,
        send="s9",
        received_at=T,
        seq=0,
        part=0,
        parts=1,
        mode="include",
        external_ids=["x1"],
        phones=[VICTIM, OTHER],
    )
    assert holding(store, VICTIM)
    return victim


def test_erase_leaves_nothing_of_the_lead() -> None:
    store = indexed_memory()
    victim = full_lead(store)
    got = erase_lead(store, P, ORG, VICTIM, now_ms=NOW)
    assert got == Erased(events=4, memberships=2, suppression_kept=False)
    assert holding(store, VICTIM) == []
    index = store.index(P)
    assert index.lead_id(ORG, VICTIM) is None
    assert_indexes_rebuild_equal(store, [P])
    # The recorded sends do not know it any more; OTHER is untouched.
    for send in ("h1", "s1"):
        assert explain(store, send, VICTIM) == (Step.NOT_IN_AUDIENCE, False, True)
    assert explain(store, "s1", OTHER) == (Step.RECIPIENT, True, True)
    for key, value in iter_prefix(store, P, keys.send_record_prefix()):
        record = read_send_record(store, P, ORG, key.split(keys.SEP)[-1].decode())
        assert record is not None and record.step_of(victim) == Step.NOT_IN_AUDIENCE, value
    # Nor the send history (caps), in the store and in the index.
    at, recipients = keys.decode_history(store.get(P, keys.history_key(ORG, "h1")) or b"")
    assert (at, BitMap.deserialize(recipients)) == (H1.scheduled_for, BitMap())
    assert index.orgs[ORG].sends["h1"] == (H1.scheduled_for, BitMap())
    assert received_sends(store, P, ORG, victim) == []
    # The held audience filter lost the phone (the externalId is no phone: kept).
    spec, late = audience_filter_for(store, P, HELD)
    assert spec is not None and late == 0
    assert (spec.phones, spec.external_ids) == (frozenset({OTHER}), frozenset({"x1"}))
    # The campaigns count only OTHER now.
    assert counts(store, CAPPED) == Counts(audience=1)
    assert counts(store, SendTrigger(ORG, "c2", "x", T)) == Counts(audience=1)
    # Safe to repeat: nothing more to erase.
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW + 1) == Erased(0, 0, False)
    assert holding(store, VICTIM) == []
    assert_indexes_rebuild_equal(store, [P])


def test_a_phone_that_comes_back_is_a_new_lead_the_cap_does_not_count() -> None:
    store = indexed_memory()
    victim = full_lead(store)
    erase_lead(store, P, ORG, VICTIM, now_ms=NOW)
    members(store, add(VICTIM, "c1"))
    again = store.index(P).lead_id(ORG, VICTIM)
    assert again is not None and again > victim
    assert received_sends(store, P, ORG, again) == []
    assert counts(store, CAPPED) == Counts(audience=2)  # nobody capped
    assert counts(store, H1) == Counts(audience=2, dropped_by_event_filter=2)  # no click left
    assert history(store, VICTIM).times == {}
    assert history(store, VICTIM).folded == {}
    assert_indexes_rebuild_equal(store, [P])
    store.drop([P])  # a restart: the same ids again
    assert store.index(P).lead_id(ORG, VICTIM) == again


def test_an_erase_between_materialization_and_commit_is_not_in_the_send_history() -> None:
    """The record is written at materialization, the history (H) only once the output is
    committed (deliver_send reads the record): an erase in between is respected."""
    store = indexed_memory()
    members(store, add(VICTIM), add(OTHER))
    victim = store.index(P).lead_id(ORG, VICTIM)
    evaluation = run_send(store, SendTrigger(ORG, "c1", "h2", T - HOUR), deliver=False)
    assert victim in evaluation.recipients
    erase_lead(store, P, ORG, VICTIM, now_ms=NOW)
    deliver_send(store, P, ORG, "h2")
    _, recipients = keys.decode_history(store.get(P, keys.history_key(ORG, "h2")) or b"")
    assert victim not in BitMap.deserialize(recipients)
    assert victim not in store.index(P).orgs[ORG].sends["h2"][1]
    assert len(store.index(P).orgs[ORG].sends["h2"][1]) == 1
    assert_indexes_rebuild_equal(store, [P])


def test_erase_is_per_organization() -> None:
    store = indexed_memory()
    members(store, add(VICTIM), MemberOp("p", "c1", VICTIM, None))
    events(store, event(VICTIM, "buy", T), event(VICTIM, "buy", T, org="p"))
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW) == Erased(1, 1, False)
    kept = holding(store, VICTIM)
    # Batch markers and the kept index (I) may hold both organizations' leads.
    assert kept and all(k.split(keys.SEP)[1] == b"p" for k in kept if k[:1] not in b"BI")
    assert store.index(P).lead_id("p", VICTIM) is not None
    assert history(store, VICTIM, "p").count(b"buy") == 1
    assert_indexes_rebuild_equal(store, [P])


def test_erase_of_an_unknown_phone_is_zeros_and_still_cleans_held_filters() -> None:
    store = indexed_memory()
    members(store, add(OTHER))
    store_filter_part(
        store,
        P,
        org=ORG,
        send="s9",
        received_at=T,
        seq=0,
        part=0,
        parts=1,
        mode="exclude",
        external_ids=[],
        phones=[VICTIM, OTHER],
    )
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW) == Erased(0, 0, False)
    assert holding(store, VICTIM) == []
    assert suppressions(store) == []
    assert_indexes_rebuild_equal(store, [P])


def test_erase_of_a_lead_with_events_only_and_one_with_a_membership_only() -> None:
    store = indexed_memory()
    events(store, event(VICTIM, "buy", T), event(VICTIM, "buy", T + 1), event(OTHER, "buy", T))
    members(store, add(THIRD))
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW) == Erased(2, 0, False)
    assert erase_lead(store, P, ORG, THIRD, now_ms=NOW) == Erased(0, 1, False)
    assert holding(store, VICTIM) == holding(store, THIRD) == []
    assert_indexes_rebuild_equal(store, [P])
    # Ids are never given twice, also after a restart.
    store.drop([P])
    members(store, add(VICTIM))
    assert store.index(P).lead_id(ORG, VICTIM) == 3
    assert_indexes_rebuild_equal(store, [P])


# --- suppression -----------------------------------------------------------------------------


def opted_out_then_erased(store: IndexedStore, *, folded: bool) -> None:
    members(store, add(VICTIM), add(OTHER))
    if folded:
        events(store, event(VICTIM, OPT_OUT, T - 30 * HOUR))
        compact_partition(store, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=0)
        assert list(iter_prefix(store, P, keys.lead_events_prefix(ORG, VICTIM))) == []
    else:
        events(store, event(VICTIM, OPT_OUT, T - 2 * HOUR))
    assert opted_out(store, VICTIM) == (True, True)
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW) == Erased(1, 1, True)


@pytest.mark.parametrize("folded", [False, True])
@pytest.mark.parametrize("back_as", ["member", "event", "old event"])
def test_a_phone_erased_while_opted_out_comes_back_opted_out(folded: bool, back_as: str) -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=folded)
    assert holding(store, VICTIM) == []
    assert len(suppressions(store)) == 1
    assert store.get(P, keys.hash_key_key()) is not None
    assert suppressed_at(store, VICTIM) == NOW
    assert suppressed_at(store, OTHER) is None
    assert_indexes_rebuild_equal(store, [P])
    if back_as == "member":
        members(store, add(VICTIM))
    elif back_as == "event":
        events(store, event(VICTIM, "buy", NOW + HOUR), now=NOW + HOUR)
    else:  # an event from before the erase, arriving late
        events(store, event(VICTIM, "buy", T - HOUR), now=NOW + HOUR)
    assert opted_out(store, VICTIM) == (True, True)
    state = history(store, VICTIM).opt_state(OPT_OUT, OPT_IN)
    assert state.latest_at == NOW
    assert opted_out(store, OTHER) == (False, False)
    assert_indexes_rebuild_equal(store, [P])
    members(store, add(VICTIM))
    trigger = SendTrigger(ORG, "c1", "s1", NOW + 2 * HOUR)
    assert counts(store, trigger) == Counts(audience=2, opted_out=1)
    run_send(store, trigger, deliver=False)
    step, sent, consistent = explain(store, "s1", VICTIM)
    assert (step, sent, consistent) == (Step.OPTED_OUT, False, True)
    record = read_send_record(store, P, ORG, "s1")
    assert record is not None
    detail = explain_lead(store, P, store.index(P), record, VICTIM, **OPT).detail
    assert "suppressedAt" in detail and VICTIM not in str(detail)


@pytest.mark.parametrize(
    ("opt_in_at", "lifted"),
    [(T - HOUR, False), (NOW - 1, False), (NOW, False), (NOW + 1, True), (NOW + HOUR, True)],
)
def test_an_opt_in_after_the_erase_lifts_the_suppression(opt_in_at: int, lifted: bool) -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=False)
    events(store, event(VICTIM, OPT_IN, opt_in_at), now=NOW + HOUR)
    assert opted_out(store, VICTIM) == (not lifted, not lifted)
    assert_indexes_rebuild_equal(store, [P])
    # In either order: the opt-in first known, then the phone re-added as a member.
    store.drop([P])
    members(store, add(VICTIM))
    assert opted_out(store, VICTIM) == (not lifted, not lifted)
    assert_indexes_rebuild_equal(store, [P])


def test_an_opt_out_after_the_lifting_opt_in_wins_again() -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=False)
    events(store, event(VICTIM, OPT_IN, NOW + 1), event(VICTIM, OPT_OUT, NOW + 2))
    assert opted_out(store, VICTIM) == (True, True)
    assert_indexes_rebuild_equal(store, [P])


@pytest.mark.parametrize(
    "history",
    [
        [],
        [(OPT_OUT, T - 2 * HOUR), (OPT_IN, T - HOUR)],
        [(OPT_IN, T - 2 * HOUR)],
        [("buy", T - HOUR)],
    ],
)
def test_erase_when_not_opted_out_keeps_no_suppression(history: list[tuple[str, int]]) -> None:
    store = indexed_memory()
    members(store, add(VICTIM))
    events(store, *(event(VICTIM, t, at) for t, at in history))
    assert opted_out(store, VICTIM) == (False, False)
    got = erase_lead(store, P, ORG, VICTIM, now_ms=NOW)
    assert got == Erased(len(history), 1, False)
    assert suppressions(store) == []
    assert holding(store, VICTIM) == []
    members(store, add(VICTIM))
    assert opted_out(store, VICTIM) == (False, False)
    assert_indexes_rebuild_equal(store, [P])


def test_a_suppressed_phone_erased_again_is_suppressed_from_the_second_erase() -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=False)
    members(store, add(VICTIM))  # back, opted out by the suppression
    later = NOW + 5 * HOUR
    assert erase_lead(store, P, ORG, VICTIM, now_ms=later) == Erased(0, 1, True)
    assert len(suppressions(store)) == 1
    assert suppressed_at(store, VICTIM) == later
    events(store, event(VICTIM, OPT_IN, NOW + HOUR))  # after the first erase only
    assert opted_out(store, VICTIM) == (True, True)
    events(store, event(VICTIM, OPT_IN, later + 1))
    assert opted_out(store, VICTIM) == (False, False)
    assert_indexes_rebuild_equal(store, [P])


def test_an_erase_after_the_lead_came_back_and_opted_in_takes_the_suppression_away() -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=False)
    members(store, add(VICTIM))  # back, opted out by the suppression
    events(store, event(VICTIM, OPT_IN, NOW + HOUR))  # then consents again
    assert opted_out(store, VICTIM) == (False, False)
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW + 2 * HOUR) == Erased(1, 1, False)
    assert suppressions(store) == []
    members(store, add(VICTIM))  # back once more: nothing remembers the first opt-out
    assert opted_out(store, VICTIM) == (False, False)
    assert_indexes_rebuild_equal(store, [P])


def test_a_second_erase_of_a_suppressed_phone_changes_nothing() -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=False)
    before = all_items(store)
    got = erase_lead(store, P, ORG, VICTIM, now_ms=NOW + HOUR)
    assert (got.events, got.memberships) == (0, 0)
    assert got.suppression_kept  # the same answer as the first time
    assert all_items(store) == before
    assert suppressed_at(store, VICTIM) == NOW


def test_suppressions_are_per_organization() -> None:
    store = indexed_memory()
    opted_out_then_erased(store, folded=False)
    members(store, MemberOp("p", "c1", VICTIM, None))
    index = store.index(P)
    lead = index.lead_id("p", VICTIM)
    assert lead is not None and lead not in index.orgs["p"].opted_out
    assert suppressed_at(store, VICTIM, "p") is None


# --- a restore from the changelog ------------------------------------------------------------


def restore(target: FakeTable, records: list[ChangelogRecord]) -> None:
    """Write ``records`` to the target's RocksDB behind the port, as LeadStore's
    apply_changelog_batch does (logged batches expanded)."""
    for r in records:
        db = target.data._db_for_partition(r.partition)  # noqa: SLF001
        for key, value in keys.expand_changelog_record(r.key, r.value):
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)


def lead_ids_of_keys(store: PartitionStore, phone: str) -> set[int]:
    """The lead ids the phone's E, C, M and L keys carry."""
    ids = set()
    for key, value in all_items(store):
        if phone.encode() not in key:
            continue
        if key[:1] in (b"E", b"M", b"L"):
            ids.add(keys.decode_lead_id(value))
        elif key[:1] == b"C":
            ids.add(keys.decode_compacted(value)[2])
    return ids


@pytest.mark.parametrize("log", ["as written", "compacted"])
@pytest.mark.parametrize("was_opted_out", [False, True])
@pytest.mark.parametrize("comes_back", [False, True])
def test_a_restore_from_the_changelog_does_not_bring_an_erased_lead_back(
    tables: Callable[[str], FakeTable], log: str, was_opted_out: bool, comes_back: bool
) -> None:
    table = tables("live")
    live = indexed_memory(inner=TableStore(table))
    members(live, add(VICTIM, "c1", "x1"), add(OTHER), add(THIRD, "c2"))
    # Old events, folded below (and their logged batch retired).
    events(
        live,
        event(VICTIM, "buy", T - 30 * HOUR),
        event(OTHER, "buy", T - 30 * HOUR),
        now=T - 30 * HOUR,
    )
    # One logged batch mixing the victim's events with the others'.
    batch = [
        event(VICTIM, "buy", T - 2 * HOUR, {"plan": "a"}),  # sent again if it comes back
        event(VICTIM, "click", T - 2 * HOUR),
        event(OTHER, "buy", T - 2 * HOUR, {"plan": "a"}),
        event(THIRD, "buy", T - HOUR),
    ]
    if was_opted_out:
        batch.append(event(VICTIM, OPT_OUT, T - 90 * MIN))
    events(live, *batch)
    compact_partition(live, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=0)
    victim = live.index(P).lead_id(ORG, VICTIM)
    assert victim is not None
    sent = run_send(live, SendTrigger(ORG, "c1", "h1", T - HOUR), deliver=True)
    assert (victim in sent.recipients) is not was_opted_out
    assert erase_lead(live, P, ORG, VICTIM, now_ms=NOW).suppression_kept is was_opted_out
    events(live, event(OTHER, "buy", NOW), now=NOW)  # life goes on
    if comes_back:
        events(live, event(VICTIM, "buy", T - 2 * HOUR, {"plan": "b"}), now=NOW)
        members(live, add(VICTIM, "c2"))
    assert_indexes_rebuild_equal(live, [P])

    records = list(table.changelog)
    if log == "compacted":
        records = kafka_compacted(records)
    fresh = tables("restored")
    restore(fresh, records)
    restored = TableStore(fresh)
    # Replayed as written, the old batches bring the lead's keys back and the erase's
    # tombstones take them away again; compacted, the changelog holds nothing of it (its
    # batches were logged again without it): nothing is left for the index build to purge.
    assert victim not in lead_ids_of_keys(restored, VICTIM)
    rebuilt = indexed_memory(inner=restored)
    index = rebuilt.index(P)
    assert fresh.changelog == []
    if not comes_back:
        assert holding(restored, VICTIM) == []
        assert index.lead_id(ORG, VICTIM) is None
    assert index.snapshot() == live.index(P).snapshot()
    assert index.next_id == live.index(P).next_id
    assert all_items(restored) == all_items(live)
    # Its events count nowhere: not in its history, not in a send.
    got = history(rebuilt, VICTIM)
    assert got.count(b"buy") == (1 if comes_back else 0)
    assert got.count(OPT_OUT.encode()) == 0
    for trigger in (
        SendTrigger(ORG, "c1", "s1", NOW, (EventFilter("include", "buy", None, 2),)),
        SendTrigger(ORG, "c2", "s2", NOW, (EventFilter("include", "buy"),)),
        SendTrigger(ORG, "c1", "s3", NOW, frequency_cap=FrequencyCap(1, 48)),
    ):
        assert counts(rebuilt, trigger) == counts(live, trigger)
    # The suppression survives the restore: the phone comes back opted out.
    if not comes_back:
        for store in (live, rebuilt):
            members(store, add(VICTIM))
            assert opted_out(store, VICTIM) == (was_opted_out, was_opted_out)
        assert rebuilt.index(P).snapshot() == live.index(P).snapshot()
    assert_indexes_rebuild_equal(rebuilt, [P])
    # A second build (a restart of the new owner) finds nothing more to purge.
    rebuilt.drop([P])
    tombstones = len(fresh.changelog)
    assert rebuilt.index(P).snapshot() == live.index(P).snapshot()
    assert len(fresh.changelog) == tombstones


def test_a_configured_suppression_key_is_not_kept_in_the_state() -> None:
    """LEADSTREAM_SUPPRESSION_KEY: the same key on every worker, so no K key; a store
    opened with it again knows the suppression, one with another key cannot test a
    phone against it."""
    inner = MemoryStore()
    secret = b"s" * 32

    def opened(hash_key: bytes) -> IndexedStore:
        return IndexedStore(inner, OptTypes(OPT_OUT, OPT_IN), RECIPIENT_ENTRIES, hash_key=hash_key)

    store = opened(secret)
    opted_out_then_erased(store, folded=False)
    assert store.get(P, keys.hash_key_key()) is None
    assert len(suppressions(store)) == 1
    assert holding(store, VICTIM) == []
    again = opened(secret)
    members(again, add(VICTIM))
    assert opted_out(again, VICTIM) == (True, True)
    assert again.index(P).snapshot() == opened(secret).index(P).snapshot()
    other = opened(b"t" * 32)
    assert other.index(P).suppressed_at(ORG, VICTIM) is None


def test_erase_counts_an_event_both_folded_and_restored_once() -> None:
    """BUG: between a changelog restore (or an interrupted compaction) and the next
    compaction, an event can be both in its lead's folded record and an event key again
    (at or below the folded maximum: the index and the lead's history count it once).
    erase_lead's answer counts it twice: events=2 for a lead with one distinct event."""
    store = indexed_memory()
    events(store, event(VICTIM, "buy", T - 30 * HOUR))
    compact_partition(store, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=0)
    lead = store.index(P).lead_id(ORG, VICTIM)
    assert lead is not None
    # The restore brings the folded event's key back (its logged batch was not retired).
    store._inner.put(
        P, keys.event_key(ORG, VICTIM, "buy", T - 30 * HOUR), keys.event_value(lead, T)
    )
    store.drop([P])
    assert history(store, VICTIM).count(b"buy") == 1
    assert erase_lead(store, P, ORG, VICTIM, now_ms=NOW) == Erased(1, 0, False)


def test_an_erased_lead_leaves_the_holdout_of_the_recorded_sends() -> None:
    """Every bitmap of a send's record loses the erased lead, the holdout's too."""
    store = indexed_memory()
    phones = [f"+1212555{i:04d}" for i in range(200)]
    members(store, *(add(p) for p in phones))
    trigger = dataclasses.replace(
        SendTrigger(ORG, "c1", "held", T), holdout=Holdout(50), splits=(Split("a", 100),)
    )
    evaluation = run_send(store, trigger, deliver=True)
    assert evaluation.held_out and evaluation.recipients
    lead = next(iter(evaluation.held_out))
    name = store.index(P).name_of(lead)
    assert name is not None
    phone = name[1]
    assert explain(store, "held", phone)[0] == Step.HELD_OUT
    erase_lead(store, P, ORG, phone, now_ms=NOW)
    record = read_send_record(store, P, ORG, "held")
    assert record is not None and lead not in BitMap.deserialize(record.held_out)
    assert explain(store, "held", phone)[0] == Step.NOT_IN_AUDIENCE
