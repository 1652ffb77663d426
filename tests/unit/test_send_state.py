"""Per-partition send state (domain/send_state.py) over a real MemoryStore.

docs/contract.md, section 3: the first trigger per (organizationId, sendId) wins; a trigger is held until
``scheduledFor - lead`` (late ones at once); the latest complete audience filter applies.
"""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from leadstream.domain.audience import MemberOp
from leadstream.domain.controls import FrequencyCap
from leadstream.domain.send_state import (
    CAP_SETTLE_MS,
    Claim,
    PendingRecord,
    apply_members,
    audience_filter_for,
    claim_trigger,
    due_sends,
    finish_send,
    is_done,
    ready_at,
    store_filter_part,
    store_pending,
)
from leadstream.domain.sends import (
    FILTER_DEADLINE_MS,
    AudienceFilterSpec,
    EventFilter,
    SendTrigger,
    campaign_members,
    parse_trigger,
    split_filter,
)
from leadstream.index.table import IndexedStore
from tests.support.stores import indexed_memory

MIN = 60_000
LEAD = 60_000
T = calendar.timegm((2026, 5, 12, 18, 0, 0, 0, 0, 0)) * 1000
ORG = "42"
P = 3  # any partition: every function takes it explicitly


def trigger(send: str = "s1", *, org: str = ORG, at: int = T, **kw: Any) -> SendTrigger:
    return SendTrigger(org, "c1", send, at, **kw)


def pending(send: str = "s1", *, received: int = T - 10 * MIN, **kw: Any) -> PendingRecord:
    t = trigger(send, **kw)
    return PendingRecord(t, received, received > t.scheduled_for)


def due_ids(store: IndexedStore, now: int, partition: int = P) -> list[str]:
    return [r.trigger.send_id for r in due_sends(store, partition, now_ms=now, lead_ms=LEAD)]


# --- claim ---------------------------------------------------------------------------------


def test_claim_first_repeat_duplicate() -> None:
    store = indexed_memory()
    first = pending(event_filters=(EventFilter("exclude", "buy"),))
    assert claim_trigger(store, P, first) is Claim.FIRST
    # The same trigger again (a retry), even received later: harmless repeat.
    again = PendingRecord(first.trigger, first.received_at + 5000, False)
    assert claim_trigger(store, P, again) is Claim.REPEAT
    # Another trigger for the same send: different time, filters, campaign or switch.
    for other in (
        trigger(at=T + 1, event_filters=(EventFilter("exclude", "buy"),)),
        trigger(event_filters=(EventFilter("include", "buy"),)),
        trigger(),
        SendTrigger(ORG, "c2", "s1", T, (EventFilter("exclude", "buy"),)),
        SendTrigger(ORG, "c1", "s1", T, (EventFilter("exclude", "buy"),), True),
    ):
        assert claim_trigger(store, P, PendingRecord(other, T - MIN, False)) is Claim.DUPLICATE
    # The first one still owns the send.
    assert claim_trigger(store, P, first) is Claim.REPEAT


def test_claim_is_per_organization_and_send() -> None:
    store = indexed_memory()
    assert claim_trigger(store, P, pending("s1")) is Claim.FIRST
    assert claim_trigger(store, P, pending("s2")) is Claim.FIRST
    assert claim_trigger(store, P, pending("s1", org="420")) is Claim.FIRST
    assert claim_trigger(store, P, pending("s", org="42")) is Claim.FIRST
    assert claim_trigger(store, P, pending("s1", at=T + 1)) is Claim.DUPLICATE


def test_claim_integer_and_string_ids_are_one_send() -> None:
    store = indexed_memory()
    doc = {
        "organizationId": 42,
        "campaignId": 7,
        "sendId": 9,
        "scheduledFor": "2026-05-12T18:00:00Z",
    }
    a = parse_trigger(doc)
    b = parse_trigger({**doc, "organizationId": "42", "campaignId": "7", "sendId": "9"})
    assert claim_trigger(store, P, PendingRecord(a, T - MIN, False)) is Claim.FIRST
    assert claim_trigger(store, P, PendingRecord(b, T - MIN, False)) is Claim.REPEAT


# --- pending triggers ----------------------------------------------------------------------


def test_store_pending_is_idempotent_and_first_one_stays() -> None:
    store = indexed_memory()
    rec = pending()
    assert store_pending(store, P, rec) is True
    assert store_pending(store, P, rec) is False
    assert store_pending(store, P, pending(at=T - 30 * MIN)) is False
    assert due_sends(store, P, now_ms=T, lead_ms=LEAD) == [rec]


