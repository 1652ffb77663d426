"""A prepared share, kept current through the store's watch, equals a fresh materialization.

The share's pass is interleaved with writes of every kind a partition sees between a
trigger and its moment (events, opt events, members added and removed, retention
compaction), at random points of the pass; at the moment the share must give exactly what
:func:`materialize_partition` gives over the store as it is then.
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import MemberOp
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events, compact_partition
from leadstream.domain.prepared import PreparedShare
from leadstream.domain.send_state import apply_members
from leadstream.domain.sends import (
    AudienceFilterSpec,
    EventFilter,
    Outcome,
    SendRules,
    SendTrigger,
    materialize_partition,
)
from leadstream.state import keys
from leadstream.state.memory import MemoryStore
from leadstream.state.watch import WatchedStore
from leadstream.wire.records import encode_recipient

BASE = 1_700_000_000_000
MIN = 60_000
PHONES = ["+1555", "+15550", "+155501", "+1556", "+1557", "+2"]
ORGS = ["a", "b"]
TYPES = ["buy", "attend", "opted_out", "opted_in"]
OPT = {"opt_out_type": "opted_out", "opt_in_type": "opted_in"}

event_st = st.tuples(
    st.sampled_from(ORGS), st.sampled_from(PHONES), st.sampled_from(TYPES), st.integers(0, 5)
)
member_st = st.tuples(
    st.sampled_from(ORGS), st.sampled_from(PHONES), st.sampled_from(["c1", "c2"]), st.booleans()
)
filter_st = st.builds(
    EventFilter,
    mode=st.sampled_from(["include", "exclude"]),
    event_type=st.sampled_from(TYPES),
    within_minutes=st.one_of(st.none(), st.integers(1, 4)),
    min_count=st.integers(1, 3),
)
audience_filter_st = st.one_of(
    st.none(),
    st.builds(
        AudienceFilterSpec,
        mode=st.sampled_from(["include", "exclude"]),
        external_ids=st.frozensets(st.sampled_from([f"x{p}" for p in PHONES]), max_size=3),
        phones=st.frozensets(st.sampled_from(PHONES), max_size=3),
    ),
)
# What happens while the share is prepared: a step of its pass, or a write.
action_st = st.one_of(
    st.just(("step",)),
    st.tuples(st.just("event"), event_st),
    st.tuples(st.just("member"), member_st),
    st.tuples(st.just("compact"), st.integers(0, 6)),
)


def recipients_of(share: PreparedShare) -> list[tuple[str, str | None]]:
    decoded = [msgspec.json.decode(entry) for entry in share.recipients.values()]
    return sorted((r["phoneE164"], r["externalId"]) for r in decoded)


def apply_member(store, org, phone, campaign, remove) -> None:
    apply_members(store, 0, [MemberOp(org, campaign, phone, f"x{phone}", remove=remove)])


def apply_event(store, org, phone, event_type, minute) -> None:
    apply_events(
        store, 0, [LeadEvent(org, phone, event_type, BASE + minute * MIN)], horizon_ms=0, now_ms=0
    )


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(event_st, max_size=30),
    st.lists(member_st, min_size=1, max_size=12),
    st.lists(filter_st, max_size=2),
    audience_filter_st,
    st.integers(0, 6),
    st.lists(action_st, max_size=25),
    st.integers(1, 3),
)
def test_prepared_share_equals_a_fresh_materialization(
    events, members, filters, audience_filter, fire, actions, step
) -> None:
    inner = MemoryStore()
    for org, phone, event_type, minute in events:
        apply_event(inner, org, phone, event_type, minute)
    for member in members:
        apply_member(inner, *member)
    store = WatchedStore(inner)
    trigger = SendTrigger(
        "a", "c1", "s", BASE + fire * MIN, tuple(filters), audience_filter is not None
    )
    rules = SendRules.of(trigger, audience_filter, **OPT)
    share = PreparedShare(rules, 0, step=step, encode=encode_recipient)
    store.watch(0, "a", share.changed)
    steps = share.steps(store)
    for action in actions:
        if action[0] == "step":
            next(steps, None)
        elif action[0] == "event":
            apply_event(store, *action[1])
        elif action[0] == "member":
            apply_member(store, *action[1])
        else:
            compact_partition(store, 0, horizon_ms=BASE + action[1] * MIN, max_future_skew_ms=0)
    share.finish(store)
    share.refresh(store)
    want = materialize_partition(store, 0, trigger, audience_filter, **OPT)
    assert recipients_of(share) == sorted(want.recipients)
    assert share.counts() == want.counts


def test_without_the_refresh_a_prepared_share_is_stale() -> None:
    """The property above can fail: a purchase after the pass changes the answer, and only
    the leads the watch reported are read again."""
    store = WatchedStore(MemoryStore())
    for phone in PHONES[:3]:
        apply_member(store, "a", phone, "c1", False)
    trigger = SendTrigger("a", "c1", "s", BASE, (EventFilter("exclude", "buy"),))
    share = PreparedShare(SendRules.of(trigger, None, **OPT), 0, encode=encode_recipient)
    store.watch(0, "a", share.changed)
    share.finish(store)
    apply_event(store, "a", PHONES[1], "buy", 0)
    apply_event(store, "b", PHONES[2], "buy", 0)  # another organization: not this share's
    assert len(share.recipients) == 3  # stale
    assert share.changed == {PHONES[1]}
    assert share.refresh(store) == 1
    assert list(share.recipients) == [PHONES[0], PHONES[2]]
    assert share.counts().dropped_by_event_filter == 1


def test_a_share_is_refreshed_only_while_few_of_its_members_changed() -> None:
    trigger = SendTrigger("a", "c1", "s", BASE, ())
    share = PreparedShare(SendRules.of(trigger, None, **OPT), 0, encode=encode_recipient)
    share.outcomes = dict.fromkeys((f"+1555{i:07d}" for i in range(8_000)), Outcome.RECIPIENT)
    share.changed = {f"+1555{i:07d}" for i in range(3_000)}  # 8,000 // 4 + 1,000
    assert share.worth_refreshing()
    share.changed.add("+15559999999")
    assert not share.worth_refreshing()


def test_the_watch_reports_history_and_membership_writes_of_its_organization_only() -> None:
    store = WatchedStore(MemoryStore())
    seen_a: set[str] = set()
    seen_a2: set[str] = set()
    seen_b: set[str] = set()
    store.watch(0, "a", seen_a)
    store.watch(0, "a", seen_a2)
    store.watch(1, "b", seen_b)
    apply_event(store, "a", "+1555", "buy", 0)  # E key, through put_batch
    store.put(0, keys.compacted_key("a", "+1556", "buy"), keys.compacted_value(1, BASE))
    apply_member(store, "a", "+1557", "c2", False)  # M key
    apply_member(store, "a", "+1557", "c2", True)
    store.put(0, keys.pending_key("a", "+1999"), b"x")  # not a lead's key
    apply_event(store, "b", "+2", "buy", 0)  # b is watched in partition 1 only
    assert seen_a == seen_a2 == {"+1555", "+1556", "+1557"}
    assert seen_b == set()
    store.unwatch(0, "a", seen_a)
    apply_event(store, "a", "+2", "buy", 1)
    assert "+2" not in seen_a and "+2" in seen_a2


def test_lead_of_names_the_lead_of_event_folded_and_member_keys() -> None:
    assert keys.lead_of(keys.event_key("o", "+1555", "buy", 0)) == (b"o", b"+1555")
    assert keys.lead_of(keys.event_key("o", "+1555", "buy", 2**64 - 1)) == (b"o", b"+1555")
    assert keys.lead_of(keys.compacted_key("o", "+1555", "buy")) == (b"o", b"+1555")
    assert keys.lead_of(keys.member_key("o", "camp", "+1555")) == (b"o", b"+1555")
    assert keys.lead_of(keys.claim_key("o", "s")) is None
    assert keys.lead_of(keys.logged_batch_key(0)) is None
