"""docs/contract.md, section 1: canonical forms of the scalar fields and the reason codes of bad ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from leadstream.domain.normalize import (
    MAX_METADATA_BYTES,
    MIN_OCCURRED_AT_MS,
    format_ms,
    normalize_event_type,
    normalize_metadata,
    normalize_occurred_at,
    normalize_organization_id,
    normalize_phone,
    parse_rfc3339_ms,
)
from leadstream.domain.rejects import Reason, RowError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW_MS = parse_rfc3339_ms("2026-05-12T18:34:00Z")
SKEW_MS = 900_000
# Last millisecond of 9999-12-31, the largest instant a 4-digit year can write.
MAX_MS = 253_402_300_799_999

PROPS = settings(max_examples=150, deadline=None)


def reason_of(fn, *args, **kwargs) -> Reason:
    with pytest.raises(RowError) as info:
        fn(*args, **kwargs)
    return info.value.reason


def ms_of(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


# --- phoneE164 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+15551234567",
        "15551234567",
        "(555) 123-4567",
        "555-123-4567",
        "+1 (555) 123-4567",
        "555.123.4567",
        15551234567,
    ],
)
def test_us_phone_spellings_are_one_lead(raw):
    assert normalize_phone(raw, "US") == "+15551234567"


def test_default_region_applies_to_national_numbers():
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("07700 900123", "GB") == "+447700900123"
    # An explicit country code wins over the default region.
    assert normalize_phone("+15551234567", "GB") == "+15551234567"
    assert normalize_phone("+44 20 7946 0958", "US") == "+442079460958"


def test_same_national_digits_differ_by_region():
    assert normalize_phone("2079460958", "GB") != normalize_phone("2079460958", "US")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", Reason.INVALID_PHONE),
        ("", Reason.INVALID_PHONE),
        ("123", Reason.INVALID_PHONE),
        ("+1555", Reason.INVALID_PHONE),
        ("+155512345678901234", Reason.INVALID_PHONE),
        ("+999 1234567", Reason.INVALID_PHONE),
        (123, Reason.INVALID_PHONE),
        (True, Reason.INVALID_PHONE),
        (1.5, Reason.INVALID_PHONE),
        (["+15551234567"], Reason.INVALID_PHONE),
        ({"n": "+15551234567"}, Reason.INVALID_PHONE),
        (None, Reason.MISSING_FIELD),
    ],
)
def test_bad_phones_have_their_reason(raw, reason):
    assert reason_of(normalize_phone, raw, "US") == reason


@PROPS
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\+?[0-9 ()+.-]{0,25}", fullmatch=True)))
def test_phone_never_raises_anything_but_rowerror(raw):
    try:
        out = normalize_phone(raw, "US")
    except RowError as err:
        assert err.reason == Reason.INVALID_PHONE
    else:
        assert re.fullmatch(r"\+[1-9][0-9]{1,16}", out), out
        # canonical form is a fixed point
        assert normalize_phone(out, "US") == out
        assert normalize_phone(out, "GB") == out


# --- eventType -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a", "mastery_purchase", "Webinar Attended", "x" * 100, "ünïcödé", "a b", "🎉"]
)
def test_event_type_kept_exactly(value):
    assert normalize_event_type(value) == value


def test_event_type_is_case_sensitive():
    assert normalize_event_type("Buy") != normalize_event_type("buy")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 101,
        " buy",
        "buy ",
        "\tbuy",
        "buy\n",
        " ",
        "\u00a0buy",
        "bu\x00y",
        "bu\ty",
        "bu\ny",
        "bu\x7fy",
        "bu\x85y",
        "bu\x1by",
    ],
)
def test_bad_event_types_are_rejected_not_trimmed(value):
    assert reason_of(normalize_event_type, value) == Reason.INVALID_EVENT_TYPE


@pytest.mark.parametrize("value", [1, 1.5, True, ["buy"], {"t": "buy"}, b"buy"])
def test_non_string_event_type(value):
    assert reason_of(normalize_event_type, value) == Reason.INVALID_EVENT_TYPE


def test_missing_event_type():
    assert reason_of(normalize_event_type, None) == Reason.MISSING_FIELD


@PROPS
@given(st.text(max_size=120))
def test_event_type_rule_matches_spec(value):
    ok = (
        1 <= len(value) <= 100
        and value == value.strip()
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    )
    if ok:
        assert normalize_event_type(value) == value
    else:
        assert reason_of(normalize_event_type, value) == Reason.INVALID_EVENT_TYPE


# --- occurredAt ------------------------------------------------------------------------------


def occ(value):
    return normalize_occurred_at(value, now_ms=NOW_MS, max_future_skew_ms=SKEW_MS)


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-12T18:34:00Z",
        "2026-05-12T20:34:00.000+02:00",
        "2026-05-12T20:34:00+02:00",
        "2026-05-12T13:04:00-05:30",
        "2026-05-12T18:34:00+00:00",
        "2026-05-12T18:34:00-00:00",
        "2026-05-12t18:34:00z",
        "2026-05-12 18:34:00Z",
        "2026-05-12T18:34:00.0Z",
        "2026-05-12T18:34:00.000000000Z",
        "2026-05-13T00:04:00+05:30",
    ],
)
def test_same_instant_however_written(value):
    assert occ(value) == ms_of(datetime(2026, 5, 12, 18, 34, tzinfo=UTC))


@pytest.mark.parametrize(
    ("value", "expected_ms_part"),
    [
        ("2026-05-12T18:34:00.1Z", 100),
        ("2026-05-12T18:34:00.12Z", 120),
        ("2026-05-12T18:34:00.123Z", 123),
        ("2026-05-12T18:34:00.1239Z", 123),
        ("2026-05-12T18:34:00.999999999Z", 999),
        ("2026-05-12T18:34:00.000999Z", 0),
    ],
)
def test_sub_millisecond_truncated(value, expected_ms_part):
    base = ms_of(datetime(2026, 5, 12, 18, 34, tzinfo=UTC))
    assert parse_rfc3339_ms(value) == base + expected_ms_part


def test_truncation_is_toward_the_past_before_1970():
    # 1969-12-31T23:59:59.9999Z is 0.1 ms before the epoch: truncated to -1 ms, not 0.
    assert parse_rfc3339_ms("1969-12-31T23:59:59.9999Z") == -1


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-12T18:34:00",  # no offset
        "2026-05-12T18:34:00.000",
        "2026-05-12",
        "18:34:00Z",
        "2026-05-12T18:34Z",  # no seconds
        "2026-05-12T18:34:00+0200",  # offset without colon
        "2026-05-12T18:34:00+02",
        "2026-05-12T18:34:00 Z",
        "2026-05-12T18:34:00.Z",
        " 2026-05-12T18:34:00Z",
        "2026-05-12T18:34:00Z ",
        "2026-5-12T18:34:00Z",
        "2026/05/12T18:34:00Z",
        "2026-02-30T00:00:00Z",  # Feb 30
        "2025-02-29T00:00:00Z",  # not a leap year
        "2100-02-29T00:00:00Z",  # century, not a leap year
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-05-00T00:00:00Z",
        "2026-05-12T24:00:00Z",  # hour 24
        "2026-05-12T18:60:00Z",
        "2026-05-12T18:34:61Z",
        "2026-05-12T18:34:00+24:00",  # offset +24:00
        "2026-05-12T18:34:00-24:00",
        "2026-05-12T18:34:00+02:60",
        "",
        "now",
        "1778610840000",
    ],
)
def test_bad_occurred_at_is_invalid(value):
    assert reason_of(occ, value) == Reason.INVALID_OCCURRED_AT


def test_leap_day_exists():
    assert occ("2024-02-29T12:00:00Z") == ms_of(datetime(2024, 2, 29, 12, tzinfo=UTC))
    assert occ("2000-02-29T00:00:00Z") == ms_of(datetime(2000, 2, 29, tzinfo=UTC))


@pytest.mark.parametrize("value", [1778610840000, 1778610840.0, True, ["2026-05-12T18:34:00Z"]])
def test_non_string_occurred_at(value):
    assert reason_of(occ, value) == Reason.INVALID_OCCURRED_AT


def test_missing_occurred_at():
    assert reason_of(occ, None) == Reason.MISSING_FIELD


@pytest.mark.parametrize(
    "value",
    [
        "1999-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00Z",
        "1999-06-01T00:00:00Z",
        "2000-01-01T00:30:00+01:00",  # 1999-12-31T23:30Z
        "0001-01-01T00:00:00Z",
    ],
)
def test_before_2000_is_out_of_range(value):
    assert reason_of(occ, value) == Reason.OCCURRED_AT_OUT_OF_RANGE


def test_2000_boundary_is_accepted():
    assert occ("2000-01-01T00:00:00Z") == MIN_OCCURRED_AT_MS
    assert occ("2000-01-01T01:00:00+01:00") == MIN_OCCURRED_AT_MS


def test_future_skew_boundary():
    limit = NOW_MS + SKEW_MS
    assert occ(format_ms(limit)) == limit
    assert reason_of(occ, format_ms(limit + 1)) == Reason.OCCURRED_AT_OUT_OF_RANGE
    assert reason_of(occ, "2030-01-01T00:00:00Z") == Reason.OCCURRED_AT_OUT_OF_RANGE
    # the skew is a parameter, not a constant
    assert (
        normalize_occurred_at(format_ms(limit + 1), now_ms=NOW_MS, max_future_skew_ms=SKEW_MS + 1)
        == limit + 1
    )


def test_year_zero_is_a_reject_not_a_crash():
    """Year 0000 matches the pattern; it must become a RowError, never a bare ValueError.

    Found bug: ``calendar.timegm`` raises ``ValueError: year 0 is out of range``.
    """
    with pytest.raises(RowError) as info:
        occ("0000-01-01T00:00:00Z")
    assert info.value.reason in (Reason.INVALID_OCCURRED_AT, Reason.OCCURRED_AT_OUT_OF_RANGE)


@pytest.mark.parametrize(
    "value",
    [
        "\u0662\u0660\u0662\u0666-05-12T18:34:00Z",  # Arabic-Indic digits for 2026
        "2026-05-12T18:34:00.\u0661\u0662\u0663Z",
        "\uff12\uff10\uff12\uff16-05-12T18:34:00Z",  # fullwidth digits
    ],
)
def test_only_ascii_digits_are_rfc3339(value):
    """RFC 3339 DIGIT is %x30-39.

    Found bug: the pattern uses ``\\d``, which matches any Unicode digit.
    """
    assert reason_of(occ, value) == Reason.INVALID_OCCURRED_AT


def test_long_fractions_are_rfc3339():
    """RFC 3339 allows any number of fraction digits (``time-secfrac = "." 1*DIGIT``).

    Found bug: the pattern stops at 9 digits, so a valid 10-digit fraction is rejected.
    """
    assert occ("2026-05-12T18:34:00.1234567891Z") == NOW_MS + 123


@PROPS
@given(
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["Z", "+", "-"]),
    st.integers(0, 25),
    st.integers(0, 61),
)
@example(0, 1, 1, 0, 0, 0, "Z", 0, 0)  # year 0000
@example(2024, 2, 29, 23, 59, 59, "-", 23, 59)
@example(2026, 2, 29, 0, 0, 0, "+", 24, 0)
def test_parse_against_datetime_oracle(year, month, day, hour, minute, second, sign, oh, om):
    """Any ASCII timestamp of the right shape parses to datetime's answer or is a RowError."""
    offset = "Z" if sign == "Z" else f"{sign}{oh:02d}:{om:02d}"
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{offset}"
    try:
        if sign != "Z" and om > 59:  # timezone() takes 60 minutes; RFC 3339 allows 00-59
            raise ValueError(om)
        delta = (1 if sign == "+" else -1) * timedelta(hours=oh, minutes=om)
        tz = UTC if sign == "Z" else timezone(delta)
        expected = ms_of(datetime(year, month, day, hour, minute, second, tzinfo=tz))
    except ValueError:
        expected = None
    if expected is None:
        assert reason_of(parse_rfc3339_ms, text) == Reason.INVALID_OCCURRED_AT
    else:
        assert parse_rfc3339_ms(text) == expected


