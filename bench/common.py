"""Shared pieces of the benchmarks: a broker, a fresh worker, topic offsets, reporting."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from leadstream.kafka.admin import ensure_topics
from leadstream.kafka.local import KAFKA_VERSION, LocalKafka
from leadstream.settings import Settings

BENCH_BOOTSTRAP = "127.0.0.1:39192"


@contextmanager
def broker() -> Iterator[str]:
    """``LEADSTREAM_KAFKA_BOOTSTRAP`` if set, else a local broker kept for the bench only."""
    env = os.environ.get("LEADSTREAM_KAFKA_BOOTSTRAP")
    if env:
        yield env
        return
    local = LocalKafka(Path(".leadstream/bench-kafka"), BENCH_BOOTSTRAP)
    local.start(timeout=300)
    try:
        yield BENCH_BOOTSTRAP
    finally:
        local.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchWorker:
    """One ``leadstream worker`` process on fresh topics and a fresh data directory
    (or, given ``settings``, on those of an earlier worker: a restart)."""

    def __init__(
        self,
        bootstrap: str,
        workdir: Path,
        settings: Settings | None = None,
        *,
        executable: str = sys.executable,
        **overrides: Any,
    ) -> None:
        if settings is None:
            run = uuid.uuid4().hex[:8]
            overrides.setdefault("web_port", free_port())
            settings = Settings(
                kafka_bootstrap=bootstrap,
                app_id=f"bench-{run}",
                topic_prefix=f"b{run}-",
                data_dir=workdir / run,
                **overrides,
            )
            ensure_topics(settings)
        overrides["web_port"] = settings.web_port
        self.settings = settings
        self.overrides = overrides
        env = {
            **os.environ,
            "LEADSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "LEADSTREAM_APP_ID": settings.app_id,
            "LEADSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "LEADSTREAM_DATA_DIR": str(settings.data_dir),
            **{f"LEADSTREAM_{k.upper()}": str(v) for k, v in overrides.items()},
        }
        self.log = workdir / f"{settings.app_id}-{time.time_ns()}.log"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            # Another checkout's interpreter runs that version (bench/tracing.py).
            [executable, "-m", "leadstream.cli", "worker"],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600
        while b"Worker ready" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.log}")
            time.sleep(0.1)

    def restart(self, workdir: Path, **changes: Any) -> BenchWorker:
        """Stop this worker and start another on the same topics, group and data dir (with
        ``changes`` to its settings)."""
        self.stop()
        overrides = {**self.overrides, **changes}
        return BenchWorker(
            self.settings.kafka_bootstrap, workdir, settings=self.settings, **overrides
        )

    def wait_ready(self, timeout: float = 3600) -> float:
        """Until /readyz answers 200 (broker reachable, recovery finished); seconds since
        the process was started."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as r:  # noqa: S310
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"worker never became ready; see {self.log}")
            time.sleep(0.1)

    def rss_bytes(self) -> int:
        """Resident memory of the worker and its child processes (the lead-events router)."""
        pid = self.proc.pid
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return sum(_rss(p) for p in [pid, *children])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def metric(self, sample: str) -> float:
        """One sample of the worker's /metrics, e.g. ``leadstream_rows_total{outcome="inserted"}``
        (0 when absent)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:  # noqa: S310
            for line in response.read().decode().splitlines():
                if line.startswith(sample + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_applied(self, rows: int, timeout: float = 3600) -> None:
        """Until the worker has applied ``rows`` event rows (inserted + duplicate)."""
        deadline = time.monotonic() + timeout
        while True:
            applied = self.metric('leadstream_rows_total{outcome="inserted"}') + self.metric(
                'leadstream_rows_total{outcome="duplicate"}'
            )
            if applied >= rows:
                return
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{applied:.0f} of {rows} rows applied; see {self.log}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def end_total(bootstrap: str, topic: str) -> int:
    """Sum of a topic's end offsets (0 when it does not exist yet)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        c.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
    }


def report(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))


def median(values: list[float]) -> float:
    return statistics.median(values)
