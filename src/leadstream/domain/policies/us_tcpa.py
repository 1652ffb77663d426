"""The ``us-tcpa`` quiet-hours policy (docs/contract.md, 3.5): US numbers are quiet
outside 08:00-21:00 local time, narrowed by the state rows of a dated table.

The table
    ``us_tcpa_rules.csv`` beside this module, one row per rule, columns
    ``rule,state,days,start,end,source,checked,note``: a stable id (``federal``,
    ``us-fl``, ``us-al-sun``...), the USPS code of the state (empty: the federal row, which
    applies everywhere), the days the row applies on, the ALLOWED local window
    ``[start, end)`` as ``HH:MM`` (``end`` may be ``24:00``; ``start == end``: quiet all
    day), the law or regulation, the ISO date the row was checked and a note. An operator's
    file of the same format replaces the whole table (:func:`load_policy`); it must keep a
    federal row. Where sources disagree the rows take the stricter reading and say so in
    ``note``.

    The shipped rows were compiled on 2026-12-07 from the cited statutes as the author knew
    them, without network access to the official codes (some were compared with third-party
    copies of the text; each note says which, and where a section number is unsure it says
    so). They are a starting point, not legal advice: an operator must have counsel verify
    them and ship a corrected file.

Days (``|`` joins several; a row applies on a local date that any of them names)
    ``all``; a weekday ``mon`` .. ``sun`` or an ascending range ``mon-sat``;
    ``holidays``: the eleven federal legal holidays of 5 U.S.C. 6103 (New Year's Day,
    Martin Luther King Jr. Day, Washington's Birthday, Memorial Day, Juneteenth,
    Independence Day, Labor Day, Columbus Day, Veterans Day, Thanksgiving, Christmas);
    ``MM-DD``: that date every year, and when it falls on a Saturday also the Friday before,
    on a Sunday also the Monday after (the observed day: quiet on both is the safe side);
    ``YYYY-MM-DD``: that one date (a holiday a governor proclaims, an emergency);
    ``mmm-ddd-N`` / ``mmm-ddd-last``: the Nth (1-5) or last weekday of a month, e.g.
    ``aug-mon-2``; ``easter``: Western Easter Sunday. ``MM-DD``, ``mmm-ddd-N`` and
    ``easter`` take an offset in days, ``nov-thu-4+1`` (the day after Thanksgiving),
    ``easter-47`` (Mardi Gras), ``easter-2`` (Good Friday); an offset date is not moved to
    an observed day.

Deciding
    The state comes from the area code (``us_area_codes.csv``), the local clock from the
    IANA zones libphonenumber gives the number's prefix. A lead is quiet in a zone when any
    row that applies on that zone's local date does not allow its local minute; with several
    zones it is quiet when quiet in any (the zone that made it quiet is reported); with none
    the state's principal zone stands in. The deciding ``rule`` of a quiet lead is a state
    row that blocks it if there is one (the narrowest), else the federal row; of an allowed
    lead, the narrowest row that applied (``none`` if no row applied that day, which only an
    operator's table can cause). US numbers without a state (toll-free, 5XX, 900) cannot be
    placed in time: quiet, rule ``unknown-zone``; so is a number with neither zone nor
    principal zone.

Scope
    "US numbers": the 50 states, DC and the territories where the Communications Act
    reaches - Puerto Rico, Guam, the US Virgin Islands, American Samoa and the Northern
    Mariana Islands (libphonenumber's regions PR, GU, VI, AS, MP). They have no state rows,
    the federal row applies in their own zones. Canada and the other NANP countries are not
    US numbers: :meth:`UsTcpaPolicy.decide` returns None and other rules decide.

Regenerating ``us_area_codes.csv`` (``areaCode,state``, one row per geographic area code)
    For each area code 200-999 and exchanges 200, 207, ... 998 (line 4567), parse
    ``+1{ac}{exchange}4567``; keep the numbers whose ``phonenumbers.region_code_for_number``
    is ``US`` (state: ``phonenumbers.geocoder.description_for_number(n, "en")``, a state
    name such as "Florida", "Washington State" or "Washington D.C.", or "City, ST" whose
    suffix is the code) or a territory (state: the region code); the majority state of an
    area code is its row, and area codes with no state (non-geographic) are left out. With
    phonenumbers 9.0.43 this gives 365 area codes, none disputed.

Speed
    ``decide`` runs for up to ~1,000,000 phones a send: the zones of a prefix, the local
    date and minute of a zone at a minute, and each policy's verdict per (state, zones,
    minute) are cached, so a phone costs a few dictionary lookups.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones
from phonenumbers.tzdata import TIMEZONE_DATA

__all__ = [
    "COLUMNS",
    "NO_RULE",
    "UNKNOWN_ZONE_RULE",
    "PolicyDecision",
    "PolicyRule",
    "UsTcpaPolicy",
    "load_policy",
    "parse_rules",
]

COLUMNS = ("rule", "state", "days", "start", "end", "source", "checked", "note")
UNKNOWN_ZONE_RULE = "unknown-zone"
# The rule an allowed decision names when no row applied on that day (an operator's table
# may give its federal row days).
NO_RULE = "none"

_PACKAGE = "leadstream.domain.policies"
_RULES_FILE = "us_tcpa_rules.csv"
_AREA_CODES_FILE = "us_area_codes.csv"
_MINUTES_PER_DAY = 24 * 60
_MAX_OFFSET_DAYS = 366

# Every USPS code a row or an area code may name, with the zone that stands in when
# libphonenumber places a number in none (where most of the state's people live).
_PRINCIPAL_ZONE: Mapping[str, str] = MappingProxyType(
    {
        "AL": "America/Chicago",
        "AK": "America/Anchorage",
        "AZ": "America/Phoenix",
        "AR": "America/Chicago",
        "CA": "America/Los_Angeles",
        "CO": "America/Denver",
        "CT": "America/New_York",
        "DE": "America/New_York",
        "DC": "America/New_York",
        "FL": "America/New_York",
        "GA": "America/New_York",
        "HI": "Pacific/Honolulu",
        "ID": "America/Boise",
        "IL": "America/Chicago",
        "IN": "America/Indiana/Indianapolis",
        "IA": "America/Chicago",
        "KS": "America/Chicago",
        "KY": "America/New_York",
        "LA": "America/Chicago",
        "ME": "America/New_York",
        "MD": "America/New_York",
        "MA": "America/New_York",
        "MI": "America/Detroit",
        "MN": "America/Chicago",
        "MS": "America/Chicago",
        "MO": "America/Chicago",
        "MT": "America/Denver",
        "NE": "America/Chicago",
        "NV": "America/Los_Angeles",
        "NH": "America/New_York",
        "NJ": "America/New_York",
        "NM": "America/Denver",
        "NY": "America/New_York",
        "NC": "America/New_York",
        "ND": "America/Chicago",
        "OH": "America/New_York",
        "OK": "America/Chicago",
        "OR": "America/Los_Angeles",
        "PA": "America/New_York",
        "RI": "America/New_York",
        "SC": "America/New_York",
        "SD": "America/Chicago",
        "TN": "America/Chicago",
        "TX": "America/Chicago",
        "UT": "America/Denver",
        "VT": "America/New_York",
        "VA": "America/New_York",
        "WA": "America/Los_Angeles",
        "WV": "America/New_York",
        "WI": "America/Chicago",
        "WY": "America/Denver",
        "PR": "America/Puerto_Rico",
        "GU": "Pacific/Guam",
        "VI": "America/St_Thomas",
        "AS": "Pacific/Pago_Pago",
        "MP": "Pacific/Saipan",
    }
)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_FEDERAL_HOLIDAYS = (
    "01-01",
    "jan-mon-3",
    "feb-mon-3",
    "may-mon-last",
    "06-19",
    "07-04",
    "sep-mon-1",
    "oct-mon-2",
    "11-11",
    "nov-thu-4",
    "12-25",
)

_RULE_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_FIXED = re.compile(r"(\d\d)-(\d\d)([+-]\d{1,3})?")
_NTH = re.compile(r"([a-z]{3})-([a-z]{3})-([1-5]|last)([+-]\d{1,3})?")
_EASTER = re.compile(r"easter([+-]\d{1,3})?")
_RANGE = re.compile(r"([a-z]{3})-([a-z]{3})")


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One row of the table: on ``days`` messages are allowed in
    ``[start_minute, end_minute)`` local time (``state`` None: everywhere)."""

    rule: str
    state: str | None
    days: str
    start_minute: int
    end_minute: int
    source: str
    checked: date
    note: str

    @property
    def width(self) -> int:
        """Minutes allowed a day: the smaller, the more restrictive."""
        return self.end_minute - self.start_minute

    def allows(self, minute: int) -> bool:
        return self.start_minute <= minute < self.end_minute


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """Whether a US number is quiet, the row that decided (for explain), and where and when
    it was judged (``zone`` and ``local_time`` None: no zone was known)."""

    quiet: bool
    rule: str
    state: str | None
    zone: str | None
    local_time: str | None


