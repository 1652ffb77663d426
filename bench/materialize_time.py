"""Time from trigger to summary for one worker, by audience size and filter kind.

Run from the repository root:
``python -m bench.materialize_time [--leads 100000 1000000] [--runs 3]``

Per audience size: one worker on fresh topics; N members; events for about 10% purchasers,
10% attendees within the last hour, 20% double-opt-in confirmed and 2% opted out. Then,
per filter kind (sticky exclude, 120-minute window exclude, include), ``--runs`` sends
whose scheduledFor is within the materialize lead, so each materializes on arrival: the
clock runs from producing the trigger until its summary is readable (read_committed).
The baseline, in the same run, is the domain's evaluation of the same audience in-process
over a MemoryStore (the rules alone, no Kafka, faust, RocksDB or transactions).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from bench.common import BenchWorker, broker, machine, median, report, wait_group_caught_up
from leadstream.domain.audience import MemberOp
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events
from leadstream.domain.normalize import parse_rfc3339_ms
from leadstream.domain.partitioning import lead_partition
from leadstream.domain.send_state import apply_members
from leadstream.domain.sends import materialize_partition, parse_trigger
from leadstream.publish import make_producer
from leadstream.recipients import read_send
from leadstream.state.memory import MemoryStore

ORG = "bench"
FILTERS: dict[str, dict[str, Any]] = {
    "sticky_exclude": {"mode": "exclude", "eventType": "purchase"},
    "window_exclude_120min": {
        "mode": "exclude",
        "eventType": "attended",
        "within": {"minutes": 120},
    },
    "include": {"mode": "include", "eventType": "doi_confirmed"},
}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def population(leads: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    members, events = [], []
    for i in range(leads):
        phone = f"+1666{i:07d}"
        members.append({"phoneE164": phone, "externalId": f"x{i}"})
        r = rng.random()
        if r < 0.1:
            events.append(
                {
                    "phoneE164": phone,
                    "eventType": "purchase",
                    "occurredAt": iso(now - timedelta(days=rng.randint(1, 30))),
                }
            )
        elif r < 0.2:
            events.append(
                {
                    "phoneE164": phone,
                    "eventType": "attended",
                    "occurredAt": iso(now - timedelta(minutes=rng.randint(1, 60))),
                }
            )
        if rng.random() < 0.2:
            events.append(
                {
                    "phoneE164": phone,
                    "eventType": "doi_confirmed",
                    "occurredAt": iso(now - timedelta(days=rng.randint(1, 30))),
                }
            )
        if rng.random() < 0.02:
            events.append(
                {
                    "phoneE164": phone,
                    "eventType": "opted_out",
                    "occurredAt": iso(now - timedelta(days=3)),
                }
            )
    return members, events


def load(worker: BenchWorker, members: list[dict[str, Any]], events: list[dict[str, Any]]) -> float:
    s = worker.settings
    producer = make_producer(s.kafka_bootstrap)
    start = time.perf_counter()
    for i in range(0, len(members), 50_000):
        value = {"organizationId": ORG, "campaignId": "camp", "members": members[i : i + 50_000]}
        producer.produce(s.topics.audience_members, msgspec.json.encode(value))
    for i in range(0, len(events), 50_000):
        producer.produce(
            s.topics.lead_events,
            msgspec.json.encode({"organizationId": ORG, "events": events[i : i + 50_000]}),
        )
    producer.flush(300)
    wait_group_caught_up(
        s.kafka_bootstrap,
        s.app_id,
        [s.topics.audience_members, s.topics.lead_events, s.topics.by_lead],
    )
    return time.perf_counter() - start


def trigger_to_summary(worker: BenchWorker, send: str, event_filter: dict[str, Any]) -> float:
    s = worker.settings
    producer = make_producer(s.kafka_bootstrap)
    trigger = {
        "organizationId": ORG,
        "campaignId": "camp",
        "sendId": send,
        "scheduledFor": iso(datetime.now(UTC) + timedelta(minutes=10)),
        "eventFilter": event_filter,
    }
    start = time.perf_counter()
    producer.produce(s.topics.send_triggers, msgspec.json.encode(trigger))
    producer.flush(30)
    result = read_send(
        s.kafka_bootstrap, s.topics.send_recipients, send, organization_id=ORG, timeout=1800
    )
    elapsed = time.perf_counter() - start
    assert result.summary is not None, f"no summary for {send}"
    return elapsed


def baseline_store(
    members: list[dict[str, Any]], events: list[dict[str, Any]], n: int
) -> MemoryStore:
    """The same state as the worker's, in memory, for the in-process baseline."""
    store = MemoryStore()
    for m in members:
        op = MemberOp(ORG, "camp", m["phoneE164"], m["externalId"])
        apply_members(store, lead_partition(ORG, op.phone, n), [op])
    for e in events:
        ev = LeadEvent(ORG, e["phoneE164"], e["eventType"], parse_rfc3339_ms(e["occurredAt"]))
        apply_events(store, lead_partition(ORG, ev.phone, n), [ev], horizon_ms=0)
    return store


def baseline(store: MemoryStore, n: int, event_filter: dict[str, Any]) -> float:
    trigger = parse_trigger(
        {
            "organizationId": ORG,
            "campaignId": "camp",
            "sendId": "b",
            "scheduledFor": iso(datetime.now(UTC) + timedelta(minutes=10)),
            "eventFilter": event_filter,
        }
    )
    start = time.perf_counter()
    for p in range(n):
        materialize_partition(
            store, p, trigger, None, opt_out_type="opted_out", opt_in_type="opted_in"
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/materialize_time.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "scenario": "trigger to summary, one worker",
        "machine": machine(),
        "sizes": {},
    }
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        for leads in args.leads:
            members, events = population(leads, seed=leads)
            worker = BenchWorker(bootstrap, Path(tmp), materialize_lead_seconds=3600)
            n = worker.settings.partitions
            memory = baseline_store(members, events, n)
            try:
                load_s = load(worker, members, events)
                size: dict[str, Any] = {
                    "load_seconds": round(load_s, 1),
                    "events": len(events),
                    "kinds": {},
                }
                for kind, event_filter in FILTERS.items():
                    ls = [
                        trigger_to_summary(worker, f"{kind}-{i}", event_filter)
                        for i in range(args.runs)
                    ]
                    base = [baseline(memory, n, event_filter) for _ in range(args.runs)]
                    size["kinds"][kind] = {
                        "leadstream_seconds": [round(x, 3) for x in ls],
                        "leadstream_median_seconds": round(median(ls), 3),
                        "baseline_in_process_seconds": round(median(base), 3),
                        "ratio": round(median(ls) / median(base), 2),
                    }
                results["sizes"][str(leads)] = size
            finally:
                worker.stop()
    report(args.out, results)


if __name__ == "__main__":
    main()
