"""Exactly one list per send, through a SIGKILL mid-send and through rebalances."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.kafka import end_offsets
from tests.support.reference import iso, seed
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ORG = "eo"


def make_stack(bootstrap: str, root: Path, **overrides: object) -> Stack:
    run = uuid.uuid4().hex[:10]
    overrides.setdefault("materialize_lead_seconds", 2 * 86_400)
    return Stack(bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=root, **overrides)


def test_sigkill_in_the_middle_of_a_50000_lead_send(kafka_bootstrap: str, tmp_path: Path) -> None:
    # One recipient a chunk: evaluating a send takes milliseconds, writing ~45,000 chunks in
    # eight transactions takes long enough to be cut short by the kill.
    stack = make_stack(kafka_bootstrap, tmp_path, chunk_size=1)
    try:
        worker = stack.worker(name="before-kill")
        facts = seed(stack, 50_000, seed=3)
        stack.wait_caught_up(timeout=300)
        stack.trigger(
            organizationId=ORG,
            campaignId="camp",
            sendId="big",
            scheduledFor=iso(datetime.now(UTC) + timedelta(minutes=30)),
            eventFilter={"mode": "exclude", "eventType": "purchase"},
        )
        deadline = time.monotonic() + 120
        while sum(end_offsets(stack.bootstrap, stack.topics.send_recipients).values()) == 0:
            assert time.monotonic() < deadline, "the send never started"
            time.sleep(0.01)
        worker.kill()
        partial = stack.send_list("big", ORG, timeout=3)
        assert partial.summary is None, "the kill came after the send finished: nothing tested"

        stack.worker(name="after-kill", port=worker.port)
        result = stack.send_list("big", ORG, timeout=240)
        assert result.summary is not None
        phones = [r["phoneE164"] for r in result.recipients]
        assert len(phones) == len(set(phones)), "a recipient was delivered twice"
        expected = facts["all"] - facts["opted_out"] - facts["purchase"]
        assert set(phones) == expected
        counts = result.summary["counts"]
        assert counts["audience"] == 50_000
        assert counts["optedOut"] == len(facts["opted_out"])
        assert counts["droppedByEventFilter"] == len(facts["purchase"] - facts["opted_out"])
        assert result.summary["recipientCount"] == len(expected)
        assert result.summary["chunkCount"] == result.chunks
        # One summary, and nothing of the send after it.
        values = [v for k, v in stack.send_values() if k == f"{ORG}:big"]
        assert [v["type"] for v in values].count("summary") == 1
        assert values[-1]["type"] == "summary" or all(
            v["type"] == "recipients" for v in values[:-1]
        )
    finally:
        stack.close()


SENDS: list[tuple[str, dict[str, object]]] = [
    ("s1", {"eventFilter": {"mode": "exclude", "eventType": "purchase"}}),
    (
        "s2",
        {"eventFilter": {"mode": "exclude", "eventType": "attended", "within": {"minutes": 120}}},
    ),
    ("s3", {"eventFilter": {"mode": "include", "eventType": "attended"}}),
    (
        "s4",
        {
            "eventFilters": [
                {"mode": "include", "eventType": "attended"},
                {"mode": "exclude", "eventType": "purchase"},
            ]
        },
    ),
    ("s5", {}),
    ("s6", {"eventFilter": {"mode": "include", "eventType": "purchase", "minCount": 2}}),
]


def trigger_all(stack: Stack, early: datetime, deferred: datetime) -> None:
    """Sends 1-3 late (materialized at once), 4-6 held until ``deferred`` - lead."""
    for index, (send, filters) in enumerate(SENDS):
        stack.trigger(
            organizationId=ORG,
            campaignId="camp",
            sendId=send,
            scheduledFor=iso(early if index < 3 else deferred),
            **filters,
        )


def lists(stack: Stack) -> dict[str, tuple[list[str], dict]]:
    out = {}
    for send, _ in SENDS:
        result = stack.send_list(send, ORG, timeout=300)
        assert result.summary is not None, send
        summary = {k: v for k, v in result.summary.items() if k != "materializedAt"}
        out[send] = (sorted(r["phoneE164"] for r in result.recipients), summary)
    return out


def test_two_workers_and_a_third_joining_give_the_same_lists_as_one(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    early, deferred = now - timedelta(minutes=1), now + timedelta(seconds=60 + 30)
    # Eight partitions, so that a third worker is given some of them.
    one = make_stack(kafka_bootstrap, tmp_path / "one", materialize_lead_seconds=60, partitions=8)
    many = make_stack(kafka_bootstrap, tmp_path / "many", materialize_lead_seconds=60, partitions=8)
    try:
        one.worker(name="solo")
        # Each worker of a deployment has its own data directory (RocksDB locks it).
        many.worker(name="a", data_dir=tmp_path / "many" / "a")
        many.worker(name="b", data_dir=tmp_path / "many" / "b")
        for stack in (one, many):
            seed(stack, 6_000, seed=5)
        one.wait_caught_up(timeout=300)
        many.wait_caught_up(timeout=300)
        trigger_all(one, early, deferred)
        trigger_all(many, early, deferred)
        # A third worker joins while sends 1-3 are being materialized and 4-6 are held:
        # the rebalance moves partitions, their held triggers and their transactional ids.
        third = many.worker(name="c", data_dir=tmp_path / "many" / "c", wait=False)
        solo, shared = lists(one), lists(many)
        assert shared == solo
        for phones, summary in solo.values():
            assert len(phones) == len(set(phones))
            assert summary["partitions"] == one.settings.partitions
        third.wait_ready(120)
        owned = httpx.get(third.url + "/readyz", timeout=10).json()["partitions"]
        assert owned, "the third worker never took partitions: no rebalance was tested"
    finally:
        one.close()
        many.close()
