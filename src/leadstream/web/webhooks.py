"""``POST /api/v1/webhooks/lead-events``: the HTTP way in for systems that cannot produce.

The answer is sent only after every accepted row is in Kafka (acks=all) and applied to
the lead table, so ``inserted`` and ``duplicates`` come from the dedupe itself: a retry of
the same body answers ``inserted: 0``. When Kafka does not answer in time the request
gets 503 with Retry-After, and a retry converges to the state one success would leave.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from functools import partial
from typing import Any

from faust.web import Request, Response, View

from leadstream.commands import ApplyReply, EventsBatch, FilterReply, FilterRequest, row_slices
from leadstream.domain.decode import MAX_JSON_BYTES
from leadstream.domain.ingest import MAX_BATCH_EVENTS, IngestRules, parse_lead_events
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.partitioning import group_by_partition, send_partition
from leadstream.domain.rejects import RowError
from leadstream.domain.sends import FILTER_DEADLINE_MS, parse_audience_filter
from leadstream.streams.replies import ReplyWaiter
from leadstream.streams.topology import Topology, now_ms
from leadstream.web.http import (
    AuthFile,
    BodyError,
    Offload,
    error_response,
    json_request,
    unavailable,
)

__all__ = ["register_audience_filter", "register_webhooks"]

logger = logging.getLogger(__name__)


def register_webhooks(
    topo: Topology, replies: ReplyWaiter, auth: AuthFile, offload: Offload
) -> None:
    """Attach the webhook views to the app."""
    app, settings = topo.app, topo.settings
    rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)
    limit = min(settings.max_body_bytes, MAX_JSON_BYTES)
    metrics = topo.metrics

    @app.page("/api/v1/webhooks/lead-events")
    class LeadEvents(View):
        async def post(self, request: Request, **params: Any) -> Response:
            try:
                org, doc = await json_request(request, auth=auth, offload=offload, limit=limit)
            except BodyError as err:
                return error_response(self, err.status, err.code, err.message)
            shape = "expected {organizationId, eventType, events: [...]}"
            if not isinstance(doc, dict):
                return error_response(self, 422, "invalid_body", shape)
            try:
                claimed = normalize_organization_id(doc.get("organizationId"))
            except RowError as err:
                return error_response(self, 422, err.reason.value, err.detail)
            if claimed != org:
                return error_response(
                    self, 403, "forbidden", "this credential does not act for that organization"
                )
            if not isinstance(doc.get("events"), list):
                return error_response(self, 422, "invalid_body", shape)
            if len(doc["events"]) > MAX_BATCH_EVENTS:
                return error_response(
                    self, 413, "batch_too_large", f"a batch holds at most {MAX_BATCH_EVENTS} events"
                )
            parse = partial(parse_lead_events, doc, now_ms=now_ms(), rules=rules)
            # A row is ~100 bytes: as many rows as a large body would have bytes.
            parsed = await offload.run(len(doc["events"]) * 100, parse)
            metrics.rows.labels("rejected").inc(len(parsed.rejects))
            try:
                inserted, duplicates = await asyncio.wait_for(
                    _apply(topo, replies, parsed.events), settings.http_timeout_seconds
                )
            except (TimeoutError, OSError) as exc:
                logger.warning("lead-events webhook: Kafka or apply timed out: %r", exc)
                return unavailable(self, "Kafka did not confirm in time; retry the same body")
            return self.json(
                {
                    "status": "accepted",
                    "received": parsed.received,
                    "inserted": inserted,
                    "duplicates": duplicates,
                    "rejected": len(parsed.rejects),
                    "rejects": [
                        {
                            "index": r.index,
                            "phoneE164": r.phone,
                            "reason": r.reason.value,
                            "detail": r.detail,
                        }
                        for r in parsed.rejects
                    ],
                }
            )


def register_audience_filter(
    topo: Topology, replies: ReplyWaiter, auth: AuthFile, offload: Offload
) -> None:
    """``POST /api/v1/webhooks/campaigns/audience-filter``: the organization comes from the
    credential; the send's home partition decides accepted / already_received / late."""
    app, settings = topo.app, topo.settings
    limit = min(settings.max_body_bytes, MAX_JSON_BYTES)

    @app.page("/api/v1/webhooks/campaigns/audience-filter")
    class AudienceFilterView(View):
        async def post(self, request: Request, **params: Any) -> Response:
            try:
                org, doc = await json_request(request, auth=auth, offload=offload, limit=limit)
            except BodyError as err:
                return error_response(self, err.status, err.code, err.message)
            if not isinstance(doc, dict):
                return error_response(
                    self, 422, "invalid_body", "expected {campaignId, sendId, mode, leads}"
                )
            if doc.get("organizationId") is not None:
                try:
                    claimed = normalize_organization_id(doc["organizationId"])
                except RowError as err:
                    return error_response(self, 422, err.reason.value, err.detail)
                if claimed != org:
                    return error_response(
                        self, 403, "forbidden", "this credential does not act for that organization"
                    )
            try:
                parse = partial(
                    parse_audience_filter,
                    {**doc, "organizationId": org},
                    region=settings.default_region,
                )
                leads = doc.get("leads")
                _, campaign, send, spec = await offload.run(
                    len(leads) * 100 if isinstance(leads, list) else 0, parse
                )
            except RowError as err:
                return error_response(self, 422, err.reason.value, err.detail)
            request_id = uuid.uuid4().hex
            queue = replies.expect(request_id)
            try:
                command = FilterRequest(
                    org,
                    campaign,
                    send,
                    spec.mode,
                    sorted(spec.external_ids),
                    sorted(spec.phones),
                    request_id,
                )
                home = send_partition(org, send, settings.partitions)

                async def decide() -> FilterReply:
                    await topo.send_command(home, command, wait=True)
                    while True:
                        reply = await queue.get()
                        if isinstance(reply, FilterReply):
                            return reply

                reply = await asyncio.wait_for(decide(), settings.http_timeout_seconds)
            except (TimeoutError, OSError) as exc:
                logger.warning("audience-filter webhook: Kafka or apply timed out: %r", exc)
                return unavailable(self, "Kafka did not confirm in time; retry the same body")
            finally:
                replies.forget(request_id)
            if reply.status == "late":
                return error_response(
                    self,
                    409,
                    "filter_deadline_passed",
                    f"the filter deadline ({FILTER_DEADLINE_MS // 60_000} minutes before "
                    "scheduledFor) has passed; "
                    "this filter is ignored and counted",
                )
            if reply.status == "already_received":
                return self.json({"status": "already_received"})
            return self.json({"status": "accepted", "leadCount": reply.lead_count})


async def _apply(topo: Topology, replies: ReplyWaiter, events: list[Any]) -> tuple[int, int]:
    """Send the rows by lead with acks=all, then sum the apply agent's counts."""
    request = uuid.uuid4().hex
    queue = replies.expect(request)
    try:
        expected = 0
        for partition, rows in group_by_partition(events, topo.settings.partitions).items():
            for part in row_slices(rows):
                await topo.send_command(partition, EventsBatch(part, reply_to=request), wait=True)
                expected += 1
        inserted = duplicates = 0
        for _ in range(expected):
            reply = await queue.get()
            if isinstance(reply, ApplyReply):
                inserted += reply.inserted
                duplicates += reply.duplicates
        return inserted, duplicates
    finally:
        replies.forget(request)
