"""docs/contract.md, sections 2 and 4: parsing lead-events messages, per-row rejects, repartitioning, records."""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadstream.domain.ingest import (
    MAX_BATCH_EVENTS,
    IngestRules,
    LeadEvent,
    Rejected,
    decode_json,
    group_by_partition,
    parse_lead_events,
    parse_lead_events_message,
    retention_horizon,
)
from leadstream.domain.normalize import parse_rfc3339_ms
from leadstream.domain.partitioning import lead_partition
from leadstream.domain.rejects import Reason, RowError
from leadstream.wire import records
from leadstream.wire.commands import EventsBatch, decode_command, encode_command


def reject_record(rejected: Any, **where: Any) -> dict[str, Any]:
    """The reject as a consumer of ``rejects`` reads it."""
    return msgspec.json.decode(records.encode_json(records.reject_record(rejected, **where)))


NOW_MS = parse_rfc3339_ms("2026-05-12T18:40:00Z")
T0 = "2026-05-12T18:34:00Z"
T0_MS = parse_rfc3339_ms(T0)
RULES = IngestRules()
PROPS = settings(max_examples=100, deadline=None)


def parse(doc, rules=RULES):
    return parse_lead_events(doc, now_ms=NOW_MS, rules=rules)


def parse_bytes(raw: bytes, rules=RULES):
    return parse(decode_json(raw), rules)


# --- single shape ----------------------------------------------------------------------------


def test_single_event():
    out = parse(
        {
            "organizationId": 42,
            "eventType": "mastery_purchase",
            "phoneE164": "(555) 123-4567",
            "occurredAt": "2026-05-12T20:34:00.000+02:00",
            "metadata": {"order": "A1"},
        }
    )
    assert out.received == 1
    assert out.rejects == []
    assert out.events == [
        LeadEvent("42", "+15551234567", "mastery_purchase", T0_MS, b'{"order":"A1"}')
    ]


def test_single_event_from_json_bytes():
    raw = json.dumps(
        {"organizationId": "org_7", "eventType": "x", "phoneE164": "+15551234567", "occurredAt": T0}
    ).encode()
    out = parse_bytes(raw)
    assert out.events == [LeadEvent("org_7", "+15551234567", "x", T0_MS, None)]


def test_single_event_bad_row_is_one_reject_without_index():
    doc = {"organizationId": 42, "eventType": "x", "phoneE164": "abc", "occurredAt": T0}
    out = parse(doc)
    assert out.events == []
    assert out.received == 1
    [rej] = out.rejects
    assert rej.reason == Reason.INVALID_PHONE
    assert rej.index is None
    assert rej.phone == "abc"
    assert rej.raw == doc
    assert rej.organization_id == "42"


def test_single_event_bad_org():
    doc = {"organizationId": "a b", "eventType": "x", "phoneE164": "+15551234567", "occurredAt": T0}
    [rej] = parse(doc).rejects
    assert rej.reason == Reason.INVALID_ORGANIZATION_ID
    assert rej.phone == "+15551234567"
    missing = dict(doc)
    del missing["organizationId"]
    [rej] = parse(missing).rejects
    assert rej.reason == Reason.MISSING_FIELD


def test_region_comes_from_rules():
    doc = {"organizationId": 1, "eventType": "x", "phoneE164": "020 7946 0958", "occurredAt": T0}
    assert parse(doc, IngestRules(default_region="GB")).events[0].phone == "+442079460958"


def test_future_skew_comes_from_rules():
    doc = {
        "organizationId": 1,
        "eventType": "x",
        "phoneE164": "+15551234567",
        "occurredAt": "2026-05-12T18:41:00Z",  # 60 s after NOW_MS
    }
    assert parse(doc, IngestRules(max_future_skew_ms=60_000)).events
    [rej] = parse(doc, IngestRules(max_future_skew_ms=59_999)).rejects
    assert rej.reason == Reason.OCCURRED_AT_OUT_OF_RANGE


# --- batch shape -----------------------------------------------------------------------------


