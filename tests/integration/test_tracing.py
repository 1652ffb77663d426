"""Traces on a real broker, exported by a real worker with the standard OTEL_* variables
to a collector the test runs: one trace from a webhook POST to the applied events, one
from a message on an input topic, one from a send trigger to its partitions' shares, their
commits and the summary; recipient and reject records carry their headers."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from confluent_kafka import Producer

from leadstream.domain.partitioning import lead_partition
from tests.support.kafka import client_config, read_topic
from tests.support.otlp import Collected, Collector, waterfall_svg
from tests.support.reference import iso
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

# Set to a directory, the traces drawn for the README are written there (docs/images).
DRAW_TO = os.environ.get("LEADSTREAM_DRAW_TRACES")

ORG = "42"
SERVER, CONSUMER = 2, 5  # OTLP span kinds
PHONES = [f"+1555{i:07d}" for i in range(12)]


def traceparent() -> tuple[str, str, str]:
    """A caller's (traceparent, trace id, span id), random."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture(scope="module")
def traced(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess, Collector]]:
    collector = Collector().start()
    run = uuid.uuid4().hex[:10]
    root: Path = tmp_path_factory.mktemp("traced")
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=root,
        materialize_lead_seconds=86_400,
    )
    try:
        worker = stack.worker(
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_SERVICE_NAME": "leadstream-under-test",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
        )
        yield stack, worker, collector
    finally:
        stack.close()
        collector.stop()


def produce_traced(stack: Stack, topic: str, value: Any, parent: str) -> None:
    p = Producer(client_config(stack.kafka))
    p.produce(topic, msgspec.json.encode(value), headers=[("traceparent", parent.encode())])
    assert p.flush(30) == 0


def in_trace(spans: list[Collected], trace_id: str) -> list[Collected]:
    return [s for s in spans if s.trace_id == trace_id]


def no_phone_anywhere(spans: list[Collected]) -> None:
    digits = {p.lstrip("+") for p in PHONES}
    for s in spans:
        for value in s.attributes.values():
            text = str(value)
            assert not any(d in text for d in digits), (s.name, s.attributes)


