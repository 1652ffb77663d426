"""Two workers: one SIGKILLed for good (its partitions fail over to the other's standby
copies), and a planned rolling restart (SIGTERM one worker at a time). Every send comes
out exactly once and equal to the reference computed here from the input."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.reference import iso, seed
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = "fo"
PARTITIONS = 8
# The broker's lowest allowed session timeout (group.min.session.timeout.ms): the time a
# worker that stopped heartbeating keeps its partitions.
SESSION_SECONDS = 6
EXCLUDE_PURCHASE = {"eventFilter": {"mode": "exclude", "eventType": "purchase"}}


def make_stack(bootstrap: str, root: Path, **overrides: Any) -> Stack:
    run = uuid.uuid4().hex[:10]
    return Stack(
        bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=root,
        partitions=PARTITIONS,
        session_timeout_seconds=SESSION_SECONDS,
        **overrides,
    )


def served(worker: WorkerProcess) -> list[int]:
    """The partitions a worker answers sends for (its /readyz; none while not ready)."""
    try:
        answer = httpx.get(worker.url + "/readyz", timeout=2)
    except httpx.HTTPError:
        return []
    return list(answer.json().get("partitions", [])) if answer.status_code == 200 else []


def wait_split(a: WorkerProcess, b: WorkerProcess, timeout: float = 120) -> None:
    """Until the two workers serve every partition between them, each some."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pa, pb = served(a), served(b)
        if pa and pb and sorted(pa + pb) == list(range(PARTITIONS)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"partitions never split: a {served(a)}, b {served(b)}")


def table_copies(data_dir: Path) -> set[int]:
    """Partitions of the lead table that have a RocksDB directory under ``data_dir``."""
    return {
        int(p.name.removesuffix(".db").rsplit("-", 1)[1])
        for p in data_dir.rglob("*leads-*.db")
        if p.is_dir()
    }


def expected_phones(facts: dict[str, set[str]]) -> set[str]:
    return facts["all"] - facts["opted_out"] - facts["purchase"]


def check_exactly_once(
    stack: Stack, sends: list[str], facts: dict[str, set[str]]
) -> list[dict[str, Any]]:
    """Each send's list equals the reference, no recipient twice, one summary each."""
    summaries = [check_list(stack, send, facts) for send in sends]
    # Everything committed on the output (read once: a transactional topic's end offset
    # counts commit markers, so this read always waits its whole timeout).
    values = stack.send_values()
    for send in sends:
        kinds = [v["type"] for k, v in values if k == f"{ORG}:{send}"]
        assert kinds.count("summary") == 1, f"{send}: {kinds.count('summary')} summaries"
    return summaries


def check_list(stack: Stack, send: str, facts: dict[str, set[str]]) -> dict[str, Any]:
    result = stack.send_list(send, ORG, timeout=240)
    assert result.summary is not None, f"{send}: no summary"
    phones = [r["phoneE164"] for r in result.recipients]
    assert len(phones) == len(set(phones)), f"{send}: a recipient was delivered twice"
    assert set(phones) == expected_phones(facts), send
    assert result.summary["recipientCount"] == len(phones)
    assert result.summary["partitions"] == PARTITIONS
    return dict(result.summary)


def two_workers(
    stack: Stack, root: Path, leads: int, seed_: int
) -> tuple[WorkerProcess, WorkerProcess, dict[str, set[str]]]:
    """Workers a and b, each on its own data dir, holding ``leads`` seeded leads between
    them; the facts of the seed (tests/support/reference.py)."""
    a = stack.worker(name="a", data_dir=root / "a")
    b = stack.worker(name="b", data_dir=root / "b")
    facts = seed(stack, leads, seed=seed_, org=ORG)
    stack.wait_caught_up(timeout=300)
    wait_split(a, b)
    return a, b, facts


def test_sigkill_one_of_two_workers_its_partitions_fail_over_and_a_send_comes_out_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    stack = make_stack(kafka_bootstrap, tmp_path, materialize_lead_seconds=60)
    try:
        a, b, facts = two_workers(stack, tmp_path, 20_000, 17)
        lost = set(served(b))
        # The standby copies: the survivor holds b's partitions of the table already.
        deadline = time.monotonic() + 60
        while not lost <= table_copies(tmp_path / "a"):
            assert time.monotonic() < deadline, f"no standby copy of {lost} on a"
            time.sleep(0.5)

        killed = time.monotonic()
        b.kill()
        # A send due two seconds after the kill: its moment falls inside the failover.
        stack.trigger(
            organizationId=ORG,
            campaignId="camp",
            sendId="during-failover",
            scheduledFor=iso(datetime.now(UTC) + timedelta(seconds=2)),
            **EXCLUDE_PURCHASE,
        )
        deadline = killed + 180  # a liveness bound; the time itself is the bench's
        while sorted(served(a)) != list(range(PARTITIONS)):
            assert time.monotonic() < deadline, f"a serves only {served(a)}"
            time.sleep(0.1)
        took = time.monotonic() - killed
        print(f"failover: every partition served by the survivor {took:.1f} s after SIGKILL")

        [summary] = check_exactly_once(stack, ["during-failover"], facts)
        assert summary["counts"]["audience"] == len(facts["all"])
        assert summary["counts"]["optedOut"] == len(facts["opted_out"])
    finally:
        stack.close()


def test_rolling_restart_of_two_workers_leaves_no_send_late_and_none_doubled(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    lead = 30
    stack = make_stack(kafka_bootstrap, tmp_path, materialize_lead_seconds=lead)
    try:
        a, b, facts = two_workers(stack, tmp_path, 10_000, 19)
        # Sends whose materialization (scheduledFor - lead) falls every 3 s across the
        # restarts; each must come out before its moment, once.
        start = datetime.now(UTC) + timedelta(seconds=lead + 2)
        sends = [f"roll-{i}" for i in range(12)]
        for i, send in enumerate(sends):
            stack.trigger(
                organizationId=ORG,
                campaignId="camp",
                sendId=send,
                scheduledFor=iso(start + timedelta(seconds=3 * i)),
                **EXCLUDE_PURCHASE,
            )
        for name in ("a", "b"):
            worker = a if name == "a" else b
            stopped = time.monotonic()
            worker.stop()  # SIGTERM, as a rollout does
            restarted = stack.worker(
                name=f"{name}-again", data_dir=tmp_path / name, port=worker.port
            )
            if name == "a":
                a = restarted
            else:
                b = restarted
            wait_split(a, b)
            print(f"rolling restart: {name} stopped and back in {time.monotonic() - stopped:.1f} s")
        for send, summary in zip(sends, check_exactly_once(stack, sends, facts), strict=True):
            assert summary["late"] is False, f"{send} was late: {summary}"
    finally:
        stack.close()