def test_store_pending_refused_after_finish_send() -> None:
    store = indexed_memory()
    assert store_pending(store, P, pending()) is True
    finish_send(store, P, ORG, "s1")
    assert is_done(store, P, ORG, "s1")
    assert due_ids(store, T + MIN) == []
    assert store_pending(store, P, pending()) is False
    assert due_ids(store, T + MIN) == []
    # Only that send of that organization is done.
    assert not is_done(store, P, ORG, "s2")
    assert not is_done(store, P, "420", "s1")
    assert not is_done(store, P + 1, ORG, "s1")
    assert store_pending(store, P, pending("s1", org="420")) is True


def test_due_exactly_at_scheduled_for_minus_lead() -> None:
    store = indexed_memory()
    store_pending(store, P, pending())
    assert due_ids(store, T - LEAD - 1) == []
    assert due_ids(store, T - LEAD) == ["s1"]
    assert due_ids(store, T + 10 * MIN) == ["s1"]
    # Due again until finished (the caller finishes after committing output).
    assert due_ids(store, T - LEAD) == ["s1"]
    finish_send(store, P, ORG, "s1")
    assert due_ids(store, T + 10 * MIN) == []


def test_due_respects_the_lead() -> None:
    store = indexed_memory()
    store_pending(store, P, pending())
    assert due_sends(store, P, now_ms=T - 1, lead_ms=0) == []
    assert len(due_sends(store, P, now_ms=T, lead_ms=0)) == 1
    assert len(due_sends(store, P, now_ms=T - 5 * MIN, lead_ms=5 * MIN)) == 1


def test_late_trigger_is_due_at_once() -> None:
    store = indexed_memory()
    late = pending("late", at=T - 10 * MIN, received=T - 9 * MIN)
    assert late.late
    store_pending(store, P, late)
    assert due_ids(store, T - 9 * MIN) == ["late"]
    # The late flag alone makes it due, whatever the clock says.
    store2 = indexed_memory()
    store_pending(store2, P, PendingRecord(trigger("x", at=T + 60 * MIN), T, True))
    assert due_ids(store2, T) == ["x"]


def test_a_capped_send_whose_trigger_came_at_the_last_moment_waits_to_settle() -> None:
    """Triggers published together reach a partition in no fixed order: a capped send that
    is due on arrival waits CAP_SETTLE_MS, so that the earlier-scheduled one goes first."""
    cap = FrequencyCap(1, 24)
    store = indexed_memory()
    arrived = T + 5 * MIN
    store_pending(store, P, pending("b", at=T + MIN, received=arrived, frequency_cap=cap))
    assert due_ids(store, arrived) == []
    assert due_ids(store, arrived + CAP_SETTLE_MS - 1) == []
    store_pending(store, P, pending("a", at=T, received=arrived + 500))  # uncapped: at once
    assert due_ids(store, arrived + 500) == ["a"]
    assert due_ids(store, arrived + CAP_SETTLE_MS) == ["a", "b"]  # earliest scheduled first
    # Held ahead of its moment, a capped send is due at its moment, not later.
    early = pending("c", at=T, received=T - 60 * MIN, frequency_cap=cap)
    assert ready_at(early, lead_ms=LEAD) == T - LEAD


def test_due_sends_are_ordered_by_due_time_then_ids() -> None:
    store = indexed_memory()
    for rec in (
        pending("c", at=T + 3 * MIN),
        pending("b", at=T + 1 * MIN),
        pending("z", at=T),
        pending("a", at=T),
        pending("m", org="41", at=T),
        pending("later", at=T + 60 * MIN),
    ):
        store_pending(store, P, rec)
    got = due_sends(store, P, now_ms=T + 5 * MIN, lead_ms=LEAD)
    assert [(r.trigger.organization_id, r.trigger.send_id) for r in got] == [
        ("41", "m"),
        (ORG, "a"),
        (ORG, "z"),
        (ORG, "b"),
        (ORG, "c"),
    ]


def test_pending_is_per_partition() -> None:
    store = indexed_memory()
    store_pending(store, P, pending())
    assert due_ids(store, T, partition=P + 1) == []
    assert store_pending(store, P + 1, pending()) is True


def test_pending_record_round_trips_filters_and_switch() -> None:
    store = indexed_memory()
    t = SendTrigger(
        ORG,
        "c1",
        "s1",
        T,
        (EventFilter("include", "a", 30, 2), EventFilter("exclude", "b")),
        True,
    )
    rec = PendingRecord(t, T - MIN, False)
    store_pending(store, P, rec)
    assert due_sends(store, P, now_ms=T, lead_ms=LEAD) == [rec]


# --- audience filter parts -----------------------------------------------------------------


