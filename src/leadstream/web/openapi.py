"""``GET /openapi.json``: the worker's HTTP API, with schemas from pydantic models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from leadstream import __version__
from leadstream.domain.auth import TIMESTAMP_TOLERANCE_S
from leadstream.domain.buckets import BUCKETS
from leadstream.domain.conditions import MAX_DEPTH
from leadstream.domain.ingest import MAX_BATCH_EVENTS
from leadstream.domain.rejects import Reason
from leadstream.domain.sends import MAX_CONDITIONS
from leadstream.web.console import CONSOLE_FILES
from leadstream.web.http import MAX_LISTED_REJECTS
from leadstream.web.send_list import DEFAULT_LIMIT, MAX_LIMIT, OrganizationSendList
from leadstream.web.sends import MAX_INLINE_FILTER_LEADS, MAX_SAMPLE
from leadstream.wire.models import (
    E164,
    Conditions,
    EventFilter,
    FrequencyCap,
    Holdout,
    Id,
    QuietHours,
    Recipient,
    Rfc3339Timestamp,
    SendCounts,
    SplitName,
    Splits,
    UtcMillisTimestamp,
)

__all__ = ["openapi_document"]


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    field: str | None = Field(
        None,
        description="The JSON path of the body's value at fault (eventFilters[0].within), "
        "when the error names one: a field the contract does not define (invalid_conditions).",
    )


class ErrorBody(BaseModel):
    """Every error answer: a code a client can branch on and a message a person can read."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail
    owner: str | None = Field(
        None, description="Worker that holds the lead's partition (421 and 503 not_here only)."
    )


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


_REJECTED = "Every row refused, counted."
_REJECTS = (
    f"The first {MAX_LISTED_REJECTS} refused rows, in order; the others are only counted"
    " (rejectsOmitted)."
)
_OMITTED = "How many refused rows rejects leaves out: rejected minus the length of rejects."


class AudienceAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted"]
    received: int
    accepted: int
    rejected: int = Field(description=_REJECTED)
    rejects: list[WebhookReject] = Field(max_length=MAX_LISTED_REJECTS, description=_REJECTS)
    rejectsOmitted: int = Field(ge=0, description=_OMITTED)


class WebhookAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted"]
    received: int
    inserted: int = Field(description="Rows new to the dedupe table.")
    duplicates: int = Field(description="Rows already there (a retry answers all duplicates).")
    rejected: int = Field(description=_REJECTED)
    rejects: list[WebhookReject] = Field(max_length=MAX_LISTED_REJECTS, description=_REJECTS)
    rejectsOmitted: int = Field(ge=0, description=_OMITTED)


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


class InlineAudienceFilter(BaseModel):
    """The audience filter to preview with, inline (not a trigger's {enabled} switch)."""

    model_config = ConfigDict(extra="allow")
    mode: Literal["include", "exclude"]
    leads: list[dict[str, str]] = Field(
        max_length=MAX_INLINE_FILTER_LEADS,
        description=f"Each {{externalId}} or {{phoneE164}}; at most {MAX_INLINE_FILTER_LEADS}"
        " (413 too_many_leads beyond).",
    )


