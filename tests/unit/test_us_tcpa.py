"""The us-tcpa quiet-hours policy (leadstream.domain.policies.us_tcpa): every row of the
shipped table at its edges, the days it knows, the clock changes, numbers with several or no
zones, numbers it does not apply to, and operator tables good and bad."""

from __future__ import annotations

import ast
import csv
import io
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as phone_timezones

from leadstream.domain.policies import us_tcpa
from leadstream.domain.policies.us_tcpa import PolicyDecision, PolicyRule, load_policy

POLICY = load_policy()

# A number in each state the shipped table has rows for (None: a state with none, New
# York), with the zone libphonenumber must place it in.
PHONES: dict[str | None, tuple[str, str]] = {
    None: ("+12122345678", "America/New_York"),
    "AL": ("+12052345678", "America/Chicago"),
    "CT": ("+12032345678", "America/New_York"),
    "FL": ("+13052345678", "America/New_York"),
    "KY": ("+15022345678", "America/New_York"),
    "LA": ("+15042345678", "America/Chicago"),
    "MA": ("+16172345678", "America/New_York"),
    "MD": ("+14102345678", "America/New_York"),
    "MN": ("+16122345678", "America/Chicago"),
    "MS": ("+16012345678", "America/Chicago"),
    "OK": ("+14052345678", "America/Chicago"),
    "RI": ("+14012345678", "America/New_York"),
    "TX": ("+12142345678", "America/Chicago"),
    "UT": ("+18012345678", "America/Denver"),
    "WA": ("+12062345678", "America/Los_Angeles"),
}
NEW_YORK = PHONES[None]

WEDNESDAY = date(2026, 1, 14)
SATURDAY = date(2026, 1, 17)
SUNDAY = date(2026, 1, 18)
THANKSGIVING = date(2026, 11, 26)
DAY_OF = {"all": WEDNESDAY, "mon-sat": WEDNESDAY, "mon-fri": WEDNESDAY, "sat": SATURDAY}
DAY_OF["sun"] = SUNDAY

USPS = set(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU VI AS MP".split()
)

HEADER = ",".join(us_tcpa.COLUMNS)
FEDERAL = "federal,,all,08:00,21:00,47 CFR 64.1200(c)(1),2026-12-07,floor"


def _ms(local: datetime) -> int:
    return int(local.timestamp() * 1000)


