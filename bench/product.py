"""The benchmark's scenarios run against leadstream: real broker, real worker processes.

Each function measures one scenario on the shared dataset (:mod:`bench.dataset`) and checks
its exact counts; :mod:`bench.suite` runs them beside the PostgreSQL baseline.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
from confluent_kafka import Consumer, TopicPartition

from bench.common import BenchWorker
from bench.dataset import (
    ATTENDED,
    DOI,
    MINUTE_MS,
    OPT_OUT,
    PURCHASE,
    WINDOW_MINUTES,
    Dataset,
    window_unchanged,
)
from bench.loadgen import steady_posts
from leadstream.client.publish import make_producer
from leadstream.domain.auth import ApiKey, AuthConfig, hash_api_key, with_key
from leadstream.domain.controls import parse_quiet_hours, phone_zones
from leadstream.domain.normalize import format_ms
from leadstream.kafka.config import KafkaConnection
from leadstream.web.keys import save_auth
from leadstream.wire.records import send_key

__all__ = [
    "CONDITIONS_TREE",
    "FILTERS",
    "ORG",
    "big_sends",
    "bulk_ingest",
    "ComplianceReference",
    "compliance_sends",
    "footprint_and_rebuild",
    "http_latency",
    "load_audiences",
    "audience_upload",
    "load_fresh",
    "materialize",
    "materialize_early",
    "preview",
    "realtime_ingest",
    "restart_after_kill",
]

ORG = "bench"
API_KEY = "lsk_bench_" + "z" * 40
FILTERS: dict[str, dict[str, Any]] = {
    "sticky_exclude": {"mode": "exclude", "eventType": PURCHASE},
    "window_exclude_120min": {
        "mode": "exclude",
        "eventType": ATTENDED,
        "within": {"minutes": WINDOW_MINUTES},
    },
    "include": {"mode": "include", "eventType": DOI},
}
# Events reach up to the fire time, which lies ahead of the clock while the bench runs.
WORKER: dict[str, Any] = {
    "materialize_lead_seconds": 7200,
    "max_future_skew_seconds": 7200,
    # The broker's lowest session timeout: how long a killed worker's partitions wait
    # before the group gives them to the other (bench/failover.py).
    "session_timeout_seconds": 6,
}
PREVIEW = "/api/v1/sends/preview"
MEMBERS_APPLIED = "leadstream_members_applied_total"
# Recipients a preview returns beside its counts: a few, as a UI would show them.
PREVIEW_SAMPLE = 10


def _keyed(workdir: Path) -> dict[str, Any]:
    """The workers' settings with an auth file that holds the organization's API key.

    The file lies outside every data directory: the rebuild deletes its worker's, and the
    HTTP reads that follow (previews, a lead read back after SIGKILL) still need the key."""
    auth = workdir / "bench-auth.json"
    save_auth(auth, with_key(AuthConfig(), ORG, ApiKey("ak", hash_api_key(API_KEY), "t")))
    return {**WORKER, "auth_file": auth}


def _rows(ds: Dataset, start: int, stop: int) -> list[dict[str, str]]:
    return [
        {"phoneE164": ds.phones[i], "eventType": t, "occurredAt": format_ms(ms)}
        for i, t, ms in ds.events[start:stop]
    ]


def event_batches(ds: Dataset, size: int = 50_000) -> list[bytes]:
    """The dataset as contract batch messages of ``size`` events (rows carry their eventType)."""
    return [
        msgspec.json.encode({"organizationId": ORG, "events": _rows(ds, i, i + size)})
        for i in range(0, len(ds.events), size)
    ]


def _applied(worker: BenchWorker) -> tuple[int, int]:
    inserted = worker.metric('leadstream_rows_total{outcome="inserted"}')
    duplicates = worker.metric('leadstream_rows_total{outcome="duplicate"}')
    return int(inserted), int(duplicates)


def _until_applied(worker: BenchWorker, values: list[bytes], rows: int) -> float:
    """Seconds from the first produce of ``values`` to ``lead-events`` until the worker has
    applied ``rows`` rows."""
    producer = make_producer(KafkaConnection.of(worker.settings))
    start = time.perf_counter()
    for value in values:
        while True:
            try:
                producer.produce(worker.settings.topics.lead_events, value=value)
                break
            except BufferError:  # the client's queue is full (10,000,000 leads): let it drain
                producer.poll(0.5)
        producer.poll(0)
    producer.flush(300)
    worker.wait_applied(rows)
    return time.perf_counter() - start


def load_fresh(
    bootstrap: str, workdir: Path, batches: list[bytes], rows: int, distinct: int
) -> tuple[float, BenchWorker]:
    """Batch messages into a fresh worker (fresh topics, app id and data dir): seconds until
    all ``rows`` are applied, exact inserted and duplicate counts checked; the worker, loaded."""
    worker = BenchWorker(bootstrap, workdir, **_keyed(workdir))
    try:
        seconds = _until_applied(worker, batches, rows)
        counts = _applied(worker)
        if counts != (distinct, rows - distinct):
            raise RuntimeError(f"inserted/duplicates {counts}, expected {distinct} distinct rows")
    except BaseException:
        worker.stop()
        raise
    return seconds, worker


def bulk_ingest(
    bootstrap: str, workdir: Path, ds: Dataset, batches: list[bytes], runs: int
) -> tuple[dict[str, Any], BenchWorker]:
    """Batch messages into a fresh worker until every event is applied; ``runs`` times.

    The last run's worker is returned, loaded, for the scenarios that need the data."""
    seconds: list[float] = []
    worker: BenchWorker | None = None
    for run in range(runs):
        if worker is not None:
            worker.stop()
        took, worker = load_fresh(bootstrap, workdir, batches, len(ds.events), ds.distinct_events)
        seconds.append(took)
        print(f"  bulk ingest run {run + 1}: {seconds[-1]:.1f} s", flush=True)
    assert worker is not None
    med = statistics.median(seconds)
    return {
        "seconds": med,
        "events_per_s": len(ds.events) / med,
        "all_seconds": seconds,
        "inserted": ds.distinct_events,
    }, worker


