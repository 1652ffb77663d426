"""The contract's filters and materialization (docs/contract.md, section 3) and its opt-out rule.

Everything runs over a real :class:`MemoryStore` filled through ``apply_members`` and
``apply_events``; the property test at the end compares whole sends with a brute-force
reference written from the contract's text in plain Python.
"""

from __future__ import annotations

import calendar
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import MemberOp
from leadstream.domain.evaluate import materialize_partition
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import OrgScan, apply_events
from leadstream.domain.partitioning import lead_partition
from leadstream.domain.rejects import Reason, RowError
from leadstream.domain.send_state import (
    Claim,
    PendingRecord,
    apply_members,
    audience_filter_for,
    claim_trigger,
    due_sends,
    store_filter_part,
    store_pending,
)
from leadstream.domain.sends import (
    FILTER_DEADLINE_MS,
    MAX_CONDITIONS,
    AudienceFilterSpec,
    Counts,
    EventFilter,
    SendTrigger,
    campaign_members,
    keeps,
    parse_audience_filter,
    parse_trigger,
    resolve_audience_filter,
    split_filter,
)
from leadstream.index.table import IndexedStore
from leadstream.wire.records import (
    done_record,
    encode_chunks,
    encode_recipient,
    send_key,
)
from leadstream.wire.records import summary_record as summary_struct
from tests.support.stores import indexed_memory

PROPS = settings(max_examples=100, deadline=None)
PARTITIONS = 4
MIN = 60_000
DAY = 86_400_000
ORG = "42"
CAMPAIGN = "camp1"
T_TEXT = "2026-05-12T18:00:00.000Z"
# Computed independently of the code under test.
T = calendar.timegm((2026, 5, 12, 18, 0, 0, 0, 0, 0)) * 1000
OPT = {"opt_out_type": "opted_out", "opt_in_type": "opted_in"}
P1, P2, P3, P4 = "+15551230001", "+15551230002", "+15551230003", "+15551230004"


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    y, mo, d, h, mi, s, *_ = time.gmtime(seconds)
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{millis:03d}Z"


def trigger_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "sendId": "s1",
        "scheduledFor": T_TEXT,
    }
    doc.update(over)
    return doc


def trig(*filters: dict[str, Any], audience: bool = False, **over: Any) -> SendTrigger:
    doc = trigger_doc(**over)
    if filters:
        doc["eventFilters"] = list(filters)
    if audience:
        doc["audienceFilter"] = {"enabled": True}
    return parse_trigger(doc)


@dataclass
class World:
    """A store with leads placed in their partitions, as the worker places them."""

    partitions: int = PARTITIONS
    store: IndexedStore = field(default_factory=indexed_memory)
    groups: Iterator[int] = field(default_factory=itertools.count)

    def part(self, org: str, phone: str) -> int:
        return lead_partition(org, phone, self.partitions)

    def member(
        self,
        phone: str,
        external_id: str | None = None,
        *,
        org: str = ORG,
        campaign: str = CAMPAIGN,
        remove: bool = False,
    ) -> World:
        op = MemberOp(org, campaign, phone, external_id, remove)
        apply_members(self.store, self.part(org, phone), [op], group=next(self.groups))
        return self

    def event(self, phone: str, event_type: str, ts: int, *, org: str = ORG) -> World:
        ev = LeadEvent(org, phone, event_type, ts)
        apply_events(self.store, self.part(org, phone), [ev], horizon_ms=0, now_ms=0)
        return self

    def run(
        self, trigger: SendTrigger, audience_filter: AudienceFilterSpec | None = None
    ) -> tuple[list[tuple[str, str | None]], Counts, list[int]]:
        """All partitions materialized: (recipients, summed counts, recipients per partition)."""
        recipients: list[tuple[str, str | None]] = []
        total = Counts()
        per_partition = []
        for p in range(self.partitions):
            res = materialize_partition(self.store, p, trigger, audience_filter, **OPT)
            recipients.extend(res.recipients)
            total.add(res.counts)
            per_partition.append(len(res.recipients))
        return recipients, total, per_partition

    def phones(self, trigger: SendTrigger, af: AudienceFilterSpec | None = None) -> set[str]:
        recipients, _, _ = self.run(trigger, af)
        return {p for p, _ in recipients}


def counts(c: Counts) -> tuple[int, int, int, int]:
    return (c.audience, c.opted_out, c.dropped_by_audience_filter, c.dropped_by_event_filter)


def reason_of(doc: Any) -> Reason:
    with pytest.raises(RowError) as info:
        parse_trigger(doc)
    return info.value.reason


# --- parse_trigger ------------------------------------------------------------------------


def test_a_trigger_holds_at_most_64_event_filters() -> None:
    one = {"mode": "exclude", "eventType": "purchase"}
    assert len(parse_trigger(trigger_doc(eventFilters=[one] * MAX_CONDITIONS)).event_filters) == 64
    with pytest.raises(RowError, match="at most 64"):
        parse_trigger(trigger_doc(eventFilters=[one] * (MAX_CONDITIONS + 1)))


def test_trigger_without_filters() -> None:
    t = parse_trigger(trigger_doc())
    assert t == SendTrigger(ORG, CAMPAIGN, "s1", T, (), False)


def test_single_event_filter_with_defaults() -> None:
    t = parse_trigger(trigger_doc(eventFilter={"mode": "exclude", "eventType": "buy"}))
    assert t.event_filters == (EventFilter("exclude", "buy", None, 1),)


def test_event_filters_list_keeps_order_and_options() -> None:
    t = parse_trigger(
        trigger_doc(
            eventFilters=[
                {"mode": "include", "eventType": "a", "within": {"minutes": 30}, "minCount": 2},
                {"mode": "exclude", "eventType": "b"},
            ]
        )
    )
    assert t.event_filters == (EventFilter("include", "a", 30, 2), EventFilter("exclude", "b"))


def test_empty_event_filters_list_means_no_filter() -> None:
    assert parse_trigger(trigger_doc(eventFilters=[])).event_filters == ()


