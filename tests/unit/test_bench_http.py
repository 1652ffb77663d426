"""The bench reads the worker's latency histogram to tell a slow worker from a stalled client."""

from __future__ import annotations

from bench.product import WEBHOOK, _bucket_of, _latency_buckets

from leadstream.metrics import Metrics


def test_the_bucket_holding_the_99th_percentile_from_a_real_exposition() -> None:
    metrics = Metrics()
    for seconds in [0.003] * 980 + [0.02] * 15 + [0.2] * 5:
        metrics.http_seconds.labels(WEBHOOK).observe(seconds)
    metrics.http_seconds.labels("/other").observe(30.0)
    buckets = _latency_buckets(metrics.exposition().decode(), WEBHOOK)
    assert buckets[-1] == (float("inf"), 1000.0)
    assert _bucket_of(buckets, 0.50) == 0.005
    assert _bucket_of(buckets, 0.98) == 0.005  # 980 are under 5 ms
    assert _bucket_of(buckets, 0.99) == 0.025  # 995 are under 25 ms
    assert _bucket_of(buckets, 0.996) == 0.25  # the 996th took 0.2 s
