"""Audience membership messages: validation and normalization (docs/contract.md, section 4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from leadstream.domain.decode import decode_json
from leadstream.domain.ingest import MAX_BATCH_EVENTS, MAX_REJECT_PHONE_CHARS, Rejected
from leadstream.domain.normalize import normalize_id, normalize_organization_id, normalize_phone
from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "MAX_EXTERNAL_ID_CHARS",
    "MemberOp",
    "normalize_external_id",
    "ParsedMembers",
    "parse_audience_members",
    "parse_audience_members_message",
    "parse_member_row",
]

MAX_EXTERNAL_ID_CHARS = 256


class MemberOp(msgspec.Struct, frozen=True, array_like=True):
    """Add (with its externalId) or remove one lead of a campaign's audience."""

    organization_id: str
    campaign_id: str
    phone: str
    external_id: str | None
    remove: bool = False


def normalize_external_id(value: Any) -> str | None:
    """externalId is kept exactly (matching is case-sensitive); absent or null is None."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_EXTERNAL_ID_CHARS:
        raise RowError(
            Reason.INVALID_JSON,
            f"externalId must be a string of 1 to {MAX_EXTERNAL_ID_CHARS} characters",
        )
    return value


def parse_member_row(row: dict[str, Any], org: str, campaign: str, region: str) -> MemberOp:
    """One audience row (``phoneE164``, ``externalId?``, ``op?``) or :class:`RowError`."""
    phone = normalize_phone(row.get("phoneE164"), region)
    op = row.get("op", "add")
    if op not in ("add", "remove"):
        raise RowError(Reason.INVALID_JSON, f'op must be "add" or "remove", got {op!r:.40}')
    return MemberOp(
        org, campaign, phone, normalize_external_id(row.get("externalId")), op == "remove"
    )


@dataclass(slots=True)
class ParsedMembers:
    """What one ``audience-members`` message yields: operations and rejects."""

    members: list[MemberOp] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    received: int = 0


def parse_audience_members_message(raw: bytes, *, region: str) -> ParsedMembers:
    """One ``audience-members`` message as read from Kafka: a value that is not JSON at
    all is one reject carrying the raw bytes; anything else is
    :func:`parse_audience_members`."""
    try:
        doc = decode_json(raw)
    except RowError as err:
        return ParsedMembers(rejects=[Rejected(err.reason, err.detail, raw=raw)], received=1)
    return ParsedMembers(*parse_audience_members(doc, region=region))


def parse_audience_members(doc: Any, *, region: str) -> tuple[list[MemberOp], list[Rejected], int]:
    """Members of one ``audience-members`` value: ``(ops, rejects, received)``.

    Besides the single shape of docs/contract.md (section 4), a batch ``{organizationId, campaignId,
    members: [{phoneE164, externalId?, op?}]}`` is accepted (what ``leadstream publish
    audience`` sends); each bad row is rejected alone with its index.
    """
    if not isinstance(doc, dict):
        return [], [Rejected(Reason.INVALID_JSON, "value must be a JSON object", raw=doc)], 1
    rows = doc.get("members")
    batch = rows is not None
    if batch and not isinstance(rows, list):
        return [], [Rejected(Reason.INVALID_JSON, "members must be a JSON array", raw=doc)], 1
    received = len(rows) if isinstance(rows, list) else 1
    if isinstance(rows, list) and len(rows) > MAX_BATCH_EVENTS:
        detail = f"a batch holds at most {MAX_BATCH_EVENTS} members, this one has {len(rows)}"
        return [], [Rejected(Reason.BATCH_TOO_LARGE, detail, raw=doc)], received
    try:
        org = normalize_organization_id(doc.get("organizationId"))
        campaign = normalize_id(
            doc.get("campaignId"), reason=Reason.INVALID_JSON, what="campaignId"
        )
    except RowError as err:
        return [], [Rejected(err.reason, err.detail, raw=doc)], received
    ops: list[MemberOp] = []
    rejects: list[Rejected] = []
    for index, row in enumerate(rows if isinstance(rows, list) else [doc]):
        at = index if batch else None
        if not isinstance(row, dict):
            rejects.append(Rejected(Reason.INVALID_JSON, "a member must be a JSON object", at, row))
            continue
        try:
            ops.append(parse_member_row(row, org, campaign, region))
        except RowError as err:
            phone = row.get("phoneE164")
            raw_phone = (
                str(phone)[:MAX_REJECT_PHONE_CHARS] if isinstance(phone, str | int) else None
            )
            rejects.append(Rejected(err.reason, err.detail, at, row, raw_phone, org))
    return ops, rejects, received