def test_batch_row_overrides_event_type():
    out = parse(
        {
            "organizationId": 42,
            "eventType": "webinar_registered",
            "events": [
                {"phoneE164": "+15551234567", "occurredAt": T0},
                {"phoneE164": "+15551234568", "occurredAt": T0, "eventType": "webinar_attended"},
                {"phoneE164": "+15551234569", "occurredAt": T0, "metadata": {"a": 1}},
            ],
        }
    )
    assert out.rejects == []
    assert out.received == 3
    assert [(e.phone, e.event_type, e.metadata) for e in out.events] == [
        ("+15551234567", "webinar_registered", None),
        ("+15551234568", "webinar_attended", None),
        ("+15551234569", "webinar_registered", b'{"a":1}'),
    ]


def test_batch_without_event_type_needs_it_per_row():
    out = parse(
        {
            "organizationId": 1,
            "events": [
                {"phoneE164": "+15551234567", "occurredAt": T0},
                {"phoneE164": "+15551234567", "occurredAt": T0, "eventType": "x"},
            ],
        }
    )
    assert [r.reason for r in out.rejects] == [Reason.MISSING_FIELD]
    assert out.rejects[0].index == 0
    assert [e.event_type for e in out.events] == ["x"]


def test_batch_good_and_bad_rows():
    rows = [
        {"phoneE164": "+15551234567", "occurredAt": T0},  # 0 ok
        {"phoneE164": "abc", "occurredAt": T0},  # 1 invalid_phone
        {"phoneE164": "555-123-4568", "occurredAt": "2026-05-12T18:34:00"},  # 2 no offset
        {"phoneE164": "555-123-4569", "occurredAt": "1999-01-01T00:00:00Z"},  # 3 range
        {"phoneE164": "(555) 123-4570", "occurredAt": T0, "eventType": " pad"},  # 4 type
        {"occurredAt": T0},  # 5 missing phone
        {"phoneE164": "+15551234571", "occurredAt": T0, "metadata": {"k": "x" * 5000}},  # 6
        "not an object",  # 7 invalid_json
        {"phoneE164": 5551234572, "occurredAt": T0},  # 8 ok (int phone, region US)
        {"phoneE164": "123", "occurredAt": T0},  # 9 invalid_phone
        {"phoneE164": "+15551234573", "occurredAt": T0, "metadata": [1]},  # 10 invalid_json
        {"phoneE164": "+15551234574"},  # 11 missing occurredAt
        {"phoneE164": "+15551234575", "occurredAt": "2026-02-30T00:00:00Z"},  # 12
        {"phoneE164": "555.123.4576", "occurredAt": "2026-05-12T20:34:00.000+02:00"},  # 13 ok
        None,  # 14 invalid_json
    ]
    doc = {"organizationId": "42", "eventType": "buy", "events": rows}
    out = parse(doc)
    assert out.received == len(rows)
    got = [(r.index, r.reason, r.phone) for r in out.rejects]
    assert got == [
        (1, Reason.INVALID_PHONE, "abc"),
        (2, Reason.INVALID_OCCURRED_AT, "555-123-4568"),
        (3, Reason.OCCURRED_AT_OUT_OF_RANGE, "555-123-4569"),
        (4, Reason.INVALID_EVENT_TYPE, "(555) 123-4570"),
        (5, Reason.MISSING_FIELD, None),
        (6, Reason.METADATA_TOO_LARGE, "+15551234571"),
        (7, Reason.INVALID_JSON, None),
        (9, Reason.INVALID_PHONE, "123"),
        (10, Reason.INVALID_JSON, "+15551234573"),
        (11, Reason.MISSING_FIELD, "+15551234574"),
        (12, Reason.INVALID_OCCURRED_AT, "+15551234575"),
        (14, Reason.INVALID_JSON, None),
    ]
    for rej in out.rejects:
        assert rej.raw == rows[rej.index]
        assert rej.organization_id == "42"
        assert rej.detail
    assert [e.phone for e in out.events] == ["+15551234567", "+15551234572", "+15551234576"]
    assert all(e.organization_id == "42" and e.event_type == "buy" for e in out.events)
    assert len(out.events) + len(out.rejects) == out.received


