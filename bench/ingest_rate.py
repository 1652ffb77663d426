"""Ingest rate of one worker: events per second from publish until every event is in the table.

Run: python bench/ingest_rate.py [--events 200000] [--runs 3]

Per run: a fresh app id and topics, one worker process, N seeded events published as
50,000-event batches (10% exact duplicates); the clock stops when the table's changelog
holds every distinct event. The baseline, measured in the same run on the same data, is
the pure domain pipeline in-process (decode, validate, normalize, dedupe into a
MemoryStore): what the rules alone cost, without Kafka, faust or RocksDB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
from confluent_kafka import Consumer, TopicPartition

from leadstream.domain.ingest import IngestRules, decode_json, parse_lead_events
from leadstream.domain.lead_index import apply_events
from leadstream.domain.partitioning import lead_partition
from leadstream.kafka_admin import ensure_topics
from leadstream.localkafka import KAFKA_VERSION, LocalKafka
from leadstream.publish import make_producer
from leadstream.settings import Settings
from leadstream.state.memory import MemoryStore

BENCH_BOOTSTRAP = "127.0.0.1:39192"


def make_batches(events: int, seed: int) -> tuple[list[bytes], int]:
    rng = random.Random(seed)
    rows, distinct = [], set()
    types = ("purchase", "webinar_attended", "opted_out", "opted_in")
    while len(rows) < events:
        row = {
            "phoneE164": f"+1555{rng.randrange(events // 2):07d}",
            "eventType": rng.choice(types),
            "occurredAt": f"2026-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        }
        rows.append(row)
        distinct.add(tuple(row.values()))
        if rng.random() < 0.1 and len(rows) < events:
            rows.append(dict(row))
    batches = [
        msgspec.json.encode({"organizationId": 1, "events": rows[i : i + 50_000]})
        for i in range(0, len(rows), 50_000)
    ]
    return batches, len(distinct)


def changelog_total(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions
        )
    finally:
        c.close()


def run_leadstream(bootstrap: str, batches: list[bytes], distinct: int, workdir: Path) -> float:
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=bootstrap, app_id=f"bench-{run}", topic_prefix=f"b{run}-",
        data_dir=workdir / run,
    )
    ensure_topics(settings)
    env = {
        **os.environ,
        "LEADSTREAM_KAFKA_BOOTSTRAP": bootstrap,
        "LEADSTREAM_APP_ID": settings.app_id,
        "LEADSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "LEADSTREAM_DATA_DIR": str(settings.data_dir),
        "LEADSTREAM_WEB_PORT": "0",
    }
    log = (workdir / f"{run}.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "leadstream.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        changelog = f"{settings.app_id}-leads-changelog"
        deadline = time.monotonic() + 120
        while changelog_total(bootstrap, changelog) == 0 and not _assigned(workdir / f"{run}.log"):
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.5)
        producer = make_producer(bootstrap)
        start = time.perf_counter()
        for value in batches:
            producer.produce(settings.topics.lead_events, value=value)
        producer.flush(120)
        while changelog_total(bootstrap, changelog) < distinct:
            assert worker.poll() is None, "worker died"
            time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(60)


def _assigned(log: Path) -> bool:
    return b"Worker ready" in log.read_bytes()


def run_baseline(batches: list[bytes]) -> float:
    rules = IngestRules()
    store = MemoryStore()
    now = time.time_ns() // 1_000_000
    start = time.perf_counter()
    for value in batches:
        parsed = parse_lead_events(decode_json(value), now_ms=now, rules=rules)
        for ev in parsed.events:
            apply_events(store, lead_partition(ev.organization_id, ev.phone, 8), [ev], horizon_ms=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest_rate.json"))
    args = parser.parse_args()

    bootstrap = os.environ.get("LEADSTREAM_KAFKA_BOOTSTRAP")
    local = None
    if not bootstrap:
        local = LocalKafka(Path(".leadstream/bench-kafka"), BENCH_BOOTSTRAP)
        local.start(timeout=300)
        bootstrap = BENCH_BOOTSTRAP
    batches, distinct = make_batches(args.events, seed=1)
    results: dict[str, list[float]] = {"leadstream": [], "baseline": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                results["baseline"].append(run_baseline(batches))
                results["leadstream"].append(run_leadstream(bootstrap, batches, distinct, Path(tmp)))
    finally:
        if local is not None:
            local.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "events": args.events,
        "distinct": distinct,
        "runs": results,
        "median_seconds": med,
        "median_events_per_second": {k: args.events / v for k, v in med.items()},
        "ratio_leadstream_to_baseline_time": med["leadstream"] / med["baseline"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "kafka": KAFKA_VERSION,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