def test_event_filter_and_event_filters_together_is_invalid_json() -> None:
    doc = trigger_doc(
        eventFilter={"mode": "include", "eventType": "a"},
        eventFilters=[{"mode": "include", "eventType": "a"}],
    )
    assert reason_of(doc) is Reason.INVALID_JSON


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "include", "eventType": "a", "within": {"minutes": 0}},
        {"mode": "include", "eventType": "a", "within": {"minutes": -5}},
        {"mode": "include", "eventType": "a", "within": {"minutes": 1.5}},
        {"mode": "include", "eventType": "a", "within": {"minutes": True}},
        {"mode": "include", "eventType": "a", "within": {}},
        {"mode": "include", "eventType": "a", "within": 30},
        {"mode": "include", "eventType": "a", "minCount": 0},
        {"mode": "include", "eventType": "a", "minCount": "2"},
        {"mode": "include", "eventType": "a", "minCount": True},
        {"mode": "Include", "eventType": "a"},
        {"mode": "only", "eventType": "a"},
        {"eventType": "a"},
        "include a",
    ],
)
def test_bad_event_filter_is_invalid_json(bad: Any) -> None:
    assert reason_of(trigger_doc(eventFilter=bad)) is Reason.INVALID_JSON
    assert reason_of(trigger_doc(eventFilters=[{"mode": "include", "eventType": "x"}, bad])) is (
        Reason.INVALID_JSON
    )


def test_event_filters_not_a_list_is_invalid_json() -> None:
    assert reason_of(trigger_doc(eventFilters={"mode": "include", "eventType": "a"})) is (
        Reason.INVALID_JSON
    )


def test_event_filter_event_type_follows_event_type_rules() -> None:
    assert reason_of(trigger_doc(eventFilter={"mode": "include", "eventType": " buy"})) is (
        Reason.INVALID_EVENT_TYPE
    )
    assert reason_of(trigger_doc(eventFilter={"mode": "include"})) is Reason.MISSING_FIELD


def test_missing_scheduled_for_is_missing_field() -> None:
    doc = trigger_doc()
    del doc["scheduledFor"]
    assert reason_of(doc) is Reason.MISSING_FIELD


@pytest.mark.parametrize("value", ["2026-05-12T18:00:00", "2026-05-12T18:00:00.000", "tomorrow", 5])
def test_scheduled_for_without_offset_is_invalid_occurred_at(value: Any) -> None:
    assert reason_of(trigger_doc(scheduledFor=value)) is Reason.INVALID_OCCURRED_AT


def test_scheduled_for_offsets_are_the_same_instant() -> None:
    a = parse_trigger(trigger_doc(scheduledFor="2026-05-12T18:00:00Z"))
    b = parse_trigger(trigger_doc(scheduledFor="2026-05-12T20:00:00.000+02:00"))
    assert a.scheduled_for == b.scheduled_for == T


def test_integer_and_string_ids_are_the_same() -> None:
    a = parse_trigger(trigger_doc(organizationId=42, campaignId=7, sendId=9))
    b = parse_trigger(trigger_doc(organizationId="42", campaignId="7", sendId="9"))
    assert a == b
    assert (a.organization_id, a.campaign_id, a.send_id) == ("42", "7", "9")
    assert send_key(a.organization_id, a.send_id) == "42:9"


@pytest.mark.parametrize(
    ("field_name", "value", "reason"),
    [
        ("organizationId", 0, Reason.INVALID_ORGANIZATION_ID),
        ("organizationId", "a b", Reason.INVALID_ORGANIZATION_ID),
        ("organizationId", None, Reason.MISSING_FIELD),
        ("campaignId", "x/y", Reason.INVALID_JSON),
        ("sendId", True, Reason.INVALID_JSON),
    ],
)
def test_bad_ids(field_name: str, value: Any, reason: Reason) -> None:
    assert reason_of(trigger_doc(**{field_name: value})) is reason


def test_not_an_object() -> None:
    assert reason_of([trigger_doc()]) is Reason.INVALID_JSON


@pytest.mark.parametrize(
    ("switch", "enabled"),
    [(None, False), ({"enabled": True}, True), ({"enabled": False}, False), ({}, False)],
)
def test_audience_filter_switch(switch: Any, enabled: bool) -> None:
    doc = trigger_doc() if switch is None else trigger_doc(audienceFilter=switch)
    assert parse_trigger(doc).audience_filter_enabled is enabled


@pytest.mark.parametrize("switch", [True, {"enabled": "true"}, {"enabled": 1}, ["enabled"]])
def test_bad_audience_filter_switch_is_invalid_json(switch: Any) -> None:
    assert reason_of(trigger_doc(audienceFilter=switch)) is Reason.INVALID_JSON


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"eventFilterz": {"mode": "exclude", "eventType": "purchase"}}, "eventFilterz"),
        (
            {"conditions": {"all": [{"event": "purchase", "cuont": {"max": 0}}]}},
            "conditions.all[0].cuont",
        ),
        ({"holdout": {"percent": 10, "seed": 7}}, "holdout.seed"),
        ({"splits": [{"name": "a", "percent": 100, "weight": 1}]}, "splits[0].weight"),
        ({"quietHours": {"policy": "us-tcpa", "plicy": "x"}}, "quietHours.plicy"),
        (
            {"eventFilter": {"mode": "exclude", "eventType": "a", "whithin": 5}},
            "eventFilter.whithin",
        ),
        (
            {
                "eventFilters": [
                    {"mode": "include", "eventType": "a"},
                    {"mode": "exclude", "eventType": "b", "within": {"minutes": 5, "hours": 1}},
                ]
            },
            "eventFilters[1].within.hours",
        ),
        ({"audienceFilter": {"enabled": True, "mode": "include"}}, "audienceFilter.mode"),
        (
            {"frequencyCap": {"maxSends": 1, "withinHours": 24, "perCampaign": True}},
            "frequencyCap.perCampaign",
        ),
        (
            {"quietHours": {"start": "21:00", "end": "08:00", "timezone": "UTC"}},
            "quietHours.timezone",
        ),
    ],
)
def test_a_field_the_contract_does_not_define_refuses_the_trigger(
    fields: dict[str, Any], path: str
) -> None:
    """Ignored, a misspelled filter would widen the send: to purchasers, to opted-in leads."""
    with pytest.raises(RowError) as info:
        parse_trigger(trigger_doc(**fields))
    assert (info.value.reason, info.value.field) == (Reason.INVALID_CONDITIONS, path)
    assert path.split(".")[-1].split("[")[0] in info.value.detail