def put_part(
    store: IndexedStore,
    *,
    received_at: int,
    seq: int,
    part: int,
    parts: int,
    mode: str = "include",
    ext: list[str] | None = None,
    phones: list[str] | None = None,
    send: str = "s1",
    org: str = ORG,
    partition: int = P,
) -> None:
    store_filter_part(
        store,
        partition,
        org=org,
        send=send,
        received_at=received_at,
        seq=seq,
        part=part,
        parts=parts,
        mode=mode,
        external_ids=ext or [],
        phones=phones or [],
    )


def test_incomplete_filter_is_ignored_until_its_last_part() -> None:
    store = indexed_memory()
    at = T - 60 * MIN
    t = trigger()
    put_part(store, received_at=at, seq=1, part=0, parts=3, ext=["a"])
    put_part(store, received_at=at, seq=1, part=2, parts=3, phones=["+15551230001"])
    assert audience_filter_for(store, P, t) == (None, 0)
    put_part(store, received_at=at, seq=1, part=1, parts=3, ext=["b"])
    assert audience_filter_for(store, P, t) == (
        AudienceFilterSpec("include", frozenset({"a", "b"}), frozenset({"+15551230001"})),
        0,
    )


def test_newer_incomplete_filter_does_not_replace_older_complete_one() -> None:
    store = indexed_memory()
    t = trigger()
    put_part(store, received_at=T - 60 * MIN, seq=1, part=0, parts=1, mode="exclude", ext=["a"])
    put_part(store, received_at=T - 30 * MIN, seq=2, part=0, parts=2, ext=["b"])
    assert audience_filter_for(store, P, t) == (AudienceFilterSpec("exclude", frozenset({"a"})), 0)
    put_part(store, received_at=T - 30 * MIN, seq=2, part=1, parts=2, ext=["c"])
    assert audience_filter_for(store, P, t) == (
        AudienceFilterSpec("include", frozenset({"b", "c"})),
        0,
    )


def test_filter_deadline_through_state() -> None:
    store = indexed_memory()
    t = trigger()
    deadline = T - FILTER_DEADLINE_MS
    put_part(store, received_at=deadline, seq=1, part=0, parts=1, ext=["on-time"])
    put_part(store, received_at=deadline + 1, seq=2, part=0, parts=1, ext=["late"])
    # An incomplete late filter is not a filter yet: not counted.
    put_part(store, received_at=deadline + 2, seq=3, part=0, parts=2, ext=["half"])
    assert audience_filter_for(store, P, t) == (
        AudienceFilterSpec("include", frozenset({"on-time"})),
        1,
    )


def test_same_receive_time_higher_seq_wins() -> None:
    store = indexed_memory()
    t = trigger()
    at = T - 60 * MIN
    put_part(store, received_at=at, seq=7, part=0, parts=1, ext=["seven"])
    put_part(store, received_at=at, seq=3, part=0, parts=1, ext=["three"])
    spec, late = audience_filter_for(store, P, t)
    assert spec == AudienceFilterSpec("include", frozenset({"seven"}))
    assert late == 0


def test_filters_are_per_organization_send_and_partition() -> None:
    store = indexed_memory()
    at = T - 60 * MIN
    put_part(store, received_at=at, seq=1, part=0, parts=1, ext=["mine"])
    put_part(store, received_at=at, seq=2, part=0, parts=1, ext=["other-send"], send="s10")
    put_part(store, received_at=at, seq=3, part=0, parts=1, ext=["other-org"], org="420")
    put_part(store, received_at=at, seq=4, part=0, parts=1, ext=["other-p"], partition=P + 1)
    assert audience_filter_for(store, P, trigger()) == (
        AudienceFilterSpec("include", frozenset({"mine"})),
        0,
    )
    assert audience_filter_for(store, P, trigger("s10"))[0] == AudienceFilterSpec(
        "include", frozenset({"other-send"})
    )
    assert audience_filter_for(store, P, trigger(org="420"))[0] == AudienceFilterSpec(
        "include", frozenset({"other-org"})
    )


def test_finish_send_clears_pending_and_filters_of_that_send_only() -> None:
    store = indexed_memory()
    at = T - 60 * MIN
    store_pending(store, P, pending("s1"))
    store_pending(store, P, pending("s2"))
    put_part(store, received_at=at, seq=1, part=0, parts=1, ext=["a"])
    put_part(store, received_at=at, seq=2, part=0, parts=1, ext=["b"], send="s2")
    finish_send(store, P, ORG, "s1")
    assert is_done(store, P, ORG, "s1")
    assert audience_filter_for(store, P, trigger("s1")) == (None, 0)
    assert audience_filter_for(store, P, trigger("s2"))[0] == AudienceFilterSpec(
        "include", frozenset({"b"})
    )
    assert due_ids(store, T) == ["s2"]
    # A filter arriving after the send is done is not kept.
    put_part(store, received_at=at, seq=3, part=0, parts=1, ext=["c"])
    assert audience_filter_for(store, P, trigger("s1")) == (None, 0)
    # Finishing twice is harmless.
    finish_send(store, P, ORG, "s1")
    assert is_done(store, P, ORG, "s1")