# -- days ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Days:
    """A parsed ``days`` field: weekdays (0 = Monday) and date tokens."""

    weekdays: frozenset[int]
    dates: tuple[str, ...]

    def matches(self, day: date) -> bool:
        if day.weekday() in self.weekdays:
            return True
        # A token of one year may land in the next or the last (New Year's Day observed on
        # December 31, an offset across the turn of the year).
        return any(
            day in _dates_in(self.dates, year) for year in (day.year - 1, day.year, day.year + 1)
        )


def _parse_days(text: str) -> _Days:
    """The ``days`` field, or ValueError naming the word it does not know."""
    weekdays: set[int] = set()
    dates: list[str] = []
    for word in text.split("|"):
        if word == "all":
            weekdays.update(range(7))
        elif word == "holidays":
            dates.extend(_FEDERAL_HOLIDAYS)
        elif word in _WEEKDAYS:
            weekdays.add(_WEEKDAYS.index(word))
        elif (span := _RANGE.fullmatch(word)) and span[1] in _WEEKDAYS and span[2] in _WEEKDAYS:
            first, last = _WEEKDAYS.index(span[1]), _WEEKDAYS.index(span[2])
            if first > last:
                raise ValueError(f"days range {word!r} must run Monday to Sunday ('mon-sat')")
            weekdays.update(range(first, last + 1))
        else:
            _token_dates(word, 2000)  # raises for a word it does not know
            dates.append(word)
    return _Days(frozenset(weekdays), tuple(dates))