def realtime_ingest(
    bootstrap: str, workdir: Path, ds: Dataset, n: int, runs: int
) -> dict[str, Any]:
    """One event per message (as a source system streams them), into a fresh worker,
    until all ``n`` are applied."""
    seconds: list[float] = []
    values = [msgspec.json.encode({"organizationId": ORG, **row}) for row in _rows(ds, 0, n)]
    n = len(values)  # the dataset may hold fewer events than asked for
    for run in range(runs):
        worker = BenchWorker(bootstrap, workdir, **WORKER)
        try:
            seconds.append(_until_applied(worker, values, n))
        finally:
            worker.stop()
        print(f"  real-time ingest run {run + 1}: {seconds[-1]:.1f} s", flush=True)
    med = statistics.median(seconds)
    return {"seconds": med, "events_per_s": n / med, "all_seconds": seconds, "events": n}


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(sorted(samples), n=100, method="inclusive")[q - 1]


def _single_event(i: int) -> bytes:
    return msgspec.json.encode(
        {
            "organizationId": ORG,
            "eventType": "click",
            "events": [{"phoneE164": f"+1777{i:07d}", "occurredAt": "2026-05-12T18:34:00Z"}],
        }
    )


def _steady_apart(
    url: str, headers: dict[str, str], rate: float, seconds: float, first: int
) -> list[float]:
    """:func:`bench.loadgen.steady_posts` in a fresh process. The suite's own process holds
    the dataset (millions of objects), and each of its full garbage collections stalled the load
    generator for 150-180 ms: p99 114 ms against 31 ms from a small process, with the
    same worker and broker. A load generator must not add its own pauses."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(_run_steady, url, headers, rate, seconds, first).result()


def _run_steady(
    url: str, headers: dict[str, str], rate: float, seconds: float, first: int
) -> list[float]:
    return asyncio.run(
        steady_posts(url, headers, _single_event, rate=rate, seconds=seconds, first=first)
    )


# Seconds of requests at the same rate before the measured ones: a fresh worker's first
# second under load is its own event (its first requests waited ~100 ms at once:
# connections opened, code paths run for the first time), which in a 20 s run is the whole
# 99th percentile. A service under steady load has paid for it.
WARMUP_S = 2.0


WEBHOOK = "/api/v1/webhooks/lead-events"


def _latency_buckets(exposition: str, endpoint: str) -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of the worker's HTTP latency histogram."""
    prefix = f'leadstream_http_request_seconds_bucket{{endpoint="{endpoint}",le="'
    buckets = []
    for line in exposition.splitlines():
        if line.startswith(prefix):
            bound, count = line[len(prefix) :].split('"} ')
            buckets.append((float(bound), float(count)))
    return buckets


def _bucket_of(buckets: list[tuple[float, float]], q: float) -> float:
    """The smallest bucket bound that holds quantile ``q`` of the observations."""
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def http_latency(
    bootstrap: str, workdir: Path, *, rate: float, seconds: float, bulk: int
) -> dict[str, Any]:
    """Single-event POSTs at a steady ``rate`` per second, then ``bulk`` 50,000-event POSTs
    one after another (exact counts checked), on a fresh worker."""
    worker = BenchWorker(bootstrap, workdir, **_keyed(workdir))
    try:
        worker.wait_ready()
        url = f"{worker.url}{WEBHOOK}"
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        _steady_apart(url, headers, rate, WARMUP_S, first=0)
        warm = _latency_buckets(httpx.get(f"{worker.url}/metrics").text, WEBHOOK)
        # The measured requests carry phones of their own (not the warm-up's).
        single = _steady_apart(url, headers, rate, seconds, first=int(rate * WARMUP_S))
        after = _latency_buckets(httpx.get(f"{worker.url}/metrics").text, WEBHOOK)
        # The worker's histogram of the measured run alone.
        served = [(bound, n - n0) for (bound, n), (_, n0) in zip(after, warm, strict=True)]
        bulk_s: list[float] = []
        with httpx.Client(timeout=600) as client:
            for b in range(bulk):
                events = [
                    {"phoneE164": f"+1778{b:02d}{i:05d}", "occurredAt": "2026-05-12T18:34:00Z"}
                    for i in range(50_000)
                ]
                body = msgspec.json.encode(
                    {"organizationId": ORG, "eventType": "bulk", "events": events}
                )
                start = time.perf_counter()
                answer = client.post(url, content=body, headers=headers)
                bulk_s.append(time.perf_counter() - start)
                answer.raise_for_status()
                got = answer.json()
                if (got["inserted"], got["duplicates"], got["rejected"]) != (50_000, 0, 0):
                    raise RuntimeError(f"50,000-event POST answered {got}")
    finally:
        worker.stop()
    return {
        "single": {
            "rate_per_s": rate,
            "requests": len(single),
            "p50_ms": _percentile(single, 50) * 1000,
            "p99_ms": _percentile(single, 99) * 1000,
            # The worker's own view (its latency histogram): the bucket bound holding the
            # 99th percentile. Tells a slow worker from a stalled client.
            "worker_p99_at_most_ms": _bucket_of(served, 0.99) * 1000,
        },
        "bulk_50k": {
            "requests": bulk,
            "p50_s": statistics.median(bulk_s),
            "max_s": max(bulk_s),
            "all_seconds": bulk_s,
        },
    }


