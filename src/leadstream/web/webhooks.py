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
from typing import Any

from faust.web import Request, Response

from leadstream.domain.ingest import MAX_BATCH_EVENTS, IngestRules, ParsedMessage, parse_lead_events
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.rejects import RowError
from leadstream.domain.sends import FILTER_DEADLINE_MS, SendId, parse_audience_filter
from leadstream.logs import log_fields
from leadstream.web.http import (
    MAX_LISTED_REJECTS,
    BodyError,
    ServedView,
    answer_reject,
    error_response,
    json_request,
    listed_rejects,
    now_ms,
    unavailable,
)

__all__ = ["AudienceFilter", "LeadEvents"]

logger = logging.getLogger(__name__)

_FOREIGN = "this credential does not act for that organization"
# A row is about 100 bytes: the size a parse of N rows stands for (Offload.run).
_ROW_BYTES = 100


class LeadEvents(ServedView):
    async def post(self, request: Request, **params: Any) -> Response:
        context = self.context
        try:
            org, doc = await json_request(request, context)
            rows = _batch_rows(doc, org)
        except BodyError as err:
            return err.answer(self)
        rules = IngestRules(
            context.settings.default_region, context.settings.max_future_skew_seconds * 1000
        )
        parse = partial(parse_lead_events, doc, now_ms=now_ms(), rules=rules)
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
        return self.json(_accepted(parsed, inserted, duplicates))


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


def _accepted(parsed: ParsedMessage, inserted: int, duplicates: int) -> dict[str, Any]:
    return {
        "status": "accepted",
        "received": parsed.received,
        "inserted": inserted,
        "duplicates": duplicates,
        **listed_rejects(
            [
                answer_reject(r.index, r.phone, r.reason, r.detail)
                for r in parsed.rejects[:MAX_LISTED_REJECTS]
            ],
            len(parsed.rejects),
        ),
    }


class AudienceFilter(ServedView):
    """The organization comes from the credential; an ``organizationId`` in the body must
    be that one."""

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
            return self.json({"status": "already_received"})
        return self.json(
            {"status": "accepted", "leadCount": len(spec.external_ids) + len(spec.phones)}
        )


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
