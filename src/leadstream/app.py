"""The composition root: ``create_app(settings)`` wires topics, tables, agents and views."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Any

import faust
from faust.tables.manager import TableManager

from leadstream import heap
from leadstream.domain.policies.us_tcpa import policy_file
from leadstream.index.partition import OptTypes
from leadstream.index.table import IndexedStore
from leadstream.ingress import StreamIngress
from leadstream.kafka import bounds
from leadstream.kafka.config import LARGE_MESSAGE_BYTES, KafkaConnection
from leadstream.lifecycle import Lifecycle
from leadstream.materialize.materializer import Materializer
from leadstream.materialize.warmup import Warmup
from leadstream.metrics import Metrics
from leadstream.settings import LEADS_TABLE, Settings
from leadstream.state.rocksdb import STORE_URL, Memory, TableStore
from leadstream.streams.apply import register_apply
from leadstream.streams.rebalance import RebalanceSafeApp
from leadstream.streams.replies import ReplyWaiter
from leadstream.streams.router import RouterProcess
from leadstream.streams.topology import Topology
from leadstream.web.connections import ConnectionBook
from leadstream.web.http import Context, Offload
from leadstream.web.keys import AuthFile
from leadstream.web.limits import Limits, RequestLimits
from leadstream.web.readiness import Readiness
from leadstream.web.routes import serve
from leadstream.web.server import GuardedWeb
from leadstream.wire.records import RECIPIENT_ENTRIES

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

# Members' time zones are not looked up ahead while a held send is due within this many ms.
_ZONES_CLEAR_MS = 2000
# How often the worker looks whether it grew enough to give free heap back (heap.py).
_TRIM_SECONDS = 10.0


def create_app(
    settings: Settings,
    lifecycle: Lifecycle | None = None,
    *,
    connection: KafkaConnection | None = None,
) -> faust.App:
    """Build the faust application for ``settings``; nothing runs until a worker starts it.

    ``lifecycle`` is how the worker process ends on an environment fault (worker.py makes
    one that also bounds its stop); ``connection`` the process's connection to Kafka, from
    which every client of the worker is built (made from ``settings`` when not given)."""
    lifecycle = lifecycle or Lifecycle(settings.shutdown_seconds)
    connection = connection or KafkaConnection.of(settings)
    # An operator's quiet-hours table is read now: a bad row stops the start, with its line.
    policy_file(settings.quiet_hours_policy_file)
    # faust's consumer reads only internal topics, which only leadstream writes, and none of
    # its producers writes a message beyond LARGE_MESSAGE_BYTES: a batch there that
    # decompresses beyond that is a fault of the environment, and stops the worker.
    bounds.install(LARGE_MESSAGE_BYTES + bounds.BATCH_OVERHEAD, bounds.Oversize.STOP)
    app = _faust_app(settings, connection)
    memory = Memory(settings.rocksdb_memory_mb << 20, settings.partitions)
    table = app.Table(
        LEADS_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        # One RocksDB memory budget for every partition's DB (state/rocksdb.py: Memory).
        options={"driver": "rocksdict", "memory": memory},
    )
    metrics = Metrics()
    table_store = TableStore(table, on_fault=lifecycle.fault)
    metrics.watch_store_memory(table_store.memory_usage)
    store = IndexedStore(
        table_store,
        OptTypes(settings.opt_out_event_type, settings.opt_in_event_type),
        RECIPIENT_ENTRIES,
        on_build=lambda _partition, seconds: metrics.index_build_seconds.observe(seconds),
        hash_key=_suppression_key(settings),
        reader=table_store.reader,
    )
    table_store.on_restore(store.drop)
    topo = Topology(app, settings, table, store, metrics, on_fault=lifecycle.fault)
    router = RouterProcess(settings)
    lifecycle.add_child(router.pid)
    _watch(metrics, topo, router)
    materializer = Materializer(
        store,
        settings,
        connection,
        metrics,
        owned=topo.active_partitions,
        ready=topo.is_ready,
    )
    replies = ReplyWaiter(connection, settings.topics.replies)
    applying = register_apply(topo, on_held=materializer.wake, deliver=replies.deliver)
    warmup = Warmup(
        store,
        owned=topo.active_partitions,
        ready=topo.is_ready,
        busy=applying.busy,
        send_soon=lambda: materializer.send_due_within(_ZONES_CLEAR_MS),
    )
    ingress = StreamIngress(
        topo,
        replies,
        connection,
        routing=router.routing,
        healthy=lifecycle.healthy,
        progress=materializer.progress,
    )
    readiness = Readiness(ingress.ready_partitions)
    serve(app, _web_context(settings, ingress, readiness, metrics, lifecycle.fault), metrics)

    @app.task  # type: ignore[untyped-decorator]
    async def watch_readiness() -> None:
        await readiness.run()

    @app.task  # type: ignore[untyped-decorator]
    async def materialize() -> None:
        await materializer.run()

    @app.task  # type: ignore[untyped-decorator]
    async def warm_up_indexes() -> None:
        await warmup.run()

    @app.task  # type: ignore[untyped-decorator]
    async def read_replies() -> None:
        replies.start()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_reading_replies(_app: Any, **_kwargs: Any) -> None:
        replies.stop()

    @app.task  # type: ignore[untyped-decorator]
    async def freeze_startup_objects() -> None:
        # What the worker built to start (modules, faust, aiokafka, aiohttp: ~170,000
        # objects) never becomes garbage; left to the collector, each full collection
        # walked them all and stopped the event loop for 50-100 ms, the HTTP API's tail.
        gc.freeze()
        logger.debug("%d startup objects kept out of garbage collection", gc.get_freeze_count())

    trimmer = heap.trimmer()
    if trimmer is not None:

        @app.timer(interval=_TRIM_SECONDS)  # type: ignore[untyped-decorator]
        async def give_back_free_memory() -> None:
            if trimmer.due():
                await asyncio.get_running_loop().run_in_executor(None, trimmer.trim)

    @app.task  # type: ignore[untyped-decorator]
    async def route_lead_events() -> None:
        router.start()
        while True:  # a router that died is started again, from its committed offsets
            await asyncio.sleep(1.0)
            code = router.revive()
            if code is not None:
                logger.error("the lead-events router exited with %s; started a new one", code)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_routing(_app: Any, **_kwargs: Any) -> None:
        # The router child commits what it routed and stops before the worker exits; it
        # gets half the stop's time (with the brokers gone its flush would wait a minute),
        # then it is killed, which loses nothing it had not delivered.
        await asyncio.get_running_loop().run_in_executor(
            None, router.stop, settings.shutdown_seconds / 2
        )

    return app


def _web_context(
    settings: Settings,
    ingress: StreamIngress,
    readiness: Readiness,
    metrics: Metrics,
    on_fault: Callable[[str], None],
) -> Context:
    """What the HTTP API's views and guards work with (web/http.py)."""
    cluster = settings.cluster_secret
    limits = Limits(
        settings.http_max_in_flight,
        settings.http_max_in_flight_per_org,
        settings.http_org_rate,
        settings.http_org_burst,
        settings.http_max_unverified_bodies,
    )
    book = ConnectionBook(
        settings.http_max_connections,
        settings.http_header_timeout_seconds,
        on_close=lambda reason: metrics.http_connections_closed.labels(reason).inc(),
    )
    return Context(
        ingress,
        settings,
        AuthFile(settings.auth_path, None if cluster is None else cluster.get_secret_value()),
        Offload(),
        RequestLimits(limits),
        book,
        readiness,
        on_fault,
    )


