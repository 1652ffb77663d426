"""Sends on a real broker: audiences, filters, triggers, exactly one list per send."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = 42


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def phone(i: int) -> str:
    return f"+1555{i:07d}"


@pytest.fixture(scope="module")
def sends(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker for the scenarios below. Materialize lead of two days: any send scheduled
    within two days materializes at once, so the tests need not wait for the clock."""
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path_factory.mktemp("sends"),
        materialize_lead_seconds=2 * 86_400,
        chunk_size=3,
    )
    stack.worker()
    try:
        yield stack
    finally:
        stack.close()


def applied(stack: Stack) -> None:
    stack.wait_caught_up()


def recipients_of(stack: Stack, send: str, org: int | str = ORG) -> tuple[set[str], dict]:
    result = stack.send_list(send, org)
    assert result.summary is not None, f"no summary for send {send}"
    phones = [r["phoneE164"] for r in result.recipients]
    assert len(phones) == len(set(phones)), "a recipient appeared twice"
    summary = result.summary
    counts = summary["counts"]
    assert counts["audience"] == (
        summary["recipientCount"]
        + counts["optedOut"]
        + counts["droppedByAudienceFilter"]
        + counts["droppedByEventFilter"]
        + counts["droppedByFrequencyCap"]
        + counts["droppedByQuietHours"]
        + counts["heldOut"]
    )
    assert summary["recipientCount"] == len(phones)
    assert summary["chunkCount"] == result.chunks
    return set(phones), summary


def test_exclude_prior_purchasers_across_a_multi_day_campaign(sends: Stack) -> None:
    now = datetime.now(UTC)
    sends.members(
        ORG, "mastery", [{"phoneE164": phone(i), "externalId": f"m{i}"} for i in range(1, 5)]
    )
    sends.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "mastery_purchase",
                "phoneE164": phone(1),
                "occurredAt": iso(now - timedelta(days=3)),
            },
            {
                "organizationId": ORG,
                "eventType": "opted_out",
                "phoneE164": phone(4),
                "occurredAt": iso(now - timedelta(days=1)),
            },
        ]
    )
    applied(sends)
    day1 = {"mode": "exclude", "eventType": "mastery_purchase"}
    sends.trigger(
        organizationId=ORG,
        campaignId="mastery",
        sendId="mastery-day1",
        scheduledFor=iso(now + timedelta(minutes=5)),
        eventFilter=day1,
    )
    first, summary1 = recipients_of(sends, "mastery-day1")
    assert first == {phone(2), phone(3)}
    assert summary1["counts"] == {
        "audience": 4,
        "optedOut": 1,
        "droppedByAudienceFilter": 0,
        "droppedByEventFilter": 1,
        "lateAudienceFilters": 0,
        "droppedByFrequencyCap": 0,
        "droppedByQuietHours": 0,
        "heldOut": 0,
    }
    # Lead 2 buys between the sends: only the second send drops it.
    sends.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "mastery_purchase",
                "phoneE164": phone(2),
                "occurredAt": iso(now),
            }
        ]
    )
    applied(sends)
    sends.trigger(
        organizationId=ORG,
        campaignId="mastery",
        sendId="mastery-day2",
        scheduledFor=iso(now + timedelta(days=1)),
        eventFilter=day1,
    )
    second, _ = recipients_of(sends, "mastery-day2")
    assert second == {phone(3)}
    assert recipients_of(sends, "mastery-day1")[0] == {phone(2), phone(3)}


def test_exclude_live_attendees_within_120_minutes(sends: Stack) -> None:
    t = datetime.now(UTC) + timedelta(minutes=10)
    sends.members(ORG, "live", [{"phoneE164": phone(i)} for i in range(10, 14)])
    sends.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "webinar_attended",
                "phoneE164": phone(10),
                "occurredAt": iso(t - timedelta(minutes=30)),
            },  # today: skipped
            {
                "organizationId": ORG,
                "eventType": "webinar_attended",
                "phoneE164": phone(11),
                "occurredAt": iso(t - timedelta(days=1)),
            },  # yesterday: messaged
            {
                "organizationId": ORG,
                "eventType": "webinar_attended",
                "phoneE164": phone(12),
                "occurredAt": iso(t - timedelta(minutes=120)),
            },  # exactly T-120 min: in the window
            {
                "organizationId": ORG,
                "eventType": "webinar_attended",
                "phoneE164": phone(13),
                "occurredAt": iso(t - timedelta(minutes=120, milliseconds=1)),
            },  # 1 ms earlier: out
        ]
    )
    applied(sends)
    sends.trigger(
        organizationId=ORG,
        campaignId="live",
        sendId="live-reminder",
        scheduledFor=iso(t),
        eventFilter={
            "mode": "exclude",
            "eventType": "webinar_attended",
            "within": {"minutes": 120},
        },
    )
    got, summary = recipients_of(sends, "live-reminder")
    assert got == {phone(11), phone(13)}
    assert summary["late"] is False


