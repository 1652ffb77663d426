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
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import yarl
from faust.web import Request, Response, View

from leadstream.domain.auth import CLUSTER_KEY_ID, RequestLine, signed_headers
from leadstream.domain.decode import MAX_JSON_BYTES, decode_json
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
from leadstream.wire.records import SendCounts

__all__ = [
    "MAX_INLINE_FILTER_LEADS",
    "MAX_SAMPLE",
    "SendLead",
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


class SampleRecipient(msgspec.Struct, rename="camel", omit_defaults=True):
    """A recipient of a preview's sample: as in a chunk."""

    phone_e164: str
    external_id: str | None
    variant: str | None = None


class PreviewAnswer(msgspec.Struct, rename="camel", omit_defaults=True):
    """The preview's answer; also how a worker reads another worker's share."""

    organization_id: str
    campaign_id: str
    scheduled_for: str
    recipient_count: int
    counts: SendCounts
    sample: list[SampleRecipient]
    # Recipients by split name (absent without splits).
    variants: dict[str, int] | None = None


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
            return self.json(_answer(asked, [share]))
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
        return self.json(_answer(asked, shares))


class SendLead(ServedView):
    """``GET /api/v1/sends/{organizationId}/{sendId}/leads/{phone}``: as the lead view, 401
    without a key, 403 with another organization's, 421 when another worker holds the
    lead's partition; 404 when that partition has no record of the send."""

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
        return self.json(_explained(org, phone, found))


def not_here(view: View, state: NotServedHere) -> Response:
    """421 naming the worker that holds the partition, or 503 while this one is not ready."""
    body = {
        "error": {
            "code": "not_here",
            "message": f"partition {state.partition} is not active on this worker",
        },
        "owner": state.owner,
    }
    return view.json(body, status=421 if state.ready else 503)


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
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        shares.append(answer)
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
    query = {"partitions": ",".join(map(str, partitions))}
    try:
        # No redirect is followed: a member's advertised URL answers itself, or not at all.
        async with session.post(
            url, data=asked.body, headers=headers, allow_redirects=False
        ) as response:
            raw = await _share_body(response)
        answer = msgspec.convert(decode_json(raw), PreviewAnswer)
    except (_BadShare, aiohttp.ClientError, TimeoutError, RowError, msgspec.ValidationError) as exc:
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
        _counts(answer.counts),
        answer.recipient_count,
        [(r.phone_e164, r.external_id, r.variant) for r in answer.sample],
        dict(answer.variants or {}),
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


def _answer(asked: PreviewAsked, shares: list[PreviewShare]) -> Any:
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
    answer = PreviewAnswer(
        trigger.organization_id,
        trigger.campaign_id,
        format_ms(trigger.scheduled_for),
        recipient_count,
        SendCounts(
            counts.audience,
            counts.opted_out,
            counts.dropped_by_audience_filter,
            counts.dropped_by_event_filter,
            0,  # a preview receives no audience filter, so none is late
            counts.dropped_by_frequency_cap,
            counts.dropped_by_quiet_hours,
            counts.held_out,
        ),
        [SampleRecipient(*recipient) for recipient in sample[: asked.sample]],
        variants if trigger.splits else None,
    )
    return msgspec.to_builtins(answer)


def _counts(counts: SendCounts) -> Counts:
    return Counts(
        counts.audience,
        counts.opted_out,
        counts.dropped_by_audience_filter,
        counts.dropped_by_event_filter,
        counts.dropped_by_frequency_cap,
        counts.dropped_by_quiet_hours,
        counts.held_out,
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


def _explained(org: str, phone: str, found: Explained) -> dict[str, Any]:
    """The answer: what the send did, why, and today's answer too when it differs."""
    trigger, why = found.record.trigger, found.explanation
    answer: dict[str, Any] = {
        "organizationId": org,
        "sendId": trigger.send_id,
        "campaignId": trigger.campaign_id,
        "phoneE164": phone,
        "sent": why.sent,
        "step": why.step,
        "detail": why.detail,
        "consistent": why.consistent,
        "scheduledFor": format_ms(trigger.scheduled_for),
        "materializedAt": format_ms(found.record.materialized_at),
    }
    if not why.consistent:
        answer["now"] = {"step": why.now_step, "detail": why.now_detail}
    return answer
