"""The worker's read-only views: health, readiness, metrics, this API's description, and
one lead's stored events (for a key of its organization)."""

from __future__ import annotations

import time
from typing import Any

from faust.web import Request, Response

from leadstream.domain.auth import AuthError, authenticate
from leadstream.domain.normalize import format_ms, normalize_organization_id, normalize_phone
from leadstream.domain.rejects import RowError
from leadstream.web.http import ServedView, auth_error, error_response
from leadstream.web.ingress import NotServedHere
from leadstream.web.openapi import openapi_document

__all__ = ["Health", "Lead", "MetricsView", "OpenApi", "Ready"]


class Health(ServedView):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


class OpenApi(ServedView):
    document = openapi_document()

    async def get(self, request: Request) -> Response:
        return self.json(self.document)


class MetricsView(ServedView):
    async def get(self, request: Request) -> Response:
        # aiohttp adds the charset itself and refuses one in content_type.
        text = self.context.ingress.metrics_text()
        return self.text(text, content_type="text/plain; version=0.0.4")


class Ready(ServedView):
    async def get(self, request: Request) -> Response:
        partitions = await self.context.ingress.ready_partitions()
        if partitions is None:
            return self.json({"status": "starting"}, status=503)
        return self.json({"status": "ready", "partitions": partitions})


class Lead(ServedView):
    """``GET /api/v1/leads/{organizationId}/{phone}``: 401 without a key, 403 with another
    organization's (a signature is of the empty body), 421 when another worker holds it."""

    async def get(self, request: Request, **path: str) -> Response:
        context = self.context
        try:
            key_org = authenticate(context.auth.config(), request.headers, b"", now_s=time.time())
        except AuthError as err:
            refused = auth_error(err)
            return error_response(self, refused.status, refused.code, refused.message)
        try:
            org = normalize_organization_id(path["organizationId"])
        except RowError as err:
            return error_response(self, 400, err.reason.value, err.detail)
        if org != key_org:
            return error_response(
                self, 403, "forbidden", "this credential does not act for that organization"
            )
        try:
            phone = normalize_phone(path["phone"], context.settings.default_region)
        except RowError as err:
            return error_response(self, 400, err.reason.value, err.detail)
        state = context.ingress.read_lead(org, phone)
        if isinstance(state, NotServedHere):
            body: dict[str, Any] = {
                "error": {
                    "code": "not_here",
                    "message": f"partition {state.partition} is not active on this worker",
                },
                "owner": state.owner,
            }
            return self.json(body, status=421 if state.ready else 503)
        return self.json(
            {
                "organizationId": org,
                "phoneE164": phone,
                "partition": state.partition,
                "optedOut": state.opted_out,
                "events": [{"eventType": t, "occurredAt": format_ms(ts)} for t, ts in state.events],
            }
        )
