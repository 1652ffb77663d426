"""A three-broker cluster, replication factor 3: one broker is SIGKILLed during a bulk ingest
and during a 50,000-lead send, then started again. Nothing accepted is lost, nothing is
applied twice, every recipient comes out once with one summary, and the worker goes on
(the same process) through it all.

Every expectation is computed here from what the test sent (tests/support/reference.py).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from leadstream.kafka.local import LocalKafka
from tests.support.kafka import client_config, end_offsets, read_topic
from tests.support.reference import iso, observed, seed, synthetic_batches
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess, free_broker_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    home = tmp_path_factory.mktemp("cluster")
    kafka = LocalKafka(home, f"127.0.0.1:{free_broker_port(9)}", brokers=3)
    kafka.start(timeout=300)
    try:
        yield kafka
    finally:
        kafka.stop()


def replicated_stack(cluster: LocalKafka, root: Path, **overrides: object) -> Stack:
    run = uuid.uuid4().hex[:10]
    return Stack(
        cluster.bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=root,
        partitions=8,
        replication_factor=3,
        **overrides,
    )


def leaders_of(stack: Stack, topic: str) -> dict[int, int]:
    """partition -> the node id of its leader"""
    admin = AdminClient(client_config(stack.kafka))
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    return {p: int(meta.leader) for p, meta in partitions.items()}


def metric(worker: WorkerProcess, sample: str) -> float:
    page = httpx.get(f"{worker.url}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", page, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_topics_are_replicated_three_times_with_two_in_sync(
    cluster: LocalKafka, tmp_path: Path
) -> None:
    stack = replicated_stack(cluster, tmp_path)
    admin = AdminClient(client_config(stack.kafka))
    topics = admin.list_topics(timeout=10).topics
    for name in (stack.topics.lead_events, stack.topics.send_recipients, stack.topics.by_lead):
        assert all(len(p.replicas) == 3 for p in topics[name].partitions.values()), name
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource(ConfigResource.Type.TOPIC, stack.topics.send_recipients)
    config = admin.describe_configs([resource])[resource].result()
    assert config["min.insync.replicas"].value == "2"


def test_a_broker_killed_during_a_100000_event_ingest_loses_and_doubles_nothing(
    cluster: LocalKafka, tmp_path: Path
) -> None:
    stack = replicated_stack(cluster, tmp_path)
    org = "77"
    batches, ref = synthetic_batches(
        org=org,
        leads=25_000,
        events=100_000,
        batch_size=2_000,
        seed=12,
        types=("purchase", "click", "opted_out"),
    )
    rows = sum(len(b["events"]) for b in batches)
    distinct = sum(len(events) for events in ref.events.values())
    assert rows >= 100_000
    try:
        worker = stack.worker()
        pid = worker.proc.pid if worker.proc else None
        victim = leaders_of(stack, stack.topics.by_lead)[0]
        published = threading.Event()
        failure: list[BaseException] = []

        def publish() -> None:
            try:
                stack.send_events(batches)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failure.append(exc)
            finally:
                published.set()

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        # Once the worker has applied some of it: the kill lands in the middle.
        deadline = time.monotonic() + 120
        while metric(worker, 'leadstream_rows_total{outcome="inserted"}') == 0:
            assert time.monotonic() < deadline, "nothing was applied"
            time.sleep(0.05)
        cluster.node(victim).kill()
        killed_at = metric(worker, 'leadstream_rows_total{outcome="inserted"}')
        time.sleep(5)  # the cluster runs on two brokers for a while
        cluster.start(timeout=300)
        published.wait(300)
        assert not failure, failure
        stack.wait_caught_up(timeout=300)

        assert killed_at < distinct, "the kill came after the ingest: nothing tested"
        # Each distinct event inserted exactly once; every other row a duplicate.
        assert metric(worker, 'leadstream_rows_total{outcome="inserted"}') == distinct
        assert metric(worker, 'leadstream_rows_total{outcome="duplicate"}') >= rows - distinct
        sample = sorted(ref.events)[::100]
        assert {lead: observed(worker.lead(*lead)) for lead in sample} == {
            lead: ref.expected(*lead) for lead in sample
        }
        assert worker.proc is not None and worker.proc.pid == pid and worker.alive()
    finally:
        stack.close()


def test_a_broker_killed_during_a_50000_lead_send_gives_each_recipient_once(
    cluster: LocalKafka, tmp_path: Path
) -> None:
    # One recipient a chunk (~36,000 of them): the send is evaluated in milliseconds, and
    # only writing that many messages keeps it in flight long enough for the kill.
    stack = replicated_stack(cluster, tmp_path, chunk_size=1, materialize_lead_seconds=86_400)
    try:
        worker = stack.worker()
        facts = seed(stack, 50_000, seed=8)
        stack.wait_caught_up(timeout=300)
        topic = stack.topics.send_recipients
        leaders = leaders_of(stack, topic)
        stack.trigger(
            organizationId="eo",
            campaignId="camp",
            sendId="replicated",
            scheduledFor=iso(datetime.now(UTC) + timedelta(minutes=30)),
            eventFilter={"mode": "exclude", "eventType": "purchase"},
        )
        deadline = time.monotonic() + 120
        while not (written := [p for p, n in end_offsets(stack.kafka, topic).items() if n]):
            assert time.monotonic() < deadline, "the send never started"
            time.sleep(0.01)
        # Every chunk and the summary of a send share its key, so its one partition: its
        # leader goes, and the rest of the send waits for another one to be elected.
        killed_ms = time.time() * 1000
        cluster.node(leaders[written[0]]).kill()
        time.sleep(5)
        cluster.start(timeout=300)

        result = stack.send_list("replicated", "eo", timeout=240)
        assert result.summary is not None
        phones = [r["phoneE164"] for r in result.recipients]
        assert len(phones) == len(set(phones)), "a recipient was delivered twice"
        expected = facts["all"] - facts["opted_out"] - facts["purchase"]
        assert set(phones) == expected
        assert result.summary["recipientCount"] == len(expected)
        # One summary, produced after the kill: the send was in flight when its leader went.
        summaries = [
            m.timestamp()[1]
            for m in read_topic(stack.kafka, topic, timeout=60)
            if m.key() == b"eo:replicated" and json.loads(m.value())["type"] == "summary"
        ]
        assert len(summaries) == 1
        assert summaries[0] > killed_ms, "the send was over before the kill: nothing tested"

        # The same worker goes on: a second send after the fault.
        stack.trigger(
            organizationId="eo",
            campaignId="camp",
            sendId="after",
            scheduledFor=iso(datetime.now(UTC) + timedelta(minutes=30)),
        )
        after = stack.send_list("after", "eo", timeout=240)
        assert after.summary is not None
        assert {r["phoneE164"] for r in after.recipients} == facts["all"] - facts["opted_out"]
        assert worker.alive()
    finally:
        stack.close()