@functools.lru_cache(maxsize=1024)
def _dates_in(tokens: tuple[str, ...], year: int) -> frozenset[date]:
    """Every date the date tokens name for ``year`` (cached: a row asks once a year)."""
    found: set[date] = set()
    for token in tokens:
        found.update(_token_dates(token, year))
    return frozenset(found)


def _token_dates(token: str, year: int) -> tuple[date, ...]:
    """The dates one date token names for ``year``; ValueError for a word it does not know
    or a date that does not exist."""
    if _ISO_DATE.fullmatch(token):
        try:
            once = date.fromisoformat(token)
        except ValueError:
            raise ValueError(f"no such date {token!r}") from None
        return (once,) if once.year == year else ()
    if fixed := _FIXED.fullmatch(token):
        return _fixed_dates(int(fixed[1]), int(fixed[2]), _offset(fixed[3]), year)
    if nth := _NTH.fullmatch(token):
        if nth[1] not in _MONTHS or nth[2] not in _WEEKDAYS:
            raise _unknown_word(token)
        day = _nth_weekday(year, _MONTHS.index(nth[1]) + 1, _WEEKDAYS.index(nth[2]), nth[3])
        return () if day is None else (day + timedelta(days=_offset(nth[4])),)
    if easter := _EASTER.fullmatch(token):
        return (_easter(year) + timedelta(days=_offset(easter[1])),)
    raise _unknown_word(token)


def _unknown_word(token: str) -> ValueError:
    return ValueError(
        f"unknown days word {token!r} (known: all, mon..sun, mon-sat, holidays, MM-DD, "
        "YYYY-MM-DD, mmm-ddd-N, mmm-ddd-last, easter, with +N/-N day offsets)"
    )


def _offset(text: str | None) -> int:
    days = int(text) if text else 0
    if abs(days) > _MAX_OFFSET_DAYS:
        raise ValueError(f"day offset {text} is more than {_MAX_OFFSET_DAYS} days")
    return days