class PreviewBody(BaseModel):
    """A send trigger's fields, sendId optional; nothing is stored or emitted."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"not": {"required": ["eventFilter", "eventFilters"]}}
    )
    organizationId: Id = Field(description="Must be the credential's organization.")
    campaignId: Id
    sendId: Id | SkipJsonSchema[None] = Field(
        None, description="Optional: checked as a trigger's, and stored nowhere."
    )
    scheduledFor: Rfc3339Timestamp | SkipJsonSchema[None] = Field(
        None, description="When the send would fire (its filters' windows end there); default: now."
    )
    eventFilter: EventFilter | SkipJsonSchema[None] = Field(
        None, description="One event filter. Never together with eventFilters."
    )
    eventFilters: (
        Annotated[list[EventFilter], Field(max_length=MAX_CONDITIONS)] | SkipJsonSchema[None]
    ) = Field(
        None,
        description=f"Event filters, all ANDed, at most {MAX_CONDITIONS} (413"
        " too_many_conditions beyond). Never together with eventFilter.",
    )
    audienceFilter: InlineAudienceFilter | None = Field(
        None, description="Absent or null: no audience filter step."
    )
    frequencyCap: FrequencyCap | SkipJsonSchema[None] = Field(
        None, description="As a trigger's; absent: no frequency cap step."
    )
    quietHours: QuietHours | SkipJsonSchema[None] = Field(
        None, description="As a trigger's; absent: no quiet hours step."
    )
    conditions: Conditions | SkipJsonSchema[None] = Field(
        None,
        description=f"As a trigger's: at most {MAX_DEPTH} operators deep, at most"
        f" {MAX_CONDITIONS} leaves together with the event filters. Invalid: 400"
        " invalid_conditions, error.field its JSON path.",
    )
    holdout: Holdout | SkipJsonSchema[None] = Field(
        None, description="As a trigger's; absent: nobody is held out."
    )
    splits: Splits | SkipJsonSchema[None] = Field(
        None, description="As a trigger's: percents adding up to 100, distinct names."
    )
    sample: int | None = Field(
        0, ge=0, le=MAX_SAMPLE, description="How many recipients to list (null: 0)."
    )


class SendPreview(BaseModel):
    """What the send would be now: the counts a materialization on the same state gives."""

    model_config = ConfigDict(extra="forbid")
    organizationId: str
    campaignId: str
    scheduledFor: UtcMillisTimestamp
    recipientCount: int
    counts: SendCounts = Field(description="lateAudienceFilters is always 0 in a preview.")
    sample: list[Recipient] = Field(description="Up to `sample` of the recipients.")
    variants: dict[SplitName, Annotated[int, Field(ge=0)]] | SkipJsonSchema[None] = Field(
        None, description="Recipients per split name, as in a summary; only with splits."
    )


Step = Literal[
    "notInAudience",
    "optedOut",
    "audienceFilter",
    "eventFilter",
    "frequencyCap",
    "quietHours",
    "heldOut",
    "recipient",
]


class ConditionVerdict(BaseModel):
    """One leaf of the send's conditions, for this lead."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="The leaf's JSON path (conditions.all[1]).")
    condition: dict[str, Any] = Field(description="The leaf as the trigger wrote it.")
    holds: bool
    matchingEvents: Annotated[int, Field(ge=0)] | SkipJsonSchema[None] = Field(
        None, description="Event leaves only: how many events it counted."
    )


_RULE = (
    "With a policy: the id of the policy's rule that decided (federal, a state's rule such as"
    " us-fl, or unknown-zone for a number it cannot place in time)."
)


class QuietHoursFacts(BaseModel):
    """What quiet hours saw: the window's start and end, the deciding rule, zone and local
    time."""

    model_config = ConfigDict(extra="allow")
    rule: str | None = Field(None, description=_RULE)


class ExplainDetail(BaseModel):
    """A message, and the facts that decided; the keys depend on the step."""

    model_config = ConfigDict(extra="allow")
    message: str | SkipJsonSchema[None] = None
    bucket: Annotated[int, Field(ge=0, le=BUCKETS - 1)] | SkipJsonSchema[None] = Field(
        None, description="The lead's bucket under the send's salt (with a holdout or splits)."
    )
    variant: SplitName | None = Field(
        None, description="The lead's split (with splits); null when it has none."
    )
    conditions: list[ConditionVerdict] | SkipJsonSchema[None] = Field(
        None, description="Each leaf of the send's conditions, in the order of its JSON."
    )
    rule: str | None = Field(None, description=f"quietHours step. {_RULE}")
    quietHours: QuietHoursFacts | SkipJsonSchema[None] = Field(
        None, description="Past quiet hours: what they saw."
    )