def test_a_webhook_post_is_one_trace_to_the_applied_events(traced) -> None:
    stack, worker, collector = traced
    parent, trace_id, caller = traceparent()
    now = datetime.now(UTC)
    rows = [{"phoneE164": p, "occurredAt": iso(now - timedelta(minutes=5))} for p in PHONES[:6]]
    answer = httpx.post(
        f"{worker.url}/api/v1/webhooks/lead-events",
        json={"organizationId": ORG, "eventType": "click", "events": rows},
        headers={"Authorization": f"Bearer {stack.api_key(ORG)}", "traceparent": parent},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["inserted"] == 6
    partitions = {lead_partition(ORG, p, stack.settings.partitions) for p in PHONES[:6]}

    def complete(spans: list[Collected]) -> bool:
        mine = in_trace(spans, trace_id)
        return any(s.kind == SERVER for s in mine) and sum(s.name == "apply" for s in mine) >= len(
            partitions
        )

    spans = in_trace(collector.wait_for(complete), trace_id)
    [http] = [s for s in spans if s.kind == SERVER]
    assert http.name == "HTTP POST /api/v1/webhooks/lead-events"
    assert http.parent_id == caller
    assert http.attributes["http.route"] == "/api/v1/webhooks/lead-events"
    assert http.attributes["http.response.status_code"] == 200
    assert http.attributes["leadstream.organization_id"] == ORG
    assert http.service == "leadstream-under-test"
    applies = [s for s in spans if s.name == "apply"]
    assert {s.parent_id for s in applies} == {http.span_id}
    assert {s.attributes["leadstream.partition"] for s in applies} == partitions
    assert sum(s.attributes["leadstream.inserted"] for s in applies) == 6
    assert all(s.attributes["leadstream.organization_id"] == ORG for s in applies)
    no_phone_anywhere(collector.spans)
    if DRAW_TO:
        title = "POST /api/v1/webhooks/lead-events -> applied events"
        Path(DRAW_TO, "trace-webhook.svg").write_text(waterfall_svg(spans, title))


def test_a_message_on_an_input_topic_is_routed_and_applied_in_its_trace(traced) -> None:
    stack, worker, collector = traced
    parent, trace_id, caller = traceparent()
    now = datetime.now(UTC)
    good = [{"phoneE164": p, "occurredAt": iso(now - timedelta(minutes=1))} for p in PHONES[6:9]]
    bad = {"phoneE164": "not a phone", "occurredAt": iso(now)}
    value = {"organizationId": ORG, "eventType": "open", "events": [*good, bad]}
    produce_traced(stack, stack.topics.lead_events, value, parent)

    partitions = {lead_partition(ORG, r["phoneE164"], stack.settings.partitions) for r in good}

    def complete(spans: list[Collected]) -> bool:
        mine = in_trace(spans, trace_id)
        applied = {s.attributes["leadstream.partition"] for s in mine if s.name == "apply"}
        return any(s.name == "route" for s in mine) and applied >= partitions

    spans = collector.wait_for(complete)
    mine = in_trace(spans, trace_id)
    [route] = [s for s in mine if s.name == "route"]
    assert route.parent_id == caller and route.kind == CONSUMER
    assert route.attributes["messaging.destination.name"] == stack.topics.lead_events
    # The batch it was read in links to it; the route links back to the batch.
    [(batch_trace, batch_span)] = route.links
    [batch] = [s for s in spans if s.span_id == batch_span and s.trace_id == batch_trace]
    assert batch.name == "route batch"
    assert (trace_id, caller) in batch.links
    applies = [s for s in mine if s.name == "apply"]
    assert {s.parent_id for s in applies} == {route.span_id}
    assert {s.attributes["leadstream.partition"] for s in applies} == partitions
    assert sum(s.attributes["leadstream.inserted"] for s in applies) == len(good)
    # A caller that did not sample its trace: the message is routed with the batch's rows,
    # applied, and nothing of it is recorded.
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    late = {"phoneE164": PHONES[9], "eventType": "open", "occurredAt": iso(now)}
    produce_traced(stack, stack.topics.lead_events, {"organizationId": ORG, **late}, unsampled)
    stack.wait_caught_up()
    assert [e["eventType"] for e in worker.lead(ORG, PHONES[9])["events"]] == ["open"]
    assert not in_trace(collector.spans, unsampled.split("-")[1])
    # The bad row's reject says where it came from and why, in its headers.
    [reject] = read_topic(stack.kafka, stack.topics.rejects, expect=1, timeout=60)
    headers = dict(reject.headers() or [])
    record = msgspec.json.decode(reject.value())
    assert headers["sourceTopic"].decode() == stack.topics.lead_events == record["source"]
    assert headers["reason"].decode() == record["reason"] == "invalid_phone"


def test_a_trigger_is_one_trace_to_every_share_commit_and_the_summary(traced) -> None:
    stack, _, collector = traced
    send = "traced-1"
    members = PHONES[:10]
    stack.members(ORG, "tr", [{"phoneE164": p} for p in members])
    stack.wait_caught_up()
    parent, trace_id, caller = traceparent()
    at = datetime.now(UTC) + timedelta(minutes=10)
    trigger = {"organizationId": ORG, "campaignId": "tr", "sendId": send, "scheduledFor": iso(at)}
    produce_traced(stack, stack.topics.send_triggers, trigger, parent)
    result = stack.send_list(send, ORG)
    assert result.summary is not None
    assert {r["phoneE164"] for r in result.recipients} == set(members)
    partitions = stack.settings.partitions

    def complete(spans: list[Collected]) -> bool:
        mine = in_trace(spans, trace_id)
        return (
            sum(s.name == "materialize" for s in mine) == partitions
            and sum(s.name == "commit" for s in mine) == partitions
            and any(s.name == "summary" for s in mine)
        )

    spans = in_trace(collector.wait_for(complete), trace_id)
    [route] = [s for s in spans if s.name == "route"]
    assert route.parent_id == caller
    claims = [s for s in spans if s.attributes.get("leadstream.command") == "ClaimTrigger"]
    assert [c.parent_id for c in claims] == [route.span_id]
    shares = {s.attributes["leadstream.partition"]: s for s in spans if s.name == "materialize"}
    assert sorted(shares) == list(range(partitions))
    for share in shares.values():
        assert share.parent_id == route.span_id
        assert share.attributes["leadstream.organization_id"] == ORG
        assert share.attributes["leadstream.send_id"] == send
    commits = [s for s in spans if s.name == "commit"]
    assert sorted(c.parent_id for c in commits) == sorted(s.span_id for s in shares.values())
    [summary] = [s for s in spans if s.name == "summary"]
    assert summary.parent_id == route.span_id
    no_phone_anywhere(collector.spans)
    if DRAW_TO:
        title = "send trigger -> shares, commits, summary"
        Path(DRAW_TO, "trace-send.svg").write_text(waterfall_svg(spans, title))

    # Each record of the send carries its headers: a dispatcher continues the trace from
    # a chunk's share, and routes without parsing the JSON.
    key = f"{ORG}:{send}".encode()
    records = [m for m in read_topic(stack.kafka, stack.topics.send_recipients) if m.key() == key]
    chunks = 0
    for m in records:
        value, headers = msgspec.json.decode(m.value()), dict(m.headers() or [])
        assert headers["organizationId"] == ORG.encode()
        assert headers["sendId"] == send.encode()
        assert headers["type"].decode() == value["type"]
        if value["type"] == "recipients":
            chunks += 1
            assert headers["chunk"] == str(value["chunk"]).encode()
            share = shares[value["partition"]]
            assert headers["traceparent"].decode() == share.traceparent
        else:
            assert value["type"] == "summary" and "chunk" not in headers
            assert headers["traceparent"].decode() == summary.traceparent
    assert chunks == sum(1 for m in records) - 1 >= 1