def test_an_unknown_field_is_named_within_bounds_however_long() -> None:
    with pytest.raises(RowError) as info:
        parse_trigger(
            trigger_doc(eventFilter={"mode": "include", "eventType": "a", "x" * 10**6: 1})
        )
    assert info.value.field == ("eventFilter." + "x" * 10**6)[:120]
    assert len(info.value.detail) < 200


def test_metadata_keys_of_where_are_the_events_own_not_trigger_fields() -> None:
    where = {"anyKey": 1, "conditions": "x"}
    event_filter = {"mode": "include", "eventType": "a", "where": where}
    assert parse_trigger(trigger_doc(eventFilter=event_filter)).event_filters[0].where


# --- event filter windows, with a real store -----------------------------------------------


def include_recent(minutes: int = 120, **extra: Any) -> dict[str, Any]:
    return {"mode": "include", "eventType": "webinar", "within": {"minutes": minutes}, **extra}


@pytest.mark.parametrize(
    ("offset", "inside"),
    [
        (-120 * MIN, True),  # exactly T - minutes
        (-120 * MIN - 1, False),  # one millisecond earlier
        (-120 * MIN + 1, True),
        (-1, True),
        (0, True),  # exactly T
        (1, False),  # one millisecond after T
        (-DAY, False),
    ],
)
def test_window_edges_are_inclusive(offset: int, inside: bool) -> None:
    w = World().member(P1).event(P1, "webinar", T + offset)
    p = w.part(ORG, P1)
    inc = EventFilter("include", "webinar", 120)
    exc = EventFilter("exclude", "webinar", 120)
    history = OrgScan(w.store, p, ORG).history(P1)
    assert keeps(history, inc, T) is inside
    assert keeps(history, exc, T) is (not inside)
    assert w.phones(trig(include_recent())) == ({P1} if inside else set())
    assert w.phones(trig({**include_recent(), "mode": "exclude"})) == (set() if inside else {P1})


def test_one_minute_window() -> None:
    w = World().member(P1).member(P2).member(P3)
    w.event(P1, "webinar", T - MIN).event(P2, "webinar", T - MIN - 1).event(P3, "webinar", T + 1)
    assert w.phones(trig(include_recent(1))) == {P1}


def test_min_count_needs_that_many_distinct_events() -> None:
    w = World().member(P1).member(P2).member(P3).member(P4)
    w.event(P1, "webinar", T - 10 * MIN)  # one
    w.event(P2, "webinar", T - 10 * MIN).event(P2, "webinar", T - 20 * MIN)  # two
    w.event(P3, "webinar", T - 10 * MIN).event(P3, "webinar", T - 10 * MIN)  # one, twice
    w.event(P4, "webinar", T - 10 * MIN).event(P4, "webinar", T - 200 * MIN)  # one in window
    assert w.phones(trig(include_recent(minCount=2))) == {P2}
    sticky = {"mode": "include", "eventType": "webinar", "minCount": 2}
    assert w.phones(trig(sticky)) == {P2, P4}
    assert w.phones(trig({**sticky, "mode": "exclude"})) == {P1, P3}
    assert w.phones(trig({**sticky, "minCount": 3})) == set()


def test_sticky_counts_every_event_before_and_after_t() -> None:
    w = World().member(P1).member(P2).member(P3)
    w.event(P1, "buy", T - 400 * DAY)
    w.event(P2, "buy", T + DAY)  # "without within (sticky), all of them"
    sticky = {"mode": "exclude", "eventType": "buy"}
    assert w.phones(trig(sticky)) == {P3}
    assert w.phones(trig({**sticky, "mode": "include"})) == {P1, P2}


def test_event_type_matches_exactly() -> None:
    w = World().member(P1).member(P2).member(P3).member(P4)
    w.event(P1, "buy", T).event(P2, "buy_more", T).event(P3, "Buy", T).event(P4, "bu", T)
    assert w.phones(trig({"mode": "include", "eventType": "buy"})) == {P1}
    assert w.phones(trig({"mode": "exclude", "eventType": "buy"})) == {P2, P3, P4}


def test_several_filters_are_anded() -> None:
    w = World().member(P1).member(P2).member(P3).member(P4)
    w.event(P1, "confirmed", T - DAY)
    w.event(P2, "confirmed", T - DAY).event(P2, "buy", T - DAY)
    w.event(P3, "buy", T - DAY)
    t = trig({"mode": "include", "eventType": "confirmed"}, {"mode": "exclude", "eventType": "buy"})
    recipients, c, _ = w.run(t)
    assert {p for p, _ in recipients} == {P1}
    assert counts(c) == (4, 0, 0, 3)


def test_include_and_exclude_partition_the_audience() -> None:
    w = World()
    phones = [f"+1555123{i:04d}" for i in range(20)]
    for i, phone in enumerate(phones):
        w.member(phone)
        if i % 3 == 0:
            w.event(phone, "buy", T - i * MIN)
    inc = w.phones(trig({"mode": "include", "eventType": "buy"}))
    exc = w.phones(trig({"mode": "exclude", "eventType": "buy"}))
    assert inc == {p for i, p in enumerate(phones) if i % 3 == 0}
    assert inc | exc == set(phones)
    assert not inc & exc


def test_window_reaching_back_before_1970() -> None:
    # 30,000,000 minutes (about 57 years, "ever" to a user) reaches back before
    # 1970-01-01 from 2026. The contract: within.minutes is any int >= 1; the event is inside.
    w = World().member(P1).member(P2)
    w.event(P1, "buy", T - DAY)
    t = trig({"mode": "include", "eventType": "buy", "within": {"minutes": 30_000_000}})
    recipients, c, _ = w.run(t)
    assert [p for p, _ in recipients] == [P1]
    assert counts(c) == (2, 0, 0, 1)