def load_audiences(worker: BenchWorker, phones: list[str], sizes: list[int]) -> dict[str, float]:
    """Campaign ``c<size>`` gets the first ``size`` of ``phones`` as its audience."""
    s = worker.settings
    producer = make_producer(KafkaConnection.of(s))
    before = worker.metric(MEMBERS_APPLIED)
    start = time.perf_counter()
    for size in sizes:
        for i in range(0, size, 50_000):
            members = [{"phoneE164": p} for p in phones[i : min(i + 50_000, size)]]
            value = {"organizationId": ORG, "campaignId": f"c{size}", "members": members}
            producer.produce(s.topics.audience_members, msgspec.json.encode(value))
            producer.poll(0)
    producer.flush(300)
    # Allow 30 minutes, or 1,000 members a second if longer.
    _until_members_applied(worker, before + sum(sizes), timeout=max(1800.0, sum(sizes) / 1000))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "members": sum(sizes), "members_per_s": sum(sizes) / seconds}


def _until_members_applied(worker: BenchWorker, target: float, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while worker.metric(MEMBERS_APPLIED) < target:
        if not worker.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"members applied short of {target:.0f}; see {worker.log}")
        time.sleep(0.05)


def audience_upload(worker: BenchWorker, phones: list[str], runs: int) -> dict[str, Any]:
    """``POST /api/v1/campaigns/{id}/audience`` of a 1,000,000-member CSV (phone and
    externalId), ``runs`` times to a new campaign, then once more to the last one (a
    daily re-upload: nothing changes). Seconds until the answer (every member validated
    and sent by lead, acks=all) and until the worker has applied every member."""
    size = min(len(phones), 1_000_000)
    rows = "".join(f"{p},x{i}\n" for i, p in enumerate(phones[:size]))
    body = ("phoneE164,externalId\n" + rows).encode()
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "text/csv"}

    def upload(campaign: str) -> tuple[float, float]:
        before = worker.metric(MEMBERS_APPLIED)
        start = time.perf_counter()
        answer = httpx.post(
            f"{worker.url}/api/v1/campaigns/{campaign}/audience",
            content=body,
            headers=headers,
            timeout=600,
        )
        answered = time.perf_counter() - start
        answer.raise_for_status()
        got = answer.json()
        if (got["accepted"], got["rejected"]) != (size, 0):
            raise RuntimeError(f"upload of {size} members answered {got}")
        _until_members_applied(worker, before + size)
        return answered, time.perf_counter() - start

    fresh = [upload(f"upload-{run}") for run in range(runs)]
    again = upload(f"upload-{runs - 1}")
    return {
        "members": size,
        "answer_seconds": statistics.median(a for a, _ in fresh),
        "applied_seconds": statistics.median(b for _, b in fresh),
        "reupload_answer_seconds": again[0],
        "reupload_applied_seconds": again[1],
        "runs": fresh,
    }


