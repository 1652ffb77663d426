"""The compliance controls (domain/controls.py): parsing of frequencyCap, quietHours and an
event filter's ``where``; the quiet-hours rule per number and zone; metadata matching; and
the CLI flags that write them (client/publish.build_trigger).

Expected local times are worked out here with :mod:`zoneinfo` from UTC instants written
out by hand, never with the code under test.
"""

from __future__ import annotations

import asyncio
import calendar
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from leadstream.client.publish import build_trigger
from leadstream.domain.audience import MemberOp
from leadstream.domain.controls import (
    MAX_CAP_HOURS,
    MAX_CAP_SENDS,
    FrequencyCap,
    QuietHours,
    WhereMatcher,
    parse_frequency_cap,
    parse_quiet_hours,
    parse_where,
    phone_zones,
    where_matches,
)
from leadstream.domain.evaluate import evaluate
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events, compact_partition, lead_history
from leadstream.domain.rejects import RowError
from leadstream.domain.send_state import PendingRecord, apply_members
from leadstream.domain.sends import (
    EventFilter,
    Outcome,
    SendRules,
    SendTrigger,
    campaign_members,
    parse_trigger,
)
from leadstream.index.zones import LeadZones
from leadstream.materialize.warmup import ZoneLearner
from leadstream.wire.commands import ClaimTrigger, decode_command, encode_command
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

MIN = 60_000
HOUR = 60 * MIN

# Numbers and the zones libphonenumber places them in.
NEW_YORK = "+12125550123"  # America/New_York
LOS_ANGELES = "+14155550123"  # America/Los_Angeles
UK_MOBILE = "+447911123456"  # Guernsey, Isle of Man, Jersey, London (one offset)
LONDON = "+442071234567"  # Europe/London
AU_MOBILE = "+61412345678"  # Adelaide .. Sydney, Lord Howe, Christmas, Cocos
SYDNEY = "+61298765432"  # Australia/Sydney
ES_MOBILE = "+34612345678"  # Atlantic/Canary, Europe/Madrid (an hour apart)
MADRID = "+34912345678"  # Europe/Madrid
TOKYO = "+81312345678"  # Asia/Tokyo
NO_ZONE = "+5215512345678"  # Etc/Unknown for libphonenumber
ALASKA = "+19075550123"  # America/Adak, America/Anchorage (an hour apart)


def utc_ms(text: str) -> int:
    """``"2026-06-15 22:30"`` (UTC) as epoch milliseconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def local_ms(zone: str, text: str) -> int:
    """A local wall-clock time in ``zone`` as epoch milliseconds (first occurrence)."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def clock(zone: str, at_ms: int) -> str:
    local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=at_ms)).astimezone(
        ZoneInfo(zone)
    )
    return f"{local.hour:02d}:{local.minute:02d}"


def in_span(start: str, end: str, hhmm: str) -> bool:
    """[start, end) on a 24-hour clock of "HH:MM" strings (wrapping when start > end)."""
    if start < end:
        return start <= hhmm < end
    return hhmm >= start or hhmm < end


def reference_quiet(
    start: str, end: str, time_zone: str | None, zones: tuple[str, ...], at_ms: int
) -> bool:
    """The contract's rule, from its text."""
    if len(zones) == 1:
        return in_span(start, end, clock(zones[0], at_ms))
    if time_zone is not None:
        return in_span(start, end, clock(time_zone, at_ms))
    if zones:
        return any(in_span(start, end, clock(z, at_ms)) for z in zones)
    return True


def rule(start: str, end: str, time_zone: str | None = None) -> QuietHours:
    doc: dict[str, Any] = {"start": start, "end": end}
    if time_zone is not None:
        doc["timeZone"] = time_zone
    return parse_quiet_hours(doc)


def quiet(phone: str, start: str, end: str, at_ms: int, time_zone: str | None = None) -> bool:
    return rule(start, end, time_zone).decide(phone_zones(phone), at_ms).quiet


# --- parsing: frequencyCap -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"maxSends": 1, "withinHours": 1}, FrequencyCap(1, 1)),
        ({"maxSends": 3, "withinHours": 24}, FrequencyCap(3, 24)),
        ({"maxSends": MAX_CAP_SENDS, "withinHours": MAX_CAP_HOURS}, FrequencyCap(1000, 720)),
    ],
)
def test_frequency_cap_valid(doc: dict[str, Any], want: FrequencyCap) -> None:
    assert parse_frequency_cap(doc) == want


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        [1, 24],
        "1/24",
        1,
        {},
        {"maxSends": 1},
        {"withinHours": 1},
        {"maxSends": 0, "withinHours": 1},
        {"maxSends": 1, "withinHours": 0},
        {"maxSends": -1, "withinHours": 1},
        {"maxSends": 1001, "withinHours": 1},
        {"maxSends": 1, "withinHours": 721},
        {"maxSends": True, "withinHours": 1},
        {"maxSends": 1, "withinHours": False},
        {"maxSends": 1.0, "withinHours": 1},
        {"maxSends": 1, "withinHours": 1.5},
        {"maxSends": "1", "withinHours": 1},
        {"maxSends": None, "withinHours": 1},
        {"maxSends": 2**64, "withinHours": 1},
    ],
)
def test_frequency_cap_invalid(doc: Any) -> None:
    with pytest.raises(RowError):
        parse_frequency_cap(doc)