def test_include_only_double_opt_in_confirmed(sends: Stack) -> None:
    now = datetime.now(UTC)
    sends.members(ORG, "doi", [{"phoneE164": phone(i)} for i in range(20, 24)])
    sends.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "doi_confirmed",
                "phoneE164": phone(20),
                "occurredAt": iso(now - timedelta(days=9)),
            },
            {
                "organizationId": ORG,
                "eventType": "doi_confirmed",
                "phoneE164": phone(21),
                "occurredAt": iso(now - timedelta(hours=1)),
            },
            {
                "organizationId": ORG,
                "eventType": "doi_requested",
                "phoneE164": phone(22),
                "occurredAt": iso(now - timedelta(hours=1)),
            },
            # opted out after confirming: compliance first
            {
                "organizationId": ORG,
                "eventType": "doi_confirmed",
                "phoneE164": phone(23),
                "occurredAt": iso(now - timedelta(hours=2)),
            },
            {
                "organizationId": ORG,
                "eventType": "opted_out",
                "phoneE164": phone(23),
                "occurredAt": iso(now - timedelta(hours=1)),
            },
        ]
    )
    applied(sends)
    sends.trigger(
        organizationId=ORG,
        campaignId="doi",
        sendId="doi-1",
        scheduledFor=iso(now + timedelta(minutes=1)),
        eventFilter={"mode": "include", "eventType": "doi_confirmed"},
    )
    got, summary = recipients_of(sends, "doi-1")
    assert got == {phone(20), phone(21)}
    assert summary["counts"]["optedOut"] == 1
    assert summary["counts"]["droppedByEventFilter"] == 1


def test_min_count_several_filters_and_opt_in_after_opt_out(sends: Stack) -> None:
    now = datetime.now(UTC)
    t = now + timedelta(minutes=30)
    sends.members(ORG, "multi", [{"phoneE164": phone(i)} for i in range(30, 35)])
    ev = lambda typ, i, dt: {
        "organizationId": ORG,
        "eventType": typ,  # noqa: E731
        "phoneE164": phone(i),
        "occurredAt": iso(dt),
    }
    sends.send_events(
        [
            ev("page_view", 30, now - timedelta(hours=1)),
            ev("page_view", 30, now - timedelta(hours=2)),
            ev("page_view", 31, now - timedelta(hours=1)),  # only one view: minCount 2 fails
            ev("page_view", 32, now - timedelta(hours=1)),
            ev("page_view", 32, now - timedelta(hours=3)),
            ev("purchase", 32, now - timedelta(days=2)),  # excluded by the second filter
            ev("page_view", 33, now - timedelta(hours=1)),
            ev("page_view", 33, now - timedelta(hours=3)),
            ev("opted_out", 33, now - timedelta(days=3)),
            ev("opted_in", 33, now - timedelta(days=2)),
            ev("page_view", 34, now - timedelta(hours=1)),
            ev("page_view", 34, now - timedelta(hours=3)),
            ev("opted_in", 34, now - timedelta(days=2)),
            ev("opted_out", 34, now - timedelta(days=2)),
        ]
    )
    applied(sends)
    sends.trigger(
        organizationId=ORG,
        campaignId="multi",
        sendId="multi-1",
        scheduledFor=iso(t),
        eventFilters=[
            {
                "mode": "include",
                "eventType": "page_view",
                "minCount": 2,
                "within": {"minutes": 24 * 60},
            },
            {"mode": "exclude", "eventType": "purchase"},
        ],
    )
    got, summary = recipients_of(sends, "multi-1")
    # 33 opted back in later; 34 opted in and out at the same instant: opted_out wins.
    assert got == {phone(30), phone(33)}
    assert summary["counts"]["optedOut"] == 1
    assert summary["counts"]["droppedByEventFilter"] == 2