class StepToday(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: Step
    detail: ExplainDetail


class SendLeadExplanation(BaseModel):
    """What a materialized send did to one lead, and the facts that decided it."""

    model_config = ConfigDict(extra="forbid")
    organizationId: str
    sendId: str
    campaignId: str
    phoneE164: E164
    sent: bool
    step: Step = Field(description="Where the lead left the send (recipient: it did not).")
    detail: ExplainDetail = Field(
        description="A message, and the deciding facts: an event filter's eventFilter, "
        "matchingEvents and the matching events' occurredAt; the conditions' leaf verdicts; "
        "the frequency cap's maxSends, withinHours and sends [{sendId, scheduledFor}] (the "
        "counted earlier sends that messaged the lead); quiet hours' rule, timeZone (the zone "
        "that decided), localTime (HH:MM), start and end; the lead's bucket and variant."
    )
    consistent: bool = Field(description="false when today's state gives another step.")
    scheduledFor: UtcMillisTimestamp
    materializedAt: UtcMillisTimestamp
    now: StepToday | SkipJsonSchema[None] = Field(
        None, description="Only when consistent is false: the step and facts of today's state."
    )


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
    AudienceFilterBody,
    AudienceFilterAnswer,
    AudienceAccepted,
    LeadView,
    LeadErased,
    PreviewBody,
    SendPreview,
    SendLeadExplanation,
    OrganizationSendList,
    Health,
    Readiness,
]
# Request bodies: described as they are validated (the rest as they are written).
_INPUTS = (WebhookLeadEvents, AudienceFilterBody, PreviewBody)


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
_PREVIEW_EXAMPLE = {
    "organizationId": 42,
    "campaignId": "mastery",
    "scheduledFor": "2026-05-13T18:00:00Z",
    "eventFilter": {
        "mode": "exclude",
        "eventType": "mastery_purchase",
        "where": {"product": {"in": ["mastery", "mastery-plus"]}},
    },
    "audienceFilter": {"mode": "exclude", "leads": [{"externalId": "crm-123"}]},
    "frequencyCap": {"maxSends": 2, "withinHours": 24},
    "quietHours": {"start": "21:00", "end": "08:00"},
    "sample": 5,
}
_FILTER_EXAMPLE = {
    "organizationId": 42,
    "campaignId": "mastery",
    "sendId": "day2",
    "mode": "exclude",
    "leads": [{"phoneE164": _PHONE}, {"externalId": "crm-123"}],
}


# Either credential: a Bearer API key or a v1 signature (its three headers together); the
# webhooks also take a body-only signature.
_SECURITY: list[dict[str, list[str]]] = [
    {"bearer": []},
    {"keyId": [], "timestamp": [], "signature": []},
]
_WEBHOOK_SECURITY = [*_SECURITY, {"bodySignature": []}]

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds after which the same request may be sent again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_STATUS_TEXT = {
    400: "Malformed request",
    401: "No valid credential (or a signature of another request)",
    403: "A valid credential of another organization",
    404: "Not found",
    408: "The body stalled (no byte for LEADSTREAM_HTTP_BODY_TIMEOUT_SECONDS), or a body"
    " without its organization's key id did not arrive in LEADSTREAM_HTTP_UNVERIFIED_BODY_SECONDS",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    421: "Another worker holds the partition (owner names it)",
    422: "Invalid body",
    429: "The organization's requests in flight (too_many_requests) or rate (rate_limited)"
    " on this worker are used up",
    503: "Kafka did not confirm (unavailable), this worker serves as many requests as it takes"
    " (overloaded), or it is not ready",
}


