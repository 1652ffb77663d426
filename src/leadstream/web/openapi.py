"""``GET /openapi.json``: the worker's HTTP API, with schemas from pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from leadstream import __version__
from leadstream.domain.ingest import MAX_BATCH_EVENTS
from leadstream.domain.rejects import Reason
from leadstream.wire.models import Id

__all__ = ["openapi_document"]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a code a client can branch on and a message a person can read."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail
    owner: str | None = Field(None, description="Worker that holds the lead (421 only).")


class WebhookLeadEvents(BaseModel):
    """The batch body; each row is checked on its own and a bad one lands in ``rejects``."""

    model_config = ConfigDict(extra="allow")
    organizationId: Id = Field(description="Must be the credential's organization.")
    eventType: str | None = Field(None, description="For rows that carry none.")
    events: list[dict[str, Any]] = Field(
        max_length=MAX_BATCH_EVENTS,
        description="Rows {phoneE164, occurredAt, metadata?, eventType?}.",
    )


class WebhookReject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int | None
    phoneE164: str | None
    reason: Reason
    detail: str


class AudienceAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted"]
    received: int
    accepted: int
    rejected: int
    rejects: list[WebhookReject]


class WebhookAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted"]
    received: int
    inserted: int = Field(description="Rows new to the dedupe table.")
    duplicates: int = Field(description="Rows already there (a retry answers all duplicates).")
    rejected: int
    rejects: list[WebhookReject]


class AudienceFilterBody(BaseModel):
    """The organization is the credential's; an organizationId in the body must match it."""

    model_config = ConfigDict(extra="allow")
    organizationId: Id | None = Field(None, description="If given, the credential's own.")
    campaignId: Id
    sendId: Id
    mode: Literal["include", "exclude"]
    leads: list[dict[str, str]] = Field(description="Each {externalId} or {phoneE164}.")


class AudienceFilterAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted", "already_received"]
    leadCount: int | None = None


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


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ready", "starting"]
    partitions: list[int] | None = None


_MODELS: list[type[BaseModel]] = [
    ErrorBody,
    WebhookLeadEvents,
    WebhookAccepted,
    LeadView,
    Health,
    Readiness,
]


def _json(model: type[BaseModel], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


_PHONE = "+15551234567"
_EVENTS_EXAMPLE = {
    "organizationId": 42,
    "eventType": "mastery_purchase",
    "events": [{"phoneE164": _PHONE, "occurredAt": "2026-05-12T18:34:00Z"}],
}
_FILTER_EXAMPLE = {
    "organizationId": 42,
    "campaignId": "mastery",
    "sendId": "day2",
    "mode": "exclude",
    "leads": [{"phoneE164": _PHONE}, {"externalId": "crm-123"}],
}


# Either credential: a Bearer API key or an HMAC signature of the body.
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"signature": []}]


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "Error", "content": _json(ErrorBody)} for s in statuses}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every endpoint the worker serves."""
    _, schemas = models_json_schema(
        [
            (m, "validation" if m in (WebhookLeadEvents, AudienceFilterBody) else "serialization")
            for m in _MODELS
        ],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "leadstream worker", "version": __version__},
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Leadstream-Signature",
                    "description": "sha256=<hex HMAC-SHA256 of the raw body, or of "
                    "'{X-Leadstream-Timestamp}.{body}'>",
                },
            },
        },
        "paths": {**_ingest_paths(), **_lead_paths(), **_public_paths()},
    }


def _ingest_paths() -> dict[str, Any]:
    """The routes that write a tenant's data."""
    return {**_lead_events_path(), **_audience_filter_path(), **_audience_upload_path()}


def _lead_events_path() -> dict[str, Any]:
    """Lead events over HTTP."""
    return {
        "/api/v1/webhooks/lead-events": {
            "post": {
                "summary": "Ingest one event or up to 50,000; answers after they are applied.",
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": _json(WebhookLeadEvents, _EVENTS_EXAMPLE),
                },
                "responses": {
                    "200": {"description": "Accepted", "content": _json(WebhookAccepted)},
                    **_errors(400, 401, 403, 413, 415, 422, 503),
                },
            }
        },
    }


def _audience_filter_path() -> dict[str, Any]:
    """A send's audience filter over HTTP."""
    return {
        "/api/v1/webhooks/campaigns/audience-filter": {
            "post": {
                "summary": "The audience filter of a send; the latest received replaces "
                "earlier ones, an identical repeat is a no-op.",
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": _json(AudienceFilterBody, _FILTER_EXAMPLE),
                },
                "responses": {
                    "200": {
                        "description": "Accepted or already received",
                        "content": _json(AudienceFilterAnswer),
                    },
                    **_errors(400, 401, 403, 409, 415, 422, 503),
                },
            }
        },
    }


def _audience_upload_path() -> dict[str, Any]:
    """An audience upload."""
    return {
        "/api/v1/campaigns/{campaignId}/audience": {
            "post": {
                "summary": "Upload up to 1,000,000 members (CSV phoneE164,externalId[,op], "
                "NDJSON, or a JSON array or {members: [...]}), read as a stream; answers "
                "after Kafka has every row.",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "campaignId",
                        "in": "path",
                        "required": True,
                        "example": "mastery",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    },
                    {
                        "name": "organizationId",
                        "in": "query",
                        "required": False,
                        "description": "If given, must be the credential's organization.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/csv": {
                            "schema": {"type": "string"},
                            "example": f"phoneE164,externalId\n{_PHONE},crm-123\n",
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                        "application/json": {
                            "example": {"members": [{"phoneE164": _PHONE}]},
                            "schema": {
                                "oneOf": [
                                    {"type": "array", "items": {"type": "object"}},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "members": {
                                                "type": "array",
                                                "items": {"type": "object"},
                                            }
                                        },
                                    },
                                ]
                            },
                        },
                    },
                },
                "responses": {
                    "200": {"description": "Accepted", "content": _json(AudienceAccepted)},
                    **_errors(400, 401, 403, 413, 415, 422, 503),
                },
            }
        },
    }


def _lead_paths() -> dict[str, Any]:
    """The route that reads one lead."""
    return {
        "/api/v1/leads/{organizationId}/{phone}": {
            "get": {
                "summary": "One lead's stored events (read-only), for a key of its "
                "organization (a signature is of the empty body).",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "organizationId",
                        "in": "path",
                        "required": True,
                        "example": "42",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "phone",
                        "in": "path",
                        "required": True,
                        "example": _PHONE,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {"description": "The lead", "content": _json(LeadView)},
                    **_errors(400, 401, 403, 421, 503),
                },
            }
        },
    }


def _public_paths() -> dict[str, Any]:
    """The routes open to anyone: health, readiness, metrics, this document."""
    return {
        "/healthz": {
            "get": {
                "summary": "The process is up.",
                "security": [],
                "responses": {"200": {"description": "Up", "content": _json(Health)}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Broker reachable, recovery finished, lead-events router running.",
                "security": [],
                "responses": {
                    "200": {"description": "Ready", "content": _json(Readiness)},
                    "503": {"description": "Starting", "content": _json(Readiness)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
