"""Send preview and send explanation on a real broker: a preview counts what a real send
of the same fields materializes on the same state, and what an independent reference
computes from the seeded events; an explanation names the step and the facts."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from leadstream.domain.auth import sign
from leadstream.domain.normalize import format_ms, parse_rfc3339_ms
from leadstream.domain.partitioning import lead_partition
from tests.support.kafka import end_offsets
from tests.support.reference import Reference, iso
from tests.support.signing import credential_headers, send_signed, signed_request
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG, OTHER = "42", "7"
CAMPAIGN = "pv"
PREVIEW = "/api/v1/sends/preview"


def clock() -> datetime:
    """Now, cut to the millisecond as the API cuts instants. Taken when a world is seeded,
    never at import: a module collected half an hour before it runs would place its sends
    past the audience filters' deadline (5 minutes before the send)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def phone(i: int) -> str:
    return f"+1666{i:07d}"


@dataclass
class Seeded:
    """What the test wrote: the members (phone -> externalId) and every event, around
    ``now``; every scenario's send fires at ``t`` (the window filter's edges are placed
    around it)."""

    now: datetime = field(default_factory=clock)
    members: dict[str, str | None] = field(default_factory=dict)
    events: Reference = field(default_factory=Reference)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def t(self) -> datetime:
        return self.now + timedelta(minutes=30)

    def event(self, p: str, event_type: str, at: datetime) -> None:
        self.rows.append({"phoneE164": p, "eventType": event_type, "occurredAt": iso(at)})
        self.events.add(ORG, p, event_type, iso(at))

    def reference(self, body: dict[str, Any]) -> tuple[dict[str, int], dict[str, str | None]]:
        """The counts and recipients of a send with ``body``'s fields, by brute force over
        the seeded facts (docs/contract.md, section 3.4)."""
        at = parse_rfc3339_ms(body["scheduledFor"])
        counts = dict.fromkeys(
            ("audience", "optedOut", "droppedByAudienceFilter", "droppedByEventFilter"), 0
        )
        recipients = {}
        for p, external_id in self.members.items():
            counts["audience"] += 1
            if self.events.expected(ORG, p)["optedOut"]:
                counts["optedOut"] += 1
            elif not _audience_filter_keeps(body.get("audienceFilter"), p, external_id):
                counts["droppedByAudienceFilter"] += 1
            elif not all(self._keeps(f, p, at) for f in _filters(body)):
                counts["droppedByEventFilter"] += 1
            else:
                recipients[p] = external_id
        return {
            **counts,
            "lateAudienceFilters": 0,
            "droppedByFrequencyCap": 0,
            "droppedByQuietHours": 0,
            "heldOut": 0,
        }, recipients

    def _keeps(self, event_filter: dict[str, Any], p: str, at: int) -> bool:
        minutes = event_filter.get("within", {}).get("minutes")
        matching = [
            ts
            for typ, ts in self.events.events[(ORG, p)]
            if typ == event_filter["eventType"]
            and (minutes is None or at - minutes * 60_000 <= ts <= at)
        ]
        has = len(matching) >= event_filter.get("minCount", 1)
        return has if event_filter["mode"] == "include" else not has