def _errors(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {"description": _STATUS_TEXT[status], "content": _json(ErrorBody)}
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        answers[str(status)] = answer
    return answers


# What every route that needs a credential may answer besides its own errors: the
# credential (401, 403 from the headers, before the body) and the limits.
_GUARDED = (401, 403, 429, 503)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of every endpoint the worker serves."""
    _, schemas = models_json_schema(
        [(m, "validation" if m in _INPUTS else "serialization") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadstream worker",
            "version": __version__,
            "description": "Every error is {error: {code, message, field?}}. Below the routes: a"
            " request's headers must be complete within LEADSTREAM_HTTP_HEADER_TIMEOUT_SECONDS"
            " of the connection's start or its previous answer (else 408 header_timeout, or the"
            " idle connection closed), and a connection beyond LEADSTREAM_HTTP_MAX_CONNECTIONS"
            " closes the one that waited longest for a request, or is refused at once with 503"
            " too_many_connections when all are busy. A credential is checked from the headers"
            " before any byte of the body is read.",
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": _security_schemes(),
        },
        "paths": {
            **_ingest_paths(),
            **_lead_paths(),
            **_send_paths(),
            **_public_paths(),
            **_console_paths(),
        },
    }


def _security_schemes() -> dict[str, Any]:
    """An API key, the three headers of a v1 signature, and the webhooks' body-only one."""
    v1 = (
        "v1=<hex HMAC-SHA256, under the signing key's secret, of"
        " 'v1:{timestamp}:{METHOD}:{path}:{query}:{hex SHA-256 of the body}'>: the path as"
        " sent (percent-encoded), the raw query string (empty when none), the body as sent"
        " (a request without a body signs the SHA-256 of the empty string). The body's hex"
        " SHA-256 goes in X-Leadstream-Content-SHA256 too (left out: the empty body), so that"
        " the signature is checked before the body is read. It authorizes that request only:"
        " another method, path, query, body or organization is a 401."
    )
    return {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key."},
        "keyId": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Leadstream-Key-Id",
            "description": "The id of the signing key (leadstream keys create --kind signing).",
        },
        "timestamp": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Leadstream-Timestamp",
            "description": f"Unix seconds, within {TIMESTAMP_TOLERANCE_S} s of the worker's clock.",
        },
        "signature": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Leadstream-Signature",
            "description": v1,
        },
        "bodySignature": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Leadstream-Signature",
            "description": "Webhook POSTs only, unless the organization turned it off:"
            " sha256=<hex HMAC-SHA256 of the raw body, or of '{X-Leadstream-Timestamp}.{body}'"
            " when that header is sent> (X-Setter-Signature is the same header). Its"
            " organization is X-Leadstream-Key-Id's when sent, else the body's organizationId.",
        },
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
                "security": _WEBHOOK_SECURITY,
                "requestBody": {
                    "required": True,
                    "content": _json(WebhookLeadEvents, _EVENTS_EXAMPLE),
                },
                "responses": {
                    "200": {"description": "Accepted", "content": _json(WebhookAccepted)},
                    **_errors(400, *_GUARDED, 408, 413, 415, 422),
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
                "security": _WEBHOOK_SECURITY,
                "requestBody": {
                    "required": True,
                    "content": _json(AudienceFilterBody, _FILTER_EXAMPLE),
                },
                "responses": {
                    "200": {
                        "description": "Accepted or already received",
                        "content": _json(AudienceFilterAnswer),
                    },
                    **_errors(400, *_GUARDED, 408, 409, 413, 415, 422),
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
                    **_errors(400, *_GUARDED, 408, 413, 415, 422),
                },
            }
        },
    }


def _lead_parameters() -> list[dict[str, Any]]:
    """The path parameters of one lead: its organization and its phone (normalized)."""
    return [
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
    ]


def _lead_paths() -> dict[str, Any]:
    """The routes of one lead: read it, erase it."""
    return {
        "/api/v1/leads/{organizationId}/{phone}": {
            "get": {
                "summary": "One lead's stored events (read-only), for a key of its "
                "organization (a signature is of the empty body).",
                "security": _SECURITY,
                "parameters": _lead_parameters(),
                "responses": {
                    "200": {"description": "The lead", "content": _json(LeadView)},
                    **_errors(400, *_GUARDED, 421),
                },
            },
            "delete": {
                "summary": "Erase one lead: its events, audience memberships, entries in "
                "recorded sends and index, and its phone in audience filters of sends not yet "
                "materialized. Only a keyed hash is kept when it was opted out. Served by any "
                "worker (routed to the lead's partition through Kafka); for a key of its "
                "organization (a signature is of the empty body). Safe to retry.",
                "security": _SECURITY,
                "parameters": _lead_parameters(),
                "responses": {
                    "200": {
                        "description": "Erased (zeros when there was nothing to erase)",
                        "content": _json(LeadErased),
                    },
                    **_errors(400, *_GUARDED),
                },
            },
        },
    }