def _summary_after(bootstrap: str, topic: str, send_key: bytes, act: Any) -> dict[str, Any]:
    """Run ``act`` and return the summary that ``send_key`` then gets on ``topic``.

    The reader is positioned at the topic's end *before* ``act`` and skips chunks unread,
    so it neither rescans earlier sends nor competes with the worker for the CPU."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-summary-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
            for p in partitions
        ]
        consumer.assign(ends)
        act()
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is None or msg.error() is not None or msg.key() != send_key:
                continue
            value = msg.value() or b""
            if b'"type":"summary"' in value:
                return dict(msgspec.json.decode(value))
        raise TimeoutError(f"no summary for {send_key!r}")
    finally:
        consumer.close()


def _send(
    worker: BenchWorker,
    size: int,
    kind: str,
    send_id: str,
    *,
    scheduled_for: int,
    moment: float | None = None,
    controls: dict[str, Any] | None = None,
    summaries: list[dict[str, Any]] | None = None,
) -> tuple[float, int]:
    """Trigger one send; seconds from ``moment`` (wall clock; by default when the trigger is
    produced) until its summary is readable (read_committed), and its recipientCount.
    ``controls``: trigger fields added (compliance controls); ``summaries`` gets the
    summary."""
    s = worker.settings
    trigger = {
        "organizationId": ORG,
        "campaignId": f"c{size}",
        "sendId": send_id,
        "scheduledFor": format_ms(scheduled_for),
        # A kind that is no filter (the conditions tree's sends) brings its own in controls.
        **({"eventFilter": FILTERS[kind]} if kind in FILTERS else {}),
        **(controls or {}),
    }
    producer = make_producer(KafkaConnection.of(s))
    started: list[float] = []

    def fire() -> None:
        started.append(time.time())
        producer.produce(s.topics.send_triggers, msgspec.json.encode(trigger))
        producer.flush(30)

    summary = _summary_after(
        s.kafka_bootstrap, s.topics.send_recipients, send_key(ORG, send_id).encode(), fire
    )
    if summaries is not None:
        summaries.append(summary)
    return time.time() - (started[0] if moment is None else moment), int(summary["recipientCount"])


def materialize(
    worker: BenchWorker, fire_ms: int, expected: dict[str, dict[str, int]], runs: int
) -> dict[str, Any]:
    """Trigger to summary for each audience size and filter kind, scheduled for the
    dataset's ``fire_ms``; counts must equal what the dataset says (the same numbers the
    PostgreSQL queries must return)."""
    _send(worker, min(int(k) for k in expected), "include", "warm-up", scheduled_for=fire_ms)

    def send(size: int, kind: str, name: str) -> tuple[float, int]:
        return _send(worker, size, kind, name, scheduled_for=fire_ms)

    return _every_send(expected, runs, "materialize", send)


def _preview(
    client: httpx.Client,
    url: str,
    size: int,
    kind: str,
    scheduled_for: int,
    controls: dict[str, Any] | None = None,
) -> tuple[float, int]:
    """POST one preview of the send of ``kind`` to campaign ``c<size>`` (``controls``: more
    trigger fields): the client's wall seconds for the request, and the recipientCount it
    answered."""
    body = {
        "organizationId": ORG,
        "campaignId": f"c{size}",
        "scheduledFor": format_ms(scheduled_for),
        **({"eventFilter": FILTERS[kind]} if kind in FILTERS else {}),
        **(controls or {}),
        "sample": PREVIEW_SAMPLE,
    }
    start = time.perf_counter()
    answer = client.post(url, content=msgspec.json.encode(body))
    took = time.perf_counter() - start
    if answer.status_code == 404:
        raise RuntimeError(f"POST {PREVIEW} answered 404: this worker has no preview endpoint")
    if answer.status_code != 200:
        raise RuntimeError(f"POST {PREVIEW} answered {answer.status_code}: {answer.text[:500]}")
    return took, int(answer.json()["recipientCount"])


def preview(
    worker: BenchWorker, fire_ms: int, expected: dict[str, dict[str, int]], runs: int
) -> dict[str, Any]:
    """The sends of :func:`materialize`, previewed over HTTP (nothing is emitted): seconds
    per request, recipientCount checked against the same expected counts."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    url = f"{worker.url}{PREVIEW}"
    with httpx.Client(timeout=600, headers=headers) as client:

        def one(size: int, kind: str, _name: str) -> tuple[float, int]:
            return _preview(client, url, size, kind, fire_ms)

        # The first request also opens the connection; as for the sends, not counted.
        one(min(int(k) for k in expected), "include", "warm-up")
        return _every_send(expected, runs, "preview", one)


def _every_send(
    expected: dict[str, dict[str, int]],
    runs: int,
    label: str,
    send: Callable[[int, str, str], tuple[float, int]],
) -> dict[str, Any]:
    """``runs`` sends (or previews) of each audience size and filter kind: median seconds,
    each count checked against ``expected``."""
    out: dict[str, Any] = {}
    for size_key, kinds in expected.items():
        out[size_key] = {}
        for kind, want in kinds.items():
            seconds = []
            for run in range(runs):
                took, count = send(int(size_key), kind, f"{kind}-{size_key}-{run}")
                if count != want:
                    raise RuntimeError(f"{label} {kind} on {size_key}: {count}, expected {want}")
                seconds.append(took)
            out[size_key][kind] = {
                "seconds": statistics.median(seconds),
                "all_seconds": seconds,
                "recipients": want,
            }
            median = statistics.median(seconds)
            print(f"  {label} {size_key} {kind}: {median:.3f} s", flush=True)
    return out


def materialize_early(
    worker: BenchWorker,
    workdir: Path,
    ds: Dataset,
    expected: dict[str, dict[str, int]],
    runs: int,
    *,
    early_seconds: float = 5.0,
) -> tuple[dict[str, Any], BenchWorker]:
    """Triggers that arrive ``early_seconds`` before their materialize moment, as a
    scheduler publishes them: seconds from the moment to the summary. Nothing is evaluated
    ahead (every send reads the partitions' indexes at its moment); the trigger only has to
    be held by then, so the time ahead does not grow with the audience.

    Every send fires within minutes after the dataset's fire time (so the counts stay those
    of :func:`~bench.dataset.stats`, checked with :func:`~bench.dataset.window_unchanged`);
    the worker restarts with a materialize lead that puts those moments just ahead."""
    restart_budget = 120.0
    lead_s = int(ds.fire_ms / 1000 - time.time() - restart_budget)
    if lead_s < 0:
        raise RuntimeError("the dataset's fire time is too close; regenerate it further ahead")
    worker = worker.restart(workdir, materialize_lead_seconds=lead_s)
    worker.wait_ready()
    _index_builds(worker)  # built after /readyz: not during the first send
    fired: list[int] = []

    def send(size: int, kind: str, name: str) -> tuple[float, int]:
        moment = time.time() + early_seconds
        scheduled_for = int(moment * 1000) + lead_s * 1000
        fired.append(scheduled_for)
        # The trigger goes out now, ahead of its moment (scheduled_for - lead).
        send_id = f"early-{name}-{time.time_ns()}"  # unique even on reused topics
        return _send(worker, size, kind, send_id, scheduled_for=scheduled_for, moment=moment)

    # As in materialize(): the first send after a start also warms the broker's paths up.
    send(min(int(k) for k in expected), "include", "warm-up")
    out = _every_send(expected, runs, "materialize early", send)
    if not window_unchanged(ds, min(fired), max(fired)):
        raise RuntimeError("sends fired outside the range where the dataset's counts hold")
    out["early_seconds"] = early_seconds
    out["lead_seconds"] = lead_s
    return out, worker


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _index_builds(worker: BenchWorker, timeout: float = 600) -> dict[str, float]:
    """Sum (seconds) and count of the worker's ``leadstream_index_build_seconds`` once every
    partition's index is built. The worker builds them after /readyz answers 200, one
    partition after another: read at once, the sum would miss the builds still to come."""
    deadline = time.monotonic() + timeout
    while (count := worker.metric("leadstream_index_build_seconds_count")) < (
        worker.settings.partitions
    ):
        if not worker.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{count:.0f} partition indexes built; see {worker.log}")
        time.sleep(0.1)
    return {"seconds": worker.metric("leadstream_index_build_seconds_sum"), "builds": int(count)}


