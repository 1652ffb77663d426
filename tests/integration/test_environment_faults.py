"""Faults of the environment: a disk that refuses every write, and a broker that refuses the
input router's writes.

A disk that refuses every write, four times over: while the input router's events are
applied, while an HTTP webhook's rows are applied, when a send is due, and under an
audience upload that must be spooled to disk. Each time the
worker must stop (exit status 75, one log line naming the cause), reject nothing and commit
nothing past what it did not apply; started again with its disk back, it applies
everything exactly once: the send that excludes purchasers equals the reference computed
here, every purchase event included.

The fault is real: RLIMIT_FSIZE set on the running worker process (prlimit) to one byte,
so every append to RocksDB's write-ahead log fails with EFBIG, as a full or capped disk
fails a write (the code treats ENOSPC, EIO and a read-only disk the same way). Its log goes
through a pipe, which the limit does not cover. (Before the fix, such a worker turned the
store errors into `internal_error` dead letters and moved on: 17,250 of 30,000 buyers lost
their purchase events and were messaged by a send that excluded purchasers.)"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from leadstream.lifecycle import EXIT_FAULT
from tests.support.reference import iso
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

ORG = "df"
CAMPAIGN = "camp"
LEADS = 6_000


def refuse_writes(worker: WorkerProcess) -> None:
    """From now on every file write of the worker process past its first byte fails."""
    assert worker.proc is not None
    _soft, hard = resource.prlimit(worker.proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(worker.proc.pid, resource.RLIMIT_FSIZE, (1, hard))


def stops_on_the_fault(worker: WorkerProcess, mark: int) -> None:
    """The worker exits by itself, with the fault's status and one line naming the cause
    (``mark``: where its log stood when the fault was injected)."""
    assert worker.proc is not None
    code = worker.proc.wait(60)  # a liveness bound; the contract's is 30 s after the fault
    assert code == EXIT_FAULT, worker.tail()
    time.sleep(0.5)  # the test copies the worker's output through a pipe
    log = worker.log_path.read_bytes()[mark:].decode(errors="replace")
    causes = [line for line in log.splitlines() if "environment fault, stopping" in line]
    assert len(causes) == 1, log[-4000:]
    assert "File too large" in causes[0] or "previous error" in causes[0], causes[0]


def log_size(worker: WorkerProcess) -> int:
    return worker.log_path.stat().st_size


def purchases(phones: list[str], at: datetime) -> list[dict[str, Any]]:
    return [{"phoneE164": p, "eventType": "purchase", "occurredAt": iso(at)} for p in phones]


def test_a_disk_that_refuses_writes_stops_the_worker_and_loses_nothing(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(partitions=4, materialize_lead_seconds=0)
    rng = random.Random(23)
    now = datetime.now(UTC)
    phones = [f"+1555{i:07d}" for i in range(LEADS)]
    opted_out = set(rng.sample(phones, LEADS // 10))
    rest = [p for p in phones if p not in opted_out]
    routed = rng.sample(rest, 2_000)  # bought: their events come through the router
    posted = rng.sample([p for p in rest if p not in routed], 1_000)  # ... or over HTTP
    port = None

    def start() -> WorkerProcess:
        return stack.worker(log_through_pipe=True, port=port)

    worker = start()
    port = worker.port
    stack.members(ORG, CAMPAIGN, [{"phoneE164": p, "externalId": p[-7:]} for p in phones])
    stack.send_events(
        [
            {
                "organizationId": ORG,
                "eventType": "opted_out",
                "events": [
                    {"phoneE164": p, "occurredAt": iso(now - timedelta(days=1))} for p in opted_out
                ],
            }
        ]
    )
    stack.wait_caught_up(timeout=180)

    # 1. The router's events, applied on a disk that refuses them.
    mark = log_size(worker)
    refuse_writes(worker)
    stack.send_events(
        [
            {"organizationId": ORG, "events": purchases(routed[i : i + 500], now)}
            for i in range(0, len(routed), 500)
        ]
    )
    stops_on_the_fault(worker, mark)

    # 2. An HTTP webhook's rows: never answered as applied, nor as rejected.
    worker = start()
    body = {"organizationId": ORG, "events": purchases(posted, now)}
    headers = {"Authorization": f"Bearer {stack.api_key(ORG)}"}
    mark = log_size(worker)
    refuse_writes(worker)
    try:
        answer = httpx.post(
            worker.url + "/api/v1/webhooks/lead-events", json=body, headers=headers, timeout=60
        )
        assert answer.status_code == 503, answer.text
    except httpx.TransportError:
        pass  # the worker went down mid-request: the client retries
    stops_on_the_fault(worker, mark)
    worker = start()
    answer = httpx.post(
        worker.url + "/api/v1/webhooks/lead-events", json=body, headers=headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    counts = answer.json()
    assert counts["rejected"] == 0 and counts["inserted"] + counts["duplicates"] == len(posted)

    # 3. A send due while the disk refuses to record it.
    stack.wait_caught_up(timeout=180)
    send = "after-the-faults"
    stack.trigger(
        organizationId=ORG,
        campaignId=CAMPAIGN,
        sendId=send,
        scheduledFor=iso(datetime.now(UTC) + timedelta(seconds=20)),
        eventFilter={"mode": "exclude", "eventType": "purchase"},
    )
    stack.wait_caught_up(timeout=60)  # the trigger is held in every partition
    mark = log_size(worker)
    refuse_writes(worker)
    stops_on_the_fault(worker, mark)
    worker = start()

    result = stack.send_list(send, ORG, timeout=180)
    assert result.summary is not None
    got = [r["phoneE164"] for r in result.recipients]
    assert len(got) == len(set(got)), "a recipient came out twice"
    expected = set(phones) - opted_out - set(routed) - set(posted)
    assert set(got) == expected, (
        f"{len(set(got) - expected)} recipients too many, {len(expected - set(got))} missing"
    )
    assert result.summary["counts"]["droppedByEventFilter"] == len(routed) + len(posted)
    kinds = [v["type"] for k, v in stack.send_values() if k == f"{ORG}:{send}"]
    assert kinds.count("summary") == 1
    # Nothing was ever rejected or dead-lettered.
    assert stack.rejects(expect=1, timeout=5) == []

    # 4. An audience upload the disk refuses to spool (beyond the 8 MiB kept in memory).
    csv = "".join(f"+1777{i:07d},member-{i:012d}\n" for i in range(400_000)).encode()
    mark = log_size(worker)
    refuse_writes(worker)
    try:
        answer = httpx.post(
            f"{worker.url}/api/v1/campaigns/upload/audience?organizationId={ORG}",
            content=csv,
            headers={**headers, "Content-Type": "text/csv"},
            timeout=60,
        )
        assert answer.status_code == 503, answer.text
    except httpx.TransportError:
        pass
    stops_on_the_fault(worker, mark)


def ready(worker: WorkerProcess) -> int:
    try:
        return httpx.get(f"{worker.url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def set_by_lead_max_message_bytes(stack: Stack, value: str | None) -> None:
    """The broker's own limit on the lead-keyed topic (None: the broker's default again)."""
    resource_ = ConfigResource(
        ConfigResource.Type.TOPIC,
        stack.topics.by_lead,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes",
                value,
                incremental_operation=AlterConfigOpType.DELETE
                if value is None
                else AlterConfigOpType.SET,
            )
        ],
    )
    admin = stack.kafka.admin()
    for future in admin.incremental_alter_configs([resource_]).values():
        future.result(30)


def test_kafka_refusing_the_routers_writes_is_waited_out_and_rejects_nothing(
    make_stack: Callable[..., Stack],
) -> None:
    """The input router's writes refused by the broker (the lead-keyed topic's message limit
    set below every command's size): the router commits nothing past what it could not
    deliver, rejects nothing, and the worker says it is not ready; once the broker takes
    the writes again, every event is applied, once."""
    stack = make_stack(partitions=4)
    worker = stack.worker()
    now = datetime.now(UTC)
    phones = [f"+1666{i:07d}" for i in range(4_000)]
    set_by_lead_max_message_bytes(stack, "1024")
    try:
        stack.send_events(
            [
                {"organizationId": ORG, "events": purchases(phones[i : i + 500], now)}
                for i in range(0, len(phones), 500)
            ]
        )
        wait_for(lambda: ready(worker) == 503, "ready while the router cannot write", 60)
        assert stack.rejects(expect=1, timeout=3) == []
    finally:
        set_by_lead_max_message_bytes(stack, None)
    wait_for(lambda: ready(worker) == 200, "not ready once the broker took the writes again")
    stack.wait_caught_up(timeout=180)
    stored = sum(len(worker.lead(ORG, p)["events"]) for p in phones[::40])
    assert stored == len(phones[::40])  # each purchase there, once
    assert stack.rejects(expect=1, timeout=3) == []
    assert worker.alive()
