"""Latency of the lead-events webhook on one worker: single-event and 50,000-event POSTs.

Run from the repository root: ``python -m bench.http_latency [--single 1000] [--bulk 10]``

Sequential requests (one in flight), each answered only after its rows are in Kafka
(acks=all) and applied. Percentiles are over all requests of a kind. The baseline in the
same run is ``GET /healthz`` on the same worker: the HTTP stack's own floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from bench.common import BenchWorker, broker, machine, report
from leadstream.auth_file import save_auth
from leadstream.domain.auth import ApiKey, AuthConfig, hash_api_key, with_key

KEY = "lsk_bench_" + "z" * 40


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2), "n": len(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--single", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/http_latency.json"))
    args = parser.parse_args()
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        auth = Path(tmp) / "auth.json"
        save_auth(auth, with_key(AuthConfig(), "1", ApiKey("ak", hash_api_key(KEY), "t")))
        worker = BenchWorker(bootstrap, Path(tmp), auth_file=auth)
        try:
            url = f"http://127.0.0.1:{worker.settings.web_port}"
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
            with httpx.Client(timeout=120) as client:
                while client.get(url + "/readyz").status_code != 200:
                    time.sleep(0.2)
                health, single, bulk = [], [], []
                for i in range(args.single):
                    start = time.perf_counter()
                    client.get(url + "/healthz").raise_for_status()
                    health.append(time.perf_counter() - start)
                    body = msgspec.json.encode(
                        {
                            "organizationId": 1,
                            "eventType": "click",
                            "events": [
                                {"phoneE164": f"+1777{i:07d}", "occurredAt": "2026-05-12T18:34:00Z"}
                            ],
                        }
                    )
                    start = time.perf_counter()
                    client.post(
                        url + "/api/v1/webhooks/lead-events", content=body, headers=headers
                    ).raise_for_status()
                    single.append(time.perf_counter() - start)
                for b in range(args.bulk):
                    events = [
                        {"phoneE164": f"+1778{b:02d}{i:05d}", "occurredAt": "2026-05-12T18:34:00Z"}
                        for i in range(50_000)
                    ]
                    body = msgspec.json.encode(
                        {"organizationId": 1, "eventType": "bulk", "events": events}
                    )
                    start = time.perf_counter()
                    answer = client.post(
                        url + "/api/v1/webhooks/lead-events", content=body, headers=headers
                    )
                    bulk.append(time.perf_counter() - start)
                    assert answer.json()["inserted"] == 50_000, answer.text
        finally:
            worker.stop()
    result = {
        "scenario": "lead-events webhook, one worker, sequential requests",
        "healthz_baseline": percentiles(health),
        "single_event_post": percentiles(single),
        "bulk_50000_post": {
            "p50_ms": round(statistics.median(bulk) * 1000, 1),
            "max_ms": round(max(bulk) * 1000, 1),
            "n": len(bulk),
        },
        "ratio_single_p50_to_healthz_p50": None,
        "machine": machine(),
    }
    result["ratio_single_p50_to_healthz_p50"] = round(
        result["single_event_post"]["p50_ms"] / result["healthz_baseline"]["p50_ms"], 1
    )
    report(args.out, result)


if __name__ == "__main__":
    main()