def test_frequency_cap_window_is_half_open() -> None:
    cap = FrequencyCap(2, 3)
    t = utc_ms("2026-06-15 12:00")
    assert cap.window(t) == (t - 3 * HOUR, t)
    assert cap.counts(t, t - 3 * HOUR)  # the window's first ms counts
    assert cap.counts(t, t - 1)
    assert not cap.counts(t, t)  # a send at the same moment does not
    assert not cap.counts(t, t - 3 * HOUR - 1)
    assert not cap.counts(t, t + HOUR)  # nor a later one


# --- parsing: quietHours ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"start": "22:00", "end": "07:00"}, QuietHours(22 * 60, 7 * 60)),
        ({"start": "00:00", "end": "23:59"}, QuietHours(0, 23 * 60 + 59)),
        ({"start": "23:59", "end": "00:00"}, QuietHours(23 * 60 + 59, 0)),
        ({"start": "09:30", "end": "17:05", "timeZone": None}, QuietHours(570, 1025)),
        (
            {"start": "21:00", "end": "08:00", "timeZone": "America/New_York"},
            QuietHours(1260, 480, "America/New_York"),
        ),
        ({"start": "21:00", "end": "08:00", "timeZone": "UTC"}, QuietHours(1260, 480, "UTC")),
        (
            {"start": "21:00", "end": "08:00", "timeZone": "Australia/Lord_Howe"},
            QuietHours(1260, 480, "Australia/Lord_Howe"),
        ),
    ],
)
def test_quiet_hours_valid(doc: dict[str, Any], want: QuietHours) -> None:
    assert parse_quiet_hours(doc) == want


@pytest.mark.parametrize(
    "doc",
    [
        None,
        "22:00-07:00",
        ["22:00", "07:00"],
        {},
        {"start": "22:00"},
        {"end": "07:00"},
        {"start": "24:00", "end": "07:00"},
        {"start": "22:00", "end": "24:00"},
        {"start": "7:00", "end": "22:00"},
        {"start": "07:0", "end": "22:00"},
        {"start": "07:60", "end": "22:00"},
        {"start": "25:00", "end": "22:00"},
        {"start": "07-00", "end": "22:00"},
        {"start": "0700", "end": "22:00"},
        {"start": "07:00:00", "end": "22:00"},
        {"start": " 7:00", "end": "22:00"},
        {"start": "+7:00", "end": "22:00"},
        {"start": "-1:00", "end": "22:00"},
        {"start": "\u0660\u0667:\u0660\u0660", "end": "22:00"},  # Arabic-Indic digits
        {"start": "\uff10\uff17:00", "end": "22:00"},  # full-width digits
        {"start": 700, "end": "22:00"},
        {"start": None, "end": "22:00"},
        {"start": "22:00", "end": "22:00"},  # start == end
        {"start": "00:00", "end": "00:00"},
        {"start": "22:00", "end": "07:00", "timeZone": "Mars/Olympus_Mons"},
        {"start": "22:00", "end": "07:00", "timeZone": "Etc/Unknown"},
        {"start": "22:00", "end": "07:00", "timeZone": "america/new_york"},
        {"start": "22:00", "end": "07:00", "timeZone": "America"},
        {"start": "22:00", "end": "07:00", "timeZone": "America/"},
        {"start": "22:00", "end": "07:00", "timeZone": ""},
        {"start": "22:00", "end": "07:00", "timeZone": " UTC"},
        {"start": "22:00", "end": "07:00", "timeZone": "../zoneinfo/UTC"},
        {"start": "22:00", "end": "07:00", "timeZone": "/usr/share/zoneinfo/UTC"},
        {"start": "22:00", "end": "07:00", "timeZone": "UTC\x00"},
        {"start": "22:00", "end": "07:00", "timeZone": "zone.tab"},
        {"start": "22:00", "end": "07:00", "timeZone": "A" * 65},
        {"start": "22:00", "end": "07:00", "timeZone": 5},
        {"start": "22:00", "end": "07:00", "timeZone": ["UTC"]},
    ],
)
def test_quiet_hours_invalid(doc: Any) -> None:
    with pytest.raises(RowError):
        parse_quiet_hours(doc)


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory"])
def test_quiet_hours_rejects_files_of_the_zone_directory_that_are_no_place(zone: str) -> None:
    """ "localtime" is a link some systems keep to the host's /etc/localtime: accepted, a
    trigger would mean each worker's own clock (and be rejected on a slim image)."""
    with pytest.raises(RowError):
        parse_quiet_hours({"start": "22:00", "end": "07:00", "timeZone": zone})


def test_quiet_hours_describe_round_trips() -> None:
    for doc in (
        {"start": "22:00", "end": "07:00"},
        {"start": "00:05", "end": "23:59", "timeZone": "Asia/Tokyo"},
    ):
        assert parse_quiet_hours(doc).describe() == doc