def _filters(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [body["eventFilter"]] if "eventFilter" in body else body.get("eventFilters", [])


def _audience_filter_keeps(spec: dict[str, Any] | None, p: str, external_id: str | None) -> bool:
    if spec is None:
        return True
    named = any(
        lead.get("phoneE164") == p or (external_id and lead.get("externalId") == external_id)
        for lead in spec["leads"]
    )
    return named if spec["mode"] == "include" else not named


_EDGES = (
    timedelta(milliseconds=-1),
    timedelta(0),
    timedelta(minutes=30),
    timedelta(days=-1),
)


def seed(stack: Stack, leads: int, *, rng_seed: int) -> Seeded:
    """A campaign of ``leads`` members (most with an externalId) and their events: opt-outs
    (some undone), purchases, confirmations, attendance around t's 120-minute window edge,
    and events of phones outside the campaign."""
    rng = random.Random(rng_seed)
    seeded = Seeded()
    for i in range(leads):
        p = phone(i)
        seeded.members[p] = f"x{i}" if rng.random() < 0.8 else None
        if rng.random() < 0.1:
            seeded.event(p, "opted_out", seeded.now - timedelta(days=2))
            if rng.random() < 0.3:
                seeded.event(p, "opted_in", seeded.now - timedelta(days=1))
        if rng.random() < 0.25:
            seeded.event(p, "purchase", seeded.now - timedelta(days=rng.randint(1, 30)))
        if rng.random() < 0.4:
            seeded.event(p, "doi_confirmed", seeded.now - timedelta(hours=rng.randint(1, 90)))
        if rng.random() < 0.2:
            seeded.event(p, "doi_confirmed", seeded.now - timedelta(hours=rng.randint(1, 90)))
        if rng.random() < 0.4:  # around the start of t's 120-minute window, both sides
            offset = rng.choice(_EDGES)
            seeded.event(p, "attended", seeded.t - timedelta(minutes=120) + offset)
    for i in range(leads, leads + 20):  # not members: they count nowhere
        seeded.event(phone(i), "purchase", seeded.now - timedelta(days=1))
    stack.members(
        ORG,
        CAMPAIGN,
        [
            {"phoneE164": p, "externalId": x} if x else {"phoneE164": p}
            for p, x in seeded.members.items()
        ],
    )
    stack.send_events([{"organizationId": ORG, "events": seeded.rows}])
    return seeded


@pytest.fixture(scope="module")
def world(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess, Seeded]]:
    """One worker; any send scheduled within two days materializes as its trigger arrives."""
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path_factory.mktemp("preview"),
        materialize_lead_seconds=2 * 86_400,
    )
    try:
        worker = stack.worker()
        seeded = seed(stack, 400, rng_seed=11)
        stack.wait_caught_up()
        yield stack, worker, seeded
    finally:
        stack.close()


def bearer(stack: Stack, org: str = ORG) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.api_key(org)}"}


def post_preview(
    worker: WorkerProcess, body: Any, headers: dict[str, str], **params: str
) -> httpx.Response:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return httpx.post(
        worker.url + PREVIEW,
        content=content,
        headers={**headers, "Content-Type": "application/json"},
        params=params,
        timeout=60,
    )


def explain(
    worker: WorkerProcess, stack: Stack, send: str, p: str, org: str = ORG
) -> httpx.Response:
    return httpx.get(
        f"{worker.url}/api/v1/sends/{org}/{send}/leads/{p}", headers=bearer(stack, org), timeout=10
    )


