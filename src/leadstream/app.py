"""The composition root: ``create_app(settings)`` wires topics, tables, agents and views."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import faust

from leadstream.index.partition import OptTypes
from leadstream.index.table import IndexedStore
from leadstream.ingress import StreamIngress
from leadstream.kafka.config import KafkaConnection
from leadstream.materialize.materializer import Materializer
from leadstream.metrics import Metrics
from leadstream.settings import LEADS_TABLE, Settings
from leadstream.state.rocksdb import STORE_URL, TableStore
from leadstream.streams.apply import register_apply
from leadstream.streams.rebalance import RebalanceSafeApp
from leadstream.streams.replies import ReplyWaiter
from leadstream.streams.router import RouterProcess
from leadstream.streams.routing import register_routers
from leadstream.streams.topology import Topology
from leadstream.web.http import Context, Offload
from leadstream.web.keys import AuthFile
from leadstream.web.routes import serve
from leadstream.wire.records import encode_recipient

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """Build the faust application for ``settings``; nothing runs until a worker starts it."""
    connection = KafkaConnection.of(settings)
    app = _faust_app(settings, connection)
    table = app.Table(
        LEADS_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options={"driver": "rocksdict"},
    )
    metrics = Metrics()
    table_store = TableStore(table)
    store = IndexedStore(
        table_store,
        OptTypes(settings.opt_out_event_type, settings.opt_in_event_type),
        encode_recipient,
        on_build=lambda _partition, seconds: metrics.index_build_seconds.observe(seconds),
        hash_key=_suppression_key(settings),
    )
    table_store.on_restore(store.drop)
    topo = Topology(app, settings, table, store, metrics)
    router = RouterProcess(settings)
    _watch(metrics, topo, router)
    materializer = Materializer(topo)
    register_routers(topo)
    replies = ReplyWaiter(connection, settings.topics.replies)
    register_apply(topo, on_held=materializer.wake, deliver=replies.deliver)
    ingress = StreamIngress(topo, replies, routing=router.running)
    serve(app, Context(ingress, settings, AuthFile(settings.auth_path), Offload()), metrics)

    @app.task  # type: ignore[untyped-decorator]
    async def materialize() -> None:
        await materializer.run()

    @app.task  # type: ignore[untyped-decorator]
    async def read_replies() -> None:
        replies.start()

    @app.task  # type: ignore[untyped-decorator]
    async def freeze_startup_objects() -> None:
        # What the worker built to start (modules, faust, aiokafka, aiohttp: ~170,000
        # objects) never becomes garbage; left to the collector, each full collection
        # walked them all and stopped the event loop for 50-100 ms, the HTTP API's tail.
        gc.freeze()
        logger.debug("%d startup objects kept out of garbage collection", gc.get_freeze_count())

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
        # The router child commits what it routed and stops before the worker exits.
        await asyncio.get_running_loop().run_in_executor(None, router.stop)

    return app


def _suppression_key(settings: Settings) -> bytes | None:
    secret = settings.suppression_key
    return None if secret is None else secret.get_secret_value().encode()


def _faust_app(settings: Settings, connection: KafkaConnection) -> faust.App:
    # faust mended so that a rebalance loses no input record (streams/rebalance.py).
    return RebalanceSafeApp(
        settings.app_id,
        # The brokers, TLS and SASL, and the group session (kafka/config.py).
        **connection.faust_options(),
        store=STORE_URL,
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
        canonical_url=settings.advertised_url or f"http://{settings.web_host}:{settings.web_port}",
        autodiscover=False,
        # Topics and the table carry bytes we encode ourselves (wire/, state/keys.py).
        key_serializer="raw",
        value_serializer="raw",
        # Bodies are read by the views, each with its limit (web/http.py, stream_body).
        web_application_options={"client_max_size": settings.max_body_bytes},
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
