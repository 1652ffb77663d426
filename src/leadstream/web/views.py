"""Worker HTTP views: health, readiness and a read-only look at one lead's stored events."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import faust
from confluent_kafka.admin import AdminClient
from faust.web import Request, Response, View

from leadstream.domain.auth import AuthError, authenticate
from leadstream.domain.lead_index import latest_opt, lead_events
from leadstream.domain.normalize import format_ms, normalize_organization_id, normalize_phone
from leadstream.domain.partitioning import lead_partition
from leadstream.domain.rejects import RowError
from leadstream.kafka_admin import broker_reachable
from leadstream.streams.topology import Topology
from leadstream.web.http import AuthFile, auth_failed, error_response
from leadstream.web.openapi import openapi_document

if TYPE_CHECKING:
    from collections.abc import Callable

    from faust.assignor import PartitionAssignor

__all__ = ["register_views"]

logger = logging.getLogger(__name__)


def register_views(topo: Topology, auth: AuthFile, *, routing: Callable[[], bool]) -> None:
    """Attach the worker's read-only views to the app. ``routing`` says whether the
    lead-events router is running: a worker without one is not ready."""
    app, settings = topo.app, topo.settings
    is_ready = topo.is_ready
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    document = openapi_document()

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.json(document)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # aiohttp adds the charset itself and refuses one in content_type.
            return self.text(
                topo.metrics.exposition().decode(), content_type="text/plain; version=0.0.4"
            )

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            reachable = await asyncio.get_running_loop().run_in_executor(
                None, broker_reachable, admin
            )
            if reachable and is_ready() and routing():
                return self.json({"status": "ready", "partitions": topo.active_partitions()})
            return self.json({"status": "starting"}, status=503)

    @app.page("/api/v1/leads/{organizationId}/{phone}")
    class Lead(View):
        async def get(self, request: Request, **path: str) -> Response:
            try:
                key_org = authenticate(auth.config(), request.headers, b"", now_s=time.time())
            except AuthError as err:
                return auth_failed(self, err)
            try:
                org = normalize_organization_id(path["organizationId"])
            except RowError as err:
                return error_response(self, 400, err.reason.value, err.detail)
            if org != key_org:
                return error_response(
                    self, 403, "forbidden", "this credential does not act for that organization"
                )
            try:
                e164 = normalize_phone(path["phone"], settings.default_region)
            except RowError as err:
                return error_response(self, 400, err.reason.value, err.detail)
            partition = lead_partition(org, e164, settings.partitions)
            if partition not in topo.active_partitions() or not is_ready():
                return self.json(
                    {
                        "error": {
                            "code": "not_here",
                            "message": f"partition {partition} is not active on this worker",
                        },
                        "owner": _owner_url(app, topo, partition),
                    },
                    status=503 if not is_ready() else 421,
                )
            opt = latest_opt(
                topo.store,
                partition,
                org,
                e164,
                opt_out_type=settings.opt_out_event_type,
                opt_in_type=settings.opt_in_event_type,
            )
            events = lead_events(topo.store, partition, org, e164)
            body: dict[str, Any] = {
                "organizationId": org,
                "phoneE164": e164,
                "partition": partition,
                "optedOut": opt.opted_out,
                "events": [{"eventType": t, "occurredAt": format_ms(ts)} for t, ts in events],
            }
            return self.json(body)


def _owner_url(app: faust.App, topo: Topology, partition: int) -> str | None:
    name = topo.by_lead.get_topic_name()
    assignor = cast("PartitionAssignor", app.assignor)
    for host, topics in assignor.external_topics_metadata().items():
        if partition in topics.get(name, ()):
            return str(host)
    return None
