"""``POST /api/v1/campaigns/{campaignId}/audience``: an audience upload of up to 1,000,000
members, read as a stream (CSV ``phoneE164,externalId[,op]`` or NDJSON), never held whole;
a JSON document (an array of members or ``{"members": [...]}``) is decoded whole.

The body is spooled to a temporary file (memory up to 8 MiB, then disk) so that an HMAC
signature can be checked before any row is applied; rows are then read back line by line,
validated alone (a bad row lands in ``rejects`` with its index) and sent by lead with
acks=all before the answer.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

import msgspec
from faust.web import Request, Response

from leadstream.commands import MembersBatch
from leadstream.domain.audience import MemberOp, parse_member_row
from leadstream.domain.auth import AuthError, authenticate
from leadstream.domain.normalize import normalize_id
from leadstream.domain.partitioning import group_by_partition
from leadstream.domain.rejects import Reason, RowError
from leadstream.streams.topology import Topology
from leadstream.web.http import (
    AuthFile,
    MeteredView,
    auth_failed,
    error_response,
    media_type,
    unavailable,
)

__all__ = ["MAX_AUDIENCE_MEMBERS", "register_audience_upload"]

logger = logging.getLogger(__name__)

MAX_AUDIENCE_MEMBERS = 1_000_000
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_MEDIA_TYPES = {"text/csv": "csv", "application/x-ndjson": "ndjson", "application/json": "json"}


def _rows(body: IO[bytes], kind: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(index, row, error)`` per data line; the index counts data rows from 0."""
    if kind == "csv":
        text = io.TextIOWrapper(body, encoding="utf-8", errors="replace", newline="")
        reader = csv.DictReader(text)
        for index, record in enumerate(reader):
            yield index, {k: v for k, v in record.items() if k and v not in (None, "")}, None
        return
    if kind == "json":
        # A JSON document is decoded whole (from the spooled file); CSV and NDJSON stream.
        try:
            doc = msgspec.json.decode(body.read())
        except msgspec.DecodeError as exc:
            yield 0, None, f"not valid JSON: {exc}"
            return
        rows = doc.get("members") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            yield 0, None, 'expected a JSON array of members or {"members": [...]}'
            return
        for index, row in enumerate(rows):
            yield (
                (index, row, None) if isinstance(row, dict) else (index, None, "not a JSON object")
            )
        return
    index = 0
    for line in body:
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            yield index, None, f"not valid JSON: {exc}"
        else:
            yield (
                (index, row, None) if isinstance(row, dict) else (index, None, "not a JSON object")
            )
        index += 1


def register_audience_upload(topo: Topology, auth: AuthFile) -> None:
    app, settings = topo.app, topo.settings

    async def flush(pending: list[MemberOp]) -> None:
        for partition, members in group_by_partition(pending, settings.partitions).items():
            await topo.send_rows(partition, members, MembersBatch, wait=True)
        pending.clear()

    @app.page("/api/v1/campaigns/{campaign_id}/audience")
    class Audience(MeteredView):
        endpoint = "/api/v1/campaigns/{campaignId}/audience"
        metrics = topo.metrics

        async def handle(self, request: Request, **params: Any) -> Response:
            campaign_id = str(params["campaign_id"])
            kind = _MEDIA_TYPES.get(media_type(request))
            if kind is None:
                return error_response(
                    self, 415, "unsupported_media_type", "send text/csv or application/x-ndjson"
                )
            try:
                campaign = normalize_id(campaign_id, reason=Reason.INVALID_JSON, what="campaignId")
            except RowError as err:
                return error_response(self, 422, "invalid_campaign_id", err.detail)
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
                stream: Any = request.content  # type: ignore[attr-defined]
                async for chunk in stream.iter_chunked(1 << 16):
                    body.write(chunk)

                def chunks() -> Iterator[bytes]:
                    body.seek(0)
                    while chunk := body.read(1 << 16):
                        yield chunk

                try:
                    org = authenticate(auth.config(), request.headers, chunks, now_s=time.time())
                except AuthError as err:
                    return auth_failed(self, err)
                body.seek(0)
                received = accepted = 0
                rejects: list[dict[str, Any]] = []
                pending: list[MemberOp] = []
                try:
                    for index, row, problem in _rows(body, kind):
                        received += 1
                        if received > MAX_AUDIENCE_MEMBERS:
                            return error_response(
                                self,
                                413,
                                "too_many_members",
                                f"at most {MAX_AUDIENCE_MEMBERS} members per upload; "
                                f"the first {accepted} were applied, send the rest again",
                            )
                        try:
                            if row is None:
                                raise RowError(Reason.INVALID_JSON, problem or "unreadable row")
                            pending.append(
                                parse_member_row(row, org, campaign, settings.default_region)
                            )
                            accepted += 1
                        except RowError as err:
                            phone = row.get("phoneE164") if row else None
                            rejects.append(
                                {
                                    "index": index,
                                    "phoneE164": phone if isinstance(phone, str) else None,
                                    "reason": err.reason.value,
                                    "detail": err.detail,
                                }
                            )
                        if len(pending) >= 50_000:
                            await flush(pending)
                    await flush(pending)
                except (TimeoutError, OSError) as exc:
                    logger.warning("audience upload: Kafka did not confirm: %r", exc)
                    return unavailable(self, "Kafka did not confirm in time; retry the upload")
            return self.json(
                {
                    "status": "accepted",
                    "received": received,
                    "accepted": accepted,
                    "rejected": len(rejects),
                    "rejects": rejects,
                }
            )
