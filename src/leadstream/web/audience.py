"""``POST /api/v1/campaigns/{campaignId}/audience``: an audience upload of up to 1,000,000
members, read as a stream and never held whole: CSV ``phoneE164,externalId[,op]``, NDJSON,
or a JSON document (an array of members or ``{"members": [...]}``, parsed incrementally).

The body is spooled to a temporary file (memory up to 8 MiB, then disk; at most
``LEADSTREAM_MAX_BODY_BYTES``), hashed as it arrives, so that a v1 signature is checked
before any row is applied (an API key was checked before the first byte); a JSON
document is then checked for syntax, depth and shape in one streaming pass
(so a malformed document is a 400 with nothing applied, not half an upload). Rows are read
back one at a time, validated alone (a bad row lands in ``rejects`` with its index) and sent
by lead with acks=all before the answer; the answer lists the first 1,000 rejects and
counts the others. Checking and reading run on a thread, a slice of rows at a time, so
that a large upload never holds up the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any, ClassVar, Literal

import ijson
from faust.web import Request, Response
from pydantic import BaseModel, ConfigDict, Field, RootModel

from leadstream.domain.audience import MemberOp, parse_member_row
from leadstream.domain.decode import MAX_JSON_DEPTH, decode_json
from leadstream.domain.ingest import MAX_BATCH_EVENTS
from leadstream.domain.normalize import SAFE_ID_PATTERN, normalize_id
from leadstream.domain.rejects import Reason, RowError
from leadstream.lifecycle import environment_cause
from leadstream.logs import log_fields
from leadstream.web.http import (
    MAX_LISTED_REJECTS,
    OMITTED,
    REJECTED,
    REJECTS,
    BodyError,
    RowReject,
    ServedView,
    admission_of,
    answer_reject,
    error_response,
    listed_rejects,
    media_type,
    unavailable,
)
from leadstream.web.ingress import Ingress
from leadstream.web.spec import Answer, Body, Media, Operation, Param, answer
from leadstream.web.views import PHONE_EXAMPLE

__all__ = [
    "MAX_AUDIENCE_MEMBERS",
    "AudienceAccepted",
    "AudienceUpload",
    "BodyError",
    "MembersDocument",
    "UploadJson",
    "json_members_prefix",
    "member_outcomes",
    "upload_rows",
]

logger = logging.getLogger(__name__)

MAX_AUDIENCE_MEMBERS = 1_000_000
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
_MEDIA_TYPES = {"text/csv": "csv", "application/x-ndjson": "ndjson", "application/json": "json"}
# Rows read and validated per hop to the reading thread.
_ROWS_PER_STEP = 10_000

# One member's outcome: the operation to send, or its reject as the answer lists it.
Outcome = MemberOp | RowReject

_ROWS = (
    "Members {phoneE164, externalId?, op?} (schemas/audience-members.json's"
    " AudienceMemberRow), each checked on its own: a bad one is answered in rejects."
)


class MembersDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    members: list[Any] = Field(description=_ROWS)


class UploadJson(RootModel[list[Any] | MembersDocument]):
    """A JSON upload: an array of members, or {members: [...]}. Its shape is checked as it
    streams, by :func:`json_members_prefix` (tests hold the two together)."""


class AudienceAccepted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["accepted"]
    received: int
    accepted: int
    rejected: int = Field(description=REJECTED)
    rejects: list[RowReject] = Field(max_length=MAX_LISTED_REJECTS, description=REJECTS)
    rejectsOmitted: int = Field(ge=0, description=OMITTED)


def upload_rows(
    body: IO[bytes], kind: str, json_prefix: str
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(index, row, error)`` per member; the index counts members from 0.

    A JSON document must have been checked first: ``json_prefix`` is where its members
    are (see :func:`json_members_prefix`)."""
    if kind == "csv":
        yield from _csv_rows(body)
        return
    if kind == "json":
        # Numbers as yajl reads them (64-bit integers, doubles): the check pass refused
        # larger ones, and ijson's exact reading of a >4,300-digit integer crashes Python.
        for index, row in enumerate(ijson.items(body, json_prefix, use_float=True)):
            yield (
                (index, row, None) if isinstance(row, dict) else (index, None, "not a JSON object")
            )
        return
    index = 0
    for line in body:
        if not line.strip():
            continue
        try:
            row = decode_json(line)
        except RowError as err:
            yield index, None, err.detail
        else:
            yield (
                (index, row, None) if isinstance(row, dict) else (index, None, "not a JSON object")
            )
        index += 1