def footprint_and_rebuild(
    worker: BenchWorker, workdir: Path, ds: Dataset, check: tuple[int, str, int]
) -> tuple[dict[str, Any], BenchWorker]:
    """RSS and RocksDB bytes of the loaded worker; then its data directory is deleted and
    a new process rebuilds the state from the changelog (timed to /readyz), then its
    partition indexes (the build times summed), after which one send must give the same
    count as before."""
    data = Path(worker.settings.data_dir)
    out: dict[str, Any] = {"rss_bytes": worker.rss_bytes(), "data_dir_bytes": _tree_bytes(data)}
    worker.stop()
    # The same worker with its state lost (its instance id kept, as a pod keeps its name):
    # the time is the rebuild's, not a wait for the stopped member's session to end.
    instance_id = (data / "instance-id").read_text().strip()
    shutil.rmtree(data)
    worker = BenchWorker(
        worker.settings.kafka_bootstrap,
        workdir,
        settings=worker.settings,
        # Back to the materialize lead of the other scenarios: the check send is late.
        **{**worker.overrides, **WORKER, "instance_id": instance_id},
    )
    out["rebuild_seconds"] = worker.wait_ready()
    out["index_build"] = _index_builds(worker)
    out["rebuilt_data_dir_bytes"] = _tree_bytes(data)
    out["rss_after_rebuild_bytes"] = worker.rss_bytes()
    size, kind, want = check
    _, count = _send(worker, size, kind, f"after-rebuild-{kind}", scheduled_for=ds.fire_ms)
    if count != want:
        raise RuntimeError(f"after the rebuild {kind} on {size} gave {count}, expected {want}")
    return out, worker


def restart_after_kill(
    worker: BenchWorker, workdir: Path, phone: str, runs: int
) -> tuple[dict[str, Any], BenchWorker]:
    """SIGKILL the loaded worker (its router child follows) and start it again on the same
    data dir: seconds from the kill until /readyz is 200 with every partition, and until
    ``phone``'s lead is read back from it; then the partition indexes' build time (summed).
    Medians of ``runs``."""
    ready: list[float] = []
    serving: list[float] = []
    builds: list[dict[str, float]] = []
    partitions = worker.settings.partitions
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(runs):
        killed = time.perf_counter()
        worker.proc.kill()
        worker.proc.wait(60)
        worker = BenchWorker(
            worker.settings.kafka_bootstrap, workdir, settings=worker.settings, **worker.overrides
        )
        while True:
            try:
                answer = httpx.get(f"{worker.url}/readyz", timeout=5)
            except httpx.TransportError:  # not listening yet, or its loop busy
                time.sleep(0.05)
                continue
            if answer.status_code == 200 and len(answer.json()["partitions"]) == partitions:
                break
            time.sleep(0.05)
        ready.append(time.perf_counter() - killed)
        url = f"{worker.url}/api/v1/leads/{ORG}/{phone}"
        while httpx.get(url, headers=headers, timeout=5).status_code != 200:
            time.sleep(0.05)
        serving.append(time.perf_counter() - killed)
        builds.append(_index_builds(worker))
    return {
        "ready_seconds": statistics.median(ready),
        "serving_seconds": statistics.median(serving),
        "index_build_seconds": statistics.median(b["seconds"] for b in builds),
        "runs": {"ready": ready, "serving": serving, "index_build": builds},
    }, worker


def _joined_at(log: Path) -> float | None:
    """Wall-clock time of the first "Joined group" line of a worker's log (None before it)."""
    for line in log.read_text(errors="replace").splitlines():
        if "Joined group" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()  # the log's clock is the local one, as is this
    return None


def empty_start(bootstrap: str, workdir: Path, runs: int) -> dict[str, Any]:
    """``runs`` fresh workers, each on topics and a data dir of its own: seconds from the
    process start, and from its joining the consumer group (its log's line), until
    /readyz is 200 with every partition. Medians of ``runs``."""
    from_start: list[float] = []
    from_join: list[float] = []
    for _ in range(runs):
        worker = BenchWorker(bootstrap, workdir)
        try:
            while True:
                try:
                    answer = httpx.get(f"{worker.url}/readyz", timeout=5)
                except httpx.TransportError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    if len(answer.json()["partitions"]) == worker.settings.partitions:
                        break
                time.sleep(0.05)
            ready, ready_wall = time.perf_counter(), time.time()
            joined = _joined_at(worker.log)
            if joined is None:
                raise RuntimeError(f"ready without a 'Joined group' line; see {worker.log}")
            from_start.append(ready - worker.started)
            from_join.append(ready_wall - joined)
        finally:
            worker.stop()
    return {
        "ready_seconds": statistics.median(from_start),
        "ready_after_join_seconds": statistics.median(from_join),
        "runs": {"ready": from_start, "ready_after_join": from_join},
    }