@pytest.mark.parametrize(
    "over",
    [
        {"eventFilter": {"mode": "include", "eventType": "buy", "within": {"minutes": 2**64}}},
        {"eventFilter": {"mode": "include", "eventType": "buy", "minCount": 2**64}},
        {
            "scheduledFor": "1969-12-31T23:00:00Z",
            "eventFilter": {"mode": "exclude", "eventType": "buy", "within": {"minutes": 1}},
        },
    ],
    ids=["within-2**64", "minCount-2**64", "scheduledFor-1969"],
)
def test_extreme_trigger_is_rejected_as_data_or_materialized(over: dict[str, Any]) -> None:
    """Errors are data: a trigger either fails validation or goes through the pipeline."""
    w = World().member(P1).event(P1, "buy", T - DAY)
    try:
        t = parse_trigger(trigger_doc(**over))
    except RowError as err:
        assert err.reason in (
            Reason.INVALID_JSON,
            Reason.INVALID_OCCURRED_AT,
            Reason.OCCURRED_AT_OUT_OF_RANGE,
        )
        return
    rec = PendingRecord(t, T, True)
    home = 0
    assert claim_trigger(w.store, home, rec) is Claim.FIRST
    for p in range(PARTITIONS):
        assert store_pending(w.store, p, rec)
        assert due_sends(w.store, p, now_ms=T, lead_ms=MIN) == [rec]
    w.run(t)


# --- opt-outs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "opted_out"),
    [
        ([], False),
        ([("opted_out", -DAY)], True),
        ([("opted_in", -DAY)], False),
        ([("opted_out", -DAY), ("opted_in", -DAY + 1)], False),
        ([("opted_in", -DAY), ("opted_out", -DAY + 1)], True),
        ([("opted_in", -DAY), ("opted_out", -DAY)], True),  # same instant: opted_out wins
        ([("opted_out", -2 * DAY), ("opted_in", -DAY), ("opted_out", -DAY)], True),
        ([("opted_out", -DAY), ("opted_out", -3 * DAY), ("opted_in", -2 * DAY)], True),
        # Compliance first: not relative to the send's time.
        ([("opted_out", DAY)], True),
        ([("opted_out", -DAY), ("opted_in", DAY)], False),
    ],
)
def test_latest_opt_event_wins(events: list[tuple[str, int]], opted_out: bool) -> None:
    w = World().member(P1)
    for event_type, offset in events:
        w.event(P1, event_type, T + offset)
    recipients, c, _ = w.run(trig())
    assert (c.opted_out == 1) is opted_out
    assert [p for p, _ in recipients] == ([] if opted_out else [P1])


def test_opted_out_is_counted_before_audience_and_event_filters() -> None:
    w = World().member(P1, "e1").member(P2, "e2").member(P3, "e3").member(P4, "e4")
    # P1 is opted out AND excluded by the audience filter AND by the event filter.
    w.event(P1, "opted_out", T - DAY).event(P1, "buy", T - DAY)
    # P2 is excluded by the audience filter AND by the event filter.
    w.event(P2, "buy", T - DAY)
    # P3 only by the event filter.
    w.event(P3, "buy", T - DAY)
    af = AudienceFilterSpec("exclude", frozenset({"e1", "e2"}))
    t = trig({"mode": "exclude", "eventType": "buy"}, audience=True)
    recipients, c, _ = w.run(t, af)
    assert [p for p, _ in recipients] == [P4]
    assert counts(c) == (4, 1, 1, 1)


def test_custom_opt_event_names() -> None:
    w = World(store=indexed_memory("stop", "start")).member(P1).member(P2)
    w.event(P1, "stop", T - DAY).event(P2, "opted_out", T - DAY)
    t = trig()
    res = [
        materialize_partition(w.store, p, t, None, opt_out_type="stop", opt_in_type="start")
        for p in range(PARTITIONS)
    ]
    assert sorted(ph for r in res for ph, _ in r.recipients) == [P2]


# --- audience filter -----------------------------------------------------------------------


def test_audience_filter_matches_external_id_case_sensitively() -> None:
    w = World().member(P1, "Ext1").member(P2, "ext1").member(P3, None)
    t = trig(audience=True)
    assert w.phones(t, AudienceFilterSpec("include", frozenset({"Ext1"}))) == {P1}
    assert w.phones(t, AudienceFilterSpec("include", frozenset({"ext1"}))) == {P2}
    assert w.phones(t, AudienceFilterSpec("exclude", frozenset({"Ext1"}))) == {P2, P3}
    assert w.phones(t, AudienceFilterSpec("include", frozenset({"EXT1"}))) == set()


def test_audience_filter_matches_normalized_phone() -> None:
    w = World().member("+15551234567", "a").member(P2, "b")
    _, _, _, spec = parse_audience_filter(
        {
            "organizationId": 42,
            "campaignId": CAMPAIGN,
            "sendId": "s1",
            "mode": "include",
            "leads": [{"phoneE164": "(555) 123-4567"}],
        },
        region="US",
    )
    assert spec.phones == frozenset({"+15551234567"})
    t = trig(audience=True)
    assert w.phones(t, spec) == {"+15551234567"}
    assert w.phones(t, AudienceFilterSpec("exclude", spec.external_ids, spec.phones)) == {P2}


def test_audience_filter_by_phone_or_external_id() -> None:
    w = World().member(P1, "a").member(P2, "b").member(P3, None).member(P4, "d")
    spec = AudienceFilterSpec("include", frozenset({"b", "zz"}), frozenset({P3}))
    recipients, c, _ = w.run(trig(audience=True), spec)
    assert sorted(recipients) == [(P2, "b"), (P3, None)]
    assert counts(c) == (4, 0, 2, 0)


def test_include_list_naming_nobody_in_a_partition_keeps_nobody_there() -> None:
    w = World()
    phones = [f"+1555987{i:04d}" for i in range(16)]
    for phone in phones:
        w.member(phone)
    by_part = {w.part(ORG, p) for p in phones}
    assert len(by_part) > 1
    chosen = phones[0]
    spec = AudienceFilterSpec("include", frozenset(), frozenset({chosen}))
    recipients, c, per_partition = w.run(trig(audience=True), spec)
    assert [p for p, _ in recipients] == [chosen]
    assert counts(c) == (16, 0, 15, 0)
    assert per_partition[w.part(ORG, chosen)] == 1
    assert sum(per_partition) == 1
    # An include list naming nobody at all keeps nobody.
    _, c, _ = w.run(trig(audience=True), AudienceFilterSpec("include"))
    assert counts(c) == (16, 0, 16, 0)
    # An empty exclude list drops nobody.
    _, c, _ = w.run(trig(audience=True), AudienceFilterSpec("exclude"))
    assert counts(c) == (16, 0, 0, 0)


