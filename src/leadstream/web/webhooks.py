"""``POST /api/v1/webhooks/lead-events`` and ``.../campaigns/audience-filter``: the HTTP way
in for systems that cannot produce to Kafka.

The lead-events answer is sent only after every accepted row is in Kafka (acks=all) and
applied to the lead table, so ``inserted`` and ``duplicates`` come from the dedupe itself:
a retry of the same body answers ``inserted: 0``. When Kafka does not answer in time the
request gets 503 with Retry-After, and a retry converges to the state one success would
leave. The audience filter is decided by the send's home partition.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, ClassVar, Literal

from faust.web import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from leadstream.domain.ingest import MAX_BATCH_EVENTS, IngestRules, ParsedMessage, parse_lead_events
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.rejects import RowError
from leadstream.domain.sends import FILTER_DEADLINE_MS, SendId, parse_audience_filter
from leadstream.logs import log_fields
from leadstream.web.http import (
    MAX_LISTED_REJECTS,
    OMITTED,
    REJECTED,
    REJECTS,
    BodyError,
    RowReject,
    ServedView,
    answer_reject,
    error_response,
    json_request,
    listed_rejects,
    now_ms,
    unavailable,
)
from leadstream.web.spec import WEBHOOK, Answer, Body, Link, Media, Operation, answer, validated
from leadstream.web.views import PHONE_EXAMPLE
from leadstream.wire.models import AudienceFilter as AudienceFilterValue
from leadstream.wire.models import Id

__all__ = [
    "AudienceFilter",
    "AudienceFilterAnswer",
    "AudienceFilterBody",
    "LeadEvents",
    "LeadEventsBody",
    "WebhookAccepted",
]


class LeadEventsBody(BaseModel):
    """The batch body; each row is checked on its own and a bad one lands in ``rejects``."""

    model_config = ConfigDict(extra="allow")
    organizationId: Id = Field(description="Must be the credential's organization.")
    eventType: str | None = Field(None, description="For rows that carry none.")
    events: list[Any] = Field(
        max_length=MAX_BATCH_EVENTS,
        description="Rows {phoneE164, occurredAt, metadata?, eventType?}, as a lead-events"
        " batch's (schemas/lead-events.json), at most"
        f" {MAX_BATCH_EVENTS} (413 batch_too_large beyond). Each row is checked on its own:"
        " a bad one is answered in rejects, the others are kept.",
    )


class WebhookAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted"]
    received: int
    inserted: int = Field(description="Rows new to the dedupe table.")
    duplicates: int = Field(description="Rows already there (a retry answers all duplicates).")
    rejected: int = Field(description=REJECTED)
    rejects: list[RowReject] = Field(max_length=MAX_LISTED_REJECTS, description=REJECTS)
    rejectsOmitted: int = Field(ge=0, description=OMITTED)


class AudienceFilterBody(AudienceFilterValue):
    """An audience-filters value whose organization is the credential's: an organizationId
    in the body must match it."""

    organizationId: Id | None = Field(  # type: ignore[assignment]
        None, description="If given, the credential's own."
    )


class AudienceFilterAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted", "already_received"]
    leadCount: int | None = None


_EVENTS_EXAMPLE = {
    "organizationId": 42,
    "eventType": "mastery_purchase",
    "events": [{"phoneE164": PHONE_EXAMPLE, "occurredAt": "2026-05-12T18:34:00Z"}],
}
_FILTER_EXAMPLE = {
    "organizationId": 42,
    "campaignId": "mastery",
    "sendId": "day2",
    "mode": "exclude",
    "leads": [{"phoneE164": PHONE_EXAMPLE}, {"externalId": "crm-123"}],
}

logger = logging.getLogger(__name__)

_FOREIGN = "this credential does not act for that organization"
# A row is about 100 bytes: the size a parse of N rows stands for (Offload.run).
_ROW_BYTES = 100

_EVENTS_BODY = Body({"application/json": Media(LeadEventsBody, _EVENTS_EXAMPLE)})
_FILTER_BODY = Body({"application/json": Media(AudienceFilterBody, _FILTER_EXAMPLE)})


class LeadEvents(ServedView):
    operations: ClassVar = {
        "post": Operation(
            "postLeadEvents",
            "Ingest one event or up to 50,000; answers after they are applied.",
            {
                200: Answer(
                    "Accepted",
                    WebhookAccepted,
                    links={
                        "ReadLead": Link(
                            "getLead",
                            {
                                "organizationId": "$request.body#/organizationId",
                                "phone": "$request.body#/events/0/phoneE164",
                            },
                            "The first row's lead, as stored.",
                        )
                    },
                )
            },
            security=WEBHOOK,
            body=_EVENTS_BODY,
            errors=(400, 413, 415, 422),
        )
    }

    async def post(self, request: Request, **params: Any) -> Response:
        context = self.context
        try:
            org, doc = await json_request(request, context)
            rows = _batch_rows(doc, org)
            body = validated(LeadEventsBody, doc, _EVENTS_BODY.invalid)
        except BodyError as err:
            return err.answer(self)
        rules = IngestRules(
            context.settings.default_region, context.settings.max_future_skew_seconds * 1000
        )
        batch = {"organizationId": org, "eventType": body.eventType, "events": body.events}
        parse = partial(parse_lead_events, batch, now_ms=now_ms(), rules=rules)
        parsed = await context.offload.run(len(rows) * _ROW_BYTES, parse)
        context.ingress.count_rejected(len(parsed.rejects))
        try:
            inserted, duplicates = await asyncio.wait_for(
                context.ingress.apply_events(parsed.events), context.settings.http_timeout_seconds
            )
        except (TimeoutError, OSError) as exc:
            logger.warning(
                "lead-events webhook: Kafka or apply timed out: %r",
                exc,
                extra=log_fields(organization=org),
            )
            return unavailable(self, "Kafka did not confirm in time; retry the same body")
        return answer(self, _accepted(parsed, inserted, duplicates))


def _batch_rows(doc: Any, org: str) -> list[Any]:
    """The rows of a lead-events body acting for ``org``, or :class:`BodyError`."""
    shape = "expected {organizationId, eventType, events: [...]}"
    if not isinstance(doc, dict):
        raise BodyError(422, "invalid_body", shape)
    try:
        claimed = normalize_organization_id(doc.get("organizationId"))
    except RowError as err:
        raise BodyError(422, err.reason.value, err.detail) from None
    if claimed != org:
        raise BodyError(403, "forbidden", _FOREIGN)
    rows = doc.get("events")
    if not isinstance(rows, list):
        raise BodyError(422, "invalid_body", shape)
    if len(rows) > MAX_BATCH_EVENTS:
        raise BodyError(413, "batch_too_large", f"a batch holds at most {MAX_BATCH_EVENTS} events")
    return rows


def _accepted(parsed: ParsedMessage, inserted: int, duplicates: int) -> WebhookAccepted:
    return WebhookAccepted(
        status="accepted",
        received=parsed.received,
        inserted=inserted,
        duplicates=duplicates,
        **listed_rejects(
            [
                answer_reject(r.index, r.phone, r.reason, r.detail)
                for r in parsed.rejects[:MAX_LISTED_REJECTS]
            ],
            len(parsed.rejects),
        ),
    )


class AudienceFilter(ServedView):
    """The organization comes from the credential; an ``organizationId`` in the body must
    be that one."""

    operations: ClassVar = {
        "post": Operation(
            "postAudienceFilter",
            "The audience filter of a send; the latest received replaces earlier ones, an"
            " identical repeat is a no-op.",
            {200: Answer("Accepted or already received", AudienceFilterAnswer)},
            security=WEBHOOK,
            body=_FILTER_BODY,
            errors=(400, 409, 413, 415, 422),
        )
    }

    async def post(self, request: Request, **params: Any) -> Response:
        context = self.context
        try:
            org, doc = await json_request(request, context)
            _check_organization(doc, org)
            leads = doc.get("leads")
            parse = partial(
                parse_audience_filter,
                {**doc, "organizationId": org},
                region=context.settings.default_region,
            )
            _, campaign, send, spec = await context.offload.run(
                len(leads) * _ROW_BYTES if isinstance(leads, list) else 0, parse
            )
        except BodyError as err:
            return err.answer(self)
        except RowError as err:
            return error_response(self, 422, err.reason.value, err.detail)
        try:
            validated(AudienceFilterBody, doc, _FILTER_BODY.invalid)
        except BodyError as err:
            return err.answer(self)
        try:
            status = await asyncio.wait_for(
                context.ingress.decide_audience_filter(SendId(org, send), campaign, spec),
                context.settings.http_timeout_seconds,
            )
        except (TimeoutError, OSError) as exc:
            logger.warning(
                "audience-filter webhook: Kafka or apply timed out: %r",
                exc,
                extra=log_fields(organization=org, send_id=send),
            )
            return unavailable(self, "Kafka did not confirm in time; retry the same body")
        if status == "late":
            minutes = FILTER_DEADLINE_MS // 60_000
            return error_response(
                self,
                409,
                "filter_deadline_passed",
                f"the filter deadline ({minutes} minutes before scheduledFor) has passed; "
                "this filter is ignored and counted",
            )
        if status == "already_received":
            return answer(self, AudienceFilterAnswer(status="already_received"))
        leads = len(spec.external_ids) + len(spec.phones)
        return answer(self, AudienceFilterAnswer(status="accepted", leadCount=leads))


def _check_organization(doc: Any, org: str) -> None:
    if not isinstance(doc, dict):
        raise BodyError(422, "invalid_body", "expected {campaignId, sendId, mode, leads}")
    if doc.get("organizationId") is not None:
        try:
            claimed = normalize_organization_id(doc["organizationId"])
        except RowError as err:
            raise BodyError(422, err.reason.value, err.detail) from None
        if claimed != org:
            raise BodyError(403, "forbidden", _FOREIGN)
