"""``POST /api/v1/sends/preview`` and ``GET /api/v1/sends/{organizationId}/{sendId}/leads/{phone}``:
what a send would do if it were materialized now, and what a materialized send did to one
lead, and why.

A preview is evaluated on the partitions' indexes and writes nothing. A worker holds only
some partitions, so the worker asked evaluates its own and asks each other partition's
owner for its share: the same raw body, ``?partitions=`` and ``to=`` (the owner's URL),
signed v1 with the cluster's own secret (``LEADSTREAM_CLUSTER_SECRET``), never with the
tenant's credential. A share is asked only of the URL the group's assignment gives for a
current member, and a redirect is not followed. The owner accepts the cluster's key for
that request only, addressed to itself. The worker answers the sum only once every share
is in: a preview that silently lost a partition would show too few recipients, so a
missing share is a 503, never a partial answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

import aiohttp
import yarl
from faust.web import Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from leadstream import tracing
from leadstream.domain.auth import CLUSTER_KEY_ID, RequestLine, signed_headers
from leadstream.domain.buckets import BUCKETS
from leadstream.domain.decode import MAX_JSON_BYTES, decode_json
from leadstream.domain.explain import StepName
from leadstream.domain.normalize import (
    format_ms,
    normalize_id,
    normalize_organization_id,
    normalize_phone,
)
from leadstream.domain.rejects import Reason, RowError
from leadstream.domain.sends import (
    MAX_CONDITIONS,
    TRIGGER_FIELDS,
    AudienceFilterSpec,
    Counts,
    SendTrigger,
    known_fields,
    parse_audience_filter,
    parse_trigger,
)
from leadstream.logs import log_fields
from leadstream.web.http import (
    RETRY_AFTER_SECONDS,
    BodyError,
    Context,
    ServedView,
    admission_of,
    error_response,
    media_type,
    now_ms,
)
from leadstream.web.ingress import Explained, NotServedHere, PreviewShare
from leadstream.web.spec import (
    Answer,
    Body,
    ErrorBody,
    Invalid,
    Link,
    Media,
    Operation,
    Param,
    answer,
    validated,
)
from leadstream.web.views import PHONE_EXAMPLE, not_here
from leadstream.wire import models as wire
from leadstream.wire.models import E164, Id, Rfc3339Timestamp, SplitName, UtcMillisTimestamp

__all__ = [
    "MAX_INLINE_FILTER_LEADS",
    "MAX_SAMPLE",
    "InlineAudienceFilter",
    "PreviewAnswer",
    "PreviewBody",
    "SendLead",
    "SendLeadExplanation",
    "SendPreview",
    "not_here",
    "share_request",
]

logger = logging.getLogger(__name__)

# A preview body: a trigger's fields (sendId and scheduledFor optional), an inline
# audience filter in place of the trigger's switch, and the sample size.
_PREVIEW_FIELDS = TRIGGER_FIELDS | {"sample"}
_INLINE_FILTER_FIELDS = frozenset({"mode", "leads"})
# The sendId a preview's trigger carries when its body names none (nothing is stored).
_PREVIEW_SEND_ID = "preview"
MAX_SAMPLE = 100
# Leads of an inline audience filter, at most (a send's own filter arrives on its topic).
MAX_INLINE_FILTER_LEADS = 50_000
_SHAPE = "expected {organizationId, campaignId, scheduledFor?, eventFilter(s)?, audienceFilter?}"
# An audience filter's lead is about 100 bytes: the size a parse of N leads stands for.
_ROW_BYTES = 100
_PREVIEW_PATH = "/api/v1/sends/preview"
# LEADSTREAM_PARTITIONS is at most 1,024: four digits each (a longer number is not parsed).
_PARTITIONS_PARAM = re.compile(r"[0-9]{1,4}(?:,[0-9]{1,4})*")
# A share's answer holds at most MAX_SAMPLE recipients: a few tens of KB.
_MAX_SHARE_BYTES = 1 << 20


class InlineAudienceFilter(BaseModel):
    """The audience filter to preview with, inline (not a trigger's {enabled} switch)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["include", "exclude"]
    leads: list[wire.AudienceFilterLead] = Field(
        max_length=MAX_INLINE_FILTER_LEADS,
        description=f"Each {{externalId}} or {{phoneE164}}; at most {MAX_INLINE_FILTER_LEADS}"
        " (413 too_many_leads beyond).",
    )


class PreviewBody(wire.SendTrigger):
    """A send trigger's fields, sendId and scheduledFor optional, the audience filter
    inline, and how many recipients to list; nothing is stored or emitted."""

    # Absent or null: no audience filter step.
    _NOT_NULL: ClassVar[tuple[str, ...]] = (  # type: ignore[assignment]
        "eventFilter",
        "eventFilters",
        "frequencyCap",
        "quietHours",
        "conditions",
        "holdout",
        "splits",
    )

    organizationId: Id = Field(description="Must be the credential's organization.")
    sendId: Id | SkipJsonSchema[None] = Field(  # type: ignore[assignment]
        None, description="Optional: checked as a trigger's, and stored nowhere."
    )
    scheduledFor: Rfc3339Timestamp | SkipJsonSchema[None] = Field(  # type: ignore[assignment]
        None, description="When the send would fire (its filters' windows end there); default: now."
    )
    eventFilters: (
        Annotated[list[wire.EventFilter], Field(max_length=MAX_CONDITIONS)] | SkipJsonSchema[None]
    ) = Field(
        None,
        description=f"Event filters, all ANDed, at most {MAX_CONDITIONS} (413"
        " too_many_conditions beyond). Never together with eventFilter.",
    )
    audienceFilter: InlineAudienceFilter | None = Field(  # type: ignore[assignment]
        None, description="Absent or null: no audience filter step."
    )
    sample: int | None = Field(
        0, ge=0, le=MAX_SAMPLE, description="How many recipients to list (null: 0)."
    )


class PreviewAnswer(BaseModel):
    """What the send would be now: the counts a materialization on the same state gives.
    Also how a worker reads another worker's share."""

    model_config = ConfigDict(extra="forbid")
    organizationId: str
    campaignId: str
    scheduledFor: UtcMillisTimestamp
    recipientCount: int
    counts: wire.SendCounts = Field(description="lateAudienceFilters is always 0 in a preview.")
    sample: list[wire.Recipient] = Field(description="Up to `sample` of the recipients.")
    variants: dict[SplitName, Annotated[int, Field(ge=0)]] | SkipJsonSchema[None] = Field(
        None, description="Recipients per split name, as in a summary; only with splits."
    )


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
    step: StepName
    detail: ExplainDetail


class SendLeadExplanation(BaseModel):
    """What a materialized send did to one lead, and the facts that decided it."""

    model_config = ConfigDict(extra="forbid")
    organizationId: str
    sendId: str
    campaignId: str
    phoneE164: E164
    sent: bool
    step: StepName = Field(description="Where the lead left the send (recipient: it did not).")
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
# A preview's refusals are 400s (its fields are checked as a trigger's).
_PREVIEW_BODY = Body(
    {"application/json": Media(PreviewBody, _PREVIEW_EXAMPLE)}, Invalid(400, "invalid_body")
)


@dataclass(frozen=True, slots=True)
class PreviewAsked:
    """A preview request, checked: what to evaluate, and the body to ask other workers
    with."""

    body: bytes
    org: str
    trigger: SendTrigger  # its audience filter step enabled when one is inline
    audience_filter: AudienceFilterSpec | None
    sample: int


class _NotReady(Exception):
    """A share of the preview cannot be had now: answered 503, with Retry-After."""


class _NoClusterSecret(Exception):
    """Other workers hold partitions and this one has no secret to ask them with."""


class _BadShare(Exception):
    """An owner's answer that is not a share (its status, or no bounded length)."""


class SendPreview(ServedView):
    """``POST /api/v1/sends/preview``; ``?partitions=`` (between workers) answers for those
    partitions of this worker only and never asks another."""

    operations: ClassVar = {
        "post": Operation(
            "postPreview",
            "What a send with these fields would be if materialized now (or at scheduledFor):"
            " its counts and a sample of its recipients. Nothing is written.",
            {
                200: Answer(
                    "The preview",
                    PreviewAnswer,
                    links={
                        "ExplainSampled": Link(
                            "getSendLead",
                            {
                                "organizationId": "$response.body#/organizationId",
                                "sendId": "$request.body#/sendId",
                                "phone": "$response.body#/sample/0/phoneE164",
                            },
                            "A sampled recipient in the send of that id, once materialized"
                            " (404 unknown_send before).",
                        )
                    },
                ),
                421: Answer("Another worker holds the partition (owner names it)", ErrorBody),
            },
            params=(
                Param(
                    "partitions",
                    "query",
                    "0,1",
                    "Used between workers: answer for these lead-state partitions of this"
                    " worker only (comma-separated), and ask no other worker. Without it the"
                    " worker asked sums every partition's share.",
                    pattern="^[0-9]{1,4}(,[0-9]{1,4})*$",
                ),
                Param(
                    "to",
                    "query",
                    "http://leadstream-1.leadstream-headless:6066",
                    "Used between workers: the URL of the worker asked, as the group knows it."
                    " A request signed with the cluster's key (X-Leadstream-Key-Id: cluster)"
                    " is taken only with partitions and the worker's own URL here.",
                ),
            ),
            body=_PREVIEW_BODY,
            errors=(400, 413, 415),
        )
    }

    async def post(self, request: Request, **params: Any) -> Response:
        context = self.context
        try:
            asked = await _preview_request(request, context)
            partitions = _partitions_param(request, context.settings.partitions)
        except BodyError as err:
            return err.answer(self)
        if partitions is not None:
            share = context.ingress.preview(
                asked.trigger, asked.audience_filter, sample=asked.sample, partitions=partitions
            )
            if isinstance(share, NotServedHere):
                return not_here(self, share)
            return answer(self, _answer(asked, [share]))
        try:
            shares = await _every_share(asked, context)
        except _NotReady as err:
            return error_response(
                self, 503, "not_ready", str(err), **{"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        except _NoClusterSecret:
            return error_response(
                self,
                503,
                "no_cluster_secret",
                "other workers hold some of the partitions, and this one cannot ask them for"
                " their shares: set LEADSTREAM_CLUSTER_SECRET, the same on every worker",
            )
        return answer(self, _answer(asked, shares))


class SendLead(ServedView):
    """``GET /api/v1/sends/{organizationId}/{sendId}/leads/{phone}``: as the lead view, 401
    without a key, 403 with another organization's, 421 when another worker holds the
    lead's partition; 404 when that partition has no record of the send."""

    operations: ClassVar = {
        "get": Operation(
            "getSendLead",
            "Whether a materialized send messaged the lead, at which step it left it"
            " (notInAudience, optedOut, audienceFilter, eventFilter, frequencyCap, quietHours,"
            " heldOut, recipient) and why, for a key of its organization (a signature is of"
            " the empty body). Sends are kept LEADSTREAM_SEND_RETENTION_DAYS.",
            {
                200: Answer(
                    "The lead in the send",
                    SendLeadExplanation,
                    links={
                        "ReadLead": Link(
                            "getLead",
                            {
                                "organizationId": "$response.body#/organizationId",
                                "phone": "$response.body#/phoneE164",
                            },
                            "The lead's stored events today.",
                        )
                    },
                ),
                421: Answer("Another worker holds the partition (owner names it)", ErrorBody),
            },
            params=(
                Param("organizationId", "path", "42"),
                Param("sendId", "path", "day2"),
                Param("phone", "path", PHONE_EXAMPLE),
            ),
            errors=(400, 404),
        )
    }

    async def get(self, request: Request, **path: str) -> Response:
        try:
            org, send, phone = _explain_target(request, path, self.context)
        except BodyError as err:
            return err.answer(self)
        found = self.context.ingress.explain(org, send, phone)
        if isinstance(found, NotServedHere):
            return not_here(self, found)
        if found is None:
            return error_response(
                self,
                404,
                "unknown_send",
                f"this lead's partition has no record of send {send}: unknown, not "
                "materialized yet, or older than LEADSTREAM_SEND_RETENTION_DAYS",
            )
        return answer(self, _explained(org, phone, found))


# -- preview: the request ------------------------------------------------------------------


async def _preview_request(request: Request, context: Context) -> PreviewAsked:
    """The checked request, or :class:`BodyError`: the media type, the body (bounded, its
    credential verified), its decode, the organization (the credential's, or the body's
    for a share request from another worker), the leads and conditions bounded; the raw
    body kept for other workers."""
    if media_type(request) != "application/json":
        raise BodyError(415, "unsupported_media_type", "send application/json")
    admission = admission_of(request)
    body = await admission.read_body(
        request,  # type: ignore[arg-type]
        min(context.settings.max_body_bytes, MAX_JSON_BYTES),
    )
    try:
        doc = await context.offload.run(len(body), partial(decode_json, body))
    except RowError as err:
        raise BodyError(400, "invalid_json", err.detail) from None
    org = admission.acting_org(_organization(doc))
    _check_bounds(doc)
    parse = partial(_parse_preview, doc, now=now_ms(), region=context.settings.default_region)
    try:
        trigger, audience_filter, sample = await context.offload.run(
            _inline_leads(doc) * _ROW_BYTES, parse
        )
    except RowError as err:
        raise BodyError(400, err.reason.value, err.detail, field=err.field) from None
    # The domain's checks above answer with their own codes; the body's documented type
    # holds for whatever they took.
    await context.offload.run(
        _inline_leads(doc) * _ROW_BYTES, partial(validated, PreviewBody, doc, _PREVIEW_BODY.invalid)
    )
    return PreviewAsked(body, org, trigger, audience_filter, sample)


def _inline_leads(doc: dict[str, Any]) -> int:
    """How many leads the inline audience filter names: what its parse costs."""
    inline = doc.get("audienceFilter")
    leads = inline.get("leads") if isinstance(inline, dict) else None
    return len(leads) if isinstance(leads, list) else 0


def _organization(doc: Any) -> str:
    """The organization a preview body names, or :class:`BodyError`."""
    if not isinstance(doc, dict):
        raise BodyError(400, "invalid_json", _SHAPE)
    try:
        return normalize_organization_id(doc.get("organizationId"))
    except RowError as err:
        raise BodyError(400, err.reason.value, err.detail) from None


def _check_bounds(doc: dict[str, Any]) -> None:
    """At most :data:`MAX_INLINE_FILTER_LEADS` inline leads and :data:`MAX_CONDITIONS`
    event filters, counted before anything is built from them (413)."""
    if _inline_leads(doc) > MAX_INLINE_FILTER_LEADS:
        raise BodyError(
            413,
            "too_many_leads",
            f"an inline audience filter holds at most {MAX_INLINE_FILTER_LEADS} leads",
        )
    filters = doc.get("eventFilters")
    if isinstance(filters, list) and len(filters) > MAX_CONDITIONS:
        raise BodyError(
            413, "too_many_conditions", f"a send holds at most {MAX_CONDITIONS} event filters"
        )


def _parse_preview(
    doc: dict[str, Any], *, now: int, region: str
) -> tuple[SendTrigger, AudienceFilterSpec | None, int]:
    """``(trigger, inline audience filter, sample size)`` of a preview body, or
    :class:`RowError`. The trigger is checked by the rules of a real one: a sendId and a
    scheduledFor are filled in when absent, and the inline filter enables the audience
    filter step (a trigger's ``{enabled}`` switch has no meaning here)."""
    known_fields(doc, _PREVIEW_FIELDS)
    fields = {k: v for k, v in doc.items() if k not in ("audienceFilter", "sample")}
    fields.setdefault("sendId", _PREVIEW_SEND_ID)
    fields.setdefault("scheduledFor", format_ms(now))
    trigger = parse_trigger(fields)
    sample = _sample(doc.get("sample"))
    inline = doc.get("audienceFilter")
    if inline is None:
        return trigger, None, sample
    if not isinstance(inline, dict):
        raise RowError(Reason.INVALID_JSON, 'audienceFilter must be {"mode", "leads": [...]}')
    known_fields(inline, _INLINE_FILTER_FIELDS, "audienceFilter")
    _, _, _, spec = parse_audience_filter(
        {
            "organizationId": trigger.organization_id,
            "campaignId": trigger.campaign_id,
            "sendId": trigger.send_id,
            "mode": inline.get("mode"),
            "leads": inline.get("leads"),
        },
        region=region,
    )
    return replace(trigger, audience_filter_enabled=True), spec, sample


def _sample(value: Any) -> int:
    """How many recipients to list: absent or null is none."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAMPLE:
        raise RowError(
            Reason.INVALID_JSON,
            f"sample must be an integer from 0 to {MAX_SAMPLE}, got {value!r:.40}",
        )
    return value


def _partitions_param(request: Request, partitions: int) -> list[int] | None:
    """The ``partitions`` query parameter (``1,5``), when given, or :class:`BodyError`."""
    raw = request.query.get("partitions")
    if raw is None:
        return None
    wanted = (
        {int(p) for p in raw.split(",")} if _PARTITIONS_PARAM.fullmatch(raw) is not None else set()
    )
    if not wanted or max(wanted) >= partitions:
        raise BodyError(
            400,
            "invalid_partitions",
            f"partitions must be comma-separated numbers from 0 to {partitions - 1}",
        )
    return sorted(wanted)


# -- preview: the shares -------------------------------------------------------------------


async def _every_share(asked: PreviewAsked, context: Context) -> list[PreviewShare]:
    """This worker's share and every other owner's, in partition order; :class:`_NotReady`
    unless every partition is covered."""
    ingress = context.ingress
    local = context.readiness.partitions()
    if local is None:
        raise _NotReady("this worker is not ready; retry")
    elsewhere = _owners_of_others(ingress.partition_owners(), set(local))
    shares: list[PreviewShare] = []
    if local:
        share = ingress.preview(
            asked.trigger, asked.audience_filter, sample=asked.sample, partitions=local
        )
        if isinstance(share, NotServedHere):
            raise _NotReady(f"partition {share.partition} moved while previewing; retry")
        shares.append(share)
    if elsewhere:
        secret = context.settings.cluster_secret
        if secret is None:
            raise _NoClusterSecret
        shares += await _remote_shares(
            asked, elsewhere, secret.get_secret_value(), context.settings.http_timeout_seconds
        )
    return sorted(shares, key=lambda share: min(share.partitions))


def _owners_of_others(owners: dict[int, str | None], local: set[int]) -> dict[str, list[int]]:
    """The partitions this worker does not hold, by the worker that does."""
    by_owner: dict[str, list[int]] = {}
    for partition, owner in sorted(owners.items()):
        if partition in local:
            continue
        if owner is None:
            raise _NotReady(f"no worker holds partition {partition} yet; retry")
        by_owner.setdefault(owner, []).append(partition)
    return by_owner


async def _remote_shares(
    asked: PreviewAsked, by_owner: dict[str, list[int]], secret: str, timeout: float
) -> list[PreviewShare]:
    """Every other owner's share, asked at once; :class:`_NotReady` if one fails."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        answers = await asyncio.gather(
            *(
                _ask_owner(session, owner, parts, asked, secret)
                for owner, parts in by_owner.items()
            ),
            return_exceptions=True,
        )
    shares: list[PreviewShare] = []
    for got in answers:
        if isinstance(got, BaseException):
            raise got
        shares.append(got)
    return shares


def share_request(
    owner: str, partitions: list[int], body: bytes, secret: str, *, now_s: float
) -> tuple[yarl.URL, dict[str, str]]:
    """The URL and headers that ask ``owner`` (its advertised URL) for its share of
    ``partitions``: signed v1 with the cluster's secret over exactly this request,
    addressed to ``owner`` (``to=``), so that whoever receives it can replay it nowhere
    else."""
    query = f"partitions={','.join(map(str, partitions))}&to={quote(owner.rstrip('/'), safe='')}"
    line = RequestLine("POST", _PREVIEW_PATH, query)
    headers = {
        "Content-Type": "application/json",
        **signed_headers(CLUSTER_KEY_ID, secret, line, body, now_s=now_s),
    }
    # encoded=True: the URL goes out byte for byte as it was signed.
    return yarl.URL(f"{owner.rstrip('/')}{_PREVIEW_PATH}?{query}", encoded=True), headers


async def _ask_owner(
    session: aiohttp.ClientSession,
    owner: str,
    partitions: list[int],
    asked: PreviewAsked,
    secret: str,
) -> PreviewShare:
    """``owner``'s share of ``partitions``, or :class:`_NotReady`."""
    url, headers = share_request(owner, partitions, asked.body, secret, now_s=time.time())
    # The other worker's request span is a child of this one's (leadstream.tracing).
    headers.update(tracing.http_headers())
    query = {"partitions": ",".join(map(str, partitions))}
    try:
        # No redirect is followed: a member's advertised URL answers itself, or not at all.
        async with session.post(
            url, data=asked.body, headers=headers, allow_redirects=False
        ) as response:
            raw = await _share_body(response)
        share = PreviewAnswer.model_validate(decode_json(raw))
    except (_BadShare, aiohttp.ClientError, TimeoutError, RowError, ValidationError) as exc:
        # The type only: an error's text could quote the answer, which names leads.
        logger.warning(
            "preview: the worker at %s gave no share of partitions %s: %s",
            owner,
            query["partitions"],
            exc if isinstance(exc, _BadShare) else type(exc).__name__,
            extra=log_fields(organization=asked.org),
        )
        raise _NotReady(
            f"the worker holding partitions {query['partitions']} did not answer; retry"
        ) from None
    return PreviewShare(
        partitions,
        _counts(share.counts),
        share.recipientCount,
        [(r.phoneE164, r.externalId, r.variant) for r in share.sample],
        dict(share.variants or {}),
    )


async def _share_body(response: aiohttp.ClientResponse) -> bytes:
    """A 200 answer's body, read only when it says a length of at most
    :data:`_MAX_SHARE_BYTES` (the read stops there), or :class:`_BadShare`."""
    if response.status != 200:
        raise _BadShare(f"status {response.status}")
    length = response.content_length
    if length is None or length > _MAX_SHARE_BYTES:
        raise _BadShare(f"an answer of {length} bytes")
    return await response.read()


# -- preview: the answer -------------------------------------------------------------------


def _answer(asked: PreviewAsked, shares: list[PreviewShare]) -> PreviewAnswer:
    """The shares summed, with the first ``sample`` recipients (in partition order)."""
    counts = Counts()
    recipient_count = 0
    sample: list[tuple[str, str | None, str | None]] = []
    trigger = asked.trigger
    variants = {split.name: 0 for split in trigger.splits}
    for share in shares:
        counts.add(share.counts)
        recipient_count += share.recipient_count
        sample += share.sample
        for name, count in share.variants.items():
            variants[name] = variants.get(name, 0) + count
    preview = PreviewAnswer(
        organizationId=trigger.organization_id,
        campaignId=trigger.campaign_id,
        scheduledFor=format_ms(trigger.scheduled_for),
        recipientCount=recipient_count,
        counts=wire.SendCounts(
            audience=counts.audience,
            optedOut=counts.opted_out,
            droppedByAudienceFilter=counts.dropped_by_audience_filter,
            droppedByEventFilter=counts.dropped_by_event_filter,
            lateAudienceFilters=0,  # a preview receives no audience filter, so none is late
            droppedByFrequencyCap=counts.dropped_by_frequency_cap,
            droppedByQuietHours=counts.dropped_by_quiet_hours,
            heldOut=counts.held_out,
        ),
        sample=[_recipient(*recipient) for recipient in sample[: asked.sample]],
    )
    if trigger.splits:
        preview.variants = variants
    return preview


def _recipient(phone: str, external_id: str | None, variant: str | None) -> wire.Recipient:
    """A sampled recipient; ``variant`` only with splits, as in a chunk."""
    if variant is None:
        return wire.Recipient(phoneE164=phone, externalId=external_id)
    return wire.Recipient(phoneE164=phone, externalId=external_id, variant=variant)


def _counts(counts: wire.SendCounts) -> Counts:
    return Counts(
        counts.audience,
        counts.optedOut,
        counts.droppedByAudienceFilter,
        counts.droppedByEventFilter,
        counts.droppedByFrequencyCap,
        counts.droppedByQuietHours,
        counts.heldOut,
    )


# -- explanation ---------------------------------------------------------------------------


def _explain_target(
    request: Request, path: dict[str, str], context: Context
) -> tuple[str, str, str]:
    """``(organizationId, sendId, phone)`` of the path (the credential and the path's
    organization were checked from the headers), or :class:`BodyError`."""
    org = admission_of(request).acting_org(None)
    try:
        send = normalize_id(path["sendId"], reason=Reason.INVALID_JSON, what="sendId")
    except RowError as err:
        raise BodyError(400, "invalid_send_id", err.detail) from None
    try:
        phone = normalize_phone(path["phone"], context.settings.default_region)
    except RowError as err:
        raise BodyError(400, err.reason.value, err.detail) from None
    return org, send, phone


def _explained(org: str, phone: str, found: Explained) -> SendLeadExplanation:
    """The answer: what the send did, why, and today's answer too when it differs."""
    trigger, why = found.record.trigger, found.explanation
    explanation = SendLeadExplanation(
        organizationId=org,
        sendId=trigger.send_id,
        campaignId=trigger.campaign_id,
        phoneE164=phone,
        sent=why.sent,
        step=why.step,
        detail=ExplainDetail.model_validate(why.detail),
        consistent=why.consistent,
        scheduledFor=format_ms(trigger.scheduled_for),
        materializedAt=format_ms(found.record.materialized_at),
    )
    if not why.consistent:
        explanation.now = StepToday.model_validate({"step": why.now_step, "detail": why.now_detail})
    return explanation
