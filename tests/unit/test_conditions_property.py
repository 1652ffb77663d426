"""Audience conditions, holdouts and splits against a brute-force reference written from
the contract alone (tests/support/conditions_reference.py): random trees (depth up to 8,
up to 64 leaves, every leaf kind and predicate) over random histories (window edges at
+-1 ms, metadata of every JSON type, ties) give, through the partition's index, exactly
the reference's recipients and counts; the per-lead engine (what explain uses) agrees
lead by lead, and explain's verdict of each leaf is the reference's."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import MemberOp
from leadstream.domain.buckets import bucket_of, organization_secret
from leadstream.domain.conditions import verdicts
from leadstream.domain.evaluate import evaluate, partition_key
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events, lead_history
from leadstream.domain.send_state import apply_members
from leadstream.domain.sends import Outcome, SendRules, lead_events, parse_trigger
from tests.support.conditions_reference import (
    RefLead,
    bucket_variant,
    event_filter_keeps,
    leaf_verdicts,
    node_holds,
)
from tests.support.conditions_strategies import (
    EVENT_TYPES,
    event_filters,
    fire_times,
    histories,
    holdouts,
    split_pairs,
    splits,
    tree_event_types,
    trees,
)
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

ORG = "org"
CAMPAIGN = "send"


@st.composite
def sends(draw: st.DrawFn) -> tuple[dict[str, Any], list[RefLead], int]:
    """A trigger document (conditions, maybe event filters, maybe holdout and splits),
    its leads and its moment."""
    at = draw(fire_times())
    filters = draw(st.lists(event_filters(), max_size=2))
    tree = draw(trees(max_leaves=64 - len(filters)))
    named = tuple(sorted(tree_event_types(tree))) or EVENT_TYPES
    types = named if draw(st.booleans()) else EVENT_TYPES
    leads = draw(st.lists(histories(at, types=types), min_size=1, max_size=6))
    doc: dict[str, Any] = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "sendId": "s",
        "scheduledFor": "2026-06-15T12:00:00Z",  # replaced by ``at`` below
        "conditions": tree,
    }
    if filters:
        doc["eventFilters"] = filters
    if draw(st.booleans()):
        doc["holdout"] = draw(holdouts())
    if draw(st.booleans()):
        doc["splits"] = draw(splits())
    return doc, leads, at


def phone(i: int) -> str:
    return f"+1212555{i:04d}"


def seeded(leads: list[RefLead]) -> Any:
    store = indexed_memory()
    ops = [MemberOp(ORG, CAMPAIGN, phone(i), None) for i in range(len(leads))]
    ops += [
        MemberOp(ORG, campaign, phone(i), None)
        for i, lead in enumerate(leads)
        for campaign in sorted(lead.campaigns)
    ]
    apply_members(store, 0, ops, group=1)
    events = [
        LeadEvent(
            ORG,
            phone(i),
            e.event_type,
            e.occurred_at,
            None if e.metadata is None else msgspec.json.encode(e.metadata),
        )
        for i, lead in enumerate(leads)
        for e in lead.events
    ]
    apply_events(store, 0, events, horizon_ms=0, now_ms=0)
    return store


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sends())
def test_index_per_lead_engine_and_explain_agree_with_the_reference(
    case: tuple[dict[str, Any], list[RefLead], int],
) -> None:
    doc, leads, at = case
    trigger = dataclasses.replace(parse_trigger(doc), scheduled_for=at)
    store = seeded(leads)
    rules = SendRules(trigger, None, "opted_out", "opted_in")
    evaluation = evaluate(store.index(0), rules, store=store, partition=0)
    secret = organization_secret(partition_key(store, 0), ORG)
    salt = doc.get("holdout", {}).get("salt", "")
    holdout = doc["holdout"]["percent"] if "holdout" in doc else None
    pairs = split_pairs(doc["splits"]) if "splits" in doc else None
    tree = trigger.tree()
    assert tree is not None

    want_recipients: dict[str, str | None] = {}
    want = {"event": 0, "held": 0}
    for i, lead in enumerate(leads):
        p = phone(i)
        kept = all(event_filter_keeps(f, lead, at) for f in doc.get("eventFilters", []))
        kept = kept and node_holds(doc["conditions"], lead, at)
        bucket = bucket_of(secret, ORG, p, salt)
        held, variant = bucket_variant(bucket, holdout, pairs)
        if not kept:
            want["event"] += 1
        elif held:
            want["held"] += 1
        else:
            want_recipients[p] = variant

        # The per-lead engine, as explain runs it, agrees with the reference ...
        history = lead_history(store, 0, ORG, p)
        member_of = lead.campaigns.__contains__
        outcome = rules.outcome(history, p, None, member_of=member_of, bucket=bucket)
        expected = (
            Outcome.DROPPED_BY_EVENT_FILTER
            if not kept
            else Outcome.HELD_OUT
            if held
            else Outcome.RECIPIENT
        )
        assert outcome is expected, (p, outcome)
        # ... and so does each leaf's verdict.
        said = [v["holds"] for v in verdicts(tree, lead_events(history, member_of), at)]
        assert said == leaf_verdicts(doc["conditions"], lead, at), p

    got = {p: v for p, _, v in evaluation.sample(len(leads))}
    assert got == want_recipients
    counts = evaluation.counts()
    assert counts.audience == len(leads)
    assert counts.dropped_by_event_filter == want["event"]
    assert counts.held_out == want["held"]
    assert counts.audience == (
        len(evaluation.recipients) + counts.dropped_by_event_filter + counts.held_out
    )
    if pairs is not None:
        assert {name: len(evaluation.variants.get(name, ())) for name, _ in pairs} == {
            name: sum(1 for v in want_recipients.values() if v == name) for name, _ in pairs
        }
    else:
        assert not evaluation.variants


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends())
def test_buckets_survive_a_rebuild_of_the_index(
    case: tuple[dict[str, Any], list[RefLead], int],
) -> None:
    """The recipients, holdout and splits are the same after the index is rebuilt from
    the keys (a restore) as before."""
    doc, leads, at = case
    trigger = dataclasses.replace(parse_trigger(doc), scheduled_for=at)
    store = seeded(leads)
    rules = SendRules(trigger, None, "opted_out", "opted_in")
    before = evaluate(store.index(0), rules, store=store, partition=0)
    assert_indexes_rebuild_equal(store, [0])
    rebuilt = type(store)(store._inner, store._opt, store._codec, keep=False)
    after = evaluate(rebuilt.index(0), rules, store=rebuilt, partition=0)
    assert after.sample(len(leads)) == before.sample(len(leads))
    assert after.counts() == before.counts()