def test_duplicate_trigger_produces_nothing_and_late_trigger_is_marked(sends: Stack) -> None:
    now = datetime.now(UTC)
    sends.members(ORG, "dup", [{"phoneE164": phone(i)} for i in range(40, 44)])
    applied(sends)
    sends.trigger(
        organizationId=ORG,
        campaignId="dup",
        sendId="dup-1",
        scheduledFor=iso(now - timedelta(minutes=1)),
    )  # already past: late
    got, summary = recipients_of(sends, "dup-1")
    assert got == {phone(i) for i in range(40, 44)}
    assert summary["late"] is True
    sends.trigger(
        organizationId=ORG,
        campaignId="dup",
        sendId="dup-1",
        scheduledFor=iso(now + timedelta(hours=1)),
        eventFilter={"mode": "include", "eventType": "nothing"},
    )
    sends.trigger(
        organizationId=ORG,
        campaignId="dup",
        sendId="dup-1",
        scheduledFor=iso(now - timedelta(minutes=1)),
    )  # an exact retry
    applied(sends)
    time.sleep(3)  # give a wrong second list every chance to appear
    values = [v for k, v in sends.send_values() if k == f"{ORG}:dup-1"]
    assert [v["type"] for v in values].count("summary") == 1
    phones = [r["phoneE164"] for v in values if v["type"] == "recipients" for r in v["recipients"]]
    assert sorted(phones) == sorted(phone(i) for i in range(40, 44))


def test_audience_removes_audience_filters_and_tenants(sends: Stack) -> None:
    now = datetime.now(UTC)
    members = [{"phoneE164": phone(i), "externalId": f"x{i}"} for i in range(50, 56)]
    sends.members(ORG, "filt", members)
    sends.members("acme", "filt", members)  # another tenant, same phones and campaign id
    sends.members(ORG, "filt", [{"phoneE164": phone(55), "op": "remove"}])
    sends.send_events(
        [
            {
                "organizationId": "acme",
                "eventType": "opted_out",
                "phoneE164": phone(50),
                "occurredAt": iso(now - timedelta(hours=1)),
            }
        ]
    )
    # Two filters for the send: the latest received replaces the first.
    sends.send(
        sends.topics.audience_filters,
        [
            {
                "organizationId": ORG,
                "campaignId": "filt",
                "sendId": "filt-1",
                "mode": "include",
                "leads": [{"externalId": "x50"}],
            },
        ],
    )
    time.sleep(0.05)
    sends.send(
        sends.topics.audience_filters,
        [
            {
                "organizationId": ORG,
                "campaignId": "filt",
                "sendId": "filt-1",
                "mode": "include",
                "leads": [
                    {"externalId": "x51"},
                    {"externalId": "X52"},
                    {"phoneE164": "(555) 000-0053"},
                    {"externalId": "x55"},
                ],
            },
        ],
    )
    applied(sends)
    sends.trigger(
        organizationId=ORG,
        campaignId="filt",
        sendId="filt-1",
        scheduledFor=iso(now + timedelta(hours=1)),
        audienceFilter={"enabled": True},
    )
    got, summary = recipients_of(sends, "filt-1")
    # x52 does not match X52 (case-sensitive); 55 was removed from the audience.
    assert got == {phone(51), phone(53)}
    assert summary["counts"]["audience"] == 5
    assert summary["counts"]["droppedByAudienceFilter"] == 3
    assert summary["counts"]["optedOut"] == 0  # acme's opt-out is acme's

    # A filter received inside the 5-minute deadline is ignored and counted.
    sends.send(
        sends.topics.audience_filters,
        [
            {
                "organizationId": "acme",
                "campaignId": "filt",
                "sendId": "filt-2",
                "mode": "exclude",
                "leads": [{"externalId": "x51"}],
            },
        ],
    )
    applied(sends)
    sends.trigger(
        organizationId="acme",
        campaignId="filt",
        sendId="filt-2",
        scheduledFor=iso(now + timedelta(minutes=4)),
        audienceFilter={"enabled": True},
    )
    got, summary = recipients_of(sends, "filt-2", org="acme")
    assert got == {phone(i) for i in range(51, 56)}
    assert summary["counts"]["optedOut"] == 1
    assert summary["counts"]["lateAudienceFilters"] == 1