def materialized(stack: Stack, send: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """Trigger a real send with ``body``'s fields; its summary and recipients."""
    fields = {k: v for k, v in body.items() if k not in ("audienceFilter", "sample")}
    if "audienceFilter" in body:
        stack.send(
            stack.topics.audience_filters,
            [
                {
                    "organizationId": ORG,
                    "campaignId": body["campaignId"],
                    "sendId": send,
                    **body["audienceFilter"],
                }
            ],
        )
        stack.wait_caught_up()
        fields["audienceFilter"] = {"enabled": True}
    stack.trigger(**fields, sendId=send)
    result = stack.send_list(send, ORG)
    assert result.summary is not None, f"no summary for send {send}"
    return result.summary, {r["phoneE164"]: r["externalId"] for r in result.recipients}


SCENARIOS = {
    "include": {"eventFilter": {"mode": "include", "eventType": "doi_confirmed", "minCount": 2}},
    "exclude": {"eventFilter": {"mode": "exclude", "eventType": "purchase"}},
    "window": {
        "eventFilters": [
            {"mode": "exclude", "eventType": "attended", "within": {"minutes": 120}},
            {"mode": "exclude", "eventType": "purchase", "within": {"minutes": 7 * 24 * 60}},
        ]
    },
    "audience-filter": {
        "audienceFilter": {
            "mode": "exclude",
            "leads": [{"externalId": f"x{i}"} for i in range(0, 400, 3)]
            + [{"phoneE164": phone(i)} for i in range(1, 400, 7)],
        },
        "eventFilter": {"mode": "include", "eventType": "doi_confirmed"},
    },
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_preview_counts_what_the_send_materializes_and_the_reference(world, name: str) -> None:
    stack, worker, seeded = world
    body = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "scheduledFor": iso(seeded.t),
        **SCENARIOS[name],
    }
    before = end_offsets(stack.kafka, stack.topics.send_recipients)
    answer = post_preview(worker, {**body, "sample": 7}, bearer(stack))
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    time.sleep(1)  # a wrong write would have time to land
    assert end_offsets(stack.kafka, stack.topics.send_recipients) == before, "a preview wrote"

    expected_counts, expected = seeded.reference(body)
    assert preview["counts"] == expected_counts
    assert preview["recipientCount"] == len(expected)
    assert 0 < len(expected) < len(seeded.members), "a scenario that keeps all or none tests little"
    assert (preview["organizationId"], preview["campaignId"]) == (ORG, CAMPAIGN)
    assert preview["scheduledFor"] == format_ms(parse_rfc3339_ms(iso(seeded.t)))
    assert len(preview["sample"]) == 7
    assert {s["phoneE164"]: s["externalId"] for s in preview["sample"]}.items() <= expected.items()

    summary, recipients = materialized(stack, f"{name}-1", body)
    assert summary["counts"] == preview["counts"]
    assert summary["recipientCount"] == preview["recipientCount"]
    assert recipients == expected


def test_preview_sample_defaults_to_none_and_is_cut_at_the_recipients(world) -> None:
    stack, worker, _ = world
    body = {"organizationId": ORG, "campaignId": CAMPAIGN, **SCENARIOS["include"]}
    default = post_preview(worker, body, bearer(stack)).json()
    assert default["sample"] == [] and default["recipientCount"] > 0
    every = post_preview(worker, {**body, "sample": 100}, bearer(stack)).json()
    assert len(every["sample"]) == min(100, every["recipientCount"])
    # scheduledFor defaulted to now: the worker's clock, as the API writes instants.
    shown = parse_rfc3339_ms(every["scheduledFor"])
    assert abs(shown - time.time() * 1000) < 60_000
    nobody = post_preview(worker, {**body, "campaignId": "none", "sample": 5}, bearer(stack))
    assert nobody.json()["recipientCount"] == 0 and nobody.json()["sample"] == []


def test_preview_of_some_partitions_sums_to_the_whole(world) -> None:
    stack, worker, seeded = world
    body = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "scheduledFor": iso(seeded.t),
        **SCENARIOS["window"],
    }
    whole = post_preview(worker, body, bearer(stack)).json()
    parts = [
        post_preview(worker, body, bearer(stack), partitions=p).json() for p in ("0", "1,2", "3")
    ]
    for key in whole["counts"]:
        assert sum(p["counts"][key] for p in parts) == whole["counts"][key]
    assert sum(p["recipientCount"] for p in parts) == whole["recipientCount"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        ([1, 2], 400, "invalid_json"),
        ({"campaignId": CAMPAIGN}, 400, "missing_field"),
        ({"organizationId": ORG}, 400, "missing_field"),
        (
            {"organizationId": ORG, "campaignId": CAMPAIGN, "scheduledFor": "tomorrow"},
            400,
            "invalid_occurred_at",
        ),
        ({"organizationId": ORG, "campaignId": CAMPAIGN, "sample": 101}, 400, "invalid_json"),
        ({"organizationId": ORG, "campaignId": CAMPAIGN, "sample": True}, 400, "invalid_json"),
        (
            {
                "organizationId": ORG,
                "campaignId": CAMPAIGN,
                "eventFilter": {"mode": "maybe", "eventType": "x"},
            },
            400,
            "invalid_json",
        ),
        # A trigger's switch is not an inline filter.
        (
            {"organizationId": ORG, "campaignId": CAMPAIGN, "audienceFilter": {"enabled": True}},
            400,
            "invalid_conditions",
        ),
        (
            {
                "organizationId": ORG,
                "campaignId": CAMPAIGN,
                "audienceFilter": {"mode": "include", "leads": [{"phoneE164": "nope"}]},
            },
            400,
            "invalid_phone",
        ),
        ({"organizationId": OTHER, "campaignId": CAMPAIGN}, 403, "forbidden"),
    ],
)
def test_an_invalid_preview_is_a_json_error_with_its_reason(world, body, status, code) -> None:
    stack, worker, _ = world
    answer = post_preview(worker, body, bearer(stack))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"eventFilterz": {"mode": "exclude", "eventType": "purchase"}}, "eventFilterz"),
        (
            {"eventFilters": [{"mode": "exclude", "eventType": "purchase", "whithin": {}}]},
            "eventFilters[0].whithin",
        ),
        ({"quietHours": {"start": "21:00", "end": "08:00", "tz": "UTC"}}, "quietHours.tz"),
        ({"conditions": {"not": {"event": "purchase", "windw": 5}}}, "conditions.not.windw"),
        ({"audienceFilter": {"mode": "exclude", "leads": [], "op": "x"}}, "audienceFilter.op"),
    ],
)
def test_a_field_no_trigger_defines_is_a_400_naming_it(world, fields, field) -> None:
    stack, worker, _ = world
    body = {"organizationId": ORG, "campaignId": CAMPAIGN, **fields}
    answer = post_preview(worker, body, bearer(stack))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_conditions", field)


