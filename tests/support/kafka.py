"""Test-side Kafka helpers: the broker choice, producing and reading topics."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from leadstream.kafka.config import KafkaConnection

KAFKA_IMAGE = "apache/kafka:4.4.0"
LOCAL_TEST_BOOTSTRAP = "127.0.0.1:39092"


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def broker() -> Iterator[str]:
    """``LEADSTREAM_KAFKA_BOOTSTRAP`` if set, else a testcontainers broker where Docker
    answers, else the project's local broker, shared by every test process of the run
    (pytest-xdist workers): the first starts it, the last one out stops it if the tests
    started it (:func:`_shared_local_broker`)."""
    env = os.environ.get("LEADSTREAM_KAFKA_BOOTSTRAP")
    if env:
        yield env
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    home = Path(
        os.environ.get("LEADSTREAM_TEST_KAFKA_HOME", Path.cwd() / ".leadstream" / "test-kafka")
    )
    with _shared_local_broker(home):
        yield LOCAL_TEST_BOOTSTRAP


@contextmanager
def _shared_local_broker(home: Path) -> Iterator[None]:
    """The local broker under ``home``, used by this process until the block ends.

    Test processes register under ``home/users`` while a lock (``home/users.lock``) keeps
    the start and the stop to one process at a time. The broker is stopped by the last
    user to leave, and only if a test process started it (``home/started-by-tests``): a
    broker a developer had running before the run is left running.
    """
    from leadstream.kafka.local import LocalKafka

    local = LocalKafka(home, LOCAL_TEST_BOOTSTRAP)
    users = home / "users"
    users.mkdir(parents=True, exist_ok=True)
    marker, me = home / "started-by-tests", users / str(os.getpid())
    with _locked(home / "users.lock"):
        if not local.status().running:
            local.start(timeout=300)
            marker.touch()
        me.touch()
    try:
        yield
    finally:
        with _locked(home / "users.lock"):
            me.unlink(missing_ok=True)
            if marker.exists() and not any(_alive(int(u.name)) for u in users.iterdir()):
                local.stop()
                marker.unlink()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Where a helper connects: a plaintext bootstrap, or a connection with its security.
Kafka = str | KafkaConnection


def client_config(kafka: Kafka) -> dict[str, Any]:
    """The connection keys of a confluent-kafka client."""
    return {"bootstrap.servers": kafka} if isinstance(kafka, str) else kafka.common()


def producer(bootstrap: Kafka) -> Producer:
    return Producer(
        {
            **client_config(bootstrap),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": 16 * 1024 * 1024,
            "compression.type": "zstd",
        }
    )


def produce(bootstrap: Kafka, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    p = producer(bootstrap)
    errors: list[Any] = []
    for value in values:
        while True:
            try:
                p.produce(
                    topic, value=value, key=key, on_delivery=lambda e, m: e and errors.append(e)
                )
                break
            except BufferError:
                p.poll(0.2)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors


def end_offsets(bootstrap: Kafka, topic: str) -> dict[int, int]:
    c = Consumer({**client_config(bootstrap), "group.id": "leadstream-tests-probe"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            return {}
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
    finally:
        c.close()


def read_topic(
    bootstrap: Kafka, topic: str, *, timeout: float = 30.0, expect: int | None = None
) -> list[Any]:
    """Every message of ``topic`` from the start: until ``expect`` messages were read, or
    (without ``expect``) until the end offsets seen at the start are reached, or each
    partition's end is (a transactional topic's end offset counts its commit markers,
    which no message reaches: its end, told by the consumer, is the last committed)."""
    c = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"leadstream-tests-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    ends = end_offsets(bootstrap, topic) if expect is None else {}
    c.subscribe([topic])
    out: list[Any] = []
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if expect is not None and len(out) >= expect:
                break
            if expect is None and all(seen.get(p, 0) >= e for p, e in ends.items()):
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    p = msg.partition()
                    seen[p] = max(seen.get(p, 0), ends.get(p, 0))
                    continue
                if msg.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue
                raise RuntimeError(msg.error())
            out.append(msg)
            seen[msg.partition()] = msg.offset() + 1
    finally:
        c.close()
    return out