def test_repeated_bad_phone_rejected_on_every_row():
    # The batch caches phone parsing; a cached failure must still reject every row using it.
    rows = [{"phoneE164": p, "occurredAt": T0} for p in ["abc", "+15551234567", "abc", "abc"]]
    out = parse({"organizationId": 1, "eventType": "x", "events": rows})
    assert [(r.index, r.reason) for r in out.rejects] == [
        (0, Reason.INVALID_PHONE),
        (2, Reason.INVALID_PHONE),
        (3, Reason.INVALID_PHONE),
    ]
    assert len(out.events) == 1


def test_phone_cache_keeps_int_and_bool_apart():
    rows = [
        {"phoneE164": 15551234567, "occurredAt": T0},
        {"phoneE164": True, "occurredAt": T0},
        {"phoneE164": "15551234567", "occurredAt": T0},
    ]
    out = parse({"organizationId": 1, "eventType": "x", "events": rows})
    assert [r.index for r in out.rejects] == [1]
    assert [e.phone for e in out.events] == ["+15551234567", "+15551234567"]


def test_batch_too_large_is_one_reject():
    rows = [{}] * (MAX_BATCH_EVENTS + 1)
    out = parse({"organizationId": 1, "eventType": "x", "events": rows})
    assert out.events == []
    [rej] = out.rejects
    assert rej.reason == Reason.BATCH_TOO_LARGE
    assert rej.index is None
    assert out.received == MAX_BATCH_EVENTS + 1


def test_batch_at_the_limit_is_accepted():
    assert MAX_BATCH_EVENTS == 50_000
    rows = [{"phoneE164": "+15551234567", "occurredAt": T0}] * MAX_BATCH_EVENTS
    out = parse({"organizationId": 1, "eventType": "x", "events": rows})
    assert out.rejects == []
    assert len(out.events) == MAX_BATCH_EVENTS


@pytest.mark.parametrize(
    ("org", "reason"),
    [
        (0, Reason.INVALID_ORGANIZATION_ID),
        ("a b", Reason.INVALID_ORGANIZATION_ID),
        (True, Reason.INVALID_ORGANIZATION_ID),
        (None, Reason.MISSING_FIELD),
    ],
)
def test_batch_with_invalid_org_is_one_reject(org, reason):
    rows = [{"phoneE164": "+15551234567", "occurredAt": T0}, {"phoneE164": "abc"}]
    doc = {"organizationId": org, "eventType": "x", "events": rows}
    out = parse(doc)
    assert out.events == []
    [rej] = out.rejects
    assert rej.reason == reason
    assert rej.index is None
    assert rej.raw == doc


@pytest.mark.parametrize("doc", [[1, 2], "x", 1, None, True])
def test_non_object_value_is_invalid_json(doc):
    out = parse(doc)
    assert out.events == []
    assert [r.reason for r in out.rejects] == [Reason.INVALID_JSON]
    assert out.rejects[0].index is None


@pytest.mark.parametrize("events", [{"phoneE164": "+15551234567"}, "x", None, 3])
def test_events_not_a_list_is_invalid_json(events):
    out = parse({"organizationId": 1, "eventType": "x", "events": events})
    assert out.events == []
    assert [r.reason for r in out.rejects] == [Reason.INVALID_JSON]


def test_empty_batch():
    out = parse({"organizationId": 1, "eventType": "x", "events": []})
    assert (out.events, out.rejects, out.received) == ([], [], 0)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"{'a': 1}", b"NaN", b"[1,]"])
def test_decode_json_rejects_garbage(raw):
    with pytest.raises(RowError) as info:
        decode_json(raw)
    assert info.value.reason == Reason.INVALID_JSON


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe"])
def test_a_message_that_is_not_json_is_one_reject_with_its_raw_bytes(raw):
    out = parse_lead_events_message(raw, now_ms=NOW_MS, rules=RULES)
    assert (out.events, out.received) == ([], 1)
    assert [(r.reason, r.raw, r.index) for r in out.rejects] == [(Reason.INVALID_JSON, raw, None)]


