"""The us-tcpa policy in a send: the partition's evaluation (one decision per group of
numbers decided alike) drops exactly the leads the per-number decision holds quiet, alone
and beside a start/end window (their union); explain names the deciding rule."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import MemberOp
from leadstream.domain.controls import phone_zones
from leadstream.domain.evaluate import evaluate
from leadstream.domain.explain import explain_lead, read_send_record, record_send
from leadstream.domain.lead_index import lead_history
from leadstream.domain.policies.us_tcpa import shipped_policy
from leadstream.domain.send_state import apply_members
from leadstream.domain.sends import SendRules, parse_trigger
from tests.support.stores import indexed_memory

ORG = "org"
AREA_CODES = sorted(
    line.split(",")[0]
    for line in resources.files("leadstream.domain.policies")
    .joinpath("us_area_codes.csv")
    .read_text()
    .splitlines()[1:]
)
PHONES = st.one_of(
    st.builds(
        lambda a, n: f"+1{a}{n}",
        st.sampled_from(AREA_CODES),
        st.integers(2_000_000, 9_999_999).map(str),
    ),
    st.sampled_from(
        ["+14165550123", "+18005550123", "+447911123456", "+61412345678", "+819012345678"]
    ),
)
# Around the clock over a year, Sundays and the clock changes included.
MOMENTS = st.integers(
    int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2027, 1, 1, tzinfo=UTC).timestamp() * 1000),
).map(lambda ms: ms - ms % 60_000)


@settings(max_examples=60, deadline=None)
@given(st.sets(PHONES, min_size=1, max_size=40), MOMENTS, st.booleans())
def test_the_partition_drops_whom_the_policy_holds_quiet(
    phones: set[str], at: int, window: bool
) -> None:
    store = indexed_memory()
    apply_members(store, 0, [MemberOp(ORG, "c", p, None) for p in sorted(phones)], group=1)
    quiet: dict[str, Any] = {"policy": "us-tcpa"}
    if window:
        quiet |= {"start": "12:00", "end": "13:00"}
    doc = {
        "organizationId": ORG,
        "campaignId": "c",
        "sendId": "s",
        "scheduledFor": "2026-06-15T12:00:00Z",
        "quietHours": quiet,
    }
    trigger = dataclasses.replace(parse_trigger(doc), scheduled_for=at)
    rules = SendRules(trigger, None, "opted_out", "opted_in")
    evaluation = evaluate(store.index(0), rules, store=store, partition=0)
    got = {p for p, *_ in evaluation.sample(len(phones))}
    policy = shipped_policy()
    for phone in phones:
        decided = policy.decide(phone, at)
        by_policy = decided is not None and decided.quiet
        by_window = (
            window
            and trigger.quiet_hours is not None
            and (trigger.quiet_hours.decide(phone_zones(phone), at).quiet)
        )
        assert (phone not in got) is (by_policy or by_window), (phone, decided)
        assert rules.outcome(store_history(store, phone), phone, None).name == (
            "DROPPED_BY_QUIET_HOURS" if by_policy or by_window else "RECIPIENT"
        )
    record_send(store, 0, rules, evaluation, materialized_at=at)
    record = read_send_record(store, 0, ORG, "s")
    assert record is not None
    for phone in phones:
        why = explain_lead(
            store,
            0,
            store.index(0),
            record,
            phone,
            opt_out_type="opted_out",
            opt_in_type="opted_in",
        )
        decided = policy.decide(phone, at)
        if why.step == "quietHours" and decided is not None and decided.quiet:
            window_quiet = (
                window
                and trigger.quiet_hours is not None
                and (trigger.quiet_hours.decide(phone_zones(phone), at).quiet)
            )
            assert why.detail["rule"] == ("window" if window_quiet else decided.rule)


def store_history(store: Any, phone: str) -> Any:
    return lead_history(store, 0, ORG, phone)


def test_a_florida_number_at_8_30_pm_is_quiet_by_the_state_row() -> None:
    store = indexed_memory()
    miami, new_york = "+13055550123", "+12125550123"
    apply_members(store, 0, [MemberOp(ORG, "c", p, None) for p in (miami, new_york)], group=1)
    # 20:30 EDT on a Wednesday: Florida's 8 pm has passed, the federal 9 pm has not.
    at = int(datetime(2026, 6, 17, 0, 30, tzinfo=UTC).timestamp() * 1000)
    doc = {
        "organizationId": ORG,
        "campaignId": "c",
        "sendId": "s",
        "scheduledFor": "2026-06-17T00:30:00Z",
        "quietHours": {"policy": "us-tcpa"},
    }
    trigger = parse_trigger(doc)
    assert trigger.scheduled_for == at
    rules = SendRules(trigger, None, "opted_out", "opted_in")
    evaluation = evaluate(store.index(0), rules, store=store, partition=0)
    assert [p for p, *_ in evaluation.sample(2)] == [new_york]
    record_send(store, 0, rules, evaluation, materialized_at=at)
    record = read_send_record(store, 0, ORG, "s")
    assert record is not None
    why = explain_lead(
        store, 0, store.index(0), record, miami, opt_out_type="opted_out", opt_in_type="opted_in"
    )
    assert why.step == "quietHours"
    assert why.detail["rule"] == "us-fl"
    assert why.detail["localTime"] == "20:30"
    assert "us-fl" in why.detail["message"]
