"""Turning one ``lead-events`` message into normalized events and per-row rejects.

A message is either a single event or a batch (docs/contract.md, section 4). Every row is checked on
its own: a bad row becomes a :class:`Rejected` with its index, the rest are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from leadstream.domain.decode import decode_json
from leadstream.domain.normalize import (
    normalize_event_type,
    normalize_metadata,
    normalize_occurred_at,
    normalize_organization_id,
    normalize_phone,
)
from leadstream.domain.partitioning import group_by_partition
from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "MAX_BATCH_EVENTS",
    "MAX_REJECT_PHONE_CHARS",
    "IngestRules",
    "LeadEvent",
    "ParsedMessage",
    "Rejected",
    "decode_json",
    "group_by_partition",
    "parse_lead_events",
    "parse_lead_events_message",
    "retention_horizon",
]

MAX_BATCH_EVENTS = 50_000
# A reject names the row's phone as written, cut to this many characters.
MAX_REJECT_PHONE_CHARS = 64


@dataclass(frozen=True, slots=True)
class IngestRules:
    """The knobs of row validation, taken from Settings by the caller."""

    default_region: str = "US"
    max_future_skew_ms: int = 900_000


class LeadEvent(msgspec.Struct, frozen=True, array_like=True):
    """A validated, normalized lead event; (organization_id, phone, event_type, occurred_at)
    is its dedupe key. (A msgspec Struct: it travels as a compact msgpack array.)"""

    organization_id: str
    phone: str
    event_type: str
    occurred_at: int
    metadata: bytes | None = None  # compact JSON of the metadata object

    @property
    def dedupe_key(self) -> tuple[str, str, str, int]:
        return (self.organization_id, self.phone, self.event_type, self.occurred_at)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row (``index`` set) or a whole message (``index`` None) that was not accepted."""

    reason: Reason
    detail: str
    index: int | None = None
    raw: Any = None
    phone: str | None = None
    organization_id: str | None = None


@dataclass(slots=True)
class ParsedMessage:
    """What one message yields: the events to apply and the rejects to report."""

    events: list[LeadEvent] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    received: int = 0


def _raw_phone(row: Any) -> str | None:
    if isinstance(row, dict):
        phone = row.get("phoneE164")
        if isinstance(phone, str | int) and not isinstance(phone, bool):
            return str(phone)[:MAX_REJECT_PHONE_CHARS]
    return None


def parse_lead_events(doc: Any, *, now_ms: int, rules: IngestRules) -> ParsedMessage:
    """Validate and normalize a decoded ``lead-events`` value, single or batch shape."""
    out = ParsedMessage()
    if not isinstance(doc, dict):
        out.received = 1
        out.rejects.append(Rejected(Reason.INVALID_JSON, "value must be a JSON object", raw=doc))
        return out
    if "events" in doc:
        return _parse_batch(doc, now_ms=now_ms, rules=rules)
    out.received = 1
    try:
        org = normalize_organization_id(doc.get("organizationId"))
    except RowError as err:
        out.rejects.append(Rejected(err.reason, err.detail, raw=doc, phone=_raw_phone(doc)))
        return out
    _parse_row(doc, None, org, doc.get("eventType"), now_ms, rules, out, {})
    return out


def parse_lead_events_message(raw: bytes, *, now_ms: int, rules: IngestRules) -> ParsedMessage:
    """One ``lead-events`` message as read from Kafka: a value that is not JSON at all is
    one reject carrying the raw bytes; anything else is :func:`parse_lead_events`."""
    try:
        doc = decode_json(raw)
    except RowError as err:
        out = ParsedMessage(received=1)
        out.rejects.append(Rejected(err.reason, err.detail, raw=raw))
        return out
    return parse_lead_events(doc, now_ms=now_ms, rules=rules)


def _parse_batch(doc: dict[str, Any], *, now_ms: int, rules: IngestRules) -> ParsedMessage:
    out = ParsedMessage()
    rows = doc["events"]
    if not isinstance(rows, list):
        out.received = 1
        out.rejects.append(Rejected(Reason.INVALID_JSON, "events must be a JSON array", raw=doc))
        return out
    out.received = len(rows)
    if len(rows) > MAX_BATCH_EVENTS:
        out.rejects.append(
            Rejected(
                Reason.BATCH_TOO_LARGE,
                f"a batch holds at most {MAX_BATCH_EVENTS} events, this one has {len(rows)}",
                raw=doc,
            )
        )
        return out
    try:
        org = normalize_organization_id(doc.get("organizationId"))
    except RowError as err:
        # The organization applies to every row, so the whole batch is rejected as one.
        out.rejects.append(
            Rejected(err.reason, f"{err.detail} (applies to all {len(rows)} rows)", raw=doc)
        )
        return out
    batch_type = doc.get("eventType")
    phones: dict[Any, str | RowError] = {}
    for index, row in enumerate(rows):
        _parse_row(row, index, org, batch_type, now_ms, rules, out, phones)
    return out


def _parse_row(
    row: Any,
    index: int | None,
    org: str,
    default_type: Any,
    now_ms: int,
    rules: IngestRules,
    out: ParsedMessage,
    phones: dict[Any, str | RowError],
) -> None:
    if not isinstance(row, dict):
        out.rejects.append(
            Rejected(Reason.INVALID_JSON, "an event must be a JSON object", index, row, None, org)
        )
        return
    try:
        raw_phone = row.get("phoneE164")
        # A batch often repeats a phone; libphonenumber is the slowest step, so parse once.
        key = (type(raw_phone), raw_phone) if isinstance(raw_phone, str | int) else None
        phone = phones.get(key) if key is not None else None
        if phone is None:
            try:
                phone = normalize_phone(raw_phone, rules.default_region)
            except RowError as err:
                phone = err
            if key is not None:
                phones[key] = phone
        if isinstance(phone, RowError):
            raise phone
        event_type = normalize_event_type(row.get("eventType", default_type))
        occurred_at = normalize_occurred_at(
            row.get("occurredAt"), now_ms=now_ms, max_future_skew_ms=rules.max_future_skew_ms
        )
        metadata = normalize_metadata(row.get("metadata"))
    except RowError as err:
        out.rejects.append(Rejected(err.reason, err.detail, index, row, _raw_phone(row), org))
        return
    out.events.append(LeadEvent(org, phone, event_type, occurred_at, metadata))


def retention_horizon(now_ms: int, retention_days: int) -> int:
    """Events older than this may be folded by compaction.

    One extra day of slack keeps a window of exactly the retention intact for sends
    scheduled a little in the past.
    """
    return now_ms - (retention_days + 1) * 86_400_000