class _App(RebalanceSafeApp):
    """faust's app, mended so that a rebalance loses no input record
    (streams/rebalance.py), its web server the guarded aiohttp driver (web/server.py)."""

    def _new_web(self) -> GuardedWeb:
        return GuardedWeb(self)


class _Tables(TableManager):
    """faust's table manager without the second it sleeps at start for tables declared
    late (every table here is declared before the worker starts): every worker start (a
    restart, a new worker joining) waited for it before joining the group."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def _suppression_key(settings: Settings) -> bytes | None:
    secret = settings.suppression_key
    return None if secret is None else secret.get_secret_value().encode()


def _faust_app(settings: Settings, connection: KafkaConnection) -> faust.App:
    return _App(
        settings.app_id,
        # The brokers, TLS and SASL, and the group session (kafka/config.py).
        **connection.faust_options(),
        store=STORE_URL,
        TableManager=_Tables,
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # Every partition of the table has a standby copy on one other worker, read from
        # the changelog as it grows: when its owner is gone for good (its session timed
        # out), the group gives the partition to the copy's holder, which is then a few
        # records behind instead of a whole restore (tests/integration/test_failover.py).
        table_standby_replicas=1,
        producer_acks=-1,
        # Static membership: a restarted worker rejoins as itself (worker.py).
        consumer_group_instance_id=settings.group_instance_id,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        # What the group's assignment tells others this worker is (a preview asks the
        # owners of the partitions it does not hold; a 421 names the owner).
        canonical_url=settings.web_url,
        autodiscover=False,
        # Topics and the table carry bytes we encode ourselves (wire/, state/keys.py).
        key_serializer="raw",
        value_serializer="raw",
        # Bodies are read by the views, each with its limit (web/http.py). A request
        # refused before its body was read (a bad credential, a limit) has the rest of it
        # read and dropped for at most 2 s, so that the client sees the answer, and then
        # its connection is closed.
        web_application_options={
            "client_max_size": settings.max_body_bytes,
            "handler_args": {"lingering_time": 2.0},
        },
        # faust's own pages read tables and routing without any credential: none served.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )


def _watch(metrics: Metrics, topo: Topology, router: RouterProcess) -> None:
    """Lags of every partition read here, and the router child's counters, in this
    process's metrics."""
    settings = topo.settings
    metrics.watch_lag(lambda: [*topo.lags(), *router.lags()])

    def count_router_rejects() -> None:
        for topic, by_reason in router.rejects_since_last_call().items():
            if topic == settings.topics.lead_events:  # leadstream_rows_total: event rows
                metrics.rows.labels("rejected").inc(sum(by_reason.values()))
            metrics.count_rejects(topic, by_reason)

    def count_router_dead_letters() -> None:
        for topic, n in router.dead_letters_since_last_call().items():
            metrics.dead_letters.labels(topic).inc(n)

    metrics.before_exposition(count_router_rejects)
    metrics.before_exposition(count_router_dead_letters)