# --- parsing: where --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        ({"plan": "pro"}, (("plan", ("pro",)),)),
        ({"n": 1}, (("n", (1,)),)),
        ({"n": 1.5}, (("n", (1.5,)),)),
        ({"ok": True}, (("ok", (True,)),)),
        ({"x": None}, (("x", (None,)),)),
        ({"plan": {"in": ["a", "b"]}}, (("plan", ("a", "b")),)),
        ({"plan": {"in": [None, 1, "1", True]}}, (("plan", (None, 1, "1", True)),)),
        ({"b": 1, "a": 2}, (("a", (2,)), ("b", (1,)))),  # keys sorted
        ({"k" * 128: 1}, (("k" * 128, (1,)),)),
        ({"\u00e9": "\u00e9"}, (("\u00e9", ("\u00e9",)),)),
        ({f"k{i:02d}": i for i in range(16)}, tuple((f"k{i:02d}", (i,)) for i in range(16))),
        ({"v": {"in": list(range(100))}}, (("v", tuple(range(100))),)),
    ],
)
def test_where_valid(doc: dict[str, Any], want: Any) -> None:
    assert parse_where(doc) == want


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "plan=pro",
        {},  # empty
        {f"k{i}": i for i in range(17)},  # too many keys
        {"": 1},
        {"k" * 129: 1},
        {"plan": {"a": 1}},  # a nested object
        {"plan": {}},
        {"plan": ["a", "b"]},  # an array
        {"plan": []},
        {"plan": {"in": []}},
        {"plan": {"in": ["a"], "x": 1}},
        {"plan": {"IN": ["a"]}},
        {"plan": {"in": "a"}},
        {"plan": {"in": None}},
        {"plan": {"in": [["a"]]}},
        {"plan": {"in": [{"a": 1}]}},
        {"plan": {"in": list(range(101))}},
        {"plan": "a", "n": [1]},  # one good key does not save a bad one
    ],
)
def test_where_invalid(doc: Any) -> None:
    with pytest.raises(RowError):
        parse_where(doc)


def trigger_doc(**extra: Any) -> dict[str, Any]:
    return {
        "organizationId": "org",
        "campaignId": "c",
        "sendId": "s",
        "scheduledFor": "2026-06-15T12:00:00Z",
        **extra,
    }


def test_trigger_carries_the_controls() -> None:
    got = parse_trigger(
        trigger_doc(
            frequencyCap={"maxSends": 2, "withinHours": 48},
            quietHours={"start": "21:00", "end": "08:00", "timeZone": "Europe/Madrid"},
            eventFilters=[
                {"mode": "include", "eventType": "buy", "where": {"plan": {"in": ["a", "b"]}}},
                {"mode": "exclude", "eventType": "refund"},
            ],
        )
    )
    assert got.frequency_cap == FrequencyCap(2, 48)
    assert got.quiet_hours == QuietHours(21 * 60, 8 * 60, "Europe/Madrid")
    assert got.event_filters == (
        EventFilter("include", "buy", None, 1, (("plan", ("a", "b")),)),
        EventFilter("exclude", "refund"),
    )


def test_trigger_without_controls_or_with_nulls() -> None:
    for doc in (
        trigger_doc(),
        trigger_doc(frequencyCap=None, quietHours=None),
        trigger_doc(eventFilter={"mode": "include", "eventType": "buy", "where": None}),
    ):
        got = parse_trigger(doc)
        assert got.frequency_cap is None and got.quiet_hours is None
        assert all(f.where == () for f in got.event_filters)


@pytest.mark.parametrize(
    "extra",
    [
        {"frequencyCap": {"maxSends": 0, "withinHours": 1}},
        {"frequencyCap": "2/24"},
        {"quietHours": {"start": "22:00", "end": "22:00"}},
        {"quietHours": {"start": "24:00", "end": "07:00"}},
        {"quietHours": {"start": "22:00", "end": "07:00", "timeZone": "Nowhere/Land"}},
        {"eventFilter": {"mode": "include", "eventType": "buy", "where": {}}},
        {"eventFilter": {"mode": "include", "eventType": "buy", "where": {"a": {"in": []}}}},
        {"eventFilters": [{"mode": "include", "eventType": "buy", "where": {"a": [1]}}]},
    ],
)
def test_trigger_with_a_bad_control_is_rejected(extra: dict[str, Any]) -> None:
    with pytest.raises(RowError):
        parse_trigger(trigger_doc(**extra))


@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 2**70])
def test_a_where_value_the_internal_encodings_cannot_carry_is_rejected(big: int) -> None:
    """BUG: JSON carries any integer and parse_where accepts it, but a trigger travels
    between the workers as msgpack (ClaimTrigger(PendingRecord), the X send record),
    which holds integers from -2**63 to 2**64 - 1 only. A trigger with such a where value
    passes validation (the routing agent, the CLI, preview) and then raises OverflowError
    in the routing agent: retried, dead-lettered, the send never happens, and the rejects
    topic says it was an internal failure, not an invalid trigger. Either parse_where
    rejects it (as sends.py bounds every other integer "inside the 64-bit encodings
    downstream") or the trigger must survive the encoding."""
    doc = trigger_doc(eventFilter={"mode": "include", "eventType": "buy", "where": {"n": big}})
    try:
        trigger = parse_trigger(doc)
    except RowError:
        return
    claim = ClaimTrigger(PendingRecord(trigger, 0, False))
    assert decode_command(encode_command(claim)) == claim  # fails: OverflowError


def test_where_values_inside_64_bits_survive_the_internal_encoding() -> None:
    where = {"a": 2**64 - 1, "b": -(2**63), "c": 1.0, "d": True, "e": None, "f": {"in": [1, "1"]}}
    trigger = parse_trigger(
        trigger_doc(eventFilter={"mode": "include", "eventType": "buy", "where": where})
    )
    claim = ClaimTrigger(PendingRecord(trigger, 0, False))
    decoded = decode_command(encode_command(claim))
    assert isinstance(decoded, ClaimTrigger) and decoded == claim
    got = dict(decoded.send.trigger.event_filters[0].where)
    assert type(got["c"][0]) is float and type(got["d"][0]) is bool and got["e"] == (None,)


# --- quiet hours: zones of numbers -----------------------------------------------------------


