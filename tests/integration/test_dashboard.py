"""Every metric the Grafana dashboard queries is exported by a running worker once it has
ingested (a bad row among the good), refused a bad trigger, dead-lettered a message,
emitted a send and served HTTP: a panel never reads a name nobody writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from leadstream.domain.rejects import Reason
from tests.support.dashboard import (
    dashboard_queries,
    grouping_labels,
    load_dashboard,
    metric_names,
)
from tests.support.kafka import producer
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = 42
PHONES = ["+15550104001", "+15550104002", "+15550104003"]

# sample name -> the label sets it was exported with
Samples = dict[str, list[dict[str, str]]]


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrape(worker: WorkerProcess) -> Samples:
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def value(worker: WorkerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def eventually(check: Callable[[], bool], timeout: float = 120.0) -> None:
    """Wait until ``check()`` (counts cross process and topic boundaries on their own
    time); the assertion that follows says what was missing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not check():
        time.sleep(0.5)


def drive(stack: Stack, worker: WorkerProcess) -> None:
    """Make every series the dashboard reads exist, each for a reason of its own."""
    t = stack.topics
    now = datetime.now(UTC)
    stack.members(ORG, "dash", [{"phoneE164": p} for p in PHONES])
    # Ingest on lead-events (the router child): two good rows and one bad (invalid_phone).
    row = {"organizationId": ORG, "eventType": "webinar_attended", "occurredAt": iso(now)}
    stack.send_events(
        [
            {**row, "phoneE164": PHONES[0]},
            {**row, "phoneE164": PHONES[1]},
            {**row, "phoneE164": "12"},
        ]
    )
    # A trigger that cannot be read: rejected by the worker process itself.
    stack.send(t.send_triggers, [b"{not json"])
    # A lead-keyed command that cannot be applied: dead-lettered after its retries.
    p = producer(stack.bootstrap)
    p.produce(t.by_lead, value=b"not msgpack", partition=0)
    assert p.flush(60) == 0
    stack.wait_caught_up()
    # A send whose moment has passed: materialized at once, then summarized.
    stack.trigger(
        organizationId=ORG,
        campaignId="dash",
        sendId="dash-1",
        scheduledFor=iso(now - timedelta(minutes=1)),
    )
    assert stack.send_list("dash-1", ORG).summary is not None
    # HTTP: a lead read with its organization's key.
    assert worker.lead(ORG, PHONES[0])["events"]


def test_every_metric_a_panel_queries_is_exported_by_a_running_worker(stack: Stack) -> None:
    worker = stack.worker()
    drive(stack, worker)
    t = stack.topics
    counted = {
        "a bad row from the router": ("leadstream_rejects_total", {"topic": t.lead_events}),
        "a bad trigger": ("leadstream_rejects_total", {"topic": t.send_triggers}),
        "the dead letter": ("leadstream_dead_letters_total", {"topic": t.by_lead}),
        "the summary": ("leadstream_send_summary_seconds_count", {}),
    }
    eventually(lambda: all(value(worker, n, **labels) >= 1 for n, labels in counted.values()))
    for what, (name, labels) in counted.items():
        assert value(worker, name, **labels) >= 1, f"{what} was not counted in {name}{labels}"
    assert value(worker, "leadstream_rejects_total", reason="invalid_phone") >= 1

    samples = scrape(worker)
    queries = dashboard_queries(load_dashboard())
    assert queries
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        missing = names - samples.keys()
        assert not missing, f"{expr}: no sample named {sorted(missing)} on /metrics"
        for label in grouping_labels(expr):
            assert any(label in s for name in names for s in samples[name]), (
                f"{expr}: no sample of {sorted(names)} has the label {label!r}"
            )
    # Bounded labels: a reason code and a configured topic, never a lead or a tenant.
    reasons = {r.value for r in Reason}
    inputs = {t.lead_events, t.audience_members, t.audience_filters, t.send_triggers, t.by_lead}
    for labels in samples["leadstream_rejects_total"]:
        assert labels.keys() == {"reason", "topic"}, labels
        assert labels["reason"] in reasons and labels["topic"] in inputs, labels