def test_disabled_audience_filter_ignores_a_received_filter() -> None:
    w = World().member(P1, "a").member(P2, "b")
    spec = AudienceFilterSpec("include", frozenset({"a"}))
    recipients, c, _ = w.run(trig(audience=False), spec)
    assert {p for p, _ in recipients} == {P1, P2}
    assert counts(c) == (2, 0, 0, 0)
    _, c, _ = w.run(parse_trigger(trigger_doc(audienceFilter={"enabled": False})), spec)
    assert counts(c) == (2, 0, 0, 0)


def test_enabled_without_received_filter_means_no_audience_filtering() -> None:
    w = World().member(P1, "a").member(P2, "b")
    recipients, c, _ = w.run(trig(audience=True), None)
    assert {p for p, _ in recipients} == {P1, P2}
    assert counts(c) == (2, 0, 0, 0)


def test_audience_filter_is_counted_before_event_filters() -> None:
    w = World().member(P1, "a").member(P2, "b")
    w.event(P1, "buy", T - DAY).event(P2, "buy", T - DAY)
    t = trig({"mode": "exclude", "eventType": "buy"}, audience=True)
    _, c, _ = w.run(t, AudienceFilterSpec("exclude", frozenset({"a"})))
    assert counts(c) == (2, 0, 1, 1)


def spec_named(name: str) -> AudienceFilterSpec:
    return AudienceFilterSpec("include", frozenset({name}))


def test_resolve_latest_received_wins() -> None:
    deadline = T - FILTER_DEADLINE_MS
    a, b, c = spec_named("a"), spec_named("b"), spec_named("c")
    assert resolve_audience_filter([], scheduled_for=T) == (None, 0)
    assert resolve_audience_filter(
        [(deadline - 3000, a), (deadline - 1000, b)], scheduled_for=T
    ) == (b, 0)
    # The latest by receive time, not the last one listed.
    assert resolve_audience_filter(
        [(deadline - 1000, b), (deadline - 3000, a), (deadline - 2000, c)], scheduled_for=T
    ) == (b, 0)


def test_resolve_deadline_edges() -> None:
    deadline = T - 5 * MIN
    assert FILTER_DEADLINE_MS == 5 * MIN
    a, b, c = spec_named("a"), spec_named("b"), spec_named("c")
    assert resolve_audience_filter([(deadline, a)], scheduled_for=T) == (a, 0)
    assert resolve_audience_filter([(deadline + 1, a)], scheduled_for=T) == (None, 1)
    # A late filter neither applies nor replaces an on-time one; each late one is counted.
    assert resolve_audience_filter(
        [(deadline - 10, a), (deadline + 1, b), (T + MIN, c)], scheduled_for=T
    ) == (a, 2)
    assert resolve_audience_filter([(deadline - 10, a), (deadline, b)], scheduled_for=T) == (b, 0)


def test_parse_audience_filter() -> None:
    org, campaign, send, spec = parse_audience_filter(
        {
            "organizationId": 42,
            "campaignId": 7,
            "sendId": "s1",
            "mode": "exclude",
            "leads": [
                {"externalId": "Ab"},
                {"phoneE164": "15551230001"},
                {"externalId": "ab", "phoneE164": P2},
            ],
        },
        region="US",
    )
    assert (org, campaign, send) == ("42", "7", "s1")
    assert spec.mode == "exclude"
    assert spec.external_ids == frozenset({"Ab", "ab"})
    assert P1 in spec.phones


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mode": "only"}, Reason.INVALID_JSON),
        ({"leads": {"externalId": "a"}}, Reason.INVALID_JSON),
        ({"leads": [{"externalId": "a"}, {"phoneE164": "12"}]}, Reason.INVALID_PHONE),
        ({"leads": [{"externalId": 5}]}, Reason.INVALID_JSON),
        ({"leads": [{}]}, Reason.MISSING_FIELD),
        ({"leads": ["a"]}, Reason.INVALID_JSON),
        ({"organizationId": "x y"}, Reason.INVALID_ORGANIZATION_ID),
    ],
)
def test_parse_audience_filter_rejects_whole_filter(change: dict[str, Any], reason: Reason) -> None:
    doc = {"organizationId": 1, "campaignId": 1, "sendId": 1, "mode": "include", "leads": []}
    doc.update(change)
    with pytest.raises(RowError) as info:
        parse_audience_filter(doc, region="US")
    assert info.value.reason is reason


# --- the three user patterns ---------------------------------------------------------------


def test_pattern_exclude_prior_purchasers_across_two_sends() -> None:
    w = World().member(P1).member(P2).member(P3)
    w.event(P3, "mastery_purchase", T - 30 * DAY)
    no_buyers = {"mode": "exclude", "eventType": "mastery_purchase"}
    first = trig(no_buyers, sendId="intro-1")
    assert w.phones(first) == {P1, P2}
    # P1 buys the day after the first send; the second send is two days later.
    w.event(P1, "mastery_purchase", T + DAY)
    second = trig(no_buyers, sendId="intro-2", scheduledFor=iso(T + 2 * DAY))
    recipients, c, _ = w.run(second)
    assert {p for p, _ in recipients} == {P2}
    assert counts(c) == (3, 0, 0, 2)


def test_pattern_skip_webinar_attendees_within_120_minutes() -> None:
    w = World().member(P1).member(P2).member(P3)
    w.event(P1, "webinar_attended", T - 45 * MIN)  # in the live event today
    w.event(P2, "webinar_attended", T - DAY)  # attended yesterday's
    reminder = {"mode": "exclude", "eventType": "webinar_attended", "within": {"minutes": 120}}
    recipients, c, _ = w.run(trig(reminder))
    assert {p for p, _ in recipients} == {P2, P3}
    assert counts(c) == (3, 0, 0, 1)


def test_pattern_only_double_opt_in_confirmed() -> None:
    w = World().member(P1, "x1").member(P2, "x2").member(P3, "x3")
    w.event(P1, "double_opt_in_confirmed", T - 90 * DAY)
    w.event(P2, "double_opt_in_requested", T - DAY)
    w.event(P3, "double_opt_in_confirmed", T - MIN).event(P3, "opted_out", T - 1)
    recipients, c, _ = w.run(
        parse_trigger(
            trigger_doc(eventFilter={"mode": "include", "eventType": "double_opt_in_confirmed"})
        )
    )
    assert recipients == [(P1, "x1")]
    assert counts(c) == (3, 1, 0, 1)


