"""The worker's small views: health, readiness, metrics, this API's description, and one
lead's stored events, or its erasure (for a key of its organization)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, ClassVar, Literal

from faust.web import Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from leadstream.domain.normalize import format_ms, normalize_phone
from leadstream.domain.rejects import RowError
from leadstream.logs import log_fields
from leadstream.web.http import ServedView, admission_of, error_response, unavailable
from leadstream.web.ingress import NotServedHere
from leadstream.web.spec import (
    PUBLIC,
    Answer,
    ErrorBody,
    ErrorDetail,
    Link,
    Operation,
    Param,
    answer,
)

__all__ = [
    "LEAD_PARAMS",
    "PHONE_EXAMPLE",
    "Health",
    "HealthAnswer",
    "Lead",
    "LeadErased",
    "LeadView",
    "MetricsView",
    "OpenApi",
    "Readiness",
    "Ready",
    "StoredEvent",
    "not_here",
]

logger = logging.getLogger(__name__)

PHONE_EXAMPLE = "+15551234567"


class HealthAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ready", "starting"]
    partitions: list[int] | None = None


class StoredEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eventType: str
    occurredAt: str


class LeadView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organizationId: str
    phoneE164: str
    partition: int
    optedOut: bool
    events: list[StoredEvent]


class LeadErased(BaseModel):
    """What an erase removed. An unknown or already erased phone answers the same shape with
    zeros, so a retry is safe."""

    model_config = ConfigDict(extra="forbid")
    erased: Literal[True]
    requestId: str | SkipJsonSchema[None] = Field(
        None, description="The id the erase is logged under (the audit line)."
    )
    events: int = Field(ge=0, description="The lead's stored events removed.")
    memberships: int = Field(ge=0, description="The lead's audience memberships removed.")
    suppressionKept: bool = Field(
        description="true when the lead was opted out at the erase: an HMAC-SHA256 of "
        "(organizationId, phone), never the phone, is kept so that the phone stays opted out "
        "until an opt-in event later than the erase."
    )


# The path parameters of one lead: its organization and its phone (normalized).
LEAD_PARAMS = (
    Param("organizationId", "path", "42"),
    Param("phone", "path", PHONE_EXAMPLE),
)
# From an answer about a lead, to that lead again.
_TO_LEAD = {
    "organizationId": "$response.body#/organizationId",
    "phone": "$response.body#/phoneE164",
}


class Health(ServedView):
    operations: ClassVar = {
        "get": Operation(
            "getHealth",
            "The process is up (answered whatever the load: no limit applies).",
            {200: Answer("Up", HealthAnswer)},
            security=PUBLIC,
        )
    }

    async def get(self, request: Request) -> Response:
        return answer(self, HealthAnswer(status="ok"))


class OpenApi(ServedView):
    """This document; ``document`` is bound when the routes are served (web/routes.py)."""

    document: ClassVar[dict[str, Any]] = {}
    operations: ClassVar = {
        "get": Operation(
            "getOpenApi",
            "This document.",
            {200: Answer("OpenAPI 3.1", None, media="application/json")},
            security=PUBLIC,
            errors=(503,),
        )
    }

    async def get(self, request: Request) -> Response:
        return self.json(self.document)


class MetricsView(ServedView):
    operations: ClassVar = {
        "get": Operation(
            "getMetrics",
            "Prometheus metrics.",
            {200: Answer("Text exposition format", None, media="text/plain")},
            security=PUBLIC,
            errors=(503,),
        )
    }

    async def get(self, request: Request) -> Response:
        # aiohttp adds the charset itself and refuses one in content_type.
        text = self.context.ingress.metrics_text()
        return self.text(text, content_type="text/plain; version=0.0.4")


class Ready(ServedView):
    """From the state kept current in the background (web/readiness.py): at once."""

    operations: ClassVar = {
        "get": Operation(
            "getReady",
            "Broker reachable, recovery finished, indexes built, lead-events router running:"
            " as last found by a check every second, so that it answers at once whatever the"
            " load.",
            {200: Answer("Ready", Readiness), 503: Answer("Starting", Readiness)},
            security=PUBLIC,
        )
    }

    async def get(self, request: Request) -> Response:
        partitions = self.context.readiness.partitions()
        if partitions is None:
            return answer(self, Readiness(status="starting"), status=503)
        return answer(self, Readiness(status="ready", partitions=partitions))


class Lead(ServedView):
    """``GET /api/v1/leads/{organizationId}/{phone}``: 401 without a key, 403 with another
    organization's (both from the headers: web/http.py), 421 when another worker holds it.

    ``DELETE`` erases the lead (any worker: the erase travels through Kafka to the lead's
    partition), 503 when Kafka or the apply does not confirm in time (a retry is safe).
    Every erase is logged with its request id and the organization, never the phone."""

    operations: ClassVar = {
        "get": Operation(
            "getLead",
            "One lead's stored events (read-only), for a key of its organization (a signature"
            " is of the empty body).",
            {
                200: Answer(
                    "The lead",
                    LeadView,
                    links={"EraseLead": Link("deleteLead", _TO_LEAD, "Erase the lead read.")},
                ),
                421: Answer("Another worker holds the partition (owner names it)", ErrorBody),
            },
            params=LEAD_PARAMS,
            errors=(400,),
        ),
        "delete": Operation(
            "deleteLead",
            "Erase one lead: its events, audience memberships, entries in recorded sends and"
            " index, and its phone in audience filters of sends not yet materialized. Only a"
            " keyed hash is kept when it was opted out. Served by any worker (routed to the"
            " lead's partition through Kafka); for a key of its organization (a signature is"
            " of the empty body). Safe to retry.",
            {
                200: Answer(
                    "Erased (zeros when there was nothing to erase)",
                    LeadErased,
                    links={
                        "ReadErasedLead": Link(
                            "getLead",
                            {
                                "organizationId": "$request.path.organizationId",
                                "phone": "$request.path.phone",
                            },
                            "The erased lead, read again: no events.",
                        )
                    },
                )
            },
            params=LEAD_PARAMS,
            errors=(400,),
        ),
    }

    async def get(self, request: Request, **path: str) -> Response:
        context = self.context
        lead = self._lead(request, path)
        if not isinstance(lead, tuple):
            return lead
        org, phone = lead
        state = context.ingress.read_lead(org, phone)
        if isinstance(state, NotServedHere):
            return not_here(self, state)
        return answer(
            self,
            LeadView(
                organizationId=org,
                phoneE164=phone,
                partition=state.partition,
                optedOut=state.opted_out,
                events=[
                    StoredEvent(eventType=t, occurredAt=format_ms(ts)) for t, ts in state.events
                ],
            ),
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
        return answer(
            self,
            LeadErased(
                erased=True,
                requestId=request_id,
                events=erased.events,
                memberships=erased.memberships,
                suppressionKept=erased.suppression_kept,
            ),
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


def not_here(view: ServedView, state: NotServedHere) -> Response:
    """421 naming the worker that holds the partition, or 503 while this one is not ready."""
    body = ErrorBody(
        error=ErrorDetail(
            code="not_here", message=f"partition {state.partition} is not active on this worker"
        ),
        owner=state.owner,
    )
    return answer(view, body, status=421 if state.ready else 503)
