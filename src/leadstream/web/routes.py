"""Every route of the worker's HTTP API, and how they are served on a faust app."""

from __future__ import annotations

import faust

from leadstream.metrics import Metrics
from leadstream.web.audience import AudienceUpload
from leadstream.web.console import ConsolePage, ConsoleScript, ConsoleStyle
from leadstream.web.http import Context, ServedView, guard_routes
from leadstream.web.openapi import openapi_document
from leadstream.web.send_list import OrganizationSends
from leadstream.web.sends import SendLead, SendPreview
from leadstream.web.server import GuardedWeb
from leadstream.web.traced import trace_requests
from leadstream.web.views import Health, Lead, MetricsView, OpenApi, Ready
from leadstream.web.webhooks import AudienceFilter, LeadEvents

__all__ = ["ROUTES", "serve"]

# Every route, by its path; each view declares its operations (web/spec.py), from which
# /openapi.json is generated (web/openapi.py).
ROUTES: dict[str, type[ServedView]] = {
    "/healthz": Health,
    "/readyz": Ready,
    "/metrics": MetricsView,
    "/openapi.json": OpenApi,
    "/api/v1/leads/{organizationId}/{phone}": Lead,
    "/api/v1/webhooks/lead-events": LeadEvents,
    "/api/v1/webhooks/campaigns/audience-filter": AudienceFilter,
    "/api/v1/campaigns/{campaignId}/audience": AudienceUpload,
    "/api/v1/sends/preview": SendPreview,
    "/api/v1/sends/{organizationId}/{sendId}/leads/{phone}": SendLead,
    "/api/v1/organizations/{organizationId}/sends": OrganizationSends,
    "/console": ConsolePage,
    "/console/console.js": ConsoleScript,
    "/console/console.css": ConsoleStyle,
}


def serve(app: faust.App, context: Context, metrics: Metrics) -> None:
    """Register every route on ``app``, each view bound to ``context``; serve only what
    /openapi.json describes, within the limits, with JSON errors (:func:`guard_routes`),
    and every connection through ``context.connections`` (web/server.py)."""
    web = app.web
    if not isinstance(web, GuardedWeb):
        raise TypeError("the worker's app serves through leadstream.web.server.GuardedWeb")
    document = openapi_document(ROUTES)
    for path, view in ROUTES.items():
        bound: dict[str, object] = {"context": context}
        if issubclass(view, OpenApi):
            bound["document"] = document
        app.page(path)(type(view.__name__, (view,), bound))
    # Outermost: a refused request is traced too (leadstream.tracing; off by default).
    web.web_app.middlewares.insert(0, trace_requests)
    web.web_app.middlewares.append(guard_routes(document, context, metrics))
    web.guard(context.connections)