def big_sends(
    worker: BenchWorker, size: int, fire_ms: int, expected: dict[str, int], runs: int
) -> dict[str, Any]:
    """On a worker that holds one dataset and one audience of all its ``size`` leads
    (campaign ``c<size>``): its RSS, ``runs`` sends of each filter kind with the trigger at
    the moment and one preview of each (counts checked), then RSS and data dir bytes."""
    wanted = {str(size): expected}
    rss_loaded = worker.rss_bytes()
    sends = materialize(worker, fire_ms, wanted, runs)[str(size)]
    previews = preview(worker, fire_ms, wanted, 1)[str(size)]
    return {
        "rss_loaded_bytes": rss_loaded,
        "materialize": sends,
        "preview": previews,
        "rss_after_sends_bytes": worker.rss_bytes(),
        "data_dir_bytes": _tree_bytes(Path(worker.settings.data_dir)),
    }


HOUR_MS = 60 * MINUTE_MS


def _quiet_hours_at(at_ms: int) -> dict[str, str]:
    """Quiet hours that cover the three hours from New York's local hour at ``at_ms``: the
    east of the dataset's North American numbers is quiet then and the rest is not, so the
    step has work to do whatever the time the bench runs."""
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(ZoneInfo("America/New_York"))
    return {"start": f"{local.hour:02d}:00", "end": f"{(local.hour + 3) % 24:02d}:00"}


class ComplianceReference:
    """The recipients of :func:`compliance_sends`' sends, from the dataset's events alone:
    the history send (include doi_confirmed), the plain sticky-exclude send, and the same
    send with a cap of one send in 24 hours and the quiet hours, where every controlled
    send committed before counts against the next (zones from libphonenumber, the
    contract's rule)."""

    def __init__(self, ds: Dataset, size: int, quiet: dict[str, str]) -> None:
        purchase: set[int] = set()
        doi: set[int] = set()
        opted: set[int] = set()  # the dataset has no opt-in events
        for lead, event_type, _ in ds.events:
            if lead >= size:
                continue
            if event_type == PURCHASE:
                purchase.add(lead)
            elif event_type == DOI:
                doi.add(lead)
            elif event_type == OPT_OUT:
                opted.add(lead)
        self.history = doi - opted
        self.plain = set(range(size)) - opted - purchase
        self._rule = parse_quiet_hours(quiet)
        self._zones = {lead: phone_zones(ds.phones[lead]) for lead in self.plain}
        self.sent = set(self.history)  # every committed send's recipients, in the window

    def controlled(self, at_ms: int) -> tuple[int, int, int]:
        """(recipients, droppedByFrequencyCap, droppedByQuietHours) of a controlled send at
        ``at_ms``, which then counts against the next ones."""
        capped = self.plain & self.sent
        left = self.plain - capped
        quiet_sets = {
            zones for zones in set(self._zones.values()) if self._rule.decide(zones, at_ms).quiet
        }
        quiet = {lead for lead in left if self._zones[lead] in quiet_sets}
        recipients = left - quiet
        self.sent |= recipients
        return len(recipients), len(capped), len(quiet)


def compliance_sends(worker: BenchWorker, ds: Dataset, size: int, runs: int) -> dict[str, Any]:
    """The cost of the compliance controls on a ``size``-lead send. First a send to every
    doi_confirmed lead scheduled an hour before the dataset's fire time: the history a
    frequency cap counts. Then ``runs`` sticky-exclude sends with ``frequencyCap {1, 24 h}``
    and quiet hours, and ``runs`` without, their triggers 5 s ahead of their moment (the
    scheduler's normal case; the two differ by the controls' cost only); the controlled
    ones come first, each counting the ones before it (the plain ones would cap every
    lead). Then ``runs`` controlled sends triggered late, which wait the 2 s a capped late
    trigger settles. Moment (or trigger) to summary, read_committed; every count checked
    against :class:`ComplianceReference`."""
    quiet = _quiet_hours_at(ds.fire_ms)
    controls = {"frequencyCap": {"maxSends": 1, "withinHours": 24}, "quietHours": quiet}
    lead_ms = worker.settings.materialize_lead_seconds * 1000
    early_s = 5.0
    want = ComplianceReference(ds, size, quiet)
    _, history = _send(
        worker, size, "include", f"cap-history-{time.time_ns()}", scheduled_for=ds.fire_ms - HOUR_MS
    )
    if history != len(want.history):
        raise RuntimeError(f"history send: {history} recipients, expected {len(want.history)}")

    def controlled_send(
        name: str, at: int, moment: float | None, within: dict[str, Any] = controls
    ) -> float:
        summaries: list[dict[str, Any]] = []
        expected = want.controlled(at)
        took, count = _send(
            worker,
            size,
            "sticky_exclude",
            f"{name}-{time.time_ns()}",
            scheduled_for=at,
            moment=moment,
            controls=within,
            summaries=summaries,
        )
        counts = summaries[0]["counts"]
        got = (count, counts["droppedByFrequencyCap"], counts["droppedByQuietHours"])
        if got != expected:
            raise RuntimeError(f"{name}: {got}, expected {expected}")
        return took

    # The first send with quiet hours also learns any member's zones not learned yet.
    first = controlled_send("compliance-first", ds.fire_ms, None)
    # After it: fixed before, the early sends' moments passed while it ran (41.5 s in one
    # run), and they were measured from moments long gone.
    first_early = int((time.time() + 30) * 1000) + lead_ms

    def early(i: int) -> tuple[int, float]:
        """The i-th instant 15 s apart, after waiting until its moment is ``early_s`` ahead."""
        at = first_early + i * 15_000
        moment = (at - lead_ms) / 1000
        time.sleep(max(0.0, moment - early_s - time.time()))
        return at, moment

    # The early ones lie about two hours after the fire time, where a 24-hour window would
    # also hold every send of the scenarios before this one (at the fire time): they count
    # the last hour, so each counts the early ones before it and nothing else.
    want.sent = set()
    last_hour = {**controls, "frequencyCap": {"maxSends": 1, "withinHours": 1}}
    controlled = [
        controlled_send(f"controlled-{run}", *early(run), within=last_hour) for run in range(runs)
    ]
    plain: list[float] = []
    for run in range(runs):
        at, moment = early(runs + run)
        took, count = _send(
            worker,
            size,
            "sticky_exclude",
            f"plain-{run}-{time.time_ns()}",
            scheduled_for=at,
            moment=moment,
        )
        if count != len(want.plain):
            raise RuntimeError(f"plain send: {count} recipients, expected {len(want.plain)}")
        plain.append(took)
    print(f"  compliance: plain {plain} s, controlled {controlled} s", flush=True)
    # Late, at the fire time: only the history and the first send come before it.
    late = []
    for run in range(runs):
        want.sent = set(want.history)
        late.append(controlled_send(f"controlled-late-{run}", ds.fire_ms, None))
    print(f"  compliance, late triggers: {late} s", flush=True)
    return {
        "size": size,
        "quiet_hours": quiet,
        "history_recipients": len(want.history),
        "plain_recipients": len(want.plain),
        "first_controlled_seconds": first,
        "plain_seconds": statistics.median(plain),
        "controlled_seconds": statistics.median(controlled),
        "controlled_late_seconds": statistics.median(late),
        "early_seconds": early_s,
        "runs": {"plain": plain, "controlled": controlled, "controlled_late": late},
    }


