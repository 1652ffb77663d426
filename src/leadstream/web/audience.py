"""``POST /api/v1/campaigns/{campaignId}/audience``: an audience upload of up to 1,000,000
members, read as a stream and never held whole: CSV ``phoneE164,externalId[,op]``, NDJSON,
or a JSON document (an array of members or ``{"members": [...]}``, parsed incrementally).

The body is spooled to a temporary file (memory up to 8 MiB, then disk) so that an HMAC
signature can be checked before any row is applied; a JSON document is then checked for
syntax and shape in one streaming pass (so a malformed document is a 400 with nothing
applied, not half an upload). Rows are read back one at a time, validated alone (a bad row
lands in ``rejects`` with its index) and sent by lead with acks=all before the answer.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

import ijson
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

__all__ = [
    "MAX_AUDIENCE_MEMBERS",
    "BodyError",
    "json_members_prefix",
    "register_audience_upload",
    "upload_rows",
]

logger = logging.getLogger(__name__)

MAX_AUDIENCE_MEMBERS = 1_000_000
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_MEDIA_TYPES = {"text/csv": "csv", "application/x-ndjson": "ndjson", "application/json": "json"}


def upload_rows(
    body: IO[bytes], kind: str, json_prefix: str
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(index, row, error)`` per member; the index counts members from 0.

    A JSON document must have been checked first: ``json_prefix`` is where its members
    are (see :func:`json_members_prefix`)."""
    if kind == "csv":
        text = io.TextIOWrapper(body, encoding="utf-8", errors="replace", newline="")
        reader = csv.DictReader(text)
        for index, record in enumerate(reader):
            yield index, {k: v for k, v in record.items() if k and v not in (None, "")}, None
        return
    if kind == "json":
        for index, row in enumerate(ijson.items(body, json_prefix)):
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


class BodyError(Exception):
    """The whole body is unusable: nothing of it is applied."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _reason(exc: Exception) -> str:
    # yajl's messages come as bytes, followed by a drawing of where; the first line says it.
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip().splitlines()[0] if str(text).strip() else repr(exc)


def json_members_prefix(body: IO[bytes]) -> str:
    """The ijson prefix of the members of a JSON upload, after one streaming pass that
    checks the whole document's syntax and shape (:class:`BodyError` if either is wrong)."""
    top: str | None = None
    members_array = False
    try:
        for prefix, event, _ in ijson.parse(body):
            if top is None:
                top = event
            elif prefix == "members" and event == "start_array":
                members_array = True
    except ijson.JSONError as exc:
        raise BodyError(
            400, "invalid_json", f"the body is not valid JSON: {_reason(exc)}"
        ) from None
    if top == "start_array":
        return "item"
    if top == "start_map" and members_array:
        return "members.item"
    raise BodyError(422, "invalid_body", 'expected a JSON array of members or {"members": [...]}')


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
                    self,
                    415,
                    "unsupported_media_type",
                    "send text/csv, application/x-ndjson or application/json",
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
                json_prefix = ""
                if kind == "json":
                    try:
                        json_prefix = json_members_prefix(body)
                    except BodyError as err:
                        return error_response(self, err.status, err.code, err.message)
                    body.seek(0)
                received = accepted = 0
                rejects: list[dict[str, Any]] = []
                pending: list[MemberOp] = []
                try:
                    for index, row, problem in upload_rows(body, kind, json_prefix):
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