@pytest.mark.parametrize("rows", [1, 2, 3, 5000])
def test_split_filter_parts_reassemble(rows: int) -> None:
    ext = ["a", "b", "c", "d", "e"]
    phones = ["+15551230001", "+15551230002"]
    parts = split_filter(ext, phones, rows)
    assert all(len(e) + len(p) <= rows for e, p in parts)
    assert [x for e, _ in parts for x in e] == ext
    assert [x for _, p in parts for x in p] == phones
    store = indexed_memory()
    for index, (e, p) in enumerate(parts):
        put_part(
            store, received_at=T - 10 * MIN, seq=1, part=index, parts=len(parts), ext=e, phones=p
        )
    assert audience_filter_for(store, P, trigger()) == (
        AudienceFilterSpec("include", frozenset(ext), frozenset(phones)),
        0,
    )


def test_split_filter_of_nothing_is_one_empty_part() -> None:
    assert split_filter([], [], 5_000) == [([], [])]
    store = indexed_memory()
    put_part(store, received_at=T - 10 * MIN, seq=1, part=0, parts=1, mode="include")
    # An include list naming nobody in this partition: a filter that keeps nobody.
    assert audience_filter_for(store, P, trigger()) == (AudienceFilterSpec("include"), 0)


# --- audience members ----------------------------------------------------------------------

PH1, PH2, PH3 = "+15551230001", "+15551230002", "+15551230003"


def members(store: IndexedStore, org: str, campaign: str, partition: int = P) -> dict[str, Any]:
    return dict(campaign_members(store, partition, org, campaign))


def test_apply_members_add_update_remove() -> None:
    store = indexed_memory()
    n = apply_members(
        store,
        P,
        [
            MemberOp(ORG, "c1", PH1, "x1"),
            MemberOp(ORG, "c1", PH2, None),
            MemberOp(ORG, "c1", PH3, "x3"),
        ],
        group=1,
    )
    assert n == 3
    assert members(store, ORG, "c1") == {PH1: "x1", PH2: None, PH3: "x3"}
    apply_members(
        store, P, [MemberOp(ORG, "c1", PH1, "X1-new"), MemberOp(ORG, "c1", PH2, "x2")], group=2
    )
    assert members(store, ORG, "c1") == {PH1: "X1-new", PH2: "x2", PH3: "x3"}
    n = apply_members(
        store,
        P,
        [MemberOp(ORG, "c1", PH3, None, remove=True), MemberOp(ORG, "c1", PH3, None, remove=True)],
        group=3,
    )
    assert n == 2
    assert members(store, ORG, "c1") == {PH1: "X1-new", PH2: "x2"}
    # Removing a phone that was never a member is harmless.
    apply_members(store, P, [MemberOp(ORG, "c1", "+15559999999", None, remove=True)], group=4)
    assert members(store, ORG, "c1") == {PH1: "X1-new", PH2: "x2"}
    # Re-adding after a remove works.
    apply_members(store, P, [MemberOp(ORG, "c1", PH3, "back")], group=5)
    assert members(store, ORG, "c1")[PH3] == "back"


def test_external_id_kept_exactly() -> None:
    store = indexed_memory()
    odd = ["\x00", "ä€😀", "Ext1", "ext1 ", "x" * 256]
    for i, ext in enumerate(odd):
        apply_members(store, P, [MemberOp(ORG, "c1", f"+1555000{i:04d}", ext)], group=6)
    assert sorted(members(store, ORG, "c1").values()) == sorted(odd)


def test_members_of_other_campaigns_orgs_and_partitions_are_untouched() -> None:
    store = indexed_memory()
    apply_members(
        store,
        P,
        [
            MemberOp(ORG, "c1", PH1, "a"),
            MemberOp(ORG, "c10", PH1, "b"),
            MemberOp(ORG, "c", PH1, "c"),
            MemberOp("420", "c1", PH1, "d"),
            MemberOp("4", "c1", PH1, "e"),
        ],
        group=7,
    )
    apply_members(store, P + 1, [MemberOp(ORG, "c1", PH2, "f")], group=8)
    apply_members(store, P, [MemberOp(ORG, "c1", PH1, None, remove=True)], group=9)
    assert members(store, ORG, "c1") == {}
    assert members(store, ORG, "c10") == {PH1: "b"}
    assert members(store, ORG, "c") == {PH1: "c"}
    assert members(store, "420", "c1") == {PH1: "d"}
    assert members(store, "4", "c1") == {PH1: "e"}
    assert members(store, ORG, "c1", P + 1) == {PH2: "f"}
