"""``python -m bench.tracing``: what traces cost. The same work on a worker of the version
before traces (``--before PYTHON``: that checkout's interpreter), with tracing off, and
with it on (every input message traced, every span exported over OTLP/HTTP to a sink in
this process), the three interleaved run by run; medians, and ratios against "off".

The work: bulk ingest (batches of 50,000 events on lead-events), real-time ingest (one
event per message), and a send of the audience (trigger to summary, read_committed)."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec

from bench.common import BenchWorker, broker, machine, report
from bench.product import _summary_after
from leadstream.client.publish import make_producer
from leadstream.domain.normalize import format_ms
from leadstream.kafka.config import KafkaConnection
from leadstream.wire.records import send_key

ORG = "bench"
MODES = ("before", "off", "on")


class _Sink:
    """Takes OTLP/HTTP posts and counts their bytes (a collector that keeps nothing)."""

    def __init__(self) -> None:
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                sink.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _headers(traced: bool) -> list[tuple[str, bytes]] | None:
    if not traced:
        return None
    return [("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode())]


def _produce(worker: BenchWorker, topic: str, values: list[bytes], traced: bool) -> None:
    producer = make_producer(KafkaConnection.of(worker.settings))
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value, headers=_headers(traced))
                break
            except BufferError:
                producer.poll(0.5)
        producer.poll(0)
    producer.flush(300)


def _events(phones: list[str], per_phone: int) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    return [
        {
            "phoneE164": p,
            "eventType": f"e{k}",
            "occurredAt": format_ms(int((now - timedelta(minutes=k + 1)).timestamp() * 1000)),
        }
        for p in phones
        for k in range(per_phone)
    ]


def one_run(
    bootstrap: str, workdir: Path, mode: str, before: str, phones: list[str], singles: int
) -> dict[str, float]:
    """One worker of ``mode``: the three measurements."""
    env_before = dict(os.environ)
    sink = _Sink() if mode == "on" else None
    if sink is not None:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
    try:
        worker = BenchWorker(
            bootstrap,
            workdir,
            executable=before if mode == "before" else sys.executable,
            materialize_lead_seconds=7200,
        )
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    traced = mode == "on"
    try:
        worker.wait_ready()
        rows = _events(phones, 2)
        batches = [
            msgspec.json.encode({"organizationId": ORG, "events": rows[i : i + 50_000]})
            for i in range(0, len(rows), 50_000)
        ]
        t = time.perf_counter()
        _produce(worker, worker.settings.topics.lead_events, batches, traced)
        worker.wait_applied(len(rows))
        bulk = time.perf_counter() - t

        one = [
            msgspec.json.encode({"organizationId": ORG, **r}) for r in _events(phones[:singles], 1)
        ]
        for r, p in zip(one, phones[:singles], strict=True):
            assert p.encode() in r
        t = time.perf_counter()
        _produce(worker, worker.settings.topics.lead_events, one, traced)
        worker.wait_applied(len(rows) + len(one))
        realtime = time.perf_counter() - t

        members = [
            msgspec.json.encode(
                {
                    "organizationId": ORG,
                    "campaignId": "c",
                    "members": [{"phoneE164": p} for p in phones[i : i + 50_000]],
                }
            )
            for i in range(0, len(phones), 50_000)
        ]
        _produce(worker, worker.settings.topics.audience_members, members, traced)
        while worker.metric("leadstream_members_applied_total") < len(phones):
            time.sleep(0.2)
        s = worker.settings
        trigger = {
            "organizationId": ORG,
            "campaignId": "c",
            "sendId": f"s-{mode}",
            "scheduledFor": format_ms(int(time.time() * 1000) + 600_000),
            "eventFilter": {"mode": "exclude", "eventType": "e0", "within": {"minutes": 1}},
        }
        producer = make_producer(KafkaConnection.of(s))
        started: list[float] = []

        def fire() -> None:
            started.append(time.perf_counter())
            producer.produce(
                s.topics.send_triggers, msgspec.json.encode(trigger), headers=_headers(traced)
            )
            producer.flush(30)

        summary = _summary_after(
            s.kafka_bootstrap, s.topics.send_recipients, send_key(ORG, f"s-{mode}").encode(), fire
        )
        send = time.perf_counter() - started[0]
        if summary["recipientCount"] != len(phones):
            raise RuntimeError(f"{summary['recipientCount']} recipients of {len(phones)}")
        if sink is not None:
            time.sleep(1.0)  # the worker's exporter sends its last batch
            if sink.bytes == 0:
                raise RuntimeError("tracing on, but nothing was exported")
    finally:
        worker.stop()
    return {"bulk_ingest_s": bulk, "realtime_ingest_s": realtime, "send_s": send}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--before", required=True, help="python of the version before traces")
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--singles", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    phones = [f"+1555{i:07d}" for i in range(args.leads)]
    workdir = Path(".leadstream/bench-tracing")
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    with broker() as bootstrap:
        for run in range(args.runs):
            for mode in MODES:
                got = one_run(bootstrap, workdir, mode, args.before, phones, args.singles)
                results[mode].append(got)
                print(f"run {run + 1} {mode}: {got}", flush=True)
    medians = {
        m: {k: statistics.median(r[k] for r in results[m]) for k in results[m][0]} for m in MODES
    }
    ratios = {m: {k: medians[m][k] / medians["off"][k] for k in medians["off"]} for m in MODES}
    report(
        args.out,
        {
            "machine": machine(),
            "leads": args.leads,
            "events": 2 * args.leads,
            "singles": args.singles,
            "runs": results,
            "medians": medians,
            "ratios_to_off": ratios,
        },
    )


if __name__ == "__main__":
    main()