def _csv_rows(body: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    # csv.reader and the header by hand: csv.DictReader built a dict a row that was then
    # filtered into another (a tenth of a 1,000,000-member upload's time). The same rows:
    # blank lines skipped, fields past the header and empty ones left out.
    text = io.TextIOWrapper(body, encoding="utf-8", errors="replace", newline="")
    reader = csv.reader(text)
    header: list[str] | None = None
    index = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
            # (an unreadable header line too: the next line is then read as the header)
            yield index, None, f"unreadable CSV line: {exc}"
        else:
            if not record:
                continue
            if header is None:
                header = record
                continue
            # Rows longer or shorter than the header: the fields both have.
            yield index, {k: v for k, v in zip(header, record, strict=False) if k and v}, None
        index += 1


def member_outcomes(
    rows: Iterator[tuple[int, dict[str, Any] | None, str | None]],
    org: str,
    campaign: str,
    region: str,
) -> Iterator[Outcome]:
    """Each row validated alone: its operation, or its reject ``{index, phoneE164, reason,
    detail}``."""
    for index, row, problem in rows:
        try:
            if row is None:
                raise RowError(Reason.INVALID_JSON, problem or "unreadable row")
            yield parse_member_row(row, org, campaign, region)
        except RowError as err:
            phone = row.get("phoneE164") if row else None
            yield answer_reject(
                index, phone if isinstance(phone, str) else None, err.reason, err.detail
            )


def _reason(exc: Exception) -> str:
    # yajl's messages come as bytes, followed by a drawing of where; the first line says it.
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).strip().splitlines()[0] if str(text).strip() else repr(exc)


def json_members_prefix(body: IO[bytes]) -> str:
    """The ijson prefix of the members of a JSON upload, after one streaming pass that
    checks the whole document's syntax, depth (:data:`MAX_JSON_DEPTH`) and shape
    (:class:`BodyError` if any is wrong). Numbers must fit a 64-bit integer or a double.

    Events without prefixes (``basic_parse``): a prefix is as long as the nesting is deep,
    and one per event made a deeply nested body cost memory quadratic in its depth."""
    depth = 0
    top: str | None = None
    key: str | None = None
    members_array = False
    try:
        for event, value in ijson.basic_parse(body, use_float=True):
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise BodyError(
                        400, "invalid_json", f"the body nests deeper than {MAX_JSON_DEPTH} levels"
                    )
                if top is None:
                    top = event
                elif depth == 2 and key == "members" and event == "start_array":
                    members_array = True
            elif event in ("end_map", "end_array"):
                depth -= 1
            elif event == "map_key" and depth == 1:
                key = value
    except ijson.JSONError as exc:
        raise BodyError(
            400, "invalid_json", f"the body is not valid JSON: {_reason(exc)}"
        ) from None
    if top == "start_array":
        return "item"
    if top == "start_map" and members_array:
        return "members.item"
    raise BodyError(422, "invalid_body", 'expected a JSON array of members or {"members": [...]}')