# --- format_ms -------------------------------------------------------------------------------


def test_format_ms_shape():
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_ms(MIN_OCCURRED_AT_MS) == "2000-01-01T00:00:00.000Z"
    assert format_ms(NOW_MS + 7) == "2026-05-12T18:34:00.007Z"
    assert format_ms(MAX_MS) == "9999-12-31T23:59:59.999Z"


@PROPS
@given(st.integers(min_value=0, max_value=MAX_MS))
def test_format_parse_round_trip(ms):
    text = format_ms(ms)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", text)
    assert parse_rfc3339_ms(text) == ms
    expected = (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if ms >= ms_of(datetime(1000, 1, 1, tzinfo=UTC)):
        assert text == expected


@PROPS
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.sampled_from(["T", "t", " "]),
)
def test_parse_agrees_with_datetime(naive, offset_minutes, sep):
    dt = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = dt.isoformat(sep=sep, timespec="microseconds")
    expected = ms_of(dt)
    assert parse_rfc3339_ms(text) == expected
    assert parse_rfc3339_ms(dt.isoformat(timespec="milliseconds")) == expected
    # the normalized form is UTC and names the same instant
    assert format_ms(expected) == (dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")


# --- organizationId --------------------------------------------------------------------------


def test_int_and_string_org_are_the_same():
    assert normalize_organization_id(42) == normalize_organization_id("42") == "42"


@pytest.mark.parametrize("value", ["org_1", "A-b_9", "x" * 64, "0", "-", 1, 10**63])
def test_valid_org_ids(value):
    assert normalize_organization_id(value) == str(value)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        True,
        False,
        1.5,
        42.0,
        "a b",
        "x" * 65,
        "",
        "org/1",
        "org.1",
        "ü",
        "42\n",
        10**64,
        [42],
        {"id": 42},
    ],
)
def test_invalid_org_ids(value):
    assert reason_of(normalize_organization_id, value) == Reason.INVALID_ORGANIZATION_ID