# --- tenants and campaigns -----------------------------------------------------------------


def test_two_organizations_with_the_same_phones_never_affect_each_other() -> None:
    w = World()
    for org in ("7", "8"):
        for phone in (P1, P2, P3):
            w.member(phone, f"ext-{phone[-1]}", org=org)
    w.member(P4, org="8")
    # Org 8's history on the same phones.
    w.event(P1, "opted_out", T - DAY, org="8")
    w.event(P2, "buy", T - DAY, org="8")
    w.event(P3, "webinar", T - MIN, org="8")
    t7 = trig(
        {"mode": "exclude", "eventType": "buy"},
        {"mode": "exclude", "eventType": "webinar", "within": {"minutes": 5}},
        organizationId=7,
    )
    recipients, c, _ = w.run(t7)
    assert {p for p, _ in recipients} == {P1, P2, P3}
    assert counts(c) == (3, 0, 0, 0)
    t8 = trig(
        {"mode": "exclude", "eventType": "buy"},
        {"mode": "exclude", "eventType": "webinar", "within": {"minutes": 5}},
        organizationId=8,
    )
    recipients, c, _ = w.run(t8)
    assert {p for p, _ in recipients} == {P4}
    assert counts(c) == (4, 1, 0, 2)
    # Org 7's events now; org 8's answers do not change.
    w.event(P4, "buy", T - DAY, org="7").event(P1, "opted_in", T, org="7")
    assert w.phones(t8) == {P4}


def test_prefix_sharing_campaign_and_org_ids_are_separate() -> None:
    w = World().member(P1, campaign="c1").member(P2, campaign="c10").member(P3, org="420")
    w.member(P4, org="42", campaign="c")
    assert w.phones(trig(campaignId="c1")) == {P1}
    assert w.phones(trig(campaignId="c10")) == {P2}
    assert w.phones(trig(campaignId="c")) == {P4}
    assert w.phones(trig(campaignId="c1", organizationId=4)) == set()


def test_removed_members_are_not_in_the_audience() -> None:
    w = World().member(P1, "a").member(P2, "b").member(P1, remove=True)
    w.member(P2, "b2")
    recipients, c, _ = w.run(trig())
    assert recipients == [(P2, "b2")]
    assert c.audience == 1
    p = w.part(ORG, P2)
    assert list(campaign_members(w.store, p, ORG, CAMPAIGN)) == [(P2, "b2")]


# --- records -------------------------------------------------------------------------------


def chunk_records(
    trigger: SendTrigger, partition: int, recipients: list[tuple[str, str | None]], size: int
) -> list[dict[str, Any]]:
    """The chunks written for ``recipients``, decoded."""
    entries = [encode_recipient(phone, external_id) for phone, external_id in recipients]
    return [msgspec.json.decode(c) for c in encode_chunks(trigger, partition, entries, size)]


def summary_record(dones: list[Any]) -> dict[str, Any]:
    """The summary as a consumer reads it."""
    return msgspec.json.decode(msgspec.json.encode(summary_struct(dones)))


def test_chunk_records() -> None:
    t = trig(sendId="s9")
    assert chunk_records(t, 3, [], 5) == []
    recipients: list[tuple[str, str | None]] = [
        (f"+1555000{i:04d}", None if i % 2 else f"e{i}") for i in range(11)
    ]
    chunks = chunk_records(t, 3, recipients, 4)
    assert [len(c["recipients"]) for c in chunks] == [4, 4, 3]
    assert [c["chunk"] for c in chunks] == [0, 1, 2]
    flat = [(r["phoneE164"], r["externalId"]) for c in chunks for r in c["recipients"]]
    assert flat == recipients
    for c in chunks:
        assert set(c) == {
            "type",
            "organizationId",
            "campaignId",
            "sendId",
            "scheduledFor",
            "partition",
            "chunk",
            "recipients",
        }
        assert c["type"] == "recipients"
        assert (c["organizationId"], c["campaignId"], c["sendId"]) == (ORG, CAMPAIGN, "s9")
        assert c["scheduledFor"] == T_TEXT
        assert c["partition"] == 3
    assert [len(c["recipients"]) for c in chunk_records(t, 0, recipients[:4], 4)] == [4]
    assert [len(c["recipients"]) for c in chunk_records(t, 0, recipients[:5], 4)] == [4, 1]
    assert [len(c["recipients"]) for c in chunk_records(t, 0, recipients, 1)] == [1] * 11
    # Chunks are spliced from encoded entries: the bytes are those of the whole document.
    entries = [encode_recipient(p, x) for p, x in recipients]
    assert encode_chunks(t, 3, entries, 4) == [msgspec.json.encode(c) for c in chunks]


SUMMARY_FIELDS = {
    "type",
    "organizationId",
    "campaignId",
    "sendId",
    "scheduledFor",
    "materializedAt",
    "late",
    "recipientCount",
    "chunkCount",
    "partitions",
    "counts",
}
COUNT_FIELDS = {
    "audience",
    "optedOut",
    "droppedByAudienceFilter",
    "droppedByEventFilter",
    "lateAudienceFilters",
    "droppedByFrequencyCap",
    "droppedByQuietHours",
    "heldOut",
}


