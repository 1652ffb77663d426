"""An erase through a real worker leaves nothing of the lead in the compacted view of any
topic leadstream owns whose compacted view is all that is kept: the lead table's
changelog (``<app>-leads-changelog``, the only compacted one). Its phone (E.164 and bare
digits) and both externalIds it had are looked for in every key and value of the view,
logged batches included, which the test reads from the topic, from its beginning, and
reduces itself: the last record of each key, tombstones removing it (docs/contract.md
3.6).

The lead has something in every kind of record that can hold it: events mixed with other
leads' in one message and alone in another, an event older than the retention folded by
the compaction timer (its batch is not retired yet), memberships in two campaigns, its
externalId changed, a membership removed, an audience filter held for a send to come
naming it by phone.

The other internal topics are held to what the contract says of them: ``<app>-by-lead``
(not compacted) still carries the commands that named the lead, until its retention;
``<app>-send-progress`` and ``<app>-replies`` never carry a phone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from confluent_kafka.admin import ConfigResource

from leadstream.state import keys
from leadstream.state.memory import MemoryStore
from tests.conftest import new_stack
from tests.support.kafka import read_topic
from tests.support.reference import iso
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ORG = "ez"
VICTIM = "+12125550177"
OTHERS = [f"+1212555{i:04d}" for i in range(1200, 1240)]
FIRST_ID, SECOND_ID = "crm-victim-1", "crm-victim-2"
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


def needles() -> list[bytes]:
    return [VICTIM.encode(), VICTIM[1:].encode(), FIRST_ID.encode(), SECOND_ID.encode()]


def event(phone: str, event_type: str, at: datetime, metadata: Any = None) -> dict[str, Any]:
    row: dict[str, Any] = {"phoneE164": phone, "eventType": event_type, "occurredAt": iso(at)}
    if metadata is not None:
        row["metadata"] = metadata
    return row


def compacted_view(stack: Stack, topic: str) -> dict[tuple[int, bytes], bytes]:
    """(partition, key) -> the last value of every key of ``topic`` that is not deleted."""
    view: dict[tuple[int, bytes], bytes] = {}
    for msg in read_topic(stack.kafka, topic, timeout=60):
        at = (msg.partition(), msg.key())
        if msg.value() is None:
            view.pop(at, None)
        else:
            view[at] = msg.value()
    return view


def holding(records: dict[tuple[int, bytes], bytes], what: list[bytes]) -> list[bytes]:
    return [k for (_, k), v in records.items() if any(n in k or n in v for n in what)]


def test_an_erase_leaves_nothing_of_the_lead_in_the_compacted_changelog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    stack = new_stack(
        kafka_bootstrap,
        tmp_path,
        partitions=2,
        event_retention_days=1,
        compaction_interval_seconds=1,
        materialize_lead_seconds=0,
    )
    try:
        _scenario(stack)
    finally:
        stack.close()


def _scenario(stack: Stack) -> None:
    worker = stack.worker()
    members = [{"phoneE164": p, "externalId": f"crm-{p[1:]}"} for p in OTHERS]
    stack.members(ORG, "c1", [{"phoneE164": VICTIM, "externalId": FIRST_ID}, *members])
    stack.members(ORG, "c2", [{"phoneE164": VICTIM}, *members[:10]])
    stack.members(ORG, "c3", [{"phoneE164": VICTIM}, {"phoneE164": OTHERS[0]}])
    stack.wait_caught_up()
    stack.members(ORG, "c1", [{"phoneE164": VICTIM, "externalId": SECOND_ID}])
    stack.members(ORG, "c3", [{"phoneE164": VICTIM, "op": "remove"}])
    stack.send_events(
        [
            {
                "organizationId": ORG,
                "events": [
                    event(VICTIM, "purchase", NOW - 2 * HOUR, {"plan": "gold"}),
                    *(event(p, "purchase", NOW - 2 * HOUR) for p in OTHERS),
                    event(VICTIM, "page_view", NOW - 50 * HOUR),  # folded by the timer
                    event(OTHERS[1], "page_view", NOW - 50 * HOUR),
                ],
            },
            {"organizationId": ORG, "events": [event(VICTIM, "click", NOW - HOUR)]},
        ]
    )
    # A filter held for a send two days away names the lead by phone.
    stack.send(
        stack.topics.audience_filters,
        [
            {
                "organizationId": ORG,
                "campaignId": "c1",
                "sendId": "later",
                "mode": "exclude",
                "leads": [{"phoneE164": VICTIM}, {"phoneE164": OTHERS[2]}],
            }
        ],
    )
    stack.wait_caught_up()
    changelog = stack.topics.leads_changelog
    folded = keys.compacted_key(ORG, VICTIM, "page_view")
    deadline = time.monotonic() + 60
    while (before := compacted_view(stack, changelog)) and not any(k == folded for _, k in before):
        assert time.monotonic() < deadline, "the compaction timer folded nothing in 60 s"
        time.sleep(1)
    found = holding(before, needles())
    # Before the erase the lead is everywhere: logged event and membership batches (the
    # defect), its own keys, the held filter.
    assert {k[:1] for k in found} >= {b"B", b"G", b"C", b"F"}, found

    url = f"{worker.url}/api/v1/leads/{ORG}/{quote(VICTIM, safe='')}"
    answer = httpx.delete(
        url, headers={"Authorization": f"Bearer {stack.api_key(ORG)}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["memberships"] == 2
    stack.wait_caught_up()

    after = compacted_view(stack, changelog)
    assert holding(after, needles()) == []
    # Nothing of any other lead was lost: replayed as a restore does, the compacted view
    # holds every other lead's events and memberships, with their externalIds.
    restored = MemoryStore()
    for (partition, key), value in after.items():
        for k, v in keys.expand_changelog_record(key, value):
            if v is None:
                restored.delete(partition, k)
            else:
                restored.put(partition, k, v)
    got_members: dict[str, set[tuple[str, str | None]]] = {}
    got_events: dict[str, set[str]] = {}  # phone -> event types (kept or folded)
    for partition in restored.partitions():
        for key, value in restored.iter_range(partition, b"", b"\xff"):
            if key[:1] == b"M":
                _, campaign, phone = keys.decode_member_key(key)
                got_members.setdefault(phone, set()).add((campaign, keys.decode_external_id(value)))
            elif key[:1] in (b"E", b"C"):
                _, _, phone_b, type_b = key.split(keys.SEP)[:4]
                got_events.setdefault(phone_b.decode(), set()).add(type_b.decode())
    for i, phone in enumerate(OTHERS):
        want = {("c1", f"crm-{phone[1:]}")} | ({("c2", f"crm-{phone[1:]}")} if i < 10 else set())
        if i == 0:
            want.add(("c3", None))
        assert got_members.get(phone) == want, phone
        assert got_events.get(phone) == ({"purchase", "page_view"} if i == 1 else {"purchase"})
    assert VICTIM not in got_members and VICTIM not in got_events

    # The other internal topics: by-lead still carries the commands that named the lead
    # (the erase command itself among them) until its retention, which leadstream sets;
    # progress and replies never carry a phone.
    by_lead = [m.value() for m in read_topic(stack.kafka, stack.topics.by_lead, timeout=60)]
    assert any(VICTIM.encode() in v for v in by_lead)
    for topic in (stack.topics.send_progress, stack.topics.replies):
        values = [m.value() or b"" for m in read_topic(stack.kafka, topic, timeout=30)]
        assert not any(n in v for v in values for n in needles()), topic
    admin = stack.kafka.admin()
    resource = ConfigResource(ConfigResource.Type.TOPIC, stack.topics.by_lead)
    config = admin.describe_configs([resource])[resource].result()
    assert int(config["retention.ms"].value) == 7 * 24 * 3_600_000
    assert msgspec.json.decode(answer.content)["erased"] is True
