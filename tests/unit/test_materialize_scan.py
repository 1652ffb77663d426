"""The merged scan of materialize_partition gives exactly the per-lead answers.

The reference below evaluates each member on its own (:func:`count_events`,
:func:`latest_opt`: a scan started at that lead, and those two are checked against a
brute-force reference in test_lead_index), where materialization reads an organization's
keys in one ordered pass merged with the audience, re-seeking when it falls behind.
Stores are random: several organizations, phones that are prefixes of one another,
events of non-members, folded (compacted) history, opt events at the same instant.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import MemberOp
from leadstream.domain.evaluate import materialize_partition
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events, compact_partition, count_events, latest_opt
from leadstream.domain.send_state import apply_members
from leadstream.domain.sends import (
    EventFilter,
    PartitionResult,
    SendTrigger,
    campaign_members,
)
from leadstream.index.table import IndexedStore
from tests.support.stores import indexed_memory

BASE = 1_700_000_000_000
MIN = 60_000
PHONES = ["+1555", "+15550", "+155501", "+1556", "+2"]
ORGS = ["a", "b"]
TYPES = ["buy", "attend", "opted_out", "opted_in"]
OPT = {"opt_out_type": "opted_out", "opt_in_type": "opted_in"}


def reference_partition(store: IndexedStore, partition: int, t: SendTrigger) -> PartitionResult:
    out = PartitionResult()
    org = t.organization_id
    for phone, external_id in campaign_members(store, partition, org, t.campaign_id):
        out.counts.audience += 1
        if latest_opt(store, partition, org, phone, **OPT).opted_out:
            out.counts.opted_out += 1
            continue
        kept = True
        for f in t.event_filters:
            since = until = None
            if f.within_minutes is not None:
                since, until = max(0, t.scheduled_for - f.within_minutes * MIN), t.scheduled_for
            n = count_events(
                store, partition, org, phone, f.event_type, since_ms=since, until_ms=until,
                limit=f.min_count,
            )  # fmt: skip
            has = n >= f.min_count
            kept = kept and (has if f.mode == "include" else not has)
        if not kept:
            out.counts.dropped_by_event_filter += 1
            continue
        out.recipients.append((phone, external_id))
    return out


events_st = st.lists(
    st.tuples(
        st.sampled_from(ORGS), st.sampled_from(PHONES), st.sampled_from(TYPES), st.integers(0, 5)
    ),
    max_size=40,
)
members_st = st.lists(
    st.tuples(st.sampled_from(ORGS), st.sampled_from(PHONES), st.sampled_from(["c1", "c2"])),
    min_size=1,
    max_size=20,
)
filter_st = st.builds(
    EventFilter,
    mode=st.sampled_from(["include", "exclude"]),
    event_type=st.sampled_from(TYPES),
    within_minutes=st.one_of(st.none(), st.integers(1, 4)),
    min_count=st.integers(1, 3),
)


# Few minutes and phones, so that same-instant opt events, window edges and folded
# maxima are hit often.
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events_st,
    members_st,
    st.lists(filter_st, max_size=3),
    st.integers(0, 6),
    st.one_of(st.none(), st.integers(0, 6)),
)
def test_merged_scan_equals_per_lead_lookups(events, members, filters, fire, horizon) -> None:
    for reseek_after in (0, 1, 4, 10**9):  # always start a new scan, sometimes, rarely
        check_merged_scan(events, members, filters, fire, horizon, reseek_after)


def check_merged_scan(events, members, filters, fire, horizon, reseek_after) -> None:
    store = indexed_memory()
    apply_events(
        store,
        0,
        [LeadEvent(o, p, t, BASE + m * MIN) for o, p, t, m in events],
        horizon_ms=0,
        now_ms=0,
    )
    apply_members(store, 0, [MemberOp(o, c, p, f"x{p}") for o, p, c in members], group=1)
    if horizon is not None:  # fold part of the history, as retention compaction does
        compact_partition(store, 0, horizon_ms=BASE + horizon * MIN, max_future_skew_ms=0)
    for org in ORGS:
        trigger = SendTrigger(
            organization_id=org,
            campaign_id="c1",
            send_id="s",
            scheduled_for=BASE + fire * MIN,
            event_filters=tuple(filters),
        )
        got = materialize_partition(store, 0, trigger, None, **OPT)
        want = reference_partition(store, 0, trigger)
        assert sorted(got.recipients) == sorted(want.recipients)
        assert got.counts == want.counts


def test_folded_history_counts_for_sticky_filters_only() -> None:
    store = indexed_memory()
    lead = ("a", "+1555")
    apply_events(
        store,
        0,
        [LeadEvent(*lead, "buy", BASE + m * MIN) for m in (1, 2, 3)],
        horizon_ms=0,
        now_ms=0,
    )
    apply_members(store, 0, [MemberOp("a", "c1", "+1555", None)], group=2)
    compact_partition(store, 0, horizon_ms=BASE + 2 * MIN + 1, max_future_skew_ms=0)

    def kept(f: EventFilter) -> int:
        t = SendTrigger("a", "c1", "s", BASE + 3 * MIN, (f,))
        got = materialize_partition(store, 0, t, None, **OPT)
        assert got == reference_partition(store, 0, t)
        return len(got.recipients)

    assert kept(EventFilter("include", "buy", None, 3)) == 1  # two folded + one key
    assert kept(EventFilter("include", "buy", None, 4)) == 0
    assert kept(EventFilter("include", "buy", 5, 2)) == 0  # windows see keys only
    assert kept(EventFilter("include", "buy", 5, 1)) == 1