def _send_paths() -> dict[str, Any]:
    """The routes that read what a send would do, or did."""
    return {**_preview_path(), **_explain_path(), **_organization_sends_path()}


def _preview_path() -> dict[str, Any]:
    """A send previewed."""
    return {
        "/api/v1/sends/preview": {
            "post": {
                "summary": "What a send with these fields would be if materialized now (or at "
                "scheduledFor): its counts and a sample of its recipients. Nothing is written.",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "partitions",
                        "in": "query",
                        "required": False,
                        "description": "Used between workers: answer for these lead-state "
                        "partitions of this worker only (comma-separated), and ask no other "
                        "worker. Without it the worker asked sums every partition's share.",
                        "example": "0,1",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,4}(,[0-9]{1,4})*$"},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "required": False,
                        "description": "Used between workers: the URL of the worker asked, as"
                        " the group knows it. A request signed with the cluster's key"
                        " (X-Leadstream-Key-Id: cluster) is taken only with partitions and the"
                        " worker's own URL here.",
                        "example": "http://leadstream-1.leadstream-headless:6066",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": _json(PreviewBody, _PREVIEW_EXAMPLE),
                },
                "responses": {
                    "200": {"description": "The preview", "content": _json(SendPreview)},
                    **_errors(400, *_GUARDED, 408, 413, 415, 421),
                },
            }
        },
    }


def _explain_path() -> dict[str, Any]:
    """One lead in a materialized send."""
    return {
        "/api/v1/sends/{organizationId}/{sendId}/leads/{phone}": {
            "get": {
                "summary": "Whether a materialized send messaged the lead, at which step it "
                "left it (notInAudience, optedOut, audienceFilter, eventFilter, frequencyCap, "
                "quietHours, heldOut, recipient) and why, for a key of its organization (a "
                "signature is of the empty body). Sends are kept LEADSTREAM_SEND_RETENTION_DAYS.",
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
                        "name": "sendId",
                        "in": "path",
                        "required": True,
                        "example": "day2",
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
                    "200": {
                        "description": "The lead in the send",
                        "content": _json(SendLeadExplanation),
                    },
                    **_errors(400, *_GUARDED, 404, 421),
                },
            }
        },
    }


def _public_paths() -> dict[str, Any]:
    """The routes open to anyone: health, readiness, metrics, this document."""
    return {
        "/healthz": {
            "get": {
                "summary": "The process is up (answered whatever the load: no limit applies).",
                "security": [],
                "responses": {"200": {"description": "Up", "content": _json(Health)}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Broker reachable, recovery finished, indexes built, lead-events router"
                " running: as last found by a check every second, so that it answers at once"
                " whatever the load.",
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
                    },
                    **_errors(503),
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
                    },
                    **_errors(503),
                },
            }
        },
    }


def _organization_sends_path() -> dict[str, Any]:
    """An organization's recent sends (web/send_list.py)."""
    return {
        "/api/v1/organizations/{organizationId}/sends": {
            "get": {
                "summary": "The organization's recent sends, latest scheduledFor first, each "
                "with its summary's counts summed over the partitions that committed their "
                "share so far (complete: every partition, the summary's counts exactly), for a "
                "key of that organization (a signature is of the empty body). Answered by any "
                "worker alone, from the progress topic: listed as long as it keeps them.",
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
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": f"How many sends, at most (400 invalid_limit beyond"
                        f" {MAX_LIMIT}).",
                        "example": 10,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                    },
                ],
                "responses": {
                    "200": {"description": "The sends", "content": _json(OrganizationSendList)},
                    **_errors(400, *_GUARDED),
                },
            }
        },
    }


def _console_paths() -> dict[str, Any]:
    """The send console's page and its two files (web/console.py): no tenant data, open to
    anyone; the page signs in with an API key and reads the routes above."""
    return {
        path: {
            "get": {
                "summary": "The send console in the browser."
                if name == "index.html"
                else f"The send console's {name}.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "A static file of the package, with a"
                        " Content-Security-Policy",
                        "content": {media: {"schema": {"type": "string"}}},
                    },
                    **_errors(429, 503),
                },
            }
        }
        for path, (name, media) in CONSOLE_FILES.items()
    }
