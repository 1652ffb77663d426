"""What the new metrics count: rejects by reason (also those the router child counts),
and the time from a send's moment to its summary."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leadstream.domain.rejects import Reason
from leadstream.materialize.materializer import summary_delay_seconds
from leadstream.metrics import Metrics
from leadstream.settings import Settings
from leadstream.streams.router import REASONS, RouterProcess, routed_topics
from leadstream.wire.records import PartitionDone

MIN = 60_000
T = 1_780_000_000_000  # a scheduledFor, UTC ms
LEAD = 5 * MIN


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_rejects_are_counted_by_reason_and_topic() -> None:
    metrics = Metrics()
    metrics.count_rejects("lead-events", {Reason.INVALID_PHONE: 2, Reason.MISSING_FIELD: 0})
    metrics.count_rejects("send-triggers", {Reason.INVALID_JSON: 1})
    metrics.count_rejects("lead-events", {Reason.INVALID_PHONE: 1})
    got = {
        dict(labels)["reason"] + "@" + dict(labels)["topic"]: value
        for (name, labels), value in samples(metrics).items()
        if name == "leadstream_rejects_total"
    }
    assert got == {"invalid_phone@lead-events": 3, "invalid_json@send-triggers": 1}


def test_the_router_child_reports_its_rejects_by_topic_and_reason_since_the_last_call() -> None:
    settings = Settings()
    router = RouterProcess(settings)  # not started: the test writes as its child would
    t = settings.topics
    # The child's slots: topic-major, in the order the router reads its topics.
    assert routed_topics(settings) == (
        t.lead_events,
        t.audience_members,
        t.send_triggers,
        t.audience_filters,
    )
    slot = {reason: i for i, reason in enumerate(REASONS)}
    members, triggers, filters = (k * len(REASONS) for k in (1, 2, 3))
    router._rejected[slot[Reason.INVALID_PHONE]] += 3
    router._rejected[slot[Reason.INTERNAL_ERROR]] += 1
    router._rejected[members + slot[Reason.INVALID_PHONE]] += 5
    router._rejected[triggers + slot[Reason.TOO_LARGE]] += 1
    router._rejected[filters + slot[Reason.INVALID_JSON]] += 2
    assert router.rejects_since_last_call() == {
        t.lead_events: {Reason.INVALID_PHONE: 3, Reason.INTERNAL_ERROR: 1},
        t.audience_members: {Reason.INVALID_PHONE: 5},
        t.send_triggers: {Reason.TOO_LARGE: 1},
        t.audience_filters: {Reason.INVALID_JSON: 2},
    }
    router._rejected[slot[Reason.INVALID_PHONE]] += 2
    assert router.rejects_since_last_call() == {t.lead_events: {Reason.INVALID_PHONE: 2}}
    assert router.rejects_since_last_call() == {}
    router._dead_letters[1] += 1
    router._dead_letters[3] += 2
    none = dict.fromkeys(routed_topics(settings), 0)
    assert router.dead_letters_since_last_call() == {
        **none,
        t.audience_members: 1,
        t.audience_filters: 2,
    }
    assert router.dead_letters_since_last_call() == none


def done(partition: int, *, received_at: int, late: bool = False) -> PartitionDone:
    return PartitionDone(
        "42", "c", "s", T, late, partition, T - LEAD + 1_000, 0, 0, (0, 0, 0, 0), 0, received_at
    )


@pytest.mark.parametrize(
    ("received_at", "committed_at", "seconds"),
    [
        (T - 60 * MIN, T - LEAD + 2_500, 2.5),  # held in time: from the moment
        (T - LEAD + 30_000, T - LEAD + 31_000, 1.0),  # arrived after the moment: from then
        (T + 10 * MIN, T + 10 * MIN + 4_000, 4.0),  # late: from its arrival
        (T - 60 * MIN, T - LEAD - 3_000, 0.0),  # clocks apart: never negative
        (0, T - LEAD + 7_000, 7.0),  # a record from before received_at was kept
    ],
)
def test_the_summary_delay_counts_from_the_moment_or_a_later_arrival(
    received_at: int, committed_at: int, seconds: float
) -> None:
    dones = [done(p, received_at=received_at) for p in range(3)]
    assert summary_delay_seconds(dones, lead_ms=LEAD, committed_at=committed_at) == seconds


def test_the_summary_delay_is_observed_in_seconds() -> None:
    metrics = Metrics()
    metrics.send_summary_seconds.observe(
        summary_delay_seconds([done(0, received_at=0)], lead_ms=LEAD, committed_at=T - LEAD + 750)
    )
    got = samples(metrics)
    assert got[("leadstream_send_summary_seconds_count", frozenset())] == 1
    assert got[("leadstream_send_summary_seconds_sum", frozenset())] == 0.75
    assert got[("leadstream_send_summary_seconds_bucket", frozenset({("le", "0.5")}))] == 0
    assert got[("leadstream_send_summary_seconds_bucket", frozenset({("le", "1.0")}))] == 1
