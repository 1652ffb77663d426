"""A worker SIGKILLed in the middle of ingesting 100,000 events loses and doubles nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from leadstream.state import keys
from tests.support.kafka import read_topic
from tests.support.reference import observed, synthetic_batches
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


def changelog_state(stack: Stack) -> set[tuple[str, str, str, int]]:
    """The event keys the changelog holds, replayed as a restore does: logged batches
    expanded, in offset order per partition, the last write per key winning."""
    topic = stack.topics.leads_changelog
    latest: dict[bytes, bytes | None] = {}
    for msg in read_topic(stack.bootstrap, topic, timeout=120):
        for key, value in keys.expand_changelog_record(msg.key(), msg.value()):
            latest[key] = value
    return {
        keys.decode_event_key(k)
        for k, v in latest.items()
        if v is not None and k.startswith(keys.events_kind_prefix())
    }


def inserted(worker: WorkerProcess) -> float:
    sample = 'leadstream_rows_total{outcome="inserted"} '
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample))


def test_sigkill_mid_ingest_then_restart_ends_with_exactly_the_reference_state(
    stack: Stack,
) -> None:
    batches, ref = synthetic_batches(
        org="crash",
        leads=5_000,
        events=91_000,
        batch_size=5_000,
        seed=7,
        types=("purchase", "webinar_attended", "opted_out", "opted_in"),
    )
    rows = sum(len(b["events"]) for b in batches)
    assert rows >= 100_000
    distinct = sum(len(v) for v in ref.events.values())

    worker = stack.worker(name="before-kill")
    stack.send_events(batches)
    deadline = time.monotonic() + 180
    while inserted(worker) < distinct // 5:
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.1)
    worker.kill()
    assert stack.committed_lag() > 0, "the kill came too late to test anything"

    worker = stack.worker(name="after-kill", port=worker.port)
    stack.wait_caught_up(timeout=300)

    expected = {lead: ref.expected(*lead) for lead in ref.events}
    assert {lead: observed(worker.lead(*lead)) for lead in ref.events} == expected
    reference_keys = {
        (org, phone, t, ts) for (org, phone), evs in ref.events.items() for t, ts in evs
    }
    assert changelog_state(stack) == reference_keys


def test_a_worker_killed_alone_leaves_no_router_behind(stack: Stack) -> None:
    """The lead-events router is a child process. When only the worker dies (the OOM killer
    picks one process), the child notices within a second and exits: an orphan must not
    keep reading lead-events beside the restarted worker."""
    worker = stack.worker(name="parent")
    pid = worker.proc.pid
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert children, "no router process"
    os.kill(pid, signal.SIGKILL)  # the worker only, not its process group
    worker.proc.wait(30)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() and not _zombie(c) for c in children):
        assert time.monotonic() < deadline, "a child process outlived its worker"
        time.sleep(0.1)


def test_a_router_that_dies_is_started_again(stack: Stack) -> None:
    worker = stack.worker(name="revive")
    first = _router_pid(worker.proc.pid)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _router_pid(worker.proc.pid, missing_ok=True) in (None, first):
        assert time.monotonic() < deadline, "no new router"
        time.sleep(0.2)
    stack.send_events(
        [
            {
                "organizationId": "revived",
                "eventType": "purchase",
                "phoneE164": "+15551110001",
                "occurredAt": "2026-05-12T18:34:00Z",
            }
        ]
    )
    stack.wait_caught_up()
    assert [e["eventType"] for e in worker.lead("revived", "+15551110001")["events"]] == [
        "purchase"
    ]
    assert "the lead-events router exited with -9; started a new one" in worker.tail(400)


def _router_pid(worker: int, *, missing_ok: bool = False) -> int | None:
    for child in Path(f"/proc/{worker}/task/{worker}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline and not _zombie(int(child)):
            return int(child)
    assert missing_ok, "no router process"
    return None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
