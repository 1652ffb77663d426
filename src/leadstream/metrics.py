"""Prometheus metrics of one worker, in a registry of its own (no process-global state)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from leadstream.domain.rejects import Reason

__all__ = ["Metrics"]

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# A send's summary comes seconds after its moment when all goes well, minutes when a
# partition's owner changed or a worker was down meanwhile.
_SEND_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class _LagCollector(Collector):
    def __init__(self, lags: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self._lags = lags

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "leadstream_consumer_lag",
            "Messages not yet read, per assigned partition",
            labels=["topic", "partition"],
        )
        try:
            for topic, partition, lag in self._lags():
                family.add_metric([topic, str(partition)], lag)
        except Exception:  # noqa: BLE001 - a scrape during a rebalance shows no lag rather than failing
            logger.debug("lag not available", exc_info=True)
        yield family


class _StoreMemoryCollector(Collector):
    def __init__(self, usage: Callable[[], Mapping[str, int]]) -> None:
        self._usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "leadstream_rocksdb_memory_bytes",
            "Memory RocksDB holds in this worker, every partition together: the block cache"
            " (the memtables' share included), the memtables, the table readers",
            labels=["kind"],
        )
        try:
            for kind, n in self._usage().items():
                family.add_metric([kind], n)
        except Exception:  # noqa: BLE001 - a scrape while DBs close shows nothing rather than failing
            logger.debug("RocksDB memory not available", exc_info=True)
        yield family


class Metrics:
    """The counters and histograms the worker updates, and their text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._hooks: list[Callable[[], None]] = []
        registry = self.registry
        self.http_requests = Counter(
            "leadstream_http_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "leadstream_http_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.http_connections_closed = Counter(
            "leadstream_http_connections_closed",
            "HTTP connections the worker closed by its limits: header_timeout, idle, evicted"
            " (the oldest waiting one, for a new connection beyond the limit), refused",
            ["reason"],
            registry=registry,
        )
        self.rows = Counter(
            "leadstream_rows",
            "Lead-event rows by outcome (inserted, duplicate, rejected)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("inserted", "duplicate", "rejected"):
            self.rows.labels(outcome)  # at 0 from the start, for rate() and increase()
        self.members = Counter(
            "leadstream_members_applied",
            "Audience member operations (add, remove) applied to the lead table",
            registry=registry,
        )
        self.apply_seconds = Histogram(
            "leadstream_ingest_apply_seconds",
            "Time to apply one lead-keyed batch to the table",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.materialize_seconds = Histogram(
            "leadstream_materialize_seconds",
            "Time to materialize and commit one partition's share of a send",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.index_build_seconds = Histogram(
            "leadstream_index_build_seconds",
            "Time to build one partition's index from its store (at start, after a restore)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        # Labels are bounded: a reason is a code of domain.rejects.Reason, a topic one of
        # the configured input topics. Never an organization or a phone.
        self.rejects = Counter(
            "leadstream_rejects",
            "Records written to the rejects topic, by reason code and the topic the input "
            "was read from (rows refused in an HTTP answer are not written there; they count "
            "in leadstream_rows_total only)",
            ["reason", "topic"],
            registry=registry,
        )
        self.send_summary_seconds = Histogram(
            "leadstream_send_summary_seconds",
            "Seconds from a send's materialize moment (scheduledFor minus the materialize "
            "lead), or from its trigger's arrival when that came later, to the commit of "
            "its summary; a negative difference (clock skew between broker and worker) is "
            "observed as 0",
            buckets=_SEND_BUCKETS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "leadstream_dead_letters",
            "Messages skipped after every attempt to process them failed (reason "
            "internal_error on rejects), by the topic they were read from",
            ["topic"],
            registry=registry,
        )
        self.duplicate_triggers = Counter(
            "leadstream_duplicate_triggers",
            "Triggers ignored because the send was claimed",
            registry=registry,
        )

    def count_rejects(self, topic: str, by_reason: Mapping[Reason, int]) -> None:
        """Count reject records of input read from ``topic``, by reason."""
        for reason, n in by_reason.items():
            if n:
                self.rejects.labels(reason.value, topic).inc(n)

    def watch_lag(self, lags: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self.registry.register(_LagCollector(lags))

    def watch_store_memory(self, usage: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_StoreMemoryCollector(usage))

    def before_exposition(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before each exposition (to bring in what other processes counted)."""
        self._hooks.append(hook)

    def exposition(self) -> bytes:
        for hook in self._hooks:
            hook()
        return generate_latest(self.registry)
