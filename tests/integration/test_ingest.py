"""Ingest on a real broker: the worker process, real Kafka, real RocksDB."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.support.reference import observed, synthetic_batches
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def wait_until(check, timeout: float = 60.0, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


def test_batch_keeps_good_rows_and_rejects_bad_ones_with_their_index(stack: Stack) -> None:
    worker = stack.worker()
    batch = {
        "organizationId": 42,
        "eventType": "mastery_purchase",
        "events": [
            {"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"},
            {"phoneE164": "not a phone", "occurredAt": "2026-05-12T18:34:00Z"},
            {"phoneE164": "(555) 123-4568", "occurredAt": "2026-05-12T18:34:00"},
            {"phoneE164": "15551234569", "occurredAt": "2026-05-12T18:34:00Z", "eventType": " bad"},
            {"phoneE164": "15551234570", "occurredAt": "1999-12-31T23:59:59Z"},
            {
                "phoneE164": "15551234571",
                "occurredAt": "2026-05-12T20:34:00.000+02:00",
                "eventType": "webinar_attended",
            },
            {"occurredAt": "2026-05-12T18:34:00Z"},
            {
                "phoneE164": "15551234572",
                "occurredAt": "2026-05-12T18:34:00Z",
                "metadata": {"blob": "x" * 5000},
            },
        ],
    }
    stack.send_events([batch])
    rejects = stack.rejects(expect=6)
    by_index = {r["index"]: r for r in rejects}
    assert {i: r["reason"] for i, r in by_index.items()} == {
        1: "invalid_phone",
        2: "invalid_occurred_at",
        3: "invalid_event_type",
        4: "occurred_at_out_of_range",
        6: "missing_field",
        7: "metadata_too_large",
    }
    assert by_index[1]["phoneE164"] == "not a phone"
    assert by_index[1]["source"] == stack.topics.lead_events
    assert "not a phone" in by_index[1]["raw"]

    good = wait_until(lambda: worker.lead(42, "+15551234567")["events"])
    assert good == [{"eventType": "mastery_purchase", "occurredAt": "2026-05-12T18:34:00.000Z"}]
    other = wait_until(lambda: worker.lead("42", "+15551234571")["events"])
    assert other == [{"eventType": "webinar_attended", "occurredAt": "2026-05-12T18:34:00.000Z"}]
    stack.wait_caught_up()
    for phone in ("+15551234568", "+15551234569", "+15551234570", "+15551234572"):
        assert worker.lead(42, phone)["events"] == []


def test_undecodable_bytes_are_rejected_and_the_worker_keeps_going(stack: Stack) -> None:
    worker = stack.worker()
    stack.send_events(
        [
            b"\xff\xfe\x00garbage",
            b'{"organizationId": 1, "events": [',
            b"[1, 2, 3]",
            b"",
            {
                "organizationId": 1,
                "eventType": "signup",
                "phoneE164": "+15550000001",
                "occurredAt": "2026-05-12T18:34:00Z",
            },
        ]
    )
    rejects = stack.rejects(expect=4)
    assert [r["reason"] for r in rejects] == ["invalid_json"] * 4
    assert all("index" not in r for r in rejects)
    assert wait_until(lambda: worker.lead(1, "+15550000001")["events"])
    assert worker.alive()


def test_two_organizations_with_the_same_phone_never_share_state(stack: Stack) -> None:
    worker = stack.worker()
    stack.send_events(
        [
            {
                "organizationId": "acme",
                "eventType": "purchase",
                "phoneE164": "+15551110000",
                "occurredAt": "2026-05-12T18:34:00Z",
            },
            {
                "organizationId": "globex",
                "eventType": "opted_out",
                "phoneE164": "+15551110000",
                "occurredAt": "2026-05-12T18:35:00Z",
            },
        ]
    )
    acme = wait_until(
        lambda: (
            worker.lead("acme", "+15551110000")["events"] and worker.lead("acme", "+15551110000")
        )
    )
    globex = wait_until(
        lambda: (
            worker.lead("globex", "+15551110000")["events"]
            and worker.lead("globex", "+15551110000")
        )
    )
    assert [e["eventType"] for e in acme["events"]] == ["purchase"]
    assert acme["optedOut"] is False
    assert [e["eventType"] for e in globex["events"]] == ["opted_out"]
    assert globex["optedOut"] is True


def test_replaying_10000_events_changes_nothing_and_state_rebuilds_from_the_changelog(
    stack: Stack,
) -> None:
    batches, ref = synthetic_batches(
        org="7",
        leads=800,
        events=10_000,
        batch_size=2_500,
        seed=11,
        types=("purchase", "webinar_attended", "opted_out", "opted_in"),
    )
    worker = stack.worker()
    stack.send_events(batches)
    stack.wait_caught_up()
    first = {lead: observed(worker.lead(*lead)) for lead in ref.events}
    assert first == {lead: ref.expected(*lead) for lead in ref.events}

    stack.send_events(batches)  # the same 10,000 events again
    stack.wait_caught_up()
    assert {lead: observed(worker.lead(*lead)) for lead in ref.events} == first

    # Delete the worker's RocksDB: the restarted worker rebuilds it from the changelog.
    worker.stop()
    shutil.rmtree(stack.settings.data_dir)
    worker = stack.worker(name="rebuilt")
    assert {lead: observed(worker.lead(*lead)) for lead in ref.events} == first


def test_inputs_faust_read_start_where_the_worker_group_had_committed(stack: Stack) -> None:
    """Before the input router read ``audience-members``, ``send-triggers`` and
    ``audience-filters``, faust's group (the app id) did. An upgraded worker's router starts
    where that group had committed: what was applied then is not applied again, what came
    after is."""
    from confluent_kafka import Consumer, TopicPartition

    from tests.support.kafka import client_config, end_offsets

    t = stack.topics
    stack.members("eo", "before", [{"phoneE164": "+15550000001"}])
    # Read before the upgrade: a trigger (its send would come out again if read twice)
    # and a malformed filter (it would be rejected again).
    stack.trigger(
        organizationId="eo",
        campaignId="before",
        sendId="s-old",
        scheduledFor="2026-01-01T00:00:00Z",
    )
    stack.send(t.audience_filters, [b"{not a filter"])
    inherited = (t.audience_members, t.send_triggers, t.audience_filters)
    ends = {topic: end_offsets(stack.kafka, topic) for topic in inherited}
    assert all(sum(e.values()) == 1 for e in ends.values())
    # What faust's group had committed: everything so far.
    group = Consumer({**client_config(stack.kafka), "group.id": stack.settings.app_id})
    try:
        group.commit(
            offsets=[
                TopicPartition(topic, p, o) for topic, e in ends.items() for p, o in e.items()
            ],
            asynchronous=False,
        )
    finally:
        group.close()
    stack.members("eo", "after", [{"phoneE164": "+15550000002"}])
    stack.worker()
    stack.wait_caught_up(timeout=120)
    for campaign, want in (("before", 0), ("after", 1)):
        stack.trigger(
            organizationId="eo",
            campaignId=campaign,
            sendId=f"s-{campaign}",
            scheduledFor="2026-01-01T00:00:00Z",
        )
        summary = stack.send_list(f"s-{campaign}", "eo", timeout=120).summary
        assert summary is not None and summary["counts"]["audience"] == want, campaign
    # Nothing read before the upgrade was read again: no second send, no reject.
    assert not [v for _k, v in stack.send_values() if v.get("sendId") == "s-old"]
    assert stack.rejects(expect=1, timeout=5) == []