# -- audience conditions ---------------------------------------------------------------------

DAY_MINUTES = 24 * 60
# A 3-level tree of 10 leaves on the dataset's types: counts, windows, between, a sequence
# ("attended in the last week, then no purchase within a day"), negations at every level.
CONDITIONS_TREE: dict[str, Any] = {
    "all": [
        {"not": {"event": PURCHASE}},
        {
            "any": [
                {"event": ATTENDED, "within": {"minutes": 120}},
                {
                    "event": DOI,
                    "between": {"fromMinutes": 30 * DAY_MINUTES, "toMinutes": 7 * DAY_MINUTES},
                },
                {
                    "all": [
                        {"event": ATTENDED, "count": {"min": 2}},
                        {
                            "event": ATTENDED,
                            "between": {
                                "fromMinutes": 14 * DAY_MINUTES,
                                "toMinutes": 7 * DAY_MINUTES,
                            },
                            "count": {"max": 0},
                        },
                    ]
                },
            ]
        },
        {
            "any": [
                {
                    "sequence": {
                        "first": {"event": ATTENDED},
                        "then": {"event": PURCHASE},
                        "withinMinutes": DAY_MINUTES,
                        "thenAbsent": True,
                        "within": {"minutes": 7 * DAY_MINUTES},
                    }
                },
                {"event": DOI},
                {"event": ATTENDED, "count": {"max": 1}},
            ]
        },
        {"not": {"event": OPT_OUT}},
        {"event": ATTENDED, "count": {"min": 1, "max": 5}},
    ]
}


def conditions_reference(ds: Dataset, size: int) -> int:
    """The recipients of a send of :data:`CONDITIONS_TREE` to the first ``size`` leads at
    the dataset's fire time, from its events alone (written from the contract, leaf by
    leaf, for this tree)."""
    at = ds.fire_ms
    times: dict[int, dict[str, list[int]]] = {}
    for lead, event_type, ts in set(ds.events):
        if lead < size:
            times.setdefault(lead, {}).setdefault(event_type, []).append(ts)

    def count(
        of: dict[str, list[int]], event_type: str, lo: int | None = None, hi: int | None = None
    ) -> int:
        return sum(
            1
            for ts in of.get(event_type, ())
            if (lo is None or lo <= ts) and (hi is None or ts <= hi)
        )

    def minutes_ago(m: int) -> int:
        return at - m * MINUTE_MS

    recipients = 0
    for lead in range(size):
        of = times.get(lead, {})
        if of.get(OPT_OUT):  # opted out: the step before the conditions
            continue
        attended = count(of, ATTENDED)
        first = (
            count(of, ATTENDED, minutes_ago(120), at) >= 1
            or count(of, DOI, minutes_ago(30 * DAY_MINUTES), minutes_ago(7 * DAY_MINUTES)) >= 1
            or (
                attended >= 2
                and count(of, ATTENDED, minutes_ago(14 * DAY_MINUTES), minutes_ago(7 * DAY_MINUTES))
                == 0
            )
        )
        purchases = sorted(ts for ts in of.get(PURCHASE, ()) if ts <= at)
        unanswered = any(
            not any(a < p <= min(a + DAY_MINUTES * MINUTE_MS, at) for p in purchases)
            for a in of.get(ATTENDED, ())
            if minutes_ago(7 * DAY_MINUTES) <= a <= at
        )
        second = unanswered or count(of, DOI) >= 1 or attended <= 1
        if (
            count(of, PURCHASE) == 0
            and first
            and second
            and count(of, OPT_OUT) == 0
            and 1 <= attended <= 5
        ):
            recipients += 1
    return recipients