def test_a_preview_is_bounded_in_conditions_and_inline_leads(world) -> None:
    stack, worker, _ = world
    base = {"organizationId": ORG, "campaignId": CAMPAIGN}
    one = {"mode": "exclude", "eventType": "purchase"}
    assert post_preview(worker, {**base, "eventFilters": [one] * 64}, bearer(stack)).is_success
    for body, code in (
        ({**base, "eventFilters": [one] * 65}, "too_many_conditions"),
        (
            {
                **base,
                "audienceFilter": {"mode": "exclude", "leads": [{"externalId": "x"}] * 50_001},
            },
            "too_many_leads",
        ),
    ):
        answer = post_preview(worker, body, bearer(stack))
        assert answer.status_code == 413 and answer.json()["error"]["code"] == code, answer.text


@pytest.mark.parametrize("partitions", ["", "4", "0,x", "-1", "1" * 5000])
def test_a_bad_partitions_parameter_is_a_400(world, partitions: str) -> None:
    stack, worker, _ = world
    body = {"organizationId": ORG, "campaignId": CAMPAIGN}
    answer = post_preview(worker, body, bearer(stack), partitions=partitions)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_partitions"


def test_both_routes_need_a_key_of_the_organization(world) -> None:
    stack, worker, _ = world
    body = {"organizationId": ORG, "campaignId": CAMPAIGN}
    url = f"{worker.url}/api/v1/sends/{ORG}/exclude-1/leads/{phone(1)}"
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer lsk_not_a_key"}, 401),
        (bearer(stack, OTHER), 403),
    ):
        previewed = post_preview(worker, body, headers)
        assert previewed.status_code == status, previewed.text
        assert "recipientCount" not in previewed.text
        explained = httpx.get(url, headers=headers, timeout=10)
        assert explained.status_code == status, explained.text
        assert explained.json()["error"]["code"] == (
            "unauthorized" if status == 401 else "forbidden"
        )


def test_a_signed_preview_is_answered(world) -> None:
    """Signed v1 over its method, path, query, timestamp and body; a body-only signature is
    for webhooks only."""
    stack, worker, _ = world
    key_id, secret = stack.signing_key(ORG)
    raw = msgspec.json.encode({"organizationId": ORG, "campaignId": CAMPAIGN, "sample": 1})
    url = worker.url + PREVIEW
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + 30  # the worker re-reads the auth file by itself
    while True:
        answer = send_signed("POST", url, key_id, secret, content=raw, headers=headers)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    signed = signed_request("POST", url, key_id, secret, content=raw, headers=headers)
    tampered = raw.replace(b'"sample":1', b'"sample":2')
    refused = post_preview(worker, tampered, credential_headers(signed))
    assert refused.status_code == 401
    body_only = post_preview(worker, raw, {"X-Leadstream-Signature": sign(secret, raw)})
    assert body_only.status_code == 401, body_only.text


# -- explanation -------------------------------------------------------------------------


EX = "ex"