def _fixed_dates(month: int, day: int, offset: int, year: int) -> tuple[date, ...]:
    """``MM-DD`` in ``year`` (February 29 only in leap years), with its observed weekday
    when it falls on a weekend and carries no offset."""
    try:
        date(2000, month, day)  # a leap year: every real MM-DD exists in it
    except ValueError:
        raise ValueError(f"no such date {month:02d}-{day:02d}") from None
    try:
        nominal = date(year, month, day)
    except ValueError:
        return ()
    if offset:
        return (nominal + timedelta(days=offset),)
    if nominal.weekday() == 5:
        return (nominal, nominal - timedelta(days=1))
    if nominal.weekday() == 6:
        return (nominal, nominal + timedelta(days=1))
    return (nominal,)


def _nth_weekday(year: int, month: int, weekday: int, which: str) -> date | None:
    """The ``which``-th (1-5, or ``last``) ``weekday`` of a month; None when there is no
    fifth one."""
    first = date(year, month, 1)
    day = first + timedelta(days=(weekday - first.weekday()) % 7)
    if which == "last":
        while (day + timedelta(days=7)).month == month:
            day += timedelta(days=7)
        return day
    day += timedelta(days=7 * (int(which) - 1))
    return day if day.month == month else None


def _easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian computus)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * l_) // 433
    month = (h + l_ - 7 * m + 90) // 25
    return date(year, month, (h + l_ - 7 * m + 33 * month + 19) % 32)


# -- parsing the table -------------------------------------------------------------------


def _clock(text: str, what: str, *, end: bool) -> int:
    if end and text == "24:00":
        return _MINUTES_PER_DAY
    match = _CLOCK.fullmatch(text)
    if match is None:
        allowed = "00:00-24:00" if end else "00:00-23:59"
        raise ValueError(f"{what} {text!r} is not HH:MM ({allowed})")
    return int(match[1]) * 60 + int(match[2])


def _checked(text: str) -> date:
    try:
        if _ISO_DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"checked {text!r} is not an ISO date (YYYY-MM-DD)")


def _state(text: str) -> str | None:
    if not text:
        return None
    if text not in _PRINCIPAL_ZONE:
        raise ValueError(f"unknown state code {text!r} (a USPS code such as FL, or empty)")
    return text


def _rule_id(text: str, seen: set[str]) -> str:
    if not _RULE_ID.fullmatch(text):
        raise ValueError(f"rule {text!r} must be lowercase letters, digits and dashes")
    if text in (UNKNOWN_ZONE_RULE, NO_RULE):
        raise ValueError(f"rule {text!r} is reserved")
    if text in seen:
        raise ValueError(f"rule {text!r} appears twice")
    seen.add(text)
    return text


def _row(fields: Mapping[str, str], seen: set[str]) -> PolicyRule:
    start = _clock(fields["start"], "start", end=False)
    end = _clock(fields["end"], "end", end=True)
    if start > end:
        raise ValueError(
            f"start {fields['start']} is after end {fields['end']} (a window does not wrap "
            "midnight; start = end means quiet all day)"
        )
    if not fields["source"]:
        raise ValueError("source is empty")
    _parse_days(fields["days"])
    return PolicyRule(
        rule=_rule_id(fields["rule"], seen),
        state=_state(fields["state"]),
        days=fields["days"],
        start_minute=start,
        end_minute=end,
        source=fields["source"],
        checked=_checked(fields["checked"]),
        note=fields["note"],
    )


def _header(row: Sequence[str]) -> list[str]:
    names = [name.strip() for name in row]
    for name in names:
        if name not in COLUMNS:
            raise ValueError(f"unknown column {name!r} (columns: {','.join(COLUMNS)})")
    for name in COLUMNS:
        if names.count(name) != 1:
            raise ValueError(f"column {name!r} must appear once")
    return names


