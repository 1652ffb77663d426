"""Audience conditions, holdouts and splits and the us-tcpa policy end to end, on a real
broker and a real worker process: a send with a 3-level tree of every leaf kind, a holdout
and two splits, read as a dispatcher reads it, against the brute-force reference of the
contract (tests/support/conditions_reference.py); its preview; explain for every member;
the same holdout again after a SIGKILL; a bad tree refused on Kafka and on HTTP.

The buckets' secret never leaves the worker, so the test cannot compute a lead's bucket:
it checks that the held-out and the recipients together are exactly the reference's
leads, that explain's bucket puts each lead in its range, and that the same leads are held
out send after send, across a restart.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from tests.conftest import new_stack
from tests.support.conditions_reference import RefEvent, RefLead, leaf_verdicts, node_holds
from tests.support.reference import iso
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG, CAMPAIGN, VIP = "cond", "w", "vip"
BASE = datetime.now(UTC).replace(microsecond=0)
# A day ago: every event the test writes, some after the send's moment, is in the past
# (a worker refuses events from the future).
AT = BASE - timedelta(days=1)
TREE: dict[str, Any] = {
    "all": [
        {
            "any": [
                {"event": "registered", "within": {"minutes": 1440}},
                {"event": "ad_click", "where": {"utm": {"regex": "fb_.*"}}},
            ]
        },
        {"not": {"event": "purchase", "where": {"spend": {"gt": 100}}}},
        {
            "any": [
                {
                    "sequence": {
                        "first": {"event": "registered"},
                        "then": {"event": "attended"},
                        "withinMinutes": 120,
                        "thenAbsent": True,
                        "sameKey": "webinarId",
                    }
                },
                {"inCampaign": VIP},
                {
                    "event": "ad_click",
                    "between": {"fromMinutes": 2880, "toMinutes": 1440},
                    "count": {"min": 2},
                },
            ]
        },
    ]
}
HOLDOUT = {"percent": 20}
SPLITS = [{"name": "A", "percent": 50}, {"name": "B", "percent": 50}]
# Buckets as the contract lays them out: [0, 2000) held out, then A and B share the rest.
RANGES = {"A": (2000, 6000), "B": (6000, 10_000)}
N = 80


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def bearer(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.api_key(ORG)}"}


def seed_world(
    rng: random.Random,
) -> tuple[list[str], set[str], dict[str, RefLead], set[str], list[dict[str, Any]]]:
    """Members, the VIP campaign's, the reference's view of each lead, the opted out, and
    the events as rows to publish."""
    phones = [f"+1212555{i:04d}" for i in range(N)]
    vip = set(rng.sample(phones, 15))
    opted_out = set(rng.sample(phones, 6))
    rows: list[dict[str, Any]] = []
    leads: dict[str, RefLead] = {}
    for phone in phones:
        events: dict[tuple[str, int], RefEvent] = {}

        def add(event_type: str, at: datetime, metadata: dict[str, Any] | None = None) -> None:
            key = (event_type, ms(at))
            if key not in events:
                events[key] = RefEvent(event_type, ms(at), metadata)

        for _ in range(rng.randint(0, 2)):
            start = AT - timedelta(minutes=rng.choice([30, 200, 1439, 1441, 3000]))
            webinar = rng.choice(["w1", "w2"])
            add("registered", start, {"webinarId": webinar})
            if rng.random() < 0.5:
                gap = rng.choice([30, 119, 121, 200])
                same = webinar if rng.random() < 0.7 else ("w2" if webinar == "w1" else "w1")
                add("attended", start + timedelta(minutes=gap), {"webinarId": same})
        for _ in range(rng.randint(0, 3)):
            add(
                "ad_click",
                AT - timedelta(minutes=rng.choice([10, 1440, 2000, 2880, 2881])),
                {"utm": rng.choice(["fb_spring", "google", "fb", "xfb_1"])},
            )
        if rng.random() < 0.3:
            add(
                "purchase",
                AT - timedelta(days=rng.randint(1, 30)),
                {"spend": rng.choice([50, 100, 100.5, 500])},
            )
        if phone in opted_out:
            add("opted_out", AT - timedelta(days=2))
        leads[phone] = RefLead(list(events.values()), frozenset({VIP} if phone in vip else ()))
        for e in events.values():
            row: dict[str, Any] = {
                "organizationId": ORG,
                "phoneE164": phone,
                "eventType": e.event_type,
                "occurredAt": iso(datetime.fromtimestamp(e.occurred_at / 1000, UTC)),
            }
            if e.metadata is not None:
                row["metadata"] = e.metadata
            rows.append(row)
    return phones, vip, leads, opted_out, rows


@pytest.fixture(scope="module")
def world(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess, list[str], dict[str, RefLead], set[str]]]:
    stack = new_stack(
        kafka_bootstrap, tmp_path_factory.mktemp("conditions"), materialize_lead_seconds=2 * 86_400
    )
    try:
        stack.api_key(ORG)
        worker = stack.worker()
        phones, vip, leads, opted_out, rows = seed_world(random.Random(24))
        stack.members(ORG, CAMPAIGN, [{"phoneE164": p} for p in phones])
        stack.members(ORG, VIP, [{"phoneE164": p} for p in sorted(vip)])
        stack.send_events(rows)
        stack.wait_caught_up()
        yield stack, worker, phones, leads, opted_out
    finally:
        stack.close()


def send(stack: Stack, send_id: str, at: datetime = AT, **fields: Any) -> tuple[dict, dict]:
    """(recipients by phone with their variant, summary) of a send with ``fields``."""
    stack.trigger(
        organizationId=ORG, campaignId=CAMPAIGN, sendId=send_id, scheduledFor=iso(at), **fields
    )
    result = stack.send_list(send_id, ORG)
    assert result.summary is not None
    got = {r["phoneE164"]: r.get("variant") for r in result.recipients}
    assert len(got) == len(result.recipients)
    counts = result.summary["counts"]
    assert counts["audience"] == (
        result.summary["recipientCount"]
        + counts["optedOut"]
        + counts["droppedByAudienceFilter"]
        + counts["droppedByEventFilter"]
        + counts["droppedByFrequencyCap"]
        + counts["droppedByQuietHours"]
        + counts["heldOut"]
    )
    return got, result.summary


def explain(worker: WorkerProcess, stack: Stack, send_id: str, phone: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{worker.url}/api/v1/sends/{ORG}/{send_id}/leads/{phone}",
        headers=bearer(stack),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_send_with_conditions_holdout_and_splits(world) -> None:
    stack, worker, phones, leads, opted_out = world
    at = ms(AT)
    passing = {p for p in phones if p not in opted_out and node_holds(TREE, leads[p], at)}
    assert 5 < len(passing) < N - 10  # the seed makes a send worth checking

    got, summary = send(stack, "c1", conditions=TREE, holdout=HOLDOUT, splits=SPLITS)
    held = passing - set(got)
    assert set(got) <= passing, set(got) - passing
    counts = summary["counts"]
    assert counts["optedOut"] == len(opted_out)
    assert counts["droppedByEventFilter"] == N - len(opted_out) - len(passing)
    assert counts["heldOut"] == len(held)
    assert set(got.values()) <= {"A", "B"}
    assert summary["variants"] == {v: sum(1 for x in got.values() if x == v) for v in ("A", "B")}

    # Explain agrees with the send for every member, leaf by leaf for those dropped.
    for phone in phones:
        why = explain(worker, stack, "c1", phone)
        assert why["consistent"] is True, why
        if phone in opted_out:
            assert why["step"] == "optedOut"
        elif phone not in passing:
            assert why["step"] == "eventFilter", why
            said = [v["holds"] for v in why["detail"]["conditions"]]
            assert said == leaf_verdicts(TREE, leads[phone], at), phone
        elif phone in held:
            assert why["step"] == "heldOut", why
            assert 0 <= why["detail"]["bucket"] < 2000
        else:
            assert why["step"] == "recipient", why
            low, high = RANGES[got[phone]]
            assert low <= why["detail"]["bucket"] < high
            assert why["detail"]["variant"] == got[phone]

    # The preview says the same, before any other send.
    body = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "scheduledFor": iso(AT),
        "conditions": TREE,
        "holdout": HOLDOUT,
        "splits": SPLITS,
        "sample": 100,
    }
    answer = httpx.post(
        f"{worker.url}/api/v1/sends/preview",
        content=msgspec.json.encode(body),
        headers={**bearer(stack), "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["counts"] == counts
    assert preview["variants"] == summary["variants"]
    assert {r["phoneE164"]: r.get("variant") for r in preview["sample"]} == got

    # The same holdout on another send holds out the same leads; another salt others.
    again, _ = send(stack, "c2", conditions=TREE, holdout=HOLDOUT, splits=SPLITS)
    assert again == got
    salted, _ = send(stack, "c3", conditions=TREE, holdout={"percent": 20, "salt": "q4"})
    assert set(salted) != set(got) and set(salted) <= passing
    assert all(v is None for v in salted.values())

    # And after a SIGKILL: the partitions' keys came back from the changelog.
    worker.kill()
    worker.start()
    after, _ = send(stack, "c4", conditions=TREE, holdout=HOLDOUT, splits=SPLITS)
    assert after == got


def test_bad_conditions_are_refused_on_kafka_and_over_http(world) -> None:
    stack, worker, *_ = world
    deep: dict[str, Any] = {"event": "registered"}
    for _ in range(9):
        deep = {"not": deep}
    stack.trigger(
        organizationId=ORG, campaignId=CAMPAIGN, sendId="bad", scheduledFor=iso(AT), conditions=deep
    )
    stack.trigger(
        organizationId=ORG,
        campaignId=CAMPAIGN,
        sendId="bad2",
        scheduledFor=iso(AT),
        splits=[{"name": "A", "percent": 60}, {"name": "B", "percent": 30}],
    )
    rejects = [r for r in stack.rejects(expect=2) if r.get("reason") == "invalid_conditions"]
    assert len(rejects) >= 2, rejects
    for body, field in (
        (
            {"conditions": {"event": "ad_click", "where": {"utm": {"regex": "(?=fb)"}}}},
            "conditions.where.utm.regex",
        ),
        ({"conditions": {"any": [{"event": "a"}, {"segment": "x"}]}}, "conditions.any[1]"),
        ({"holdout": {"percent": 60}}, "holdout.percent"),
        ({"conditoins": {"event": "a"}}, "conditoins"),
    ):
        answer = httpx.post(
            f"{worker.url}/api/v1/sends/preview",
            content=msgspec.json.encode({"organizationId": ORG, "campaignId": CAMPAIGN, **body}),
            headers={**bearer(stack), "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_conditions", field), error
    # Nothing came out for the refused sends.
    assert not [k for k, _ in stack.send_values(timeout=5) if k in (f"{ORG}:bad", f"{ORG}:bad2")]


def test_the_us_tcpa_policy_holds_a_florida_number_after_8_pm(world) -> None:
    stack, worker, *_ = world
    miami, new_york, london = "+13055550142", "+12125550142", "+447911123456"
    stack.members(ORG, "tcpa", [{"phoneE164": p} for p in (miami, new_york, london)])
    stack.wait_caught_up()
    # 20:30 in Miami and New York (an hour after 01:30 UTC in winter, 00:30 in summer).
    at = BASE.replace(minute=30, second=0)
    while at.astimezone(ZoneInfo("America/New_York")).hour != 20:
        at += timedelta(hours=1)
    stack.trigger(
        organizationId=ORG,
        campaignId="tcpa",
        sendId="t1",
        scheduledFor=iso(at),
        quietHours={"policy": "us-tcpa"},
    )
    result = stack.send_list("t1", ORG)
    assert result.summary is not None
    # Florida's 8 pm has passed, the federal 9 pm has not; a UK number is not the policy's.
    assert {r["phoneE164"] for r in result.recipients} == {new_york, london}
    assert result.summary["counts"]["droppedByQuietHours"] == 1
    why = explain(worker, stack, "t1", miami)
    assert why["step"] == "quietHours" and why["detail"]["rule"] == "us-fl", why