def _at(zone: str, day: date, minute: int) -> int:
    """The moment of wall-clock ``minute`` (may fall outside 0-1439) of ``day`` in ``zone``."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    return _ms(wall.replace(tzinfo=ZoneInfo(zone)))


def _hhmm(minute: int) -> str:
    minute %= 24 * 60
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _decide(state: str | None, day: date, minute: int, policy: us_tcpa.UsTcpaPolicy = POLICY):
    phone, zone = PHONES[state]
    decision = policy.decide(phone, _at(zone, day, minute))
    assert decision is not None
    assert decision.zone == zone
    assert decision.local_time == _hhmm(minute)
    return decision


def _day_for(rule: PolicyRule) -> date:
    if "holidays" in rule.days:
        return THANKSGIVING
    return DAY_OF[rule.days]  # a new days word needs a day here


def _table(tmp_path: Path, *lines: str, name: str = "rules.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the shipped table ---------------------------------------------------------------------


@pytest.mark.parametrize("rule", [r for r in POLICY.rules if r.width > 0], ids=lambda r: r.rule)
def test_a_row_with_hours_decides_at_both_its_edges(rule: PolicyRule) -> None:
    day = _day_for(rule)
    edges = {
        rule.start_minute - 1: True,
        rule.start_minute: False,
        rule.end_minute - 1: False,
        rule.end_minute: True,
    }
    for minute, quiet in edges.items():
        decision = _decide(rule.state, day, minute)
        assert (decision.quiet, decision.rule) == (quiet, rule.rule), _hhmm(minute)
        assert decision.state == rule.state or rule.state is None


@pytest.mark.parametrize("rule", [r for r in POLICY.rules if r.width == 0], ids=lambda r: r.rule)
def test_a_day_off_is_quiet_from_midnight_to_midnight(rule: PolicyRule) -> None:
    day = _day_for(rule)
    for minute in (0, 12 * 60, 24 * 60 - 1):
        assert _decide(rule.state, day, minute) == PolicyDecision(
            True, rule.rule, rule.state, PHONES[rule.state][1], _hhmm(minute)
        )
    before = _decide(rule.state, day - timedelta(days=1), 12 * 60)
    assert not before.quiet and before.rule != rule.rule


def test_every_state_row_has_a_number_placed_in_its_state() -> None:
    assert {rule.state for rule in POLICY.rules} <= set(PHONES)
    for state, (phone, _) in PHONES.items():
        decision = POLICY.decide(phone, _at("UTC", WEDNESDAY, 0))
        assert decision is not None and decision.state == (state or "NY")


def test_the_shipped_table_is_dated_sourced_and_says_it_needs_counsel() -> None:
    assert POLICY.checked == date(2026, 12, 7)
    assert [r.rule for r in POLICY.rules if r.state is None] == ["federal"]
    federal = POLICY.rules[0]
    assert (federal.start_minute, federal.end_minute) == (8 * 60, 21 * 60)
    for rule in POLICY.rules:
        assert rule.source and rule.checked == date(2026, 12, 7)
        assert "counsel" in rule.note or "same caveats" in rule.note, rule.rule
    required = {"AL", "FL", "LA", "MD", "MS", "OK", "TX", "WA", "UT", "CT", "MA", "RI", "MN"}
    assert required <= {rule.state for rule in POLICY.rules}


def test_the_tables_ship_inside_the_package() -> None:
    from importlib import resources

    files = resources.files("leadstream.domain.policies")
    assert files.joinpath("us_tcpa_rules.csv").read_text().startswith(HEADER)
    assert files.joinpath("us_area_codes.csv").read_text().startswith("areaCode,state\n")


def test_the_module_stays_pure() -> None:
    tree = ast.parse(Path(us_tcpa.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"faust", "confluent_kafka", "rocksdict", "aiokafka", "leadstream"}


# -- area codes ----------------------------------------------------------------------------


def _area_codes() -> list[tuple[str, str]]:
    from importlib import resources

    text = resources.files("leadstream.domain.policies").joinpath("us_area_codes.csv")
    rows = list(csv.reader(io.StringIO(text.read_text())))
    assert rows[0] == ["areaCode", "state"]
    return [(area, state) for area, state in rows[1:]]


def test_every_area_code_maps_to_a_usps_code() -> None:
    rows = _area_codes()
    areas = [area for area, _ in rows]
    assert len(areas) == len(set(areas)) > 300
    for area, state in rows:
        assert area.isdigit() and 200 <= int(area) <= 999 and area[1:] != "11"
        assert state in USPS, area
    table = dict(rows)
    assert {"212": "NY", "305": "FL", "202": "DC", "787": "PR", "671": "GU"}.items() <= (
        table.items()
    )
    assert not {"416", "604", "242", "800", "888", "900"} & table.keys()
    assert set(table.values()) == USPS


# -- days ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "day", "rule"),
    [
        ("AL", date(2026, 7, 3), "us-al-hol"),  # Independence Day on a Saturday: observed
        ("AL", date(2026, 7, 4), "us-al-hol"),
        ("AL", date(2026, 4, 27), "us-al-hol"),  # 4th Monday of April
        ("AL", date(2026, 6, 1), "us-al-hol"),  # 1st Monday of June
        ("AL", date(2026, 2, 17), "us-al-hol"),  # Mardi Gras (Easter 2026-04-05)
        ("AL", date(2026, 12, 1), "us-al-hol"),
        ("AL", date(2027, 12, 31), "us-al-hol"),  # New Year's Day 2028 is a Saturday
        ("LA", date(2026, 4, 3), "us-la-hol"),  # Good Friday
        ("LA", date(2027, 2, 9), "us-la-hol"),  # Mardi Gras (Easter 2027-03-28)
        ("LA", date(2026, 11, 27), "us-la-hol"),  # the day after Thanksgiving
        ("LA", date(2026, 1, 19), "us-la-hol"),
        ("RI", date(2026, 8, 10), "us-ri-hol"),  # Victory Day, 2nd Monday of August
        ("RI", date(2026, 5, 4), "us-ri-hol"),
        ("RI", date(2027, 12, 24), "us-ri-hol"),  # Christmas 2027 is a Saturday
        ("UT", date(2027, 7, 23), "us-ut-hol"),  # Pioneer Day 2027 is a Saturday
        ("UT", date(2026, 5, 25), "us-ut-hol"),  # Memorial Day, last Monday of May
        ("UT", date(2026, 6, 19), "us-ut-hol"),
        ("MS", date(2026, 1, 18), "us-ms-sun"),
    ],
)
def test_holidays_and_sundays_are_quiet_on_the_local_date(state: str, day: date, rule: str) -> None:
    decision = _decide(state, day, 12 * 60)
    assert (decision.quiet, decision.rule) == (True, rule)


@pytest.mark.parametrize(
    ("state", "day"),
    [
        ("AL", date(2026, 4, 20)),  # the 3rd Monday of April
        ("AL", date(2026, 6, 8)),
        ("RI", date(2026, 8, 3)),  # the 1st Monday of August
        ("MS", THANKSGIVING),  # Mississippi's holiday rule was repealed
        ("TX", THANKSGIVING),
        (None, THANKSGIVING),  # the federal row knows no holidays
        ("UT", date(2026, 7, 23)),  # Pioneer Day 2026 is a Friday: no observed day before
    ],
)
def test_ordinary_days_are_not_holidays(state: str | None, day: date) -> None:
    assert not _decide(state, day, 12 * 60).quiet


def test_a_holiday_is_judged_on_the_local_date_not_utc() -> None:
    # 23:30 on Dec 25 in Salt Lake City is already Dec 26 in UTC.
    phone, zone = PHONES["UT"]
    christmas_evening = _at(zone, date(2026, 12, 25), 23 * 60 + 30)
    assert datetime.fromtimestamp(christmas_evening / 1000, UTC).day == 26
    decision = POLICY.decide(phone, christmas_evening)
    assert decision is not None and decision.rule == "us-ut-hol"
    morning_after = POLICY.decide(phone, _at(zone, date(2026, 12, 26), 12 * 60))
    assert morning_after is not None and not morning_after.quiet  # a Saturday


@pytest.mark.parametrize(
    "easter",
    [date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2027, 3, 28), date(2038, 4, 25)],
)
def test_easter(easter: date) -> None:
    assert us_tcpa._easter(easter.year) == easter


# -- the clock changes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sunday", [date(2026, 3, 8), date(2026, 11, 1), date(2027, 3, 14), date(2027, 11, 7)]
)
def test_the_hours_hold_on_the_sundays_the_clocks_change(sunday: date) -> None:
    assert _decide(None, sunday, 7 * 60 + 59).quiet
    assert not _decide(None, sunday, 8 * 60).quiet
    assert _decide("TX", sunday, 11 * 60 + 59).rule == "us-tx-sun"
    assert not _decide("TX", sunday, 12 * 60).quiet
    assert _decide("AL", sunday, 12 * 60).rule == "us-al-sun"


@pytest.mark.parametrize(
    ("utc", "local", "quiet"),
    [
        (datetime(2026, 3, 7, 12, 30, tzinfo=UTC), "07:30", True),  # EST, UTC-5
        (datetime(2026, 3, 8, 12, 30, tzinfo=UTC), "08:30", False),  # EDT, UTC-4
        (datetime(2026, 10, 31, 12, 30, tzinfo=UTC), "08:30", False),
        (datetime(2026, 11, 1, 12, 30, tzinfo=UTC), "07:30", True),
        (datetime(2027, 3, 13, 12, 30, tzinfo=UTC), "07:30", True),
        (datetime(2027, 3, 14, 12, 30, tzinfo=UTC), "08:30", False),
        (datetime(2027, 11, 6, 12, 30, tzinfo=UTC), "08:30", False),
        (datetime(2027, 11, 7, 12, 30, tzinfo=UTC), "07:30", True),
    ],
)
def test_the_same_utc_clock_is_a_different_local_hour_across_a_change(
    utc: datetime, local: str, quiet: bool
) -> None:
    decision = POLICY.decide(NEW_YORK[0], _ms(utc))
    assert decision == PolicyDecision(quiet, "federal", "NY", "America/New_York", local)


def test_arizona_keeps_its_clock_when_the_others_change() -> None:
    for day in (date(2026, 3, 7), date(2026, 3, 8)):
        moment = _ms(datetime.combine(day, time(15, 30), UTC))
        decision = POLICY.decide("+16022345678", moment)
        assert decision == PolicyDecision(False, "federal", "AZ", "America/Phoenix", "08:30")


@settings(max_examples=300, deadline=None)
@given(st.integers(_ms(datetime(2026, 1, 1, tzinfo=UTC)), _ms(datetime(2028, 1, 1, tzinfo=UTC))))
def test_florida_is_quiet_exactly_outside_eight_to_eight_local(at_ms: int) -> None:
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(ZoneInfo("America/New_York"))
    decision = POLICY.decide(PHONES["FL"][0], at_ms)
    assert decision is not None
    assert decision.local_time == local.strftime("%H:%M")
    assert decision.quiet == (not 8 <= local.hour < 20)
    assert decision.rule == "us-fl"


# -- zones ---------------------------------------------------------------------------------


def test_several_zones_are_quiet_when_quiet_in_any_and_name_that_zone() -> None:
    phone = "+12083001234"  # Idaho: Boise (Mountain) or Los Angeles (Pacific)
    assert us_tcpa._zones("208300") == ("America/Boise", "America/Los_Angeles")
    morning = POLICY.decide(phone, _ms(datetime(2026, 1, 14, 15, 30, tzinfo=UTC)))
    assert morning == PolicyDecision(True, "federal", "ID", "America/Los_Angeles", "07:30")
    night = POLICY.decide(phone, _ms(datetime(2026, 1, 15, 4, 30, tzinfo=UTC)))
    assert night == PolicyDecision(True, "federal", "ID", "America/Boise", "21:30")
    day = POLICY.decide(phone, _ms(datetime(2026, 1, 14, 17, 0, tzinfo=UTC)))
    assert day is not None and not day.quiet and day.rule == "federal"


def test_a_number_placed_in_no_zone_uses_its_states_principal_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(us_tcpa, "_zones", lambda prefix: ())
    policy = load_policy()
    decision = _decide("TX", WEDNESDAY, 8 * 60 + 59, policy)
    assert (decision.quiet, decision.rule) == (True, "us-tx")
    unplaced = load_policy()
    monkeypatch.setattr(us_tcpa, "_PRINCIPAL_ZONE", {})
    decision = unplaced.decide(PHONES["TX"][0], _at("America/Chicago", WEDNESDAY, 720))
    assert decision == PolicyDecision(True, "unknown-zone", "TX", None, None)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([a for a, _ in _area_codes()]), st.integers(2_000_000, 9_999_999))
def test_zones_cached_by_prefix_are_the_zones_of_the_whole_number(area: str, rest: int) -> None:
    national = f"{area}{rest}"
    number = phonenumbers.parse(f"+1{national}")
    whole = phone_timezones.time_zones_for_geographical_number(number)
    expected = tuple(zone for zone in whole if zone != "Etc/Unknown")
    assert us_tcpa._zones(national[: us_tcpa._ZONE_KEY_DIGITS]) == expected


# -- numbers it does not apply to --------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+447911123456",
        "+14165550123",  # Toronto
        "+16045550123",  # Vancouver
        "+12425550123",  # the Bahamas
        "+1212234567",
        "12122345678",
        "+1212234567x",
        "+1２１２2345678",
        "",
    ],
)
def test_numbers_outside_the_us_get_no_decision(phone: str) -> None:
    assert POLICY.decide(phone, _at("UTC", WEDNESDAY, 0)) is None


def test_territories_are_us_numbers_with_the_federal_row_in_their_zone() -> None:
    puerto_rico = POLICY.decide("+17872345678", _at("America/Puerto_Rico", WEDNESDAY, 8 * 60))
    assert puerto_rico == PolicyDecision(False, "federal", "PR", "America/Puerto_Rico", "08:00")
    guam = POLICY.decide("+16712345678", _at("Pacific/Guam", WEDNESDAY, 21 * 60))
    assert guam == PolicyDecision(True, "federal", "GU", "Pacific/Guam", "21:00")


def test_us_numbers_without_a_place_are_quiet() -> None:
    for phone in ("+18005550123", "+18885550123", "+15005550123"):
        decision = POLICY.decide(phone, _at("America/New_York", WEDNESDAY, 12 * 60))
        assert decision == PolicyDecision(True, "unknown-zone", None, None, None)


# -- operator tables -----------------------------------------------------------------------


def test_an_operator_file_replaces_the_shipped_table(tmp_path: Path) -> None:
    path = _table(
        tmp_path,
        HEADER,
        "federal,,all,08:00,21:00,47 CFR 64.1200(c)(1),2027-01-04,counsel checked",
        'acme-ny,NY,mon-fri|2026-01-17,10:00,16:00,house rule,2027-01-05,"ours, not a law"',
    )
    policy = load_policy(path)
    assert [r.rule for r in policy.rules] == ["federal", "acme-ny"]
    assert policy.checked == date(2027, 1, 5)
    florida = _decide("FL", WEDNESDAY, 20 * 60 + 30, policy)  # us-fl is gone
    assert (florida.quiet, florida.rule) == (False, "federal")
    assert _decide(None, WEDNESDAY, 9 * 60 + 59, policy).rule == "acme-ny"
    assert _decide(None, SATURDAY, 9 * 60 + 59, policy).rule == "acme-ny"  # the dated day
    assert not _decide(None, SATURDAY + timedelta(days=7), 9 * 60 + 59, policy).quiet


def test_an_operator_file_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text(f"{HEADER}\r\n{FEDERAL}\r\n", encoding="utf-8-sig")
    assert [r.rule for r in load_policy(path).rules] == ["federal"]


ROW = "us-fl,FL,all,08:00,20:00,Fla. Stat.,2026-12-07,note"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([HEADER + ",extra", FEDERAL], "line 1: unknown column 'extra'"),
        ([HEADER.replace(",note", ""), FEDERAL], "line 1: column 'note' must appear once"),
        ([], "line 1: column 'rule' must appear once"),
        ([HEADER, FEDERAL, ROW.replace("08:00", "8:00")], "line 3: start '8:00' is not HH:MM"),
        ([HEADER, FEDERAL, ROW.replace("20:00", "24:01")], "line 3: end '24:01' is not HH:MM"),
        ([HEADER, FEDERAL, ROW.replace("08:00", "21:00")], "line 3: start 21:00 is after end"),
        ([HEADER, ROW.replace(",all,", ",weekdays,")], "line 2: unknown days word 'weekdays'"),
        ([HEADER, ROW.replace(",all,", ",sat-mon,")], "line 2: days range 'sat-mon'"),
        ([HEADER, ROW.replace(",all,", ",mon|02-30,")], "line 2: no such date 02-30"),
        ([HEADER, ROW.replace(",all,", ",2026-02-30,")], "line 2: no such date '2026-02-30'"),
        ([HEADER, ROW.replace(",all,", ",easter+400,")], "line 2: day offset +400"),
        ([HEADER, ROW.replace(",all,", ",,")], "line 2: unknown days word ''"),
        ([HEADER, FEDERAL, ROW.replace(",FL,", ",ZZ,")], "line 3: unknown state code 'ZZ'"),
        ([HEADER, FEDERAL, ROW.replace(",FL,", ",fl,")], "line 3: unknown state code 'fl'"),
        ([HEADER, FEDERAL, ROW.replace("2026-12-07", "2026-13-01")], "line 3: checked"),
        ([HEADER, FEDERAL, ROW.replace("2026-12-07", "12/07/2026")], "line 3: checked"),
        ([HEADER, FEDERAL, FEDERAL], "line 3: rule 'federal' appears twice"),
        ([HEADER, FEDERAL, ROW.replace("us-fl", "unknown-zone")], "line 3: rule 'unknown-zone'"),
        ([HEADER, FEDERAL, ROW.replace("us-fl", "US FL")], "line 3: rule 'US FL' must be"),
        ([HEADER, FEDERAL, ROW + ",more"], "line 3: 9 fields, the header has 8"),
        ([HEADER, FEDERAL, ROW.replace("Fla. Stat.", "")], "line 3: source is empty"),
        ([HEADER, ROW], "no federal row"),
        ([HEADER, FEDERAL, '"x,FL', ROW], "line 3: 1 fields"),  # where an unclosed quote opens
    ],
)
def test_a_bad_operator_file_is_refused_naming_the_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = _table(tmp_path, *lines)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}(, line \d+)?: ") as refused:
        load_policy(path)
    assert message in str(refused.value)


def test_line_numbers_count_lines_of_the_file_not_rows(tmp_path: Path) -> None:
    note = '"a note\nover two lines"'
    path = _table(tmp_path, HEADER, FEDERAL.replace("floor", note), "", ROW.replace("08", "8"))
    with pytest.raises(ValueError, match="line 5: start '8:00'"):
        load_policy(path)


def test_blank_lines_and_spaces_around_fields_are_allowed(tmp_path: Path) -> None:
    path = _table(
        tmp_path, HEADER, "", " federal , , all , 08:00 , 21:00 , 47 CFR , 2026-12-07 , x"
    )
    (rule,) = load_policy(path).rules
    assert (rule.rule, rule.state, rule.days, rule.start_minute) == ("federal", None, "all", 480)