def test_event_after_trigger_before_materialize_time_is_counted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path,
        materialize_lead_seconds=60,
    )
    try:
        worker = stack.worker()
        now = datetime.now(UTC)
        stack.members(ORG, "later", [{"phoneE164": phone(i)} for i in range(60, 64)])
        applied(stack)
        # Materializes 50 s from now: time for the steps below on a loaded machine (the
        # suite runs three test processes side by side).
        t = now + timedelta(seconds=110)
        stack.trigger(
            organizationId=ORG,
            campaignId="later",
            sendId="later-1",
            scheduledFor=iso(t),
            eventFilter={"mode": "exclude", "eventType": "purchase"},
        )
        applied(stack)
        stack.send_events(
            [
                {
                    "organizationId": ORG,
                    "eventType": "purchase",
                    "phoneE164": phone(60),
                    "occurredAt": iso(datetime.now(UTC)),
                }
            ]
        )
        # Members change after the trigger too.
        stack.members(
            ORG,
            "later",
            [{"phoneE164": phone(63), "op": "remove"}, {"phoneE164": phone(64)}],
        )
        applied(stack)
        # The read below takes up to 2 s: it must end before the send's due time.
        assert datetime.now(UTC) < t - timedelta(seconds=60 + 3), "too slow to test the deferral"
        early = stack.send_list("later-1", ORG, timeout=2)
        assert early.summary is None and early.recipients == []
        got, summary = recipients_of(stack, "later-1")
        assert got == {phone(61), phone(62), phone(64)}
        assert summary["late"] is False
        assert summary["counts"]["droppedByEventFilter"] == 1
        assert "index built from its keys in" in worker.log_path.read_text(), worker.tail()
    finally:
        stack.close()


def test_held_trigger_survives_a_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path,
        materialize_lead_seconds=60,
    )
    try:
        worker: WorkerProcess = stack.worker(name="first")
        stack.members(ORG, "held", [{"phoneE164": phone(i)} for i in range(70, 73)])
        t = datetime.now(UTC) + timedelta(seconds=90)
        stack.trigger(organizationId=ORG, campaignId="held", sendId="held-1", scheduledFor=iso(t))
        applied(stack)
        worker.stop()
        stack.worker(name="second")
        got, _ = recipients_of(stack, "held-1")
        assert got == {phone(i) for i in range(70, 73)}
    finally:
        stack.close()


def test_invalid_triggers_filters_and_members_go_to_rejects(sends: Stack) -> None:
    now = datetime.now(UTC)
    sends.trigger(
        organizationId=ORG,
        campaignId="bad",
        sendId="both",
        scheduledFor=iso(now + timedelta(hours=1)),
        eventFilter={"mode": "exclude", "eventType": "x"},
        eventFilters=[{"mode": "exclude", "eventType": "y"}],
    )
    sends.trigger(
        organizationId=ORG, campaignId="bad", sendId="nooffset", scheduledFor="2026-05-12T18:00:00"
    )
    deep: dict = {"event": "purchase"}
    for _ in range(9):
        deep = {"not": deep}
    # Misspelled, the filter would be ignored and the send would reach the purchasers; a
    # tree deeper than the contract allows is refused whole, not evaluated in part.
    sends.trigger(
        organizationId=ORG,
        campaignId="bad",
        sendId="typo",
        scheduledFor=iso(now + timedelta(hours=1)),
        eventFilters=[{"mode": "exclude", "eventType": "purchase", "whithin": {"minutes": 60}}],
    )
    sends.trigger(
        organizationId=ORG,
        campaignId="bad",
        sendId="tree",
        scheduledFor=iso(now + timedelta(hours=1)),
        conditions=deep,
    )
    sends.send(
        sends.topics.audience_filters,
        [
            {
                "organizationId": ORG,
                "campaignId": "bad",
                "sendId": "f",
                "mode": "maybe",
                "leads": [],
            },
        ],
    )
    sends.members(
        ORG,
        "bad",
        [{"phoneE164": phone(90)}, {"phoneE164": "nope"}, {"phoneE164": phone(91), "op": "delete"}],
    )
    by_source: dict[str, list[dict]] = {}
    for r in sends.rejects(expect=7):
        by_source.setdefault(r["source"], []).append(r)
    assert sorted(r["reason"] for r in by_source[sends.topics.send_triggers]) == [
        "invalid_conditions",
        "invalid_conditions",
        "invalid_json",
        "invalid_occurred_at",
    ]
    details = {r["detail"] for r in by_source[sends.topics.send_triggers]}
    assert "eventFilters[0].whithin is not a field of a send trigger" in details
    assert any(d.startswith("conditions.not.not") and "8 operators deep" in d for d in details)
    assert [r["reason"] for r in by_source[sends.topics.audience_filters]] == ["invalid_json"]
    members = sorted(by_source[sends.topics.audience_members], key=lambda r: r["index"])
    assert [(r["index"], r["reason"]) for r in members] == [
        (1, "invalid_phone"),
        (2, "invalid_json"),
    ]
    # The invalid triggers produced nothing.
    applied(sends)
    refused = {f"{ORG}:{send}" for send in ("both", "nooffset", "typo", "tree")}
    assert not [k for k, _ in sends.send_values() if k in refused]