def test_a_json_message_is_parsed_as_lead_events():
    doc = {"organizationId": "acme", "eventType": "purchase", "phoneE164": "+15551234567",
           "occurredAt": T0}  # fmt: skip
    out = parse_lead_events_message(msgspec.json.encode(doc), now_ms=NOW_MS, rules=RULES)
    assert out == parse(doc)
    assert len(out.events) == 1


def test_year_zero_in_a_batch_is_a_reject_not_a_crash():
    """Found bug: ``0000-...`` raises a bare ValueError out of parse_lead_events (agent crash)."""
    rows = [
        {"phoneE164": "+15551234567", "occurredAt": "0000-01-01T00:00:00Z"},
        {"phoneE164": "+15551234567", "occurredAt": T0},
    ]
    out = parse({"organizationId": 1, "eventType": "x", "events": rows})
    assert [r.index for r in out.rejects] == [0]
    assert len(out.events) == 1


# --- dedupe key ------------------------------------------------------------------------------


def test_dedupe_key_is_normalized():
    spellings = [
        ("+15551234567", "2026-05-12T18:34:00Z"),
        ("15551234567", "2026-05-12T20:34:00.000+02:00"),
        ("(555) 123-4567", "2026-05-12T13:34:00-05:00"),
        ("555-123-4567", "2026-05-12t18:34:00.000999z"),
        (15551234567, "2026-05-12 18:34:00+00:00"),
    ]
    single = [
        parse({"organizationId": 42, "eventType": "buy", "phoneE164": p, "occurredAt": t}).events[0]
        for p, t in spellings
    ]
    batch = parse(
        {
            "organizationId": "42",
            "eventType": "buy",
            "events": [{"phoneE164": p, "occurredAt": t} for p, t in spellings],
        }
    ).events
    keys = {e.dedupe_key for e in single + batch}
    assert keys == {("42", "+15551234567", "buy", T0_MS)}


def test_dedupe_key_distinguishes_fields():
    base = {"organizationId": 1, "eventType": "buy", "phoneE164": "+15551234567", "occurredAt": T0}
    variants = [
        base,
        {**base, "organizationId": 2},
        {**base, "eventType": "Buy"},
        {**base, "phoneE164": "+15551234568"},
        {**base, "occurredAt": "2026-05-12T18:34:00.001Z"},
    ]
    keys = [parse(v).events[0].dedupe_key for v in variants]
    assert len(set(keys)) == len(keys)
    # metadata is not part of the key
    assert parse({**base, "metadata": {"a": 1}}).events[0].dedupe_key == keys[0]


# --- group_by_partition ----------------------------------------------------------------------

events_st = st.lists(
    st.builds(
        LeadEvent,
        st.sampled_from(["1", "2", "org_a"]),
        st.sampled_from(["+15551234567", "+15551234568", "+442079460958", "+15550000000"]),
        st.sampled_from(["buy", "opted_out"]),
        st.integers(946_684_800_000, 1_900_000_000_000),
    ),
    max_size=60,
)


@PROPS
@given(events_st, st.integers(1, 16))
def test_group_by_partition_is_stable_and_complete(events, partitions):
    groups = group_by_partition(events, partitions)
    assert all(0 <= p < partitions for p in groups)
    assert all(groups.values())
    # every event exactly once, each group in input order
    positions = sorted(i for group in groups.values() for i in _positions(events, group))
    assert positions == list(range(len(events)))
    for p, group in groups.items():
        for e in group:
            assert lead_partition(e.organization_id, e.phone, partitions) == p
    # same lead, same partition; and the function is deterministic
    assert group_by_partition(events, partitions) == groups


def _positions(events, group):
    """Indexes in ``events`` of ``group``'s members, asserting they appear in order."""
    out = []
    start = 0
    for e in group:
        i = next(j for j in range(start, len(events)) if events[j] is e)
        out.append(i)
        start = i + 1
    return out


def test_lead_partition_is_pinned():
    # Changing the function orphans state on disk: pin it to its documented definition.
    assert lead_partition("42", "+15551234567", 8) == zlib.crc32(b"42\x00+15551234567") % 8


# --- retention_horizon ----------------------------------------------------------------------


def test_retention_horizon_keeps_one_day_of_slack():
    day = 86_400_000
    assert retention_horizon(NOW_MS, 30) == NOW_MS - 31 * day
    assert retention_horizon(NOW_MS, 0) == NOW_MS - day


