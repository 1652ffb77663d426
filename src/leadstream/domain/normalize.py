"""Validation and canonical forms of the contract's scalar fields (SPEC section 2).

Each ``normalize_*`` function returns the canonical value or raises :class:`RowError`
with the reason code the contract names. Nothing is trimmed or guessed silently.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
import unicodedata
from typing import Any

import msgspec
import phonenumbers

from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "MAX_METADATA_BYTES",
    "MIN_OCCURRED_AT_MS",
    "format_ms",
    "normalize_event_type",
    "normalize_id",
    "normalize_metadata",
    "normalize_occurred_at",
    "normalize_organization_id",
    "normalize_phone",
    "normalize_timestamp",
    "parse_rfc3339_ms",
]

logger = logging.getLogger(__name__)

MAX_METADATA_BYTES = 4096
MAX_EVENT_TYPE_CHARS = 100
# 2000-01-01T00:00:00Z: anything earlier is a clock or unit bug, not a lead's history.
MIN_OCCURRED_AT_MS = 946_684_800_000

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def normalize_id(value: Any, *, reason: Reason, what: str) -> str:
    """Canonical form of an organization/campaign/send id: positive int or safe string.

    ``42`` and ``"42"`` are the same id, so the canonical form is always the string.
    """
    if isinstance(value, bool):
        raise RowError(reason, f"{what} must be a positive integer or a safe string, got a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise RowError(reason, f"{what} must be a positive integer, got {value}")
        text = str(value)
        if len(text) > 64:
            raise RowError(reason, f"{what} has more than 64 digits")
        return text
    if isinstance(value, str):
        if _SAFE_ID.fullmatch(value) is None:
            raise RowError(reason, f"{what} must match ^[A-Za-z0-9_-]{{1,64}}$, got {value[:80]!r}")
        return value
    if value is None:
        raise RowError(Reason.MISSING_FIELD, f"{what} is missing")
    raise RowError(reason, f"{what} must be a positive integer or a safe string")


def normalize_organization_id(value: Any) -> str:
    """Canonical organizationId (SPEC section 2)."""
    return normalize_id(value, reason=Reason.INVALID_ORGANIZATION_ID, what="organizationId")


def normalize_phone(value: Any, region: str) -> str:
    """Canonical E.164 form of a possible phone number, parsed with libphonenumber."""
    if value is None:
        raise RowError(Reason.MISSING_FIELD, "phoneE164 is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(Reason.INVALID_PHONE, "phoneE164 must be a string")
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise RowError(Reason.INVALID_PHONE, f"cannot parse {value[:40]!r}: {exc}") from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        # Dialable only inside its area ("555-1234"): no E.164 number a dispatcher can use.
        raise RowError(Reason.INVALID_PHONE, f"{value[:40]!r} lacks an area code")
    if possible != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise RowError(Reason.INVALID_PHONE, f"{value[:40]!r} is not a possible phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize_event_type(value: Any) -> str:
    """An eventType is kept exactly as given, or rejected; it is never trimmed."""
    if value is None:
        raise RowError(Reason.MISSING_FIELD, "eventType is missing")
    if not isinstance(value, str):
        raise RowError(Reason.INVALID_EVENT_TYPE, "eventType must be a string")
    if not 1 <= len(value) <= MAX_EVENT_TYPE_CHARS:
        raise RowError(
            Reason.INVALID_EVENT_TYPE,
            f"eventType must have 1 to {MAX_EVENT_TYPE_CHARS} characters, got {len(value)}",
        )
    if value != value.strip():
        raise RowError(Reason.INVALID_EVENT_TYPE, "eventType has leading or trailing whitespace")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise RowError(Reason.INVALID_EVENT_TYPE, "eventType contains a control character")
    return value


def parse_rfc3339_ms(value: str, what: str = "occurredAt") -> int:
    """Milliseconds since the epoch (UTC) of an RFC 3339 timestamp with an explicit offset.

    Fractions below a millisecond are truncated, so the same instant always maps to the
    same integer however it was written.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise RowError(
            Reason.INVALID_OCCURRED_AT,
            f"{what} must be RFC 3339 with an offset (Z or ±hh:mm), got {value[:40]!r}",
        )
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zulu, sign, off_h, off_m = match.group(7, 8, 9, 10, 11)
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} has no such date: {value[:40]!r}")
    if hour > 23 or minute > 59 or second > 59:
        raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} has no such time: {value[:40]!r}")
    offset_minutes = 0
    if zulu is None:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} has a bad offset: {value[:40]!r}")
        offset_minutes = (oh * 60 + om) * (1 if sign == "+" else -1)
    days = _days_from_civil(year, month, day)
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    return seconds * 1000 + millis


def _days_from_civil(year: int, month: int, day: int) -> int:
    # Proleptic Gregorian day count; avoids datetime objects on the hot path.
    return calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0)) // 86_400


def normalize_timestamp(value: Any, what: str = "occurredAt") -> int:
    """A required RFC 3339 timestamp field as UTC milliseconds, not before 2000-01-01."""
    if value is None:
        raise RowError(Reason.MISSING_FIELD, f"{what} is missing")
    if not isinstance(value, str):
        raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} must be an RFC 3339 string")
    ms = parse_rfc3339_ms(value, what)
    if ms < MIN_OCCURRED_AT_MS:
        raise RowError(
            Reason.OCCURRED_AT_OUT_OF_RANGE, f"{what} {value[:40]!r} is before 2000-01-01"
        )
    return ms


def normalize_occurred_at(value: Any, *, now_ms: int, max_future_skew_ms: int) -> int:
    """occurredAt as UTC milliseconds, range-checked against the ingestion time ``now_ms``."""
    ms = normalize_timestamp(value)
    if ms > now_ms + max_future_skew_ms:
        raise RowError(
            Reason.OCCURRED_AT_OUT_OF_RANGE,
            f"occurredAt {value[:40]!r} is more than {max_future_skew_ms // 1000} s in the future",
        )
    return ms


def format_ms(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` for UTC milliseconds since the epoch."""
    seconds, millis = divmod(ms, 1000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}Z"
    )


def normalize_metadata(value: Any) -> bytes | None:
    """Optional metadata: a JSON object of at most 4 KiB, returned serialized compactly.

    Kept as JSON bytes from here on: that is its size, and JSON carries any integer
    (msgpack would refuse one beyond 64 bits).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RowError(Reason.INVALID_JSON, "metadata must be a JSON object")
    encoded = msgspec.json.encode(value)
    if len(encoded) > MAX_METADATA_BYTES:
        raise RowError(
            Reason.METADATA_TOO_LARGE,
            f"metadata is {len(encoded)} bytes, the limit is {MAX_METADATA_BYTES}",
        )
    return encoded