def parse_rules(text: str, origin: str = _RULES_FILE) -> tuple[PolicyRule, ...]:
    """The rows of a table in CSV ``text``, checked strictly: ValueError naming ``origin``
    and the line where the first bad row starts (a quoted note may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        names = _header(next(reader, []))
        rules: list[PolicyRule] = []
        seen: set[str] = set()
        while True:
            line = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise ValueError(f"{len(row)} fields, the header has {len(names)}")
            rules.append(_row(dict(zip(names, (c.strip() for c in row), strict=True)), seen))
    except (ValueError, csv.Error) as error:
        raise ValueError(f"{origin}, line {line}: {error}") from None
    if not any(rule.state is None for rule in rules):
        raise ValueError(f"{origin}: no federal row (a row whose state is empty)")
    return tuple(rules)


@functools.cache
def _area_codes() -> Mapping[str, str]:
    """The shipped area code -> USPS code table (read once: it ships with the code)."""
    text = resources.files(_PACKAGE).joinpath(_AREA_CODES_FILE).read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    if next(reader, []) != ["areaCode", "state"]:
        raise ValueError(f"{_AREA_CODES_FILE}, line 1: expected the header areaCode,state")
    table: dict[str, str] = {}
    for area, state in reader:
        if not (len(area) == 3 and area.isdigit()) or state not in _PRINCIPAL_ZONE:
            raise ValueError(f"{_AREA_CODES_FILE}, line {reader.line_num}: bad row")
        table[area] = state
    return MappingProxyType(table)


def load_policy(path: Path | None = None) -> UsTcpaPolicy:
    """The policy of the shipped table, or of the operator's file at ``path`` (same format),
    which replaces the shipped rows whole. ValueError names the line of a bad row."""
    if path is None:
        text = resources.files(_PACKAGE).joinpath(_RULES_FILE).read_text(encoding="utf-8")
        rules = parse_rules(text)
    else:
        # utf-8-sig: a table saved from a spreadsheet starts with a byte order mark.
        rules = parse_rules(path.read_text(encoding="utf-8-sig"), origin=str(path))
    return UsTcpaPolicy(rules, _area_codes())


# -- where and when a number is ----------------------------------------------------------


def _zone_key_digits() -> int:
    """How many national digits libphonenumber's zone table tells +1 numbers apart by
    (area code and exchange today): the zones of a number depend on those alone, so they are
    cached per prefix. Read from the table itself so that a finer table stays exact."""
    longest = int(max((len(key) for key in TIMEZONE_DATA if key.startswith("1")), default=11))
    return min(10, max(3, longest - 1))


_ZONE_KEY_DIGITS = _zone_key_digits()


@functools.lru_cache(maxsize=1 << 16)
def _zones(prefix: str) -> tuple[str, ...]:
    """The IANA zones of the +1 numbers starting with ``prefix`` (national digits),
    leaving out libphonenumber's "unknown" and any zone this system cannot load. The
    geographical lookup is used (not ``time_zones_for_number``) because it goes by the
    prefix alone, as the cache needs, whether or not the full number is a valid one."""
    padded = prefix.ljust(10, "0")
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(padded))
    zones = phone_timezones.time_zones_for_geographical_number(number)
    return tuple(zone for zone in zones if _loadable(zone))


@functools.lru_cache(maxsize=512)
def _loadable(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return zone != "Etc/Unknown"


@functools.lru_cache(maxsize=1000)
def _us_without_state(area: str) -> bool:
    """Whether libphonenumber puts an area code missing from the table in the US (toll-free,
    5XX, 900: US numbers no state or zone can be told for)."""
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(area + "2345678"))
    return bool(phonenumbers.region_code_for_number(number) == "US")


@functools.lru_cache(maxsize=4096)
def _local(zone: str, minute: int) -> tuple[date, int]:
    """The local date and minute of the day in ``zone`` at ``minute`` (minutes since the
    epoch; US zones are whole minutes off UTC, so the minute decides alone)."""
    local = datetime.fromtimestamp(minute * 60, UTC).astimezone(ZoneInfo(zone))
    return local.date(), local.hour * 60 + local.minute


def _area_code(phone: str) -> str | None:
    """The area code of a +1 E.164 number, None for any other."""
    if len(phone) != 12 or not phone.startswith("+1"):
        return None
    digits = phone[2:]
    if not (digits.isascii() and digits.isdigit()):
        return None
    return digits[:3]


def decision_key(phone: str) -> str | None:
    """The part of an E.164 number a decision depends on (country code, area code and as
    many digits as libphonenumber's zones look at): numbers with the same key are decided
    alike at any moment, so a send decides once per key. None: not a +1 number."""
    if _area_code(phone) is None:
        return None
    return phone[: 2 + _ZONE_KEY_DIGITS]


@functools.cache
def shipped_policy() -> UsTcpaPolicy:
    """The policy of the table shipped with leadstream (read once: it ships with the code)."""
    return load_policy()


@functools.lru_cache(maxsize=8)
def policy_file(path: Path | None) -> UsTcpaPolicy:
    """The policy a worker runs with: the operator's file (read once; a changed file takes
    a restart), or the shipped table."""
    return shipped_policy() if path is None else load_policy(path)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# -- the policy --------------------------------------------------------------------------


class UsTcpaPolicy:
    """A loaded table: decides whether a US number is quiet at a moment, and which row
    said so."""

    def __init__(self, rules: Sequence[PolicyRule], area_codes: Mapping[str, str]) -> None:
        self._rules = tuple(rules)
        self._area_codes = area_codes
        compiled = tuple((rule, _parse_days(rule.days)) for rule in self._rules)
        federal = tuple(pair for pair in compiled if pair[0].state is None)
        by_state: dict[str, list[tuple[PolicyRule, _Days]]] = {}
        for pair in compiled:
            if pair[0].state is not None:
                by_state.setdefault(pair[0].state, []).append(pair)
        self._rows_of: Mapping[str, tuple[tuple[PolicyRule, _Days], ...]] = MappingProxyType(
            {state: federal + tuple(pairs) for state, pairs in by_state.items()}
        )
        self._federal = federal
        # One verdict per (state, zones, minute): a send asks the same few hundred questions
        # for a million phones.
        self._verdict = functools.lru_cache(maxsize=1 << 14)(self._judge)

    @property
    def rules(self) -> tuple[PolicyRule, ...]:
        return self._rules

    @property
    def checked(self) -> date:
        """When the table was last checked (its latest row), for docs and explain."""
        return max(rule.checked for rule in self._rules)

    def decide(self, phone_e164: str, at_ms: int) -> PolicyDecision | None:
        """Whether ``phone_e164`` is quiet at ``at_ms`` (ms since the epoch); None when it
        is not a US number, so the policy has nothing to say about it."""
        area = _area_code(phone_e164)
        if area is None:
            return None
        state = self._area_codes.get(area)
        if state is None:
            if _us_without_state(area):
                return PolicyDecision(True, UNKNOWN_ZONE_RULE, None, None, None)
            return None
        zones = _zones(phone_e164[2 : 2 + _ZONE_KEY_DIGITS])
        return self._verdict(state, zones, at_ms // 60_000)

    def _judge(self, state: str, zones: tuple[str, ...], minute: int) -> PolicyDecision:
        """Quiet if quiet in any zone (the first such is reported); allowed, the zone whose
        deciding row is the narrowest."""
        if not zones:
            principal = _PRINCIPAL_ZONE.get(state)
            if principal is None:
                return PolicyDecision(True, UNKNOWN_ZONE_RULE, state, None, None)
            zones = (principal,)
        allowed: list[tuple[int, PolicyDecision]] = []
        for zone in zones:
            decision, width = self._in_zone(state, zone, minute)
            if decision.quiet:
                return decision
            allowed.append((width, decision))
        return min(allowed, key=lambda pair: pair[0])[1]

    def _in_zone(self, state: str, zone: str, minute: int) -> tuple[PolicyDecision, int]:
        day, clock = _local(zone, minute)
        rows = self._rows_of.get(state, self._federal)
        applied = [rule for rule, days in rows if days.matches(day)]
        blocking = [rule for rule in applied if not rule.allows(clock)]
        if blocking:
            # A state row says more than the federal one that agrees with it.
            rule = min(blocking, key=lambda r: (r.state is None, r.width))
            return PolicyDecision(True, rule.rule, state, zone, _hhmm(clock)), rule.width
        if not applied:
            return PolicyDecision(False, NO_RULE, state, zone, _hhmm(clock)), _MINUTES_PER_DAY
        rule = min(applied, key=lambda r: (r.width, r.state is None))
        return PolicyDecision(False, rule.rule, state, zone, _hhmm(clock)), rule.width
