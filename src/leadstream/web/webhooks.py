"""``POST /api/v1/webhooks/lead-events``: the HTTP way in for systems that cannot produce.

The answer is sent only after every accepted row is in Kafka (acks=all) and applied to
the lead table, so ``inserted`` and ``duplicates`` come from the dedupe itself: a retry of
the same body answers ``inserted: 0``. When Kafka does not answer in time the request
gets 503 with Retry-After, and a retry converges to the state one success would leave.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from faust.web import Request, Response

from leadstream.commands import ApplyReply, EventsBatch, FilterReply, FilterRequest, row_slices
from leadstream.domain.auth import AuthError, authenticate
from leadstream.domain.ingest import (
    MAX_BATCH_EVENTS,
    IngestRules,
    decode_json,
    parse_lead_events,
)
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.partitioning import group_by_partition, send_partition
from leadstream.domain.rejects import RowError
from leadstream.domain.sends import parse_audience_filter
from leadstream.streams.replies import ReplyWaiter
from leadstream.streams.topology import Topology, now_ms
from leadstream.web.http import (
    AuthFile,
    MeteredView,
    auth_failed,
    error_response,
    media_type,
    unavailable,
)

__all__ = ["register_audience_filter", "register_webhooks"]

logger = logging.getLogger(__name__)


def register_webhooks(topo: Topology, replies: ReplyWaiter, auth: AuthFile) -> None:
    """Attach the webhook views to the app."""
    app, settings = topo.app, topo.settings
    rules = IngestRules(settings.default_region, settings.max_future_skew_seconds * 1000)

    metrics = topo.metrics

    @app.page("/api/v1/webhooks/lead-events")
    class LeadEvents(MeteredView):
        endpoint = "/api/v1/webhooks/lead-events"
        metrics = topo.metrics

        async def handle(self, request: Request, **params: Any) -> Response:
            if media_type(request) != "application/json":
                return error_response(self, 415, "unsupported_media_type", "send application/json")
            length = request.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
                return error_response(
                    self, 413, "body_too_large", f"at most {settings.max_body_bytes} bytes"
                )
            try:
                body = await request.read()
            except Exception as exc:  # noqa: BLE001 - aiohttp's own 413 when over client_max_size
                if getattr(exc, "status", None) == 413:
                    return error_response(
                        self, 413, "body_too_large", f"at most {settings.max_body_bytes} bytes"
                    )
                raise
            try:
                org = authenticate(auth.config(), request.headers, body, now_s=time.time())
            except AuthError as err:
                return auth_failed(self, err)
            try:
                doc = decode_json(body)
            except RowError as err:
                return error_response(self, 400, "invalid_json", err.detail)
            if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
                return error_response(
                    self, 422, "invalid_body", "expected {organizationId, eventType, events: [...]}"
                )
            if len(doc["events"]) > MAX_BATCH_EVENTS:
                return error_response(
                    self, 413, "batch_too_large", f"a batch holds at most {MAX_BATCH_EVENTS} events"
                )
            try:
                claimed = normalize_organization_id(doc.get("organizationId"))
            except RowError as err:
                return error_response(self, 422, err.reason.value, err.detail)
            if claimed != org:
                return error_response(
                    self, 403, "forbidden", "this credential does not act for that organization"
                )
            parsed = parse_lead_events(doc, now_ms=now_ms(), rules=rules)
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


def register_audience_filter(topo: Topology, replies: ReplyWaiter, auth: AuthFile) -> None:
    """``POST /api/v1/webhooks/campaigns/audience-filter``: the organization comes from the
    credential; the send's home partition decides accepted / already_received / late."""
    app, settings = topo.app, topo.settings

    @app.page("/api/v1/webhooks/campaigns/audience-filter")
    class AudienceFilterView(MeteredView):
        endpoint = "/api/v1/webhooks/campaigns/audience-filter"
        metrics = topo.metrics

        async def handle(self, request: Request, **params: Any) -> Response:
            if media_type(request) != "application/json":
                return error_response(self, 415, "unsupported_media_type", "send application/json")
            body = await request.read()
            try:
                org = authenticate(auth.config(), request.headers, body, now_s=time.time())
            except AuthError as err:
                return auth_failed(self, err)
            try:
                doc = decode_json(body)
            except RowError as err:
                return error_response(self, 400, "invalid_json", err.detail)
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
                _, campaign, send, spec = parse_audience_filter(
                    {**doc, "organizationId": org}, region=settings.default_region
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
                    "the filter deadline (5 minutes before scheduledFor) has passed; "
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
