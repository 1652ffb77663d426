"""Whatever arrives, the pure rules answer with a value or a reasoned reject, never another
exception: random bytes into the bounded decoder, random JSON trees and wrong types in
every field into each topic's parser."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import parse_audience_members
from leadstream.domain.decode import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    _within,
    decode_json,
    nesting_exceeds,
)
from leadstream.domain.ingest import IngestRules, Rejected, parse_lead_events
from leadstream.domain.rejects import Reason, RowError
from leadstream.domain.sends import parse_audience_filter, parse_trigger
from leadstream.wire.records import MAX_REJECT_RAW_BYTES, encode_json, reject_record

NOW_MS = 1_780_000_000_000
RULES = IngestRules()

# Strings that matter to a depth scan and to the validators: brackets, quotes, escapes,
# control characters, non-ASCII, phone-like and date-like text.
tricky_text = st.sampled_from(
    [
        '"',
        "\\",
        '\\"',
        "[",
        "]",
        "{",
        "}",
        "[{",
        "\x00",
        "\n",
        " x ",
        "é",
        "\ud7ff",
        "+15551234567",
        "2026-05-12T18:34:00Z",
        "include",
        "exclude",
        "42",
    ]
)
text = st.text(max_size=40) | tricky_text
huge_int = st.integers(min_value=1, max_value=3000).map(lambda n: 10**n - 1)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | huge_int
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=25,
)


def shaped(keys: tuple[str, ...], **fixed: Any) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the contract's keys, each holding any JSON value at all."""
    return st.fixed_dictionaries(fixed, optional=dict.fromkeys(keys, json_values))


ROW_KEYS = ("phoneE164", "occurredAt", "eventType", "metadata")
event_values = (
    shaped(("organizationId", "eventType", "phoneE164", "occurredAt", "metadata"))
    | shaped(("organizationId", "eventType"), events=st.lists(shaped(ROW_KEYS) | json_values))
    | json_values
)
member_values = (
    shaped(("organizationId", "campaignId", "phoneE164", "externalId", "op"))
    | shaped(
        ("organizationId", "campaignId"),
        members=st.lists(shaped(("phoneE164", "externalId", "op")) | json_values),
    )
    | json_values
)
filter_shape = shaped(("mode", "eventType", "within", "minCount")) | json_values
trigger_values = (
    shaped(
        ("organizationId", "campaignId", "sendId", "scheduledFor", "eventFilter"),
        audienceFilter=shaped(("enabled",)) | json_values,
    )
    | shaped(
        ("organizationId", "campaignId", "sendId", "scheduledFor"),
        eventFilters=st.lists(filter_shape),
    )
    | json_values
)
filter_values = (
    shaped(
        ("organizationId", "campaignId", "sendId", "mode"),
        leads=st.lists(shaped(("externalId", "phoneE164")) | json_values),
    )
    | json_values
)

fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@fuzz
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_value_or_an_invalid_json_reject(raw: bytes) -> None:
    try:
        decode_json(raw)
    except RowError as err:
        assert err.reason is Reason.INVALID_JSON


@fuzz
@given(json_values, st.integers(min_value=1, max_value=6))
def test_the_depth_scan_agrees_with_the_tree(value: Any, limit: int) -> None:
    """Strings full of brackets, quotes and escapes do not fool it either way."""
    data = json.dumps(value).encode()
    skeleton = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = skeleton.translate(
        bytes.maketrans(b"{}", b"[]"), bytes(b for b in range(256) if b not in b'[]{}"')
    )
    assert (_within(limit).fullmatch(skeleton) is None) == (depth_of(value) > limit)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 5_000, 100_000])
def test_deep_values_are_refused_at_the_bound_and_not_before(depth: int) -> None:
    for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
        data = opening * depth + b"1" + closing * depth
        if depth <= MAX_JSON_DEPTH:
            assert depth_of(decode_json(data)) == depth
            assert not nesting_exceeds(data)
        else:
            with pytest.raises(RowError) as caught:
                decode_json(data)
            assert "deeper than 64" in caught.value.detail


def test_sizes_beyond_the_bound_are_refused_without_decoding() -> None:
    data = b'"' + b"x" * MAX_JSON_BYTES + b'"'
    with pytest.raises(RowError) as caught:
        decode_json(data)
    assert caught.value.reason is Reason.INVALID_JSON and "bytes" in caught.value.detail


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b'{"organizationId": NaN}',
        b"[1e400]",
        b"-" + b"9" * 5000,
        b'{"a": 1, "a": 2}',
        b"\xff\xfe",
        b'"\xed\xa0\x80"',
        b"",
        b"\x00",
        b"[" * 100_000,
        b"]" * 100_000,
        b'"' + b'\\"' * 100_000,
    ],
)
def test_numbers_encodings_and_shapes_that_json_forbids_are_invalid_json(raw: bytes) -> None:
    try:
        value = decode_json(raw)
    except RowError as err:
        assert err.reason is Reason.INVALID_JSON
    else:  # duplicate keys are JSON: the last one wins
        assert value == {"a": 2}


def _reject_is_well_formed(rejected: Rejected) -> None:
    assert isinstance(rejected.reason, Reason) and rejected.detail
    record = reject_record(rejected, source="t", partition=0, offset=0)
    encoded = encode_json(record)
    assert len(record.raw.encode()) <= MAX_REJECT_RAW_BYTES
    assert msgspec.json.decode(encoded)["reason"] == rejected.reason.value


@fuzz
@given(event_values)
def test_any_lead_events_value_gives_events_and_reasoned_rejects(value: Any) -> None:
    parsed = parse_lead_events(value, now_ms=NOW_MS, rules=RULES)
    # Every row is an event or a reject, or the whole message is one reject.
    whole = len(parsed.rejects) == 1 and parsed.rejects[0].index is None and not parsed.events
    assert whole or len(parsed.events) + len(parsed.rejects) == parsed.received
    for rejected in parsed.rejects:
        _reject_is_well_formed(rejected)


@fuzz
@given(member_values)
def test_any_audience_members_value_gives_ops_and_reasoned_rejects(value: Any) -> None:
    ops, rejects, received = parse_audience_members(value, region="US")
    whole = len(rejects) == 1 and rejects[0].index is None and not ops
    assert whole or len(ops) + len(rejects) == received
    for rejected in rejects:
        _reject_is_well_formed(rejected)


@fuzz
@given(trigger_values)
def test_any_trigger_value_is_a_trigger_or_a_reasoned_reject(value: Any) -> None:
    try:
        parse_trigger(value)
    except RowError as err:
        _reject_is_well_formed(Rejected(err.reason, err.detail, raw=value))


@fuzz
@given(filter_values)
def test_any_audience_filter_value_is_a_filter_or_a_reasoned_reject(value: Any) -> None:
    try:
        parse_audience_filter(value, region="US")
    except RowError as err:
        _reject_is_well_formed(Rejected(err.reason, err.detail, raw=value))