@pytest.fixture(scope="module")
def explained_send(world) -> tuple[Stack, WorkerProcess, dict[str, str]]:
    """Send ``ex-1`` of campaign ``ex``, at the world's ``now`` + 1 hour: exclude
    purchasers; who is where."""
    stack, worker, seeded = world
    now = seeded.now
    who = {
        "recipient": "+16670000001",
        "opted_out": "+16670000002",
        "purchaser": "+16670000003",
        "buys_later": "+16670000004",
        "outsider": "+16670000005",
        "filtered": "+16670000006",
    }
    stack.members(ORG, EX, [{"phoneE164": p} for k, p in who.items() if k != "outsider"])
    bought = now - timedelta(days=3)
    stack.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "opted_out",
                "phoneE164": who["opted_out"],
                "occurredAt": iso(now - timedelta(days=1)),
            },
            {
                "organizationId": ORG,
                "eventType": "purchase",
                "phoneE164": who["purchaser"],
                "occurredAt": iso(bought),
            },
            {
                "organizationId": ORG,
                "eventType": "purchase",
                "phoneE164": who["purchaser"],
                "occurredAt": iso(bought - timedelta(days=1)),
            },
            {
                "organizationId": ORG,
                "eventType": "purchase",
                "phoneE164": who["outsider"],
                "occurredAt": iso(bought),
            },
        ]
    )
    stack.send(
        stack.topics.audience_filters,
        [
            {
                "organizationId": ORG,
                "campaignId": EX,
                "sendId": "ex-1",
                "mode": "exclude",
                "leads": [{"phoneE164": who["filtered"]}],
            }
        ],
    )
    stack.wait_caught_up()
    stack.trigger(
        organizationId=ORG,
        campaignId=EX,
        sendId="ex-1",
        scheduledFor=iso(now + timedelta(hours=1)),
        eventFilter={"mode": "exclude", "eventType": "purchase"},
        audienceFilter={"enabled": True},
    )
    result = stack.send_list("ex-1", ORG)
    assert {r["phoneE164"] for r in result.recipients} == {who["recipient"], who["buys_later"]}
    return stack, worker, who


@pytest.mark.parametrize(
    ("who", "sent", "step"),
    [
        ("recipient", True, "recipient"),
        ("opted_out", False, "optedOut"),
        ("purchaser", False, "eventFilter"),
        ("filtered", False, "audienceFilter"),
        ("outsider", False, "notInAudience"),
    ],
)
def test_explain_names_the_step_a_lead_left_the_send(
    world, explained_send, who, sent, step
) -> None:
    stack, worker, leads = explained_send
    now = world[2].now
    answer = explain(worker, stack, "ex-1", leads[who])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["sent"], body["step"], body["consistent"]) == (sent, step, True)
    assert "now" not in body
    assert (body["organizationId"], body["sendId"], body["campaignId"]) == (ORG, "ex-1", EX)
    assert body["phoneE164"] == leads[who]
    assert body["scheduledFor"] == format_ms(parse_rfc3339_ms(iso(now + timedelta(hours=1))))
    assert parse_rfc3339_ms(body["materializedAt"]) <= time.time() * 1000
    assert body["detail"]["message"]


def test_explain_of_an_event_filter_names_the_filter_and_the_events(world, explained_send) -> None:
    stack, worker, leads = explained_send
    detail = explain(worker, stack, "ex-1", leads["purchaser"]).json()["detail"]
    assert detail["eventFilter"] == {"mode": "exclude", "eventType": "purchase", "minCount": 1}
    assert detail["matchingEvents"] == 2
    bought = world[2].now - timedelta(days=3)
    assert sorted(detail["occurredAt"]) == sorted(
        format_ms(parse_rfc3339_ms(iso(t))) for t in (bought, bought - timedelta(days=1))
    )
    opted = explain(worker, stack, "ex-1", leads["opted_out"]).json()["detail"]
    assert opted["eventType"] == "opted_out"


def test_an_event_after_the_send_makes_the_explanation_inconsistent(explained_send) -> None:
    stack, worker, leads = explained_send
    stack.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "purchase",
                "phoneE164": leads["buys_later"],
                "occurredAt": iso(datetime.now(UTC)),
            }
        ]
    )
    stack.wait_caught_up()
    body = explain(worker, stack, "ex-1", leads["buys_later"]).json()
    assert (body["sent"], body["step"], body["consistent"]) == (True, "recipient", False)
    assert body["now"]["step"] == "eventFilter"
    assert body["now"]["detail"]["matchingEvents"] == 1