def test_zones_of_numbers() -> None:
    assert phone_zones(NEW_YORK) == ("America/New_York",)
    assert phone_zones(LOS_ANGELES) == ("America/Los_Angeles",)
    assert len(phone_zones(UK_MOBILE)) > 1 and "Europe/London" in phone_zones(UK_MOBILE)
    assert len(phone_zones(AU_MOBILE)) > 1
    assert {"Australia/Perth", "Australia/Sydney"} <= set(phone_zones(AU_MOBILE))
    assert set(phone_zones(ES_MOBILE)) == {"Atlantic/Canary", "Europe/Madrid"}
    assert phone_zones(TOKYO) == ("Asia/Tokyo",)
    assert phone_zones(NO_ZONE) == ()
    assert phone_zones("+1555") == ()  # too short to place
    assert phone_zones("not a number") == ()


# --- quiet hours: the rule -------------------------------------------------------------------

SUMMER = "2026-06-15"
WINTER = "2026-01-15"


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        (NEW_YORK, "America/New_York"),
        (LOS_ANGELES, "America/Los_Angeles"),
        (LONDON, "Europe/London"),
        (UK_MOBILE, "Europe/London"),  # its zones share one offset
        (SYDNEY, "Australia/Sydney"),
        (MADRID, "Europe/Madrid"),
        (TOKYO, "Asia/Tokyo"),
    ],
)
@pytest.mark.parametrize("day", [SUMMER, WINTER])
@pytest.mark.parametrize(
    ("local", "wrapping", "daytime"),
    [
        ("21:59", False, True),
        ("22:00", True, True),  # start inclusive
        ("23:59", True, True),
        ("00:00", True, False),
        ("06:59", True, False),
        ("07:00", False, False),  # end exclusive
        ("09:00", False, True),
        ("16:59", False, True),
        ("17:00", False, False),
    ],
)
def test_local_time_decides_to_the_minute(
    phone: str, zone: str, day: str, local: str, wrapping: bool, daytime: bool
) -> None:
    for second in ("00", "59.999"):
        at = local_ms(zone, f"{day} {local}:{second}")
        assert clock(zone, at) == local
        assert quiet(phone, "22:00", "07:00", at) is wrapping, (local, second)
        assert quiet(phone, "09:00", "17:00", at) is (daytime and "09:00" <= local < "17:00")


def test_one_instant_across_the_united_states() -> None:
    at = utc_ms("2026-06-16 02:30")  # 22:30 in New York, 19:30 in Los Angeles
    assert quiet(NEW_YORK, "22:00", "07:00", at)
    assert not quiet(LOS_ANGELES, "22:00", "07:00", at)
    decision = rule("22:00", "07:00").decide(phone_zones(NEW_YORK), at)
    assert (decision.zone, decision.local_time) == ("America/New_York", "22:30")
    decision = rule("22:00", "07:00").decide(phone_zones(LOS_ANGELES), at)
    assert (decision.quiet, decision.zone, decision.local_time) == (
        False,
        "America/Los_Angeles",
        "19:30",
    )


def test_zones_that_disagree_are_quiet_unless_the_rule_names_one() -> None:
    # 22:30 in Sydney (AEST, +10), 21:00 in Adelaide (+9:30)... and 20:30 in Perth (+8).
    at = utc_ms("2026-06-15 12:30")
    assert clock("Australia/Sydney", at) == "22:30"
    assert clock("Australia/Perth", at) == "20:30"
    zones = phone_zones(AU_MOBILE)
    assert quiet(AU_MOBILE, "22:00", "07:00", at)  # quiet in Sydney: quiet
    assert not quiet(AU_MOBILE, "22:00", "07:00", at, "Australia/Perth")
    assert quiet(AU_MOBILE, "22:00", "07:00", at, "Australia/Sydney")
    decision = rule("22:00", "07:00").decide(zones, at)
    assert decision.quiet and decision.zone is not None
    assert in_span("22:00", "07:00", clock(decision.zone, at))
    assert decision.local_time == clock(decision.zone, at)
    named = rule("22:00", "07:00", "Australia/Perth").decide(zones, at)
    assert (named.quiet, named.zone, named.local_time) == (False, "Australia/Perth", "20:30")
    # A rule zone outside the number's zones still decides for a number with several.
    assert quiet(AU_MOBILE, "22:00", "07:00", at, "Asia/Tokyo") is in_span(
        "22:00", "07:00", clock("Asia/Tokyo", at)
    )
    # Later, quiet in none of them.
    noon = utc_ms("2026-06-15 03:00")  # 13:00 Sydney, 11:00 Perth
    assert not quiet(AU_MOBILE, "22:00", "07:00", noon)
    # Earlier: 06:30 in Perth is still quiet, 08:30 in Sydney is not.
    morning = utc_ms("2026-06-14 22:30")
    assert quiet(AU_MOBILE, "22:00", "07:00", morning)
    assert not quiet(SYDNEY, "22:00", "07:00", morning)
    assert not quiet(AU_MOBILE, "22:00", "07:00", morning, "Australia/Sydney")