def test_counts_identity_and_summary_over_partitions() -> None:
    w = World()
    for i in range(30):
        phone = f"+1555444{i:04d}"
        w.member(phone, f"x{i}")
        if i % 5 == 0:
            w.event(phone, "opted_out", T - DAY)
        if i % 3 == 0:
            w.event(phone, "buy", T - DAY)
    t = trig({"mode": "exclude", "eventType": "buy"}, audience=True)
    spec = AudienceFilterSpec("exclude", frozenset({"x1", "x2", "x3", "x5"}))
    dones = []
    all_chunks = []
    total = Counts()
    for p in range(PARTITIONS):
        res = materialize_partition(w.store, p, t, spec, **OPT)
        c = res.counts
        assert (
            c.audience
            == (len(res.recipients) + c.opted_out + c.dropped_by_audience_filter)
            + c.dropped_by_event_filter
        )
        chunks = chunk_records(t, p, res.recipients, 3)
        all_chunks.extend(chunks)
        total.add(c)
        dones.append(
            done_record(
                t,
                partition=p,
                late=p == 1,
                materialized_at=T - MIN + p,
                recipient_count=len(res.recipients),
                counts=res.counts,
                chunk_count=len(chunks),
                late_audience_filters=2,
                received_at=0,
            )
        )
    # i = 0..29: opted out i%5==0 (6); of the rest, x1 x2 x3 dropped by the audience
    # filter (x5 is already opted out); then i%3==0 among the remaining.
    opted = {i for i in range(30) if i % 5 == 0}
    by_af = {1, 2, 3}
    by_ev = {i for i in range(30) if i % 3 == 0} - opted - by_af
    assert counts(total) == (30, len(opted), len(by_af), len(by_ev))
    s = summary_record(dones)
    assert set(s) == SUMMARY_FIELDS
    assert set(s["counts"]) == COUNT_FIELDS
    assert s["type"] == "summary"
    assert (s["organizationId"], s["campaignId"], s["sendId"]) == (ORG, CAMPAIGN, "s1")
    assert s["scheduledFor"] == T_TEXT
    assert s["materializedAt"] == iso(T - MIN + PARTITIONS - 1)
    assert s["late"] is True
    assert s["partitions"] == PARTITIONS
    assert s["recipientCount"] == 30 - len(opted) - len(by_af) - len(by_ev)
    assert s["recipientCount"] == sum(len(c["recipients"]) for c in all_chunks)
    assert s["chunkCount"] == len(all_chunks)
    assert s["counts"] == {
        "audience": 30,
        "optedOut": len(opted),
        "droppedByAudienceFilter": len(by_af),
        "droppedByEventFilter": len(by_ev),
        "lateAudienceFilters": 2,
        "droppedByFrequencyCap": 0,
        "droppedByQuietHours": 0,
        "heldOut": 0,
    }
    c = s["counts"]
    assert (
        c["audience"]
        == (s["recipientCount"] + c["optedOut"] + c["droppedByAudienceFilter"])
        + c["droppedByEventFilter"]
    )


def test_summary_not_late_when_no_partition_is_late() -> None:
    t = trig()
    w = World().member(P1)
    dones = []
    for p in range(PARTITIONS):
        res = materialize_partition(w.store, p, t, None, **OPT)
        dones.append(
            done_record(
                t,
                partition=p,
                late=False,
                materialized_at=T - MIN,
                recipient_count=len(res.recipients),
                counts=res.counts,
                chunk_count=len(chunk_records(t, p, res.recipients, 5000)),
                late_audience_filters=0,
                received_at=0,
            )
        )
    s = summary_record(dones)
    assert s["late"] is False
    assert s["recipientCount"] == 1
    assert s["chunkCount"] == 1
    assert s["counts"]["lateAudienceFilters"] == 0


# --- property: whole sends against a brute-force reading of the contract (section 3) ------------------

H_ORGS = [ORG, "420"]
H_CAMPAIGNS = [CAMPAIGN, "camp10"]
H_PHONES = [f"+1555200{i:04d}" for i in range(5)]
H_EXTS = [None, "a", "A", "b", "c"]
H_TYPES = ["buy", "buy_more", "webinar", "opted_out", "opted_in"]
H_WITHIN = [1, 120]
# The edges of every window, so that "inclusive" is exercised on both ends.
EDGE_OFFSETS = sorted({d for m in H_WITHIN for d in (-m * MIN - 1, -m * MIN)} | {0, 1, -DAY, DAY})

# Every phone starts in the send's audience (with a random externalId) so that most
# examples have leads for the filters to act on; later ops update, remove, or touch others.
initial_members = st.lists(st.sampled_from(H_EXTS), min_size=len(H_PHONES), max_size=len(H_PHONES))
member_ops = st.lists(
    st.tuples(
        st.sampled_from(H_ORGS),
        st.sampled_from(H_CAMPAIGNS),
        st.sampled_from(H_PHONES),
        st.sampled_from(H_EXTS),
        st.booleans(),  # remove
    ),
    max_size=30,
)
events = st.lists(
    st.tuples(
        st.sampled_from([ORG, ORG, "420"]),
        st.sampled_from(H_PHONES),
        st.sampled_from(H_TYPES),
        st.one_of(st.sampled_from(EDGE_OFFSETS), st.integers(-130 * MIN, 2 * MIN)),
    ),
    min_size=3,
    max_size=40,
)
# (org, phone, offset): an opted_out and an opted_in at the same instant.
opt_ties = st.lists(
    st.tuples(st.sampled_from(H_ORGS), st.sampled_from(H_PHONES), st.sampled_from(EDGE_OFFSETS)),
    max_size=3,
)
event_filters = st.lists(
    st.fixed_dictionaries(
        {
            "mode": st.sampled_from(["include", "exclude"]),
            "eventType": st.sampled_from(H_TYPES),
        },
        optional={
            "within": st.sampled_from(H_WITHIN).map(lambda m: {"minutes": m}),
            "minCount": st.integers(1, 3),
        },
    ),
    min_size=1,
    max_size=3,
)
received_filters = st.lists(
    st.tuples(
        # receive time relative to the deadline (scheduledFor - 5 min)
        st.one_of(st.sampled_from([-1, 0, 1]), st.integers(-3 * DAY, 10 * MIN)),
        st.sampled_from(["include", "exclude"]),
        st.frozensets(st.sampled_from(["a", "A", "b", "c", "zz"]), max_size=3),
        st.frozensets(st.sampled_from([*H_PHONES, "+15559999999"]), max_size=4),
    ),
    max_size=3,
    unique_by=lambda f: f[0],
)