class AudienceUpload(ServedView):
    operations: ClassVar = {
        "post": Operation(
            "postAudience",
            "Upload up to 1,000,000 members (CSV phoneE164,externalId[,op], NDJSON, or a JSON"
            " array or {members: [...]}), read as a stream; answers after Kafka has every row.",
            {200: Answer("Accepted", AudienceAccepted)},
            params=(
                Param("campaignId", "path", "mastery", pattern=f"^{SAFE_ID_PATTERN}$"),
                Param(
                    "organizationId",
                    "query",
                    "42",
                    "If given, must be the credential's organization.",
                ),
            ),
            body=Body(
                {
                    "text/csv": Media(None, f"phoneE164,externalId\n{PHONE_EXAMPLE},crm-123\n"),
                    "application/x-ndjson": Media(None),
                    "application/json": Media(
                        UploadJson, {"members": [{"phoneE164": PHONE_EXAMPLE}]}
                    ),
                }
            ),
            errors=(400, 413, 415, 422),
        )
    }

    async def post(self, request: Request, **params: Any) -> Response:
        context = self.context
        kind = _MEDIA_TYPES.get(media_type(request))
        if kind is None:
            return error_response(
                self,
                415,
                "unsupported_media_type",
                "send text/csv, application/x-ndjson or application/json",
            )
        admission = admission_of(request)
        org: str | None = None
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as body:
            try:
                await admission.stream_body(
                    request,  # type: ignore[arg-type]
                    context.settings.max_body_bytes,
                    body.write,
                )
                org = admission.acting_org(None)
                campaign = _campaign(params["campaignId"])
                json_prefix = await asyncio.to_thread(_check_json, body) if kind == "json" else ""
                body.seek(0)
                rows = upload_rows(body, kind, json_prefix)
                outcomes = member_outcomes(rows, org, campaign, context.settings.default_region)
                tally = await _send(context.ingress, outcomes)
            except BodyError as err:
                return err.answer(self)
            except (TimeoutError, OSError) as exc:
                if environment_cause(exc, network=False) is not None:
                    raise  # the disk refused the spool, not Kafka: the worker stops (http.py)
                logger.warning(
                    "audience upload: Kafka did not confirm: %r",
                    exc,
                    extra=log_fields(organization=org),
                )
                return unavailable(self, "Kafka did not confirm in time; retry the upload")
        return answer(self, tally.answer())


@dataclass(slots=True)
class _Tally:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    # The first MAX_LISTED_REJECTS only: a million bad rows are counted, not kept.
    rejects: list[RowReject] = field(default_factory=list)

    def reject(self, outcome: RowReject) -> None:
        self.rejected += 1
        if len(self.rejects) < MAX_LISTED_REJECTS:
            self.rejects.append(outcome)

    def answer(self) -> AudienceAccepted:
        return AudienceAccepted(
            status="accepted",
            received=self.received,
            accepted=self.accepted,
            **listed_rejects(self.rejects, self.rejected),
        )


async def _send(ingress: Ingress, outcomes: Iterator[Outcome]) -> _Tally:
    """Read the members a step at a time on a thread and send the valid ones on, at most
    50,000 at once; :class:`BodyError` 413 past :data:`MAX_AUDIENCE_MEMBERS` (what was
    read before it is sent, and the answer says how many that was)."""
    tally = _Tally()
    pending: list[MemberOp] = []
    while step := await asyncio.to_thread(_next_rows, outcomes):
        for outcome in step:
            tally.received += 1
            if tally.received > MAX_AUDIENCE_MEMBERS:
                await ingress.send_members(pending)
                raise BodyError(
                    413,
                    "too_many_members",
                    f"at most {MAX_AUDIENCE_MEMBERS} members per upload; "
                    f"the first {tally.accepted} were applied, send the rest again",
                )
            if isinstance(outcome, MemberOp):
                pending.append(outcome)
                tally.accepted += 1
            else:
                tally.reject(outcome)
        if len(pending) >= MAX_BATCH_EVENTS:
            await ingress.send_members(pending)
            pending = []
    await ingress.send_members(pending)
    return tally


def _next_rows(outcomes: Iterator[Outcome]) -> list[Outcome]:
    return list(islice(outcomes, _ROWS_PER_STEP))


def _campaign(raw_campaign: str) -> str:
    """The campaign of the path (the organization a query names was checked with the
    credential: web/http.py)."""
    try:
        return normalize_id(raw_campaign, reason=Reason.INVALID_JSON, what="campaignId")
    except RowError as err:
        code = "invalid_campaign_id" if err.reason is Reason.INVALID_JSON else err.reason.value
        raise BodyError(422, code, err.detail) from None


def _check_json(body: IO[bytes]) -> str:
    body.seek(0)
    return json_members_prefix(body)