def test_spain_mainland_and_canaries() -> None:
    madrid_2230 = local_ms("Europe/Madrid", f"{SUMMER} 22:30")  # 21:30 in the Canaries
    assert quiet(ES_MOBILE, "22:00", "07:00", madrid_2230)  # quiet in Madrid
    assert quiet(MADRID, "22:00", "07:00", madrid_2230)
    assert not quiet(ES_MOBILE, "22:00", "07:00", madrid_2230, "Atlantic/Canary")
    madrid_0730 = local_ms("Europe/Madrid", f"{SUMMER} 07:30")  # 06:30 in the Canaries
    assert quiet(ES_MOBILE, "22:00", "07:00", madrid_0730)  # quiet in the Canaries
    assert not quiet(MADRID, "22:00", "07:00", madrid_0730)
    assert not quiet(ES_MOBILE, "22:00", "07:00", madrid_0730, "Europe/Madrid")
    madrid_0800 = local_ms("Europe/Madrid", f"{SUMMER} 08:00")  # 07:00 Canaries: not quiet
    assert not quiet(ES_MOBILE, "22:00", "07:00", madrid_0800)
    assert quiet(ES_MOBILE, "22:00", "07:00", madrid_0800 - 1)  # 06:59 in the Canaries


def test_uk_mobile_zones_agree() -> None:
    for text in ("21:59", "22:00", "06:59", "07:00"):
        for day in (SUMMER, WINTER):
            at = local_ms("Europe/London", f"{day} {text}")
            want = in_span("22:00", "07:00", text)
            assert quiet(UK_MOBILE, "22:00", "07:00", at) is want
            assert quiet(LONDON, "22:00", "07:00", at) is want


def test_a_rule_zone_does_not_override_a_number_with_one_zone() -> None:
    at = utc_ms("2026-06-16 02:30")  # 22:30 New York, 11:30 Tokyo
    assert quiet(NEW_YORK, "22:00", "07:00", at, "Asia/Tokyo")
    got = rule("22:00", "07:00", "Asia/Tokyo").decide(phone_zones(NEW_YORK), at)
    assert (got.zone, got.local_time) == ("America/New_York", "22:30")
    assert not quiet(TOKYO, "22:00", "07:00", at, "America/New_York")


def test_a_number_without_a_zone_is_quiet_unless_the_rule_names_one() -> None:
    at = utc_ms("2026-06-15 18:00")  # 12:00 in Mexico City, 14:00 New York, 03:00 Tokyo
    got = rule("22:00", "07:00").decide(phone_zones(NO_ZONE), at)
    assert (got.quiet, got.zone, got.local_time) == (True, None, None)
    got = rule("22:00", "07:00", "America/Mexico_City").decide(phone_zones(NO_ZONE), at)
    assert (got.quiet, got.zone, got.local_time) == (False, "America/Mexico_City", "12:00")
    assert quiet(NO_ZONE, "22:00", "07:00", at, "Asia/Tokyo")


@pytest.mark.parametrize(
    ("day", "around"),
    [("2026-03-08", "07:00"), ("2026-11-01", "06:00")],  # the changes, in UTC
)
@pytest.mark.parametrize(
    "span",
    [("02:00", "03:00"), ("01:00", "02:00"), ("01:30", "03:30"), ("22:00", "02:30")],
)
def test_new_york_daylight_saving_changes(day: str, around: str, span: tuple[str, str]) -> None:
    """Every 5 minutes of the 12 hours around each change, against zoneinfo."""
    centre = utc_ms(f"{day} {around}")
    quiet_minutes = 0
    for at in range(centre - 6 * HOUR, centre + 6 * HOUR, 5 * MIN):
        want = in_span(*span, clock("America/New_York", at))
        assert quiet(NEW_YORK, *span, at) is want, (day, span, at)
        quiet_minutes += 5 * want
    if span == ("02:00", "03:00"):
        # The hour that does not exist in March, an ordinary hour in November.
        assert quiet_minutes == (0 if day.endswith("03-08") else 60)
    if span == ("01:00", "02:00"):
        # An ordinary hour in March, twice in November (EDT, then EST).
        assert quiet_minutes == (60 if day.endswith("03-08") else 120)


def test_new_york_spring_forward_by_hand() -> None:
    assert not quiet(NEW_YORK, "02:00", "03:00", utc_ms("2026-03-08 06:59"))  # 01:59 EST
    assert not quiet(NEW_YORK, "02:00", "03:00", utc_ms("2026-03-08 07:00"))  # 03:00 EDT
    assert quiet(NEW_YORK, "03:00", "04:00", utc_ms("2026-03-08 07:00"))
    assert quiet(NEW_YORK, "01:00", "03:00", utc_ms("2026-03-08 06:59"))
    # November: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    assert quiet(NEW_YORK, "01:00", "02:00", utc_ms("2026-11-01 05:30"))
    assert quiet(NEW_YORK, "01:00", "02:00", utc_ms("2026-11-01 06:30"))
    assert not quiet(NEW_YORK, "01:00", "02:00", utc_ms("2026-11-01 07:00"))  # 02:00 EST


ZONE_SETS = [
    (),
    ("America/New_York",),
    ("America/Los_Angeles",),
    ("Asia/Tokyo",),
    ("Atlantic/Canary", "Europe/Madrid"),
    ("America/Adak", "America/Anchorage"),
    phone_zones(AU_MOBILE),
    phone_zones(UK_MOBILE),
]
hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@settings(max_examples=300, deadline=None)
@given(
    start=hhmm,
    end=hhmm,
    time_zone=st.sampled_from([None, "UTC", "Asia/Tokyo", "Australia/Perth", "Europe/Madrid"]),
    zones=st.sampled_from(ZONE_SETS),
    at=st.integers(utc_ms("2025-12-01 00:00"), utc_ms("2026-12-01 00:00")),
)
def test_decide_equals_the_contract(
    start: str, end: str, time_zone: str | None, zones: tuple[str, ...], at: int
) -> None:
    if start == end:
        return
    got = rule(start, end, time_zone).decide(zones, at)
    assert got.quiet is reference_quiet(start, end, time_zone, zones, at)
    if got.zone is not None:
        assert got.local_time == clock(got.zone, at)
        if got.quiet:
            assert in_span(start, end, got.local_time)


