"""normalize_phone's fast path and cache answer exactly what the plain phonenumbers path does.

The reference is ``_normalize_phone_slow``, the original parse/is-possible/format code kept
verbatim. Every property calls ``normalize_phone`` twice (the second call can be a cache
hit) and demands the reference's outcome both times: the same string, or a RowError with the
same reason and detail (or the same other exception). Strategies aim at the fast path
(``+`` and ASCII digits with every country code phonenumbers knows, lengths at and around
the possible ones) and at everything next to it that must fall back.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from phonenumbers.phonemetadata import PhoneMetadata

from leadstream.domain.normalize import _normalize_phone_slow, _phone_outcome, normalize_phone
from leadstream.domain.phone_fast import canonical_e164
from leadstream.domain.rejects import Reason, RowError

CCS = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
DIGITS = "0123456789"


def _general_desc(cc: int):
    region = phonenumbers.region_code_for_country_code(cc)
    md = PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
    assert md is not None
    return md.general_desc


# NSN lengths phonenumbers calls possible, and those it calls possible locally only.
POSSIBLE = {cc: tuple(_general_desc(cc).possible_length) for cc in CCS}
LENGTHS = {cc: POSSIBLE[cc] + tuple(_general_desc(cc).possible_length_local_only) for cc in CCS}

# Other scripts' digits phonenumbers folds to ASCII (and some it does not).
DIGIT_SETS = [
    "٠١٢٣٤٥٦٧٨٩",  # Arabic-Indic
    "۰۱۲۳۴۵۶۷۸۹",  # Extended Arabic-Indic
    "０１２３４５６７８９",  # fullwidth
    "०१२३४५६७८९",  # Devanagari
    "⁰¹²³⁴⁵⁶⁷⁸⁹",  # superscripts: isdigit() but not decimal
]

MAIN = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(fn, value, region):
    try:
        out = fn(value, region)
    except RowError as err:
        return ("row_error", err.reason, err.detail)
    except Exception as err:  # the reference may fail otherwise; so must the new code
        return ("exception", type(err), str(err))
    return ("ok", type(out), out)


def assert_same(value, region) -> None:
    expected = outcome(_normalize_phone_slow, value, region)
    assert outcome(normalize_phone, value, region) == expected, (value, region)
    # Again: now possibly from the cache, and an error must be raised again.
    assert outcome(normalize_phone, value, region) == expected, (value, region)


# --- strategies ------------------------------------------------------------------------------

regions = st.one_of(
    st.sampled_from(REGIONS),
    st.sampled_from(["US", "GB", "BR", "IT", "AR", "RU", "001", "ZZ", "us", "gb", "XX", "", "U"]),
    st.text(min_size=2, max_size=2),
)
ccs = st.sampled_from(CCS)


@st.composite
def canonical(draw) -> str:
    """``+<cc><nsn>`` with a known country code and an NSN length at or next to a possible one.

    Some NSNs start with zeros (Italian leading zeros, national prefixes "0"/"00").
    """
    cc = draw(ccs)
    length = draw(st.sampled_from(LENGTHS[cc])) + draw(st.sampled_from([-1, 0, 0, 0, 0, 1]))
    length = max(length, 0)
    zeros = min(draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3])), length)
    rest = draw(st.text(DIGITS, min_size=length - zeros, max_size=length - zeros))
    return f"+{cc}{'0' * zeros}{rest}"


@st.composite
def likely_valid(draw) -> str:
    """``+<cc><nsn>`` with a possible NSN length not starting with 0: mostly the fast path."""
    cc = draw(ccs)
    length = draw(st.sampled_from(POSSIBLE[cc]))
    first = draw(st.sampled_from("23456789" if cc == 1 else "123456789"))
    rest = draw(st.text(DIGITS, min_size=length - 1, max_size=length - 1))
    return f"+{cc}{first}{rest}"


plus_random = st.builds(lambda d: "+" + d, st.text(DIGITS, min_size=1, max_size=20))
plus_cc_random = st.builds(lambda cc, d: f"+{cc}{d}", ccs, st.text(DIGITS, min_size=0, max_size=18))


@st.composite
def nanp(draw) -> str:
    """+1 numbers whose area code or exchange start with 0 or 1, and one digit short or long."""
    lead = st.sampled_from("0011123456789")
    area = draw(lead) + draw(st.text(DIGITS, min_size=2, max_size=2))
    exchange = draw(lead) + draw(st.text(DIGITS, min_size=2, max_size=2))
    line = draw(st.text(DIGITS, min_size=3, max_size=5))
    return f"+1{area}{exchange}{line}"


def _respell(value: str, draw) -> str:
    """One of the spellings of ``value`` that is not ``+`` and ASCII digits only."""
    kind = draw(st.sampled_from(["digits", "punct", "prefix", "bare", "ext", "space"]))
    if kind == "digits":
        table = draw(st.sampled_from(DIGIT_SETS))
        return "".join(
            table[int(ch)] if ch.isdigit() and draw(st.booleans()) else ch for ch in value
        )
    if kind == "punct":
        out = []
        for ch in value:
            out.append(ch)
            if draw(st.integers(0, 3)) == 0:
                out.append(draw(st.sampled_from([" ", "-", "(", ")", ".", "/", "\u00a0", "\t"])))
        return "".join(out)
    if kind == "prefix":
        return draw(st.sampled_from(["00", "011", "＋", "++", "+0", "tel:+", "8"])) + value[1:]
    if kind == "bare":
        return value[1:]
    if kind == "ext":
        return value + draw(st.sampled_from([" ext 12", "x7", ";ext=1", "#", " - 503#", ",,5"]))
    return draw(st.sampled_from([" ", "", "\n"])) + value + draw(st.sampled_from([" ", "\n", "."]))


@st.composite
def respelled(draw) -> str:
    return _respell(draw(st.one_of(canonical(), nanp())), draw)


as_int = st.builds(lambda s: int(s[1:]) if s[1:].isdigit() else 0, st.one_of(canonical(), nanp()))
# Weighted towards the fast path (about half of the examples take it, see the events).
_WEIGHTED = [likely_valid()] * 6 + [canonical()] * 2 + [plus_cc_random, plus_random, nanp()]
_WEIGHTED.append(respelled())
phones = st.integers(0, len(_WEIGHTED) - 1).flatmap(lambda i: _WEIGHTED[i])


# --- properties ------------------------------------------------------------------------------


@MAIN
@given(phones, regions)
@example("+14155550123", "US")
@example("+390612345678", "IT")  # Italian leading zero
@example("+5491123456789", "AR")  # empty match of AR's national prefix pattern
@example("+78001234567", "RU")  # national prefix 8: fall back
@example("+11234567890", "US")  # NANP area code starting 1
@example("+123", "US")
@example("+0123456789", "US")
@example("+80012345678", "001")  # non-geographic entity with the world region
def test_same_answer_as_slow_path(value, region):
    event("fast path" if canonical_e164(value) is not None else "fallback")
    assert_same(value, region)


@SOME
@given(st.one_of(nanp(), st.builds(lambda s: "+1" + s, st.text(DIGITS, max_size=12))), regions)
def test_nanp_edges(value, region):
    assert_same(value, region)


@SOME
@given(respelled(), regions)
def test_other_spellings(value, region):
    assert_same(value, region)


@SOME
@given(st.one_of(as_int, st.integers(), st.text(max_size=30), st.none(), st.booleans()), regions)
def test_any_value(value, region):
    assert_same(value, region)


@SOME
@given(canonical())
def test_region_is_irrelevant_for_canonical_input(value):
    # The fast path ignores the region; the slow path must agree with that for every region.
    fast = canonical_e164(value)
    if fast is None:
        return
    for region in ("US", "GB", "DE", "AR", "001", "ZZ", "xx"):
        assert outcome(_normalize_phone_slow, value, region) == ("ok", str, fast)


def test_fast_path_is_hit_hard():
    # Guard against a fast path that quietly falls back for most canonical numbers: every
    # example number phonenumbers ships, of every region and type, is compared, and almost
    # all of them must be answered without parsing.
    seen = fast = 0
    for region in REGIONS:
        for num_type in range(11):
            number = phonenumbers.example_number_for_type(region, num_type)
            if number is None:
                continue
            value = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            seen += 1
            if canonical_e164(value) is not None:
                fast += 1
            assert_same(value, region)
            assert_same(value, "US")
    assert seen > 1000
    assert fast / seen > 0.97, (fast, seen)


# --- deterministic ---------------------------------------------------------------------------

REAL = [
    ("US", "+14155550123"),
    ("CA", "+16135550123"),
    ("GB", "+447911123456"),
    ("GB", "+442079460958"),
    ("BR", "+5511987654321"),
    ("DE", "+4915123456789"),
    ("FR", "+33612345678"),
    ("IT", "+393123456789"),
    ("IT", "+390612345678"),
    ("ES", "+34612345678"),
    ("NL", "+31612345678"),
    ("BE", "+32470123456"),
    ("CH", "+41791234567"),
    ("AT", "+436641234567"),
    ("SE", "+46701234567"),
    ("NO", "+4741234567"),
    ("DK", "+4520123456"),
    ("FI", "+358401234567"),
    ("PL", "+48512345678"),
    ("PT", "+351912345678"),
    ("IE", "+353851234567"),
    ("IN", "+919876543210"),
    ("CN", "+8613812345678"),
    ("JP", "+819012345678"),
    ("KR", "+821012345678"),
    ("AU", "+61412345678"),
    ("NZ", "+64211234567"),
    ("MX", "+525512345678"),
    ("AR", "+5491123456789"),
    ("CO", "+573001234567"),
    ("CL", "+56912345678"),
    ("ZA", "+27821234567"),
    ("NG", "+2348031234567"),
    ("EG", "+201001234567"),
    ("TR", "+905321234567"),
    ("RU", "+79161234567"),
    ("IL", "+972501234567"),
    ("AE", "+971501234567"),
    ("SG", "+6581234567"),
    ("HK", "+85291234567"),
    ("PH", "+639171234567"),
    ("ID", "+6281234567890"),
    ("CI", "+2250701234567"),
]


@pytest.mark.parametrize(("region", "value"), REAL)
def test_real_canonical_numbers_take_the_fast_path(region, value):
    assert canonical_e164(value) == value
    for default in (region, "US", "GB"):
        assert _normalize_phone_slow(value, default) == value
        assert normalize_phone(value, default) == value


@pytest.mark.parametrize(
    "value",
    [
        "+1 415 555 0123",  # spaces
        "+١٤١٥٥٥٥٠١٢٣",  # Arabic-Indic digits
        "+１４１５５５５０１２３",  # fullwidth digits
        "0014155550123",  # international prefix
        "+78001234567",  # RU toll free: national prefix pattern matches, slow path decides
        "+11234567890",  # NANP area code starting with 1
        "+1415555012",  # one digit short
        "+999123456789",  # no such country code
    ],
)
def test_non_canonical_spellings_fall_back(value):
    assert canonical_e164(value) is None
    assert_same(value, "US")


def test_errors_are_raised_every_time_with_the_same_reason_and_detail():
    for _ in range(3):
        with pytest.raises(RowError) as info:
            normalize_phone("555-1234", "US")
        assert info.value.reason == Reason.INVALID_PHONE
        assert info.value.detail == "'555-1234' lacks an area code"


def test_cache_keeps_types_apart():
    # True == 1 and hash(True) == hash(1): only exact str keys may share a cache entry.
    assert_same(1, "US")
    assert_same(True, "US")
    assert_same("1", "US")
    assert_same(14155550123, "US")
    assert_same(14155550123.0, "US")

    class Phone(str):
        pass

    assert_same(Phone("+14155550123"), "US")
    assert_same("+14155550123", None)


def test_long_values_are_not_cached():
    _phone_outcome.cache_clear()
    value = "+1 415 555 0123" + " " * 100
    assert_same(value, "US")
    assert _phone_outcome.cache_info().currsize == 0