def conditions_sends(worker: BenchWorker, ds: Dataset, size: int, runs: int) -> dict[str, Any]:
    """The cost of a conditions tree: ``runs`` sends of :data:`CONDITIONS_TREE` to ``size``
    leads and ``runs`` of the same send with one event filter (sticky exclude purchase, the
    tree's first leaf), alternated, each triggered at its moment (as :func:`materialize`);
    the tree's recipients checked against :func:`conditions_reference`."""
    want = conditions_reference(ds, size)
    tree = {"conditions": CONDITIONS_TREE}
    # No event filter on the tree's sends: ``_send`` puts one in; the tree holds its own.
    _send(worker, size, "include", f"cond-warm-{time.time_ns()}", scheduled_for=ds.fire_ms)
    plain: list[float] = []
    conditioned: list[float] = []
    for run in range(runs):
        took, _ = _send(
            worker,
            size,
            "sticky_exclude",
            f"cond-plain-{run}-{time.time_ns()}",
            scheduled_for=ds.fire_ms,
        )
        plain.append(took)
        took, count = _send(
            worker,
            size,
            "tree",
            f"cond-tree-{run}-{time.time_ns()}",
            scheduled_for=ds.fire_ms,
            controls=tree,
        )
        if count != want:
            raise RuntimeError(f"conditions send: {count} recipients, expected {want}")
        conditioned.append(took)
    print(f"  conditions: one filter {plain} s, tree {conditioned} s", flush=True)
    # The same two as previews: the evaluation alone, without writing the recipients (the
    # one-filter send has about three times the tree's).
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    previews: dict[str, list[float]] = {"plain": [], "tree": []}
    with httpx.Client(timeout=600, headers=headers) as client:
        url = f"{worker.url}{PREVIEW}"
        _preview(client, url, size, "sticky_exclude", ds.fire_ms)
        for _ in range(runs):
            previews["plain"].append(_preview(client, url, size, "sticky_exclude", ds.fire_ms)[0])
            took, count = _preview(client, url, size, "tree", ds.fire_ms, tree)
            if count != want:
                raise RuntimeError(f"conditions preview: {count} recipients, expected {want}")
            previews["tree"].append(took)
    print(f"  conditions, previews: {previews}", flush=True)
    costs = _per_candidate_costs(worker, ds, size, runs, statistics.median(plain))
    return {
        "size": size,
        "recipients": want,
        "plain_seconds": statistics.median(plain),
        "tree_seconds": statistics.median(conditioned),
        "preview_plain_seconds": statistics.median(previews["plain"]),
        "preview_tree_seconds": statistics.median(previews["tree"]),
        "runs": {"plain": plain, "tree": conditioned, "previews": previews},
        **costs,
    }


def _per_candidate_costs(
    worker: BenchWorker, ds: Dataset, size: int, runs: int, plain: float
) -> dict[str, Any]:
    """What a leaf that reads stored events costs per lead it reads for: a ``where`` on
    attended (every lead with one is read; the dataset has no metadata, so ``exists:
    false`` keeps them all), and a sequence with ``sameKey`` (attended then purchase: both
    types read for every lead with both; no pair, as no event has the key). Each over the
    baseline send's time, per candidate."""
    leads: dict[str, set[int]] = {ATTENDED: set(), PURCHASE: set(), OPT_OUT: set()}
    for lead, event_type, _ in ds.events:
        if lead < size and event_type in leads:
            leads[event_type].add(lead)
    attended = leads[ATTENDED] - leads[OPT_OUT]
    both = attended & leads[PURCHASE]
    where = {"event": ATTENDED, "where": {"room": {"exists": False}}}
    sequence = {
        "sequence": {
            "first": {"event": ATTENDED},
            "then": {"event": PURCHASE},
            "withinMinutes": DAY_MINUTES,
            "sameKey": "session",
        }
    }
    everyone = size - len(leads[OPT_OUT])
    split = {
        "holdout": {"percent": 10},
        "splits": [{"name": "a", "percent": 50}, {"name": "b", "percent": 50}],
    }
    out: dict[str, Any] = {}
    for name, controls, candidates, want in (
        ("where", {"conditions": where}, len(attended), len(attended)),
        ("sequence_same_key", {"conditions": sequence}, len(both), 0),
        # Every lead but the opted out is hashed; about 10% are held out.
        ("holdout_splits", split, everyone, None),
    ):
        took: list[float] = []
        for run in range(runs):
            seconds, count = _send(
                worker,
                size,
                "tree",
                f"cond-{name}-{run}-{time.time_ns()}",
                scheduled_for=ds.fire_ms,
                controls=controls,
            )
            if want is None:  # the holdout: a tenth of the leads, give or take
                want = count if abs(count - 0.9 * candidates) < 0.01 * candidates + 50 else -1
            if count != want:
                raise RuntimeError(f"{name} send: {count} recipients, expected {want}")
            took.append(seconds)
        median = statistics.median(took)
        out[name] = {
            "seconds": median,
            "candidates": candidates,
            "us_per_candidate": 1e6 * max(0.0, median - plain) / max(1, candidates),
            "runs": took,
        }
        print(f"  conditions, {name}: {took} s over {candidates:,} candidates", flush=True)
    return out
