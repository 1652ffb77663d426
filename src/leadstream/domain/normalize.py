"""Validation and canonical forms of the contract's scalar fields (docs/contract.md, section 1).

Each ``normalize_*`` function returns the canonical value or raises :class:`RowError`
with the reason code the contract names. Nothing is trimmed or guessed silently.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
import unicodedata
from typing import Any

import msgspec
import phonenumbers

from leadstream.domain.phone_fast import canonical_e164
from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "MAX_ID_DIGITS",
    "MAX_METADATA_BYTES",
    "SAFE_ID_PATTERN",
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

MAX_METADATA_BYTES = 4096
MAX_EVENT_TYPE_CHARS = 100
# 2000-01-01T00:00:00Z: anything earlier is a clock or unit bug, not a lead's history.
MIN_OCCURRED_AT_MS = 946_684_800_000

# An id written as a string; one written as an integer has at most MAX_ID_DIGITS digits.
SAFE_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
MAX_ID_DIGITS = 64
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
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
        if len(text) > MAX_ID_DIGITS:
            raise RowError(reason, f"{what} has more than {MAX_ID_DIGITS} digits")
        return text
    if isinstance(value, str):
        if _SAFE_ID.fullmatch(value) is None:
            raise RowError(reason, f"{what} must match ^[A-Za-z0-9_-]{{1,64}}$, got {value[:80]!r}")
        return value
    if value is None:
        raise RowError(Reason.MISSING_FIELD, f"{what} is missing")
    raise RowError(reason, f"{what} must be a positive integer or a safe string")


def normalize_organization_id(value: Any) -> str:
    """Canonical organizationId (docs/contract.md, section 1)."""
    return normalize_id(value, reason=Reason.INVALID_ORGANIZATION_ID, what="organizationId")


def normalize_phone(value: Any, region: str) -> str:
    """Canonical E.164 form of a possible phone number, parsed with libphonenumber.

    Same answers as :func:`_normalize_phone_slow` for every input, faster: input already in
    canonical E.164 form is recognised from phonenumbers' own metadata without parsing
    (:func:`canonical_e164`), and other spellings of short strings are remembered, answer or
    error, because leads repeat. Errors are raised anew each time with the same reason and
    detail.
    """
    if type(value) is str and type(region) is str:
        fast = canonical_e164(value)
        if fast is not None:
            return fast
        if len(value) <= _PHONE_CACHE_MAX_CHARS:
            outcome = _phone_outcome(value, region)
            if isinstance(outcome, str):
                return outcome
            raise RowError(*outcome)
    return _normalize_phone_slow(value, region)


# Only strings this short are remembered, so a hostile long value cannot pin memory; 64 is
# far beyond any real phone spelling. 2**15 entries hold about 7 MB.
_PHONE_CACHE_MAX_CHARS = 64
_PHONE_CACHE_SIZE = 2**15


@functools.lru_cache(maxsize=_PHONE_CACHE_SIZE)
def _phone_outcome(value: str, region: str) -> str | tuple[Reason, str]:
    """The slow path's answer, or its RowError as (reason, detail), for exact-str arguments.

    Keys are exact ``str`` only: with other types ``True == 1`` (and ``1 == 1.0``) would
    share an entry although the slow path answers them differently. Exceptions other than
    RowError are not remembered; they propagate as before.
    """
    try:
        return _normalize_phone_slow(value, region)
    except RowError as exc:
        return (exc.reason, exc.detail)


def _normalize_phone_slow(value: Any, region: str) -> str:
    """The reference: parse, possibility check and format with phonenumbers, unabridged."""
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
    e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    # The canonical form must read back as itself, or one lead would be stored under two
    # phones. libphonenumber breaks that for national numbers of zeros only ("+49000000"
    # formats as "+4900000", which formats as "+490000"): no real phone, refused.
    again = phonenumbers.parse(e164, region)
    if phonenumbers.format_number(again, phonenumbers.PhoneNumberFormat.E164) != e164:
        raise RowError(Reason.INVALID_PHONE, f"{value[:40]!r} is not a possible phone number")
    return e164


def normalize_event_type(value: Any) -> str:
    """An eventType is kept exactly as given, or rejected; it is never trimmed."""
    if value is None:
        raise RowError(Reason.MISSING_FIELD, "eventType is missing")
    if not isinstance(value, str):
        raise RowError(Reason.INVALID_EVENT_TYPE, "eventType must be a string")
    problem = _event_type_problem(value)
    if problem is not None:
        raise RowError(Reason.INVALID_EVENT_TYPE, problem)
    return value


@functools.lru_cache(maxsize=1024)
def _event_type_problem(value: str) -> str | None:
    # Cached: a stream has few event types, and the per-character check is not free.
    if not 1 <= len(value) <= MAX_EVENT_TYPE_CHARS:
        return f"eventType must have 1 to {MAX_EVENT_TYPE_CHARS} characters, got {len(value)}"
    if value != value.strip():
        return "eventType has leading or trailing whitespace"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return "eventType contains a control character"
    return None


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
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    days = _days_since_epoch(year, month, day)
    if days is None:
        raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} has no such date: {value[:40]!r}")
    h, mi, sec = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or sec > 59:
        raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} has no such time: {value[:40]!r}")
    offset_minutes = 0
    if zulu is None:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            raise RowError(Reason.INVALID_OCCURRED_AT, f"{what} has a bad offset: {value[:40]!r}")
        offset_minutes = (oh * 60 + om) * (1 if sign == "+" else -1)
    seconds = days * 86_400 + h * 3600 + mi * 60 + sec - offset_minutes * 60
    millis = int(fraction[:3].ljust(3, "0")) if fraction else 0
    return seconds * 1000 + millis


@functools.lru_cache(maxsize=1 << 14)
def _days_since_epoch(year: str, month: str, day: str) -> int | None:
    """Proleptic Gregorian day number of a date given as ASCII digits, None if no such date.

    Cached: a batch's timestamps fall on few dates, and this was a fifth of ingest time."""
    y, m, d = int(year), int(month), int(day)
    if not (y >= 1 and 1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]):
        return None
    return calendar.timegm((y, m, d, 0, 0, 0, 0, 0, 0)) // 86_400


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
    parts = time.gmtime(seconds)
    return (
        f"{parts.tm_year:04d}-{parts.tm_mon:02d}-{parts.tm_mday:02d}"
        f"T{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d}.{millis:03d}Z"
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
