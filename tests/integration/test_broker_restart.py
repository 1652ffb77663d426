"""The only broker goes away (SIGKILL) while events flow, and comes back: the worker says it
is not ready meanwhile, then picks up where it was by itself and applies every event. And a
worker asked to stop (SIGTERM) while every broker is gone still exits within
LEADSTREAM_SHUTDOWN_SECONDS."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from leadstream.kafka.local import LocalKafka
from tests.conftest import new_stack
from tests.support.kafka import producer
from tests.support.worker import WorkerProcess, free_broker_port

pytestmark = pytest.mark.integration

ORG = "31"


def inserted(worker: WorkerProcess) -> float:
    page = httpx.get(f"{worker.url}/metrics", timeout=10).text
    found = re.search(r'^leadstream_rows_total\{outcome="inserted"\} (\S+)$', page, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def ready(worker: WorkerProcess) -> int:
    try:
        return httpx.get(f"{worker.url}/readyz", timeout=10).status_code
    except httpx.HTTPError:
        return 0


def wait_for(check: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of this module's own: its tests kill it."""
    local = LocalKafka(tmp_path_factory.mktemp("kafka"), f"127.0.0.1:{free_broker_port()}")
    local.start(timeout=300)
    try:
        yield local
    finally:
        local.stop()


def test_the_worker_recovers_by_itself_when_its_broker_comes_back(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    kafka.start(timeout=300)
    stack = new_stack(kafka.bootstrap, tmp_path / "stack")
    stop = threading.Event()
    sent: list[int] = []
    failure: list[BaseException] = []

    def flow() -> None:
        """A batch of 100 new events every 0.2 s, until told to stop."""
        out = producer(stack.kafka)
        batch = 0
        try:
            while not stop.is_set():
                events = [
                    {"phoneE164": f"+1212{batch:04d}{i:03d}", "occurredAt": "2026-05-12T18:34:00Z"}
                    for i in range(100)
                ]
                # Held by the producer while the broker is away, as long as it takes to
                # come back (its start is slow on a loaded machine): counted once acked.
                value = {"organizationId": ORG, "eventType": "x", "events": events}
                out.produce(stack.topics.lead_events, msgspec.json.encode(value))
                assert out.flush(300) == 0
                sent.append(len(events))
                batch += 1
                time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    try:
        worker = stack.worker()
        pid = worker.proc.pid if worker.proc else None
        thread = threading.Thread(target=flow, daemon=True)
        thread.start()
        wait_for(lambda: inserted(worker) > 0, "nothing applied before the kill")

        kafka.node(1).kill()
        wait_for(lambda: ready(worker) == 503, "/readyz stayed 200 with the broker gone", 60)
        time.sleep(10)
        assert ready(worker) == 503
        kafka.start(timeout=300)
        wait_for(lambda: ready(worker) == 200, "/readyz not 200 once the broker was back", 180)
        time.sleep(3)  # events keep flowing after the restart
        stop.set()
        thread.join(120)
        assert not failure, failure
        stack.wait_caught_up(timeout=300)
        # Every event published (the producer held them while the broker was away).
        assert inserted(worker) == sum(sent)
        assert worker.alive() and worker.proc is not None and worker.proc.pid == pid
    finally:
        stop.set()
        stack.close()


def test_sigterm_ends_the_worker_within_its_deadline_with_every_broker_gone(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    kafka.start(timeout=300)
    deadline = 8
    stack = new_stack(kafka.bootstrap, tmp_path / "stack", shutdown_seconds=deadline)
    try:
        worker = stack.worker()
        kafka.node(1).kill()
        wait_for(lambda: ready(worker) == 503, "/readyz stayed 200 with the broker gone", 60)
        assert worker.proc is not None
        asked = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)  # the worker process itself, as a kubelet does
        try:
            code = worker.proc.wait(deadline + 10)  # the deadline, and time to exit
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {deadline + 10} s after SIGTERM:\n{worker.tail()}")
        took = time.monotonic() - asked
        print(f"SIGTERM with the broker gone: exited {code} after {took:.1f} s")
        assert took < deadline + 10
    finally:
        stack.close()
