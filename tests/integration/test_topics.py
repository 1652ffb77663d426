"""The topics a worker needs exist, with their partitions and configs, before it starts."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from leadstream.kafka.admin import broker_reachable
from tests.support.stack import Stack
from tests.support.worker import free_port

pytestmark = pytest.mark.integration


def test_worker_topics_are_created_up_front_with_their_configs(stack: Stack) -> None:
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    t = stack.topics
    meta = admin.list_topics(timeout=10).topics
    # The lead-keyed topic must exist before the worker's first assignment, or the group
    # is assigned without it until the next metadata refresh.
    for name in (t.by_lead, t.leads_changelog, t.send_progress, t.lead_events, t.send_triggers):
        assert name in meta, name
        assert len(meta[name].partitions) == stack.settings.partitions
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, name)
        for name in (t.leads_changelog, t.send_triggers, t.audience_filters, t.by_lead, t.replies)
    ]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    assert configs[t.leads_changelog]["cleanup.policy"].value == "compact"
    # How long an erased lead's superseded records and tombstones can stay on the brokers
    # (docs/contract.md 3.6): compacted within 7 days, tombstones one day more.
    assert configs[t.leads_changelog]["max.compaction.lag.ms"].value == str(7 * 86_400_000)
    assert configs[t.leads_changelog]["delete.retention.ms"].value == str(86_400_000)
    assert configs[t.by_lead]["retention.ms"].value == str(7 * 86_400_000)
    assert configs[t.replies]["retention.ms"].value == str(3_600_000)
    assert configs[t.send_triggers]["message.timestamp.type"].value == "LogAppendTime"
    assert configs[t.audience_filters]["message.timestamp.type"].value == "LogAppendTime"


def test_the_readiness_probe_is_answered_by_a_broker_and_not_by_a_closed_port(stack: Stack) -> None:
    """The probe (a metadata request for the lead-events topic alone) is answered by the
    broker, and not by a port nobody listens on."""
    assert broker_reachable(
        AdminClient({"bootstrap.servers": stack.bootstrap}), stack.topics.lead_events
    )
    nobody = AdminClient({"bootstrap.servers": f"127.0.0.1:{free_port()}", "log_level": 0})
    assert not broker_reachable(nobody, stack.topics.lead_events, timeout=1.0)
