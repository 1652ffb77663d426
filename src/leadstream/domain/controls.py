"""The compliance controls of a send (docs/contract.md, section 3.5): frequency caps,
quiet hours and metadata conditions on event filters. Parsing and the per-lead rules live
here; :mod:`leadstream.domain.evaluate` applies them to whole partitions at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec
import phonenumbers
from phonenumbers import timezone as phone_timezones

from leadstream.domain.policies.us_tcpa import UsTcpaPolicy
from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "MAX_CAP_SENDS",
    "MAX_CAP_HOURS",
    "FrequencyCap",
    "QuietDecision",
    "QuietHours",
    "Scalar",
    "Where",
    "WhereMatcher",
    "parse_frequency_cap",
    "parse_quiet_hours",
    "parse_where",
    "phone_zones",
    "tagged",
    "where_matches",
]

HOUR_MS = 3_600_000
# The quiet-hours policies a trigger may name.
POLICIES = ("us-tcpa",)
_WINDOW = "window"
MAX_CAP_SENDS = 1000
MAX_CAP_HOURS = 720
MAX_WHERE_KEYS = 16
MAX_WHERE_KEY_CHARS = 128
MAX_WHERE_VALUES = 100

Scalar = str | int | float | bool | None
# Metadata conditions: (key, accepted values) pairs, all of which must hold.
Where = tuple[tuple[str, tuple[Scalar, ...]], ...]


def _invalid(message: str) -> RowError:
    return RowError(Reason.INVALID_JSON, message)


def _bounded_int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{what} must be an integer from {low} to {high}, got {value!r:.40}")
    return value


# -- frequency caps --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """Drop a lead that received ``max_sends`` or more of the organization's sends whose
    scheduledFor lies in ``[T - within_hours, T)``."""

    max_sends: int
    within_hours: int

    def window(self, scheduled_for: int) -> tuple[int, int]:
        """``[lo, hi)`` of the scheduledFor values that count against a send at T."""
        return scheduled_for - self.within_hours * HOUR_MS, scheduled_for

    def counts(self, scheduled_for: int, received_at: int) -> bool:
        """Does an earlier send scheduled for ``received_at`` count against this one?"""
        lo, hi = self.window(scheduled_for)
        return lo <= received_at < hi


def parse_frequency_cap(doc: Any) -> FrequencyCap:
    if not isinstance(doc, dict):
        raise _invalid('frequencyCap must be {"maxSends": int, "withinHours": int}')
    return FrequencyCap(
        _bounded_int(doc.get("maxSends"), "frequencyCap.maxSends", 1, MAX_CAP_SENDS),
        _bounded_int(doc.get("withinHours"), "frequencyCap.withinHours", 1, MAX_CAP_HOURS),
    )


# -- quiet hours -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietDecision:
    """Whether a lead is quiet at the send's moment, and the zone (and local time) that
    decided; ``zone`` is None for a number placed in no zone (quiet, the safe side)."""

    quiet: bool
    zone: str | None
    local_time: str | None
    # What decided: "window" (the send's start/end) or a policy row ("federal", "us-fl").
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No message while the recipient's local time is in ``[start, end)`` (minutes after
    midnight; ``start > end`` wraps midnight), or while a ``policy`` says so (``us-tcpa``:
    :mod:`leadstream.domain.policies.us_tcpa`); with both, quiet when either says so. No
    start and end: the policy alone."""

    start: int | None
    end: int | None
    time_zone: str | None = None
    policy: str | None = None

    def quiet_at(self, minute_of_day: int) -> bool:
        if self.start is None or self.end is None:
            return False
        if self.start < self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end

    def zone_is_quiet(self, zone: str, at_ms: int) -> bool:
        return self.quiet_at(_minute_of_day(zone, at_ms))

    def decide(self, zones: tuple[str, ...], at_ms: int) -> QuietDecision:
        """The contract's rule for a number with ``zones``: one zone decides alone;
        among several the lead is quiet if it is quiet in any, unless ``time_zone`` is
        given, which then decides; no zone: ``time_zone``, or quiet. The window only (see
        :meth:`decide_with`); never quiet without one."""
        if self.start is None:
            return QuietDecision(False, None, None)
        if len(zones) == 1:
            chosen: tuple[str, ...] = zones
        elif self.time_zone is not None:
            chosen = (self.time_zone,)
        elif zones:
            chosen = zones
        else:
            return QuietDecision(True, None, None, _WINDOW)  # the window's safe side
        for zone in chosen:
            if self.zone_is_quiet(zone, at_ms):
                return QuietDecision(True, zone, _clock(zone, at_ms), _WINDOW)
        return QuietDecision(False, chosen[0], _clock(chosen[0], at_ms), _WINDOW)

    def decide_with(
        self, policy: UsTcpaPolicy, phone: str, zones: tuple[str, ...], at_ms: int
    ) -> QuietDecision:
        """The window's decision and the policy's together: quiet when either says so
        (the one that did is the ``rule``); a number the policy does not cover (not a US
        number) is decided by the window alone, and is not quiet without one."""
        window = self.decide(zones, at_ms) if self.start is not None else None
        if window is not None and window.quiet:
            return window
        ruled = policy.decide(phone, at_ms) if self.policy is not None else None
        if ruled is not None:
            return QuietDecision(ruled.quiet, ruled.zone, ruled.local_time, ruled.rule)
        return window if window is not None else QuietDecision(False, None, None)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {}
        if self.start is not None and self.end is not None:
            described = {"start": _hhmm(self.start), "end": _hhmm(self.end)}
        if self.time_zone is not None:
            described["timeZone"] = self.time_zone
        if self.policy is not None:
            described["policy"] = self.policy
        return described


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _clock_minutes(text: Any, what: str) -> int:
    if (
        not isinstance(text, str)
        or len(text) != 5
        or text[2] != ":"
        or not (text[:2] + text[3:]).isdigit()
        or not text.isascii()
    ):
        raise _invalid(f'{what} must be "HH:MM", got {text!r:.40}')
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise _invalid(f'{what} must be "HH:MM" from 00:00 to 23:59, got {text!r}')
    return hours * 60 + minutes


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    """Every IANA zone this system knows (no ``localtime``, ``posixrules`` or directory)."""
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def known_zone(name: str) -> bool:
    if name not in _zone_names():
        return False
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _local(zone: str, at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(_zone(zone))


def _minute_of_day(zone: str, at_ms: int) -> int:
    local = _local(zone, at_ms)
    return local.hour * 60 + local.minute


def _clock(zone: str, at_ms: int) -> str:
    return _hhmm(_minute_of_day(zone, at_ms))


def parse_quiet_hours(doc: Any) -> QuietHours:
    if not isinstance(doc, dict):
        raise _invalid(
            'quietHours must be {"start": "HH:MM", "end": "HH:MM", "timeZone"?, "policy"?}'
            ' or {"policy": "us-tcpa"}'
        )
    policy = doc.get("policy")
    if "policy" in doc and policy not in POLICIES:
        raise RowError(
            Reason.INVALID_CONDITIONS,
            f"quietHours.policy must be one of {', '.join(POLICIES)}, got {policy!r:.40}",
            field="quietHours.policy",
        )
    if policy is not None and not {"start", "end", "timeZone"} & doc.keys():
        return QuietHours(None, None, None, policy)
    start = _clock_minutes(doc.get("start"), "quietHours.start")
    end = _clock_minutes(doc.get("end"), "quietHours.end")
    if start == end:
        raise _invalid("quietHours.start and quietHours.end must differ")
    zone = doc.get("timeZone")
    if zone is not None and (not isinstance(zone, str) or len(zone) > 64 or not known_zone(zone)):
        raise _invalid(f"quietHours.timeZone must be an IANA time zone name, got {zone!r:.40}")
    return QuietHours(start, end, zone, policy)


_UNKNOWN_ZONE = "Etc/Unknown"


@functools.lru_cache(maxsize=4096)
def _usable(zones: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(z for z in zones if z != _UNKNOWN_ZONE and known_zone(z))


def phone_zones(phone: str) -> tuple[str, ...]:
    """The IANA zones libphonenumber places an E.164 number in (empty: none known)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    return _usable(tuple(phone_timezones.time_zones_for_number(number)))


# -- metadata conditions ---------------------------------------------------------------


# Integers the internal encodings (msgpack) carry; a trigger travels in them.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1


def _scalar(value: Any, what: str) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool) and not _MIN_INT <= value <= _MAX_INT:
        raise _invalid(f"{what}: integers must lie within -2**63 .. 2**64-1")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise _invalid(f"{what} must be a string, number, boolean or null")


def parse_where(doc: Any) -> Where:
    """``{"key": scalar | {"in": [scalars]}}`` as (key, values) pairs, keys sorted."""
    if not isinstance(doc, dict) or not 1 <= len(doc) <= MAX_WHERE_KEYS:
        raise _invalid(f"where must be an object of 1 to {MAX_WHERE_KEYS} metadata keys")
    out: list[tuple[str, tuple[Scalar, ...]]] = []
    for key, condition in sorted(doc.items()):
        if not 1 <= len(key) <= MAX_WHERE_KEY_CHARS:
            raise _invalid(f"a where key has 1 to {MAX_WHERE_KEY_CHARS} characters")
        if isinstance(condition, dict):
            values = condition.get("in")
            if (
                set(condition) != {"in"}
                or not isinstance(values, list)
                or not 1 <= len(values) <= MAX_WHERE_VALUES
            ):
                raise _invalid(
                    f'where.{key:.40} must be a scalar or {{"in": [1 to {MAX_WHERE_VALUES}'
                    " scalars]}"
                )
            out.append((key, tuple(_scalar(v, f"where.{key:.40}.in") for v in values)))
        else:
            out.append((key, (_scalar(condition, f"where.{key:.40}"),)))
    return tuple(out)


def tagged(value: Any) -> tuple[str, Any] | None:
    """A value's identity for matching: numbers by value (1 equals 1.0), booleans apart
    from numbers; objects and arrays never match."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


_metadata = msgspec.json.Decoder()


class WhereMatcher:
    """A :data:`Where` ready to test many events' stored metadata (compact JSON)."""

    __slots__ = ("_conditions",)

    def __init__(self, where: Where) -> None:
        # Not cached across calls: as dict keys 1 and True are the same.
        self._conditions = tuple(
            (key, frozenset(tagged(v) for v in values)) for key, values in where
        )

    def __call__(self, metadata: bytes | None) -> bool:
        if not self._conditions:
            return True
        if not metadata:
            return False
        try:
            doc = _metadata.decode(metadata)
        except msgspec.DecodeError:
            return False
        if not isinstance(doc, dict):
            return False
        return all(key in doc and tagged(doc[key]) in ok for key, ok in self._conditions)


def where_matches(where: Where, metadata: bytes | None) -> bool:
    """Does one event's stored metadata satisfy every condition of ``where``?"""
    return WhereMatcher(where)(metadata)