def reference_send(
    ops: Iterable[tuple[str, str, str, str | None, bool]],
    evs: Iterable[tuple[str, str, str, int]],
    doc: dict[str, Any],
    received: list[tuple[int, str, frozenset[str], frozenset[str]]],
) -> tuple[set[tuple[str, str | None]], tuple[int, int, int, int], int]:
    """The contract's materialization, read literally."""
    org, campaign, t = str(doc["organizationId"]), str(doc["campaignId"]), T
    audience: dict[str, str | None] = {}
    for o, c, phone, ext, remove in ops:
        if (o, c) != (org, campaign):
            continue
        if remove:
            audience.pop(phone, None)
        else:
            audience[phone] = ext
    history: dict[str, set[tuple[str, int]]] = {}
    for o, phone, event_type, offset in evs:
        if o == org:
            history.setdefault(phone, set()).add((event_type, t + offset))
    # Receive times are given relative to the deadline: on time iff not after it.
    on_time = [f for f in received if f[0] <= 0]
    late = len(received) - len(on_time)
    chosen = max(on_time, key=lambda f: f[0]) if on_time else None
    enabled = doc.get("audienceFilter", {}).get("enabled", False)
    filters = [doc["eventFilter"]] if "eventFilter" in doc else doc.get("eventFilters", [])
    recipients = set()
    opted = by_af = by_ev = 0
    for phone, ext in audience.items():
        lead = history.get(phone, set())
        outs = [ts for et, ts in lead if et == "opted_out"]
        ins = [ts for et, ts in lead if et == "opted_in"]
        if outs and (not ins or max(outs) >= max(ins)):
            opted += 1
            continue
        if enabled and chosen is not None:
            _, mode, ext_ids, phones = chosen
            named = phone in phones or (ext is not None and ext in ext_ids)
            if named != (mode == "include"):
                by_af += 1
                continue
        kept = True
        for f in filters:
            matching = [
                ts
                for et, ts in lead
                if et == f["eventType"]
                and ("within" not in f or t - f["within"]["minutes"] * 60_000 <= ts <= t)
            ]
            has = len(matching) >= f.get("minCount", 1)
            kept = kept and (has if f["mode"] == "include" else not has)
        if not kept:
            by_ev += 1
            continue
        recipients.add((phone, ext))
    return recipients, (len(audience), opted, by_af, by_ev), late


@PROPS
@given(
    initial=initial_members,
    ops=member_ops,
    evs=events,
    ties=opt_ties,
    filters=event_filters,
    single=st.booleans(),
    received=received_filters,
    enabled=st.booleans(),
    via_state=st.booleans(),
    partitions=st.integers(1, 4),
    rows=st.integers(1, 3),
)
def test_materialization_matches_reference(
    initial: list[str | None],
    ops: list[tuple[str, str, str, str | None, bool]],
    evs: list[tuple[str, str, str, int]],
    ties: list[tuple[str, str, int]],
    filters: list[dict[str, Any]],
    single: bool,
    received: list[tuple[int, str, frozenset[str], frozenset[str]]],
    enabled: bool,
    via_state: bool,
    partitions: int,
    rows: int,
) -> None:
    ops = [(ORG, CAMPAIGN, ph, ext, False) for ph, ext in zip(H_PHONES, initial, strict=True)] + ops
    evs = evs + [(o, ph, et, off) for o, ph, off in ties for et in ("opted_in", "opted_out")]
    w = World(partitions=partitions)
    for org, campaign, phone, ext, remove in ops:
        w.member(phone, ext, org=org, campaign=campaign, remove=remove)
    for org, phone, event_type, offset in evs:
        w.event(phone, event_type, T + offset, org=org)
    doc = trigger_doc(organizationId=int(ORG))
    if single and len(filters) == 1:
        doc["eventFilter"] = filters[0]
    else:
        doc["eventFilters"] = filters
    doc["audienceFilter"] = {"enabled": enabled}
    trigger = parse_trigger(doc)

    deadline = T - 5 * MIN
    specs = [
        (deadline + rel, AudienceFilterSpec(mode, ext_ids, phones))  # type: ignore[arg-type]
        for rel, mode, ext_ids, phones in received
    ]
    recipients: list[tuple[str, str | None]] = []
    total = Counts()
    lates = set()
    dones = []
    for p in range(partitions):
        if via_state:
            # As routing does it: every externalId to every partition, phones to their own.
            for seq, (at, spec) in enumerate(specs):
                mine = sorted(ph for ph in spec.phones if lead_partition(ORG, ph, partitions) == p)
                parts = split_filter(sorted(spec.external_ids), mine, rows)
                for index, (part_ext, part_phones) in enumerate(parts):
                    store_filter_part(
                        w.store,
                        p,
                        org=ORG,
                        send="s1",
                        received_at=at,
                        seq=seq,
                        part=index,
                        parts=len(parts),
                        mode=spec.mode,
                        external_ids=part_ext,
                        phones=part_phones,
                    )
            spec_p, late = audience_filter_for(w.store, p, trigger)
        else:
            spec_p, late = resolve_audience_filter(specs, scheduled_for=trigger.scheduled_for)
        lates.add(late)
        res = materialize_partition(w.store, p, trigger, spec_p, **OPT)
        c = res.counts
        assert (
            c.audience
            == (len(res.recipients) + c.opted_out + c.dropped_by_audience_filter)
            + c.dropped_by_event_filter
        )
        for phone, _ in res.recipients:
            assert lead_partition(ORG, phone, partitions) == p
        recipients.extend(res.recipients)
        total.add(c)
        chunks = chunk_records(trigger, p, res.recipients, 2)
        assert all(1 <= len(ch["recipients"]) <= 2 for ch in chunks)
        dones.append(
            done_record(
                trigger,
                partition=p,
                late=False,
                materialized_at=T - MIN,
                recipient_count=len(res.recipients),
                counts=res.counts,
                chunk_count=len(chunks),
                late_audience_filters=late,
                received_at=0,
            )
        )

    want, want_counts, want_late = reference_send(ops, evs, doc, received)
    assert len(recipients) == len(set(recipients))
    assert set(recipients) == want
    assert counts(total) == want_counts
    assert lates == {want_late}
    s = summary_record(dones)
    assert s["recipientCount"] == len(want)
    assert s["counts"] == {
        "audience": want_counts[0],
        "optedOut": want_counts[1],
        "droppedByAudienceFilter": want_counts[2],
        "droppedByEventFilter": want_counts[3],
        "lateAudienceFilters": want_late,
        "droppedByFrequencyCap": 0,
        "droppedByQuietHours": 0,
        "heldOut": 0,
    }
