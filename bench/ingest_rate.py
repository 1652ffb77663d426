"""Ingest rate of one worker: events per second from publish until every event is in the table.

Run from the repository root: ``python -m bench.ingest_rate [--events 200000] [--runs 3]``

Per run: a fresh app id and topics, one worker process, N seeded events published as
50,000-event batches (about 10% exact duplicates); the clock stops when the table's
changelog holds every distinct event. The baseline, measured in the same run on the same
data, is the pure domain pipeline in-process (decode, validate, normalize, dedupe into a
MemoryStore): what the rules alone cost, without Kafka, faust or RocksDB.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import msgspec

from bench.common import BenchWorker, broker, end_total, machine, median, report
from leadstream.domain.ingest import IngestRules, decode_json, parse_lead_events
from leadstream.domain.lead_index import apply_events
from leadstream.domain.partitioning import lead_partition
from leadstream.publish import make_producer
from leadstream.state.memory import MemoryStore


def make_batches(events: int, seed: int) -> tuple[list[bytes], int]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    distinct: set[tuple[str, ...]] = set()
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


def run_leadstream(bootstrap: str, batches: list[bytes], distinct: int, workdir: Path) -> float:
    worker = BenchWorker(bootstrap, workdir)
    try:
        changelog = worker.settings.topics.leads_changelog
        producer = make_producer(bootstrap)
        start = time.perf_counter()
        for value in batches:
            producer.produce(worker.settings.topics.lead_events, value=value)
        producer.flush(120)
        while end_total(bootstrap, changelog) < distinct:
            assert worker.alive(), f"worker died; see {worker.log}"
            time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        worker.stop()


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
    batches, distinct = make_batches(args.events, seed=1)
    runs: dict[str, list[float]] = {"leadstream": [], "baseline": []}
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            runs["baseline"].append(run_baseline(batches))
            runs["leadstream"].append(run_leadstream(bootstrap, batches, distinct, Path(tmp)))
    med = {k: median(v) for k, v in runs.items()}
    report(
        args.out,
        {
            "scenario": "bulk ingest through Kafka, one worker, until applied",
            "events": args.events,
            "distinct": distinct,
            "seconds": runs,
            "median_seconds": med,
            "median_events_per_second": {k: round(args.events / v) for k, v in med.items()},
            "ratio_leadstream_time_to_baseline_time": round(med["leadstream"] / med["baseline"], 2),
            "machine": machine(),
        },
    )


if __name__ == "__main__":
    main()
