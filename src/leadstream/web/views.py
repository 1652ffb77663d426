"""The worker's small views: health, readiness, metrics, this API's description, and one
lead's stored events, or its erasure (for a key of its organization)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from faust.web import Request, Response

from leadstream.domain.normalize import format_ms, normalize_phone
from leadstream.domain.rejects import RowError
from leadstream.logs import log_fields
from leadstream.web.http import ServedView, admission_of, error_response, unavailable
from leadstream.web.ingress import NotServedHere
from leadstream.web.openapi import openapi_document

__all__ = ["Health", "Lead", "MetricsView", "OpenApi", "Ready"]

logger = logging.getLogger(__name__)


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
    """From the state kept current in the background (web/readiness.py): at once."""

    async def get(self, request: Request) -> Response:
        partitions = self.context.readiness.partitions()
        if partitions is None:
            return self.json({"status": "starting"}, status=503)
        return self.json({"status": "ready", "partitions": partitions})


class Lead(ServedView):
    """``GET /api/v1/leads/{organizationId}/{phone}``: 401 without a key, 403 with another
    organization's (both from the headers: web/http.py), 421 when another worker holds it.

    ``DELETE`` erases the lead (any worker: the erase travels through Kafka to the lead's
    partition), 503 when Kafka or the apply does not confirm in time (a retry is safe).
    Every erase is logged with its request id and the organization, never the phone."""

    async def get(self, request: Request, **path: str) -> Response:
        context = self.context
        lead = self._lead(request, path)
        if not isinstance(lead, tuple):
            return lead
        org, phone = lead
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

    async def delete(self, request: Request, **path: str) -> Response:
        context = self.context
        lead = self._lead(request, path)
        if not isinstance(lead, tuple):
            return lead
        org, phone = lead
        request_id = uuid.uuid4().hex
        logger.info(
            "erase request %s: organization %s asked",
            request_id,
            org,
            extra=log_fields(organization=org, request_id=request_id),
        )
        try:
            erased = await asyncio.wait_for(
                context.ingress.erase(org, phone, request_id), context.settings.http_timeout_seconds
            )
        except (TimeoutError, OSError) as exc:
            logger.warning(
                "erase request %s: Kafka or apply timed out: %s",
                request_id,
                type(exc).__name__,
                extra=log_fields(organization=org, request_id=request_id),
            )
            return unavailable(self, "Kafka did not confirm in time; retry the same request")
        return self.json(
            {
                "erased": True,
                "requestId": request_id,
                "events": erased.events,
                "memberships": erased.memberships,
                "suppressionKept": erased.suppression_kept,
            }
        )

    def _lead(self, request: Request, path: dict[str, str]) -> tuple[str, str] | Response:
        """The path's (organization, phone), the credential and the organization checked
        already, or the error answer."""
        org = admission_of(request).acting_org(None)
        try:
            phone = normalize_phone(path["phone"], self.context.settings.default_region)
        except RowError as err:
            return error_response(self, 400, err.reason.value, err.detail)
        return org, phone