# --- codec -----------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@PROPS
@given(
    st.lists(
        st.builds(
            LeadEvent,
            st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
            st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
            st.text(min_size=1, max_size=100),
            st.integers(946_684_800_000, 253_402_300_799_999),
            st.one_of(
                st.none(),
                st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(
                    msgspec.json.encode
                ),
            ),
        ),
        max_size=20,
    )
)
def test_event_batch_round_trip(events):
    data = encode_command(EventsBatch(events))
    assert isinstance(data, bytes)
    assert decode_command(data) == EventsBatch(events)


def test_big_integer_metadata_survives_the_pipeline():
    """Valid JSON metadata must either be rejected as a row or survive the repartition records.

    Found bug: msgspec decodes 18446744073709551616 as a Python int, normalize_metadata accepts
    it, then encode_event_batch raises OverflowError (msgpack ints are at most 64-bit), which
    escapes the normalize agent.
    """
    raw = (
        b'{"organizationId":1,"eventType":"x","phoneE164":"+15551234567",'
        b'"occurredAt":"2026-05-12T18:34:00Z","metadata":{"n":18446744073709551616}}'
    )
    out = parse_bytes(raw)
    for group in group_by_partition(out.events, 8).values():
        assert decode_command(encode_command(EventsBatch(group))) == EventsBatch(group)
    assert len(out.events) + len(out.rejects) == 1


def test_reject_record_fields():
    rej = Rejected(
        Reason.INVALID_PHONE,
        "bad",
        index=3,
        raw={"phoneE164": "abc"},
        phone="abc",
        organization_id="42",
    )
    rec = reject_record(rej, source="lead-events", partition=2, offset=17)
    assert rec == {
        "source": "lead-events",
        "partition": 2,
        "offset": 17,
        "index": 3,
        "reason": "invalid_phone",
        "detail": "bad",
        "raw": '{"phoneE164":"abc"}',
        "phoneE164": "abc",
        "organizationId": "42",
    }
    # the record is JSON as the contract says
    assert json.loads(records.encode_json(rec)) == rec


def test_reject_record_index_only_when_set():
    zero = reject_record(
        Rejected(Reason.INVALID_JSON, "d", index=0, raw=None), source="s", partition=0, offset=0
    )
    assert zero["index"] == 0
    none = reject_record(
        Rejected(Reason.BATCH_TOO_LARGE, "d", raw=b"{}"), source="s", partition=0, offset=0
    )
    assert "index" not in none
    assert "phoneE164" not in none and "organizationId" not in none


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"events": [{"phoneE164": "+15551234567"}] * 1000}, id="big-object"),
        pytest.param("é" * 5000, id="str-2-byte-chars"),
        pytest.param(["ü" * 3, "x" * 9000], id="list"),
        pytest.param(b"x" * 10_000, id="bytes-ascii"),
        # cut lands inside a two-byte character
        pytest.param(("a" + "é" * 3000).encode(), id="bytes-cut-mid-char"),
        pytest.param("a" + "€" * 3000, id="str-3-byte-chars"),
        # not UTF-8 at all (the raw value of an invalid_json message)
        pytest.param(b"\xff" * 5000, id="bytes-not-utf8"),
    ],
)
def test_reject_raw_cut_to_4_kib(raw):
    rec = reject_record(
        Rejected(Reason.INVALID_JSON, "d", raw=raw), source="s", partition=0, offset=0
    )
    assert isinstance(rec["raw"], str)
    assert len(rec["raw"].encode("utf-8")) <= records.MAX_REJECT_RAW_BYTES == 4096
    assert len(rec["raw"]) >= 1000
    msgspec.json.encode(rec)  # serializable


def test_reject_raw_small_values_kept_whole():
    for raw, text in [(b'{"a":1}', '{"a":1}'), ({"a": 1}, '{"a":1}'), ("x", '"x"'), (None, "null")]:
        rec = reject_record(
            Rejected(Reason.INVALID_JSON, "d", raw=raw), source="s", partition=0, offset=0
        )
        assert rec["raw"] == text