# --- where: matching -------------------------------------------------------------------------


def meta(doc: Any) -> bytes:
    return msgspec.json.encode(doc)


@pytest.mark.parametrize(
    ("where", "metadata", "want"),
    [
        ({"n": 1}, {"n": 1}, True),
        ({"n": 1}, {"n": 1.0}, True),  # numbers by value
        ({"n": 1.0}, {"n": 1}, True),
        ({"n": 0}, {"n": -0.0}, True),
        ({"n": 1.5}, {"n": 1.5}, True),
        ({"n": 1}, {"n": 2}, False),
        ({"n": 1}, {"n": True}, False),  # booleans only equal booleans
        ({"n": True}, {"n": 1}, False),
        ({"n": True}, {"n": 1.0}, False),
        ({"n": False}, {"n": 0}, False),
        ({"n": 0}, {"n": False}, False),
        ({"n": True}, {"n": True}, True),
        ({"n": False}, {"n": False}, True),
        ({"n": None}, {"n": None}, True),
        ({"n": None}, {}, False),  # missing never matches, not even null
        ({"n": None}, {"m": None}, False),
        ({"n": None}, {"n": False}, False),
        ({"n": None}, {"n": 0}, False),
        ({"n": None}, {"n": ""}, False),
        ({"n": 1}, {"n": "1"}, False),
        ({"n": "1"}, {"n": 1}, False),
        ({"p": "a"}, {"p": "a"}, True),
        ({"p": "a"}, {"p": "A"}, False),
        ({"p": "a"}, {"p": "a "}, False),
        ({"p": ""}, {"p": ""}, True),
        ({"p": "a"}, {"p": ["a"]}, False),
        ({"p": "a"}, {"p": {"in": ["a"]}}, False),
        ({"p": "a"}, {"P": "a"}, False),  # keys are case-sensitive
        ({"p": {"in": ["a", "b"]}}, {"p": "b"}, True),
        ({"p": {"in": ["a", "b"]}}, {"p": "c"}, False),
        ({"p": {"in": [1, "x"]}}, {"p": 1.0}, True),
        ({"p": {"in": [1, "x"]}}, {"p": True}, False),
        ({"p": {"in": [True]}}, {"p": 1}, False),
        ({"p": {"in": [None]}}, {"p": None}, True),
        ({"p": {"in": [None]}}, {}, False),
        ({"p": "a", "n": 1}, {"p": "a", "n": 1, "x": 0}, True),
        ({"p": "a", "n": 1}, {"p": "a", "n": 2}, False),  # every key must hold
        ({"p": "a", "n": 1}, {"p": "a"}, False),
        ({"big": 2**64 - 1}, {"big": 2**64 - 1}, True),
        ({"big": 2**64 - 1}, {"big": 2**70}, False),  # metadata may hold any integer
        ({"deep": 1}, {"outer": {"deep": 1}}, False),  # top-level keys only
    ],
)
def test_where_matches(where: dict[str, Any], metadata: dict[str, Any], want: bool) -> None:
    parsed = parse_where(where)
    assert where_matches(parsed, meta(metadata)) is want
    assert WhereMatcher(parsed)(meta(metadata)) is want


@pytest.mark.parametrize(
    "metadata",
    [None, b"", b"not json", b"{", b"[1]", b'"p"', b"1", b"null", b'{"p":"a"', b"\xff\xfe"],
)
def test_where_never_matches_missing_or_invalid_metadata(metadata: bytes | None) -> None:
    assert where_matches(parse_where({"p": "a"}), metadata) is False
    assert where_matches(parse_where({"p": None}), metadata) is False


def test_where_with_no_conditions_keeps_every_event() -> None:
    assert where_matches((), None) is True
    assert where_matches((), b"not json") is True


# --- where: over stored events ---------------------------------------------------------------

ORG = "org"
T = utc_ms("2026-06-15 12:00")


def store_with(events: list[LeadEvent], *members: str) -> Any:
    store = indexed_memory()
    apply_members(store, 0, [MemberOp(ORG, "c", phone, None) for phone in members], group=1)
    apply_events(store, 0, events, horizon_ms=0, now_ms=T)
    return store


def buy(phone: str, at: int, metadata: Any = None) -> LeadEvent:
    return LeadEvent(ORG, phone, "buy", at, None if metadata is None else meta(metadata))


def where_filter(where: dict[str, Any], within: int | None = None, n: int = 1) -> EventFilter:
    return EventFilter("include", "buy", within, n, parse_where(where))


def recipients(store: Any, *filters: EventFilter, at: int = T) -> set[str]:
    rules = SendRules(SendTrigger(ORG, "c", "s", at, filters), None, "opted_out", "opted_in")
    evaluation = evaluate(store.index(0), rules, store=store, partition=0)
    got = {phone for phone, *_ in evaluation.sample(len(evaluation.recipients))}
    # The per-lead engine agrees, member by member.
    for phone, external_id in campaign_members(store, 0, ORG, "c"):
        outcome = rules.outcome(lead_history(store, 0, ORG, phone), phone, external_id)
        assert (phone in got) is (outcome is Outcome.RECIPIENT), phone
    return got