def test_explain_of_an_unknown_send_is_a_404(explained_send) -> None:
    stack, worker, leads = explained_send
    answer = explain(worker, stack, "never-sent", leads["recipient"])
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_send"
    bad = explain(worker, stack, "not%20an%20id", leads["recipient"])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_send_id"
    odd = explain(worker, stack, "ex-1", "not-a-phone")
    assert odd.status_code == 400 and odd.json()["error"]["code"] == "invalid_phone"


# -- two workers -------------------------------------------------------------------------


def test_two_workers_preview_the_same_counts_as_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Each worker holds some partitions: either one asks the other for its share."""
    run = uuid.uuid4().hex[:10]
    stack = Stack(kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path)
    try:
        a = stack.worker(name="a", data_dir=tmp_path / "a")
        b = stack.worker(name="b", data_dir=tmp_path / "b")
        seeded = seed(stack, 300, rng_seed=23)
        stack.wait_caught_up()
        held = split_between(a, b, stack.settings.partitions)
        assert held[a.url] and held[b.url], "one worker holds every partition: nothing fans out"
        key_id, secret = stack.signing_key(ORG)
        for name in ("window", "audience-filter"):
            body = {
                "organizationId": ORG,
                "campaignId": CAMPAIGN,
                "scheduledFor": iso(seeded.t),
                **SCENARIOS[name],
                "sample": 50,
            }
            expected_counts, expected = seeded.reference(body)
            for worker in (a, b):
                answer = post_preview(worker, body, bearer(stack))
                assert answer.status_code == 200, answer.text
                preview = answer.json()
                assert preview["counts"] == expected_counts
                assert preview["recipientCount"] == len(expected)
                assert len(preview["sample"]) == min(50, len(expected))
                assert {s["phoneE164"] for s in preview["sample"]} <= set(expected)
        # A tenant's v1 signature is checked by the worker asked; the other is asked with
        # the cluster's own.
        raw = msgspec.json.encode({"organizationId": ORG, "campaignId": CAMPAIGN})
        url, json_type = a.url + PREVIEW, {"Content-Type": "application/json"}
        deadline = time.monotonic() + 30
        while True:
            signed = send_signed("POST", url, key_id, secret, content=raw, headers=json_type)
            if signed.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert signed.status_code == 200, signed.text
        assert signed.json()["counts"]["audience"] == len(seeded.members)
        # Asked for a partition it does not hold, a worker names the one that does.
        foreign = str(held[b.url][0])
        refused = post_preview(a, raw, bearer(stack), partitions=foreign)
        assert refused.status_code == 421 and refused.json()["owner"] == b.url
        theirs = next(
            p
            for p in seeded.members
            if lead_partition(ORG, p, stack.settings.partitions) in held[b.url]
        )
        elsewhere = explain(a, stack, "any-send", theirs)
        assert elsewhere.status_code == 421 and elsewhere.json()["owner"] == b.url
        assert elsewhere.json()["error"]["code"] == "not_here"
        # b stops; until its session runs out the group still gives it its partitions, and
        # a, which cannot get their share, answers 503 rather than a part of the counts.
        b.stop()
        down = post_preview(a, raw, bearer(stack))
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "not_ready" and down.headers["Retry-After"]
    finally:
        stack.close()


def split_between(a: WorkerProcess, b: WorkerProcess, partitions: int) -> dict[str, list[int]]:
    """The partitions each worker holds, once the two hold every one between them."""
    deadline = time.monotonic() + 120
    while True:
        held = {w.url: ready_partitions(w) for w in (a, b)}
        if sorted(held[a.url] + held[b.url]) == list(range(partitions)):
            return held
        if time.monotonic() > deadline:
            return held
        time.sleep(0.5)


def ready_partitions(worker: WorkerProcess) -> list[int]:
    ready = httpx.get(worker.url + "/readyz", timeout=10)
    return list(ready.json()["partitions"]) if ready.status_code == 200 else []