def test_missing_org_id():
    assert reason_of(normalize_organization_id, None) == Reason.MISSING_FIELD


# --- metadata --------------------------------------------------------------------------------


def _metadata_of_size(n: int) -> dict:
    # {"k":"..."} is 8 bytes of framing plus the string
    value = {"k": "x" * (n - 8)}
    assert len(msgspec.json.encode(value)) == n
    return value


def test_metadata_size_limit():
    assert MAX_METADATA_BYTES == 4096
    ok = _metadata_of_size(4096)
    assert normalize_metadata(ok) == msgspec.json.encode(ok)
    assert reason_of(normalize_metadata, _metadata_of_size(4097)) == Reason.METADATA_TOO_LARGE


def test_metadata_size_counts_utf8_bytes():
    # two-byte characters: 2,044 of them serialize to 4,096 bytes, 2,045 to 4,098
    assert normalize_metadata({"k": "é" * 2044}) is not None
    assert reason_of(normalize_metadata, {"k": "é" * 2045}) == Reason.METADATA_TOO_LARGE


def test_metadata_optional_and_objects_only():
    assert normalize_metadata(None) is None
    assert normalize_metadata({}) == b"{}"
    assert normalize_metadata({"a": [1, {"b": None}]}) == b'{"a":[1,{"b":null}]}'
    for bad in ([1, 2], "x", 1, True, 1.5):
        assert reason_of(normalize_metadata, bad) == Reason.INVALID_JSON


@pytest.mark.parametrize("raw", ["+49000000", "+4900000000"])
def test_a_number_whose_e164_form_is_not_stable_is_refused(raw):
    # Found by the property above: libphonenumber drops a zero on each formatting.
    assert reason_of(normalize_phone, raw, "US") == Reason.INVALID_PHONE
