"""Two workers of one deployment: one SIGKILLed for good (failover to the other's standby
copies of the state), and a planned rolling restart (SIGTERM one worker at a time).

Both run on the suite's loaded worker; a second worker joins it with its own data
directory and instance id, as a second pod of the StatefulSet would.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec
from confluent_kafka import Consumer, TopicPartition

from bench.common import BenchWorker, free_port
from bench.product import FILTERS, ORG
from leadstream.client.publish import make_producer
from leadstream.domain.normalize import format_ms
from leadstream.kafka.config import KafkaConnection
from leadstream.wire.records import send_key

__all__ = ["STANDBY_SETTLE_S", "failover", "rolling_restart"]

# After the second worker is ready, the time it is given to copy the other's partitions
# (faust's standby replicas read the changelog once the worker's own partitions are
# restored). A standby still behind at the kill shows in the failover time.
STANDBY_SETTLE_S = 30.0


def served(worker: BenchWorker) -> list[int]:
    """The partitions a worker answers sends for (its /readyz; none while not ready)."""
    try:
        answer = httpx.get(f"{worker.url}/readyz", timeout=2)
    except httpx.HTTPError:
        return []
    return list(answer.json().get("partitions", [])) if answer.status_code == 200 else []


def _join(worker: BenchWorker, workdir: Path, name: str) -> BenchWorker:
    """A second worker of ``worker``'s deployment: same topics and group, its own data dir,
    instance id and port; back when the two serve every partition between them."""
    port = free_port()
    settings = worker.settings.model_copy(
        update={
            "data_dir": workdir / f"{worker.settings.app_id}-{name}",
            "instance_id": None,
            "web_port": port,
        }
    )
    overrides = {k: v for k, v in worker.overrides.items() if k != "instance_id"}
    other = BenchWorker(
        settings.kafka_bootstrap, workdir, settings=settings, **{**overrides, "web_port": port}
    )
    _wait_split(worker, other)
    return other


def _wait_split(a: BenchWorker, b: BenchWorker, timeout: float = 900) -> None:
    everything = list(range(a.settings.partitions))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pa, pb = served(a), served(b)
        if pa and pb and sorted(pa + pb) == everything:
            return
        if not (a.alive() and b.alive()):
            raise RuntimeError(f"a worker exited; see {a.log} and {b.log}")
        time.sleep(0.2)
    raise TimeoutError(f"partitions never split between {a.log} and {b.log}")


def _trigger(worker: BenchWorker, send: str, size: int, scheduled_for: int) -> None:
    s = worker.settings
    producer = make_producer(KafkaConnection.of(s))
    trigger = {
        "organizationId": ORG,
        "campaignId": f"c{size}",
        "sendId": send,
        "scheduledFor": format_ms(scheduled_for),
        "eventFilter": FILTERS["sticky_exclude"],
    }
    producer.produce(s.topics.send_triggers, msgspec.json.encode(trigger))
    producer.flush(30)


class OutputWatch:
    """Reads ``send-recipients`` (read_committed) from its end at creation, on a thread:
    per send key, the summaries seen (with when) and the recipients of its chunks."""

    def __init__(self, worker: BenchWorker) -> None:
        s = worker.settings
        self._consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": f"bench-output-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        topic = s.topics.send_recipients
        meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
        self._consumer.assign(
            [
                TopicPartition(
                    topic, p, self._consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
                )
                for p in meta.partitions
            ]
        )
        self.summaries: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.recipients: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            key = (msg.key() or b"").decode()
            value = msgspec.json.decode(msg.value() or b"{}")
            if value.get("type") == "summary":
                self.summaries.setdefault(key, []).append((time.time(), value))
            else:
                self.recipients[key] += len(value.get("recipients", ()))

    def wait_summary(self, send: str, timeout: float = 900) -> tuple[float, dict[str, Any]]:
        key = send_key(ORG, send)
        deadline = time.monotonic() + timeout
        while key not in self.summaries:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no summary for {send}")
            time.sleep(0.05)
        return self.summaries[key][0]

    def close(self) -> None:
        # Long enough for a doubled summary to have shown up after the last one.
        time.sleep(5)
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def failover(
    worker: BenchWorker,
    workdir: Path,
    size: int,
    want: int,
    runs: int,
    settle_s: float = STANDBY_SETTLE_S,
) -> tuple[dict[str, Any], BenchWorker]:
    """``runs`` times: a second worker joins and copies the other's partitions (given
    ``settle_s`` after it serves its share); the first is SIGKILLed and a send of ``size``
    leads is triggered at once, scheduled 2 s later.
    Seconds from the kill until the survivor serves every partition, and until the send's
    summary; its recipients must be ``want``, once each, in one summary. The survivor
    is the loaded worker of the next run (and the one returned)."""
    partitions = worker.settings.partitions
    took: list[float] = []
    summary_s: list[float] = []
    settled: list[float] = []
    for run in range(runs):
        other = _join(worker, workdir, f"standby-{run}")
        joined = time.perf_counter()
        time.sleep(settle_s)
        settled.append(time.perf_counter() - joined)
        watch = OutputWatch(worker)
        victim, survivor = worker, other
        send = f"failover-{run}"
        killed_at = time.time()
        killed = time.perf_counter()
        victim.proc.kill()
        _trigger(survivor, send, size, int(killed_at * 1000) + 2000)
        while sorted(served(survivor)) != list(range(partitions)):
            if time.perf_counter() - killed > 900:
                raise TimeoutError(f"the survivor never took every partition; see {survivor.log}")
            time.sleep(0.05)
        took.append(time.perf_counter() - killed)
        at, summary = watch.wait_summary(send)
        summary_s.append(at - killed_at)
        watch.close()
        key = send_key(ORG, send)
        if (summary["recipientCount"], watch.recipients[key]) != (want, want):
            raise RuntimeError(
                f"{send}: summary {summary['recipientCount']}, read {watch.recipients[key]}, "
                f"expected {want}"
            )
        if len(watch.summaries[key]) != 1:
            raise RuntimeError(f"{send}: {len(watch.summaries[key])} summaries")
        victim.proc.wait(60)
        shutil.rmtree(victim.settings.data_dir, ignore_errors=True)
        worker = survivor
        print(f"  failover run {run + 1}: every partition served {took[-1]:.1f} s after the kill")
    return {
        "seconds": statistics.median(took),
        "summary_seconds": statistics.median(summary_s),
        "all_seconds": took,
        "all_summary_seconds": summary_s,
        "standby_settle_seconds": settled,
        "session_timeout_seconds": worker.settings.session_timeout_seconds,
        "recipients": want,
    }, worker


def rolling_restart(
    worker: BenchWorker, workdir: Path, size: int, want: int, sends: int = 12
) -> tuple[dict[str, Any], BenchWorker]:
    """Two workers; ``sends`` sends of ``size`` leads triggered 2 s apart, each scheduled
    60 s after its trigger, while each worker in turn is stopped (SIGTERM, as a rollout
    does) and started again on its data dir. Per send: one summary, not late, ``want``
    recipients; the restarts' durations and the longest trigger-to-summary time."""
    other = _join(worker, workdir, "rolling")
    time.sleep(STANDBY_SETTLE_S)
    watch = OutputWatch(worker)
    names = [f"rolling-{i}" for i in range(sends)]
    fired: dict[str, float] = {}

    def fire_all() -> None:
        for name in names:
            fired[name] = time.time()
            _trigger(worker, name, size, int(fired[name] * 1000) + 60_000)
            time.sleep(2.0)

    firing = threading.Thread(target=fire_all)
    firing.start()
    time.sleep(1.0)
    restarts: list[float] = []
    pair = [worker, other]
    for i in range(2):
        stopped = time.perf_counter()
        pair[i] = pair[i].restart(workdir)  # SIGTERM, then the same command again
        _wait_split(pair[0], pair[1])
        restarts.append(time.perf_counter() - stopped)
        print(f"  rolling restart: worker {i + 1} back in {restarts[-1]:.1f} s", flush=True)
    firing.join()
    delays = []
    for name in names:
        at, summary = watch.wait_summary(name)
        delays.append(at - fired[name])
    watch.close()
    late = [n for n in names if any(s["late"] for _, s in watch.summaries[send_key(ORG, n)])]
    doubled = [n for n in names if len(watch.summaries[send_key(ORG, n)]) != 1]
    wrong = [n for n in names if watch.recipients[send_key(ORG, n)] != want]
    if doubled or wrong:
        raise RuntimeError(f"rolling restart: doubled {doubled}, wrong counts {wrong}")
    # One worker goes on (the next scenario's): the other's partitions come to it once
    # its session ends.
    pair[1].stop()
    everything = list(range(pair[0].settings.partitions))
    deadline = time.monotonic() + 300
    while sorted(served(pair[0])) != everything:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the last worker never took every partition; see {pair[0].log}")
        time.sleep(0.2)
    return {
        "restart_seconds": restarts,
        "sends": sends,
        "late": len(late),
        "doubled": len(doubled),
        "max_trigger_to_summary_seconds": max(delays),
        "median_trigger_to_summary_seconds": statistics.median(delays),
    }, pair[0]
