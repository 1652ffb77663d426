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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from leadstream.kafka_admin import ensure_topics
from leadstream.localkafka import KAFKA_VERSION, LocalKafka
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchWorker:
    """One ``leadstream worker`` process on fresh topics and a fresh data directory."""

    def __init__(self, bootstrap: str, workdir: Path, **overrides: Any) -> None:
        run = uuid.uuid4().hex[:8]
        overrides.setdefault("web_port", _free_port())
        self.settings = Settings(
            kafka_bootstrap=bootstrap,
            app_id=f"bench-{run}",
            topic_prefix=f"b{run}-",
            data_dir=workdir / run,
            **overrides,
        )
        ensure_topics(self.settings)
        env = {
            **os.environ,
            "LEADSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "LEADSTREAM_APP_ID": self.settings.app_id,
            "LEADSTREAM_TOPIC_PREFIX": self.settings.topic_prefix,
            "LEADSTREAM_DATA_DIR": str(self.settings.data_dir),
            **{f"LEADSTREAM_{k.upper()}": str(v) for k, v in overrides.items()},
        }
        self.log = workdir / f"{run}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "leadstream.cli", "worker"],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while b"Worker ready" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.log}")
            time.sleep(0.2)

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


def wait_group_caught_up(
    bootstrap: str, group: str, topics: list[str], timeout: float = 1800
) -> None:
    """Until ``group`` has committed the end of every partition of ``topics`` (twice in a row)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    deadline = time.monotonic() + timeout
    streak = 0
    try:
        while time.monotonic() < deadline:
            lag = 0
            for topic in topics:
                meta = c.list_topics(topic, timeout=10).topics[topic]
                tps = [TopicPartition(topic, p) for p in meta.partitions]
                for tp in c.committed(tps, timeout=10):
                    high = c.get_watermark_offsets(tp, timeout=10)[1]
                    lag += high - max(tp.offset, 0)
            streak = streak + 1 if lag == 0 else 0
            if streak >= 2:
                return
            time.sleep(1.0)
    finally:
        c.close()
    raise TimeoutError(f"group {group} did not catch up")


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