def test_metadata_of_a_deduplicated_event_is_the_first_stored() -> None:
    a, b = "+12125550123", "+14155550123"
    store = store_with(
        [
            buy(a, T - HOUR, {"plan": "a"}),
            buy(a, T - HOUR, {"plan": "b"}),  # a duplicate in the same call
            buy(b, T - HOUR),  # no metadata
        ],
        a,
        b,
    )
    result = apply_events(
        store,
        0,
        [buy(a, T - HOUR, {"plan": "b"}), buy(b, T - HOUR, {"plan": "b"})],  # later calls
        horizon_ms=0,
        now_ms=T,
    )
    assert (result.inserted, result.duplicates) == (0, 2)
    history = lead_history(store, 0, ORG, a)
    assert history.metadata[b"buy"] == [meta({"plan": "a"})]
    assert lead_history(store, 0, ORG, b).metadata[b"buy"] == [None]
    assert recipients(store, where_filter({"plan": "a"})) == {a}
    assert recipients(store, where_filter({"plan": "b"})) == set()
    assert recipients(store, where_filter({"plan": {"in": ["a", "b"]}}, within=60)) == {a}
    assert_indexes_rebuild_equal(store, [0])


def test_where_filter_counts_only_matching_events_in_the_window() -> None:
    a, b, c, d = "+12125550123", "+14155550123", "+447911123456", "+81312345678"
    store = store_with(
        [
            buy(a, T - 10 * MIN, {"n": 1}),
            buy(a, T - 20 * MIN, {"n": 1.0}),
            buy(b, T - 10 * MIN, {"n": True}),
            buy(b, T - 20 * MIN, {"n": 1}),
            buy(c, T - 90 * MIN, {"n": 1}),  # outside a 60-minute window
            buy(c, T + 1, {"n": 1}),  # after T: sticky only
            buy(d, T - 10 * MIN, {"m": 1}),
            buy(d, T - 5 * MIN, {"n": None}),
        ],
        a,
        b,
        c,
        d,
    )
    assert recipients(store, where_filter({"n": 1})) == {a, b, c}
    assert recipients(store, where_filter({"n": 1}, n=2)) == {a, c}
    assert recipients(store, where_filter({"n": 1}, within=60)) == {a, b}
    assert recipients(store, where_filter({"n": 1}, within=60, n=2)) == {a}
    assert recipients(store, where_filter({"n": True})) == {b}
    assert recipients(store, where_filter({"n": None})) == {d}
    assert recipients(store, where_filter({"m": {"in": [1, 2]}})) == {d}
    assert recipients(store, where_filter({"n": 1}), where_filter({"n": True})) == {b}
    exclude = EventFilter("exclude", "buy", None, 1, parse_where({"n": True}))
    assert recipients(store, exclude) == {a, c, d}


def test_folded_events_have_no_metadata() -> None:
    a = "+12125550123"
    store = store_with([buy(a, T - 5 * HOUR, {"plan": "a"}), buy(a, T - HOUR, {"plan": "a"})], a)
    assert recipients(store, where_filter({"plan": "a"}, n=2)) == {a}
    compact_partition(store, 0, horizon_ms=T - 2 * HOUR, max_future_skew_ms=0)
    # The folded event still counts without where, no longer with it.
    plain = EventFilter("include", "buy", None, 2)
    assert recipients(store, plain) == {a}
    assert recipients(store, where_filter({"plan": "a"}, n=2)) == set()
    assert recipients(store, where_filter({"plan": "a"})) == {a}
    assert_indexes_rebuild_equal(store, [0])


def test_where_needs_the_store() -> None:
    store = store_with([buy("+12125550123", T, {"plan": "a"})], "+12125550123")
    rules = SendRules(SendTrigger(ORG, "c", "s", T, (where_filter({"plan": "a"}),)), None, "o", "i")
    with pytest.raises(ValueError, match="store"):
        evaluate(store.index(0), rules)


# --- the CLI flags ---------------------------------------------------------------------------


def cli(
    filters: list[str] | None = None,
    frequency_cap: str | None = None,
    quiet_hours: str | None = None,
) -> dict[str, Any]:
    return build_trigger(
        organization_id="org",
        campaign_id="c",
        send_id="s",
        scheduled_for="2026-06-15T12:00:00Z",
        filters=filters or [],
        audience_filter=False,
        frequency_cap=frequency_cap,
        quiet_hours=quiet_hours,
    )


def test_cli_frequency_cap() -> None:
    doc = cli(frequency_cap="3/24")
    assert doc["frequencyCap"] == {"maxSends": 3, "withinHours": 24}
    assert parse_trigger(doc).frequency_cap == FrequencyCap(3, 24)
    assert "frequencyCap" not in cli()


@pytest.mark.parametrize("flag", ["3", "3-24", "a/24", "3/b", "3/24/1", "/24", "3/", ""])
def test_cli_frequency_cap_invalid(flag: str) -> None:
    with pytest.raises(ValueError):
        cli(frequency_cap=flag)


def test_cli_frequency_cap_out_of_range_is_rejected_by_the_trigger() -> None:
    with pytest.raises(RowError):
        parse_trigger(cli(frequency_cap="0/24"))
    with pytest.raises(RowError):
        parse_trigger(cli(frequency_cap="1/721"))


@pytest.mark.parametrize(
    ("flag", "want"),
    [
        ("22:00-07:00", {"start": "22:00", "end": "07:00"}),
        (
            "22:00-07:00@America/New_York",
            {"start": "22:00", "end": "07:00", "timeZone": "America/New_York"},
        ),
        ("09:30-17:00@UTC", {"start": "09:30", "end": "17:00", "timeZone": "UTC"}),
    ],
)
def test_cli_quiet_hours(flag: str, want: dict[str, str]) -> None:
    doc = cli(quiet_hours=flag)
    assert doc["quietHours"] == want
    assert parse_trigger(doc).quiet_hours == parse_quiet_hours(want)


@pytest.mark.parametrize("flag", ["22:00", "22:00@UTC", "", "@UTC"])
def test_cli_quiet_hours_invalid(flag: str) -> None:
    with pytest.raises(ValueError):
        cli(quiet_hours=flag)


@pytest.mark.parametrize(
    "flag", ["7:00-22:00", "24:00-07:00", "22:00-22:00", "22:00-07:00@Nowhere", "22:00-07:00@"]
)
def test_cli_quiet_hours_rejected_by_the_trigger(flag: str) -> None:
    with pytest.raises(RowError):
        parse_trigger(cli(quiet_hours=flag))


@pytest.mark.parametrize(
    ("flag", "where"),
    [
        ("include:buy:where=plan=pro", {"plan": "pro"}),
        ("include:buy:where=n=7", {"n": 7}),
        ("include:buy:where=n=1.5", {"n": 1.5}),
        ("include:buy:where=ok=true", {"ok": True}),
        ("include:buy:where=ok=false", {"ok": False}),
        ("include:buy:where=x=null", {"x": None}),
        ('include:buy:where=n="7"', {"n": "7"}),  # a JSON string stays a string
        ("include:buy:where=plan=a|b", {"plan": {"in": ["a", "b"]}}),
        ("include:buy:where=n=1|true|x", {"n": {"in": [1, True, "x"]}}),
        ("include:buy:where=n=[1]", {"n": "[1]"}),  # not a scalar: the text
        ("include:buy:where=n={}", {"n": "{}"}),
        ("include:buy:where=k=a=b", {"k": "a=b"}),
        ("include:buy:where=plan=pro:where=n=2", {"plan": "pro", "n": 2}),
    ],
)
def test_cli_where(flag: str, where: dict[str, Any]) -> None:
    doc = cli(filters=[flag])
    assert doc["eventFilter"]["where"] == where
    parsed = parse_trigger(doc).event_filters[0]
    assert parsed.where == parse_where(where)


def test_cli_where_with_the_other_options() -> None:
    doc = cli(filters=["include:buy:within=60:min=2:where=plan=a|b", "exclude:refund"])
    assert doc["eventFilters"] == [
        {
            "mode": "include",
            "eventType": "buy",
            "within": {"minutes": 60},
            "minCount": 2,
            "where": {"plan": {"in": ["a", "b"]}},
        },
        {"mode": "exclude", "eventType": "refund"},
    ]
    assert parse_trigger(doc).event_filters[0] == EventFilter(
        "include", "buy", 60, 2, (("plan", ("a", "b")),)
    )


@pytest.mark.parametrize("flag", ["include:buy:where=plan", "include:buy:where", "include:buy:x=1"])
def test_cli_where_invalid(flag: str) -> None:
    with pytest.raises(ValueError):
        cli(filters=[flag])


def test_cli_where_with_an_empty_key_is_rejected_by_the_trigger() -> None:
    with pytest.raises(RowError):
        parse_trigger(cli(filters=["include:buy:where==1"]))


# --- member zones learned ahead (index/zones.py, materialize/warmup.py) ----------------------------------------------


def test_the_zone_learner_files_every_members_zones_and_skips_replaced_caches() -> None:
    phones = {0: NEW_YORK, 2: LOS_ANGELES, 3: UK_MOBILE, 5: NO_ZONE}  # 1 and 4: no phone
    zones, replaced = LeadZones(), LeadZones()
    learner = ZoneLearner(batch=2, pause_seconds=0)

    async def learn_all() -> list[int]:
        # The first step also takes numbers of a cache whose index is replaced meanwhile;
        # later steps see only the current one (as the materializer passes them).
        targets = [(replaced, 6, phones.get), (zones, 6, phones.get)]
        steps = []
        while looked := await learner.step(targets, lambda z: z is zones):
            steps.append(looked)
            targets = [(zones, 6, phones.get)]
        return steps

    try:
        steps = asyncio.run(learn_all())
    finally:
        learner.close()
    assert sum(steps) >= len(phones) and max(steps) <= 4 and len(steps) < 10
    assert zones.known == BitMap(phones)
    for lead, phone in phones.items():
        assert zones.zones_of(lead) == phone_zones(phone)
    assert steps[0] == 3 and not replaced.known  # looked up, dropped: its index was replaced
    assert zones.unknown(6, phones.get, 10) == []  # nothing left to look up


def test_a_send_learns_what_the_learner_has_not_and_quiet_is_per_zone_set() -> None:
    phones = {0: NEW_YORK, 1: LOS_ANGELES, 2: NO_ZONE}
    zones = LeadZones()
    zones.add(0, phone_zones(NEW_YORK))
    at = calendar.timegm((2026, 6, 1, 2, 30, 0)) * 1000  # New York 22:30, Los Angeles 19:30
    rule = QuietHours(21 * 60, 8 * 60)
    quiet = zones.quiet(BitMap(phones), lambda z: rule.decide(z, at).quiet, phones.get, phone_zones)
    assert quiet == BitMap([0, 2])
    assert zones.known == BitMap(phones)
    zones.forget(0)
    assert zones.zones_of(0) is None and 0 not in zones.known
