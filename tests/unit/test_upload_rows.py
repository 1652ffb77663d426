"""Reading audience uploads: every format streams, a bad JSON document is refused whole."""

from __future__ import annotations

import io
import tempfile
import tracemalloc
from collections.abc import Iterator

import msgspec
import pytest

from leadstream.web.audience import BodyError, json_members_prefix, upload_rows

# What reading one member at a time may allocate at its peak (buffers, one row), whatever
# the body's size; 200,000 members decoded whole take ~60 MiB.
PEAK_BOUND = 4 * 1024 * 1024
MEMBERS = [{"phoneE164": f"+1555{i:07d}", "externalId": f"x{i}"} for i in range(200_000)]


def read(body: bytes, kind: str) -> list[tuple[int, dict | None, str | None]]:
    stream = io.BytesIO(body)
    prefix = json_members_prefix(stream) if kind == "json" else ""
    stream.seek(0)
    return list(upload_rows(stream, kind, prefix))


def bodies() -> Iterator[tuple[str, bytes]]:
    yield (
        "csv",
        b"phoneE164,externalId\n"
        + b"".join(f"{m['phoneE164']},{m['externalId']}\n".encode() for m in MEMBERS),
    )
    yield "ndjson", b"".join(msgspec.json.encode(m) + b"\n" for m in MEMBERS)
    yield "json", msgspec.json.encode(MEMBERS)
    yield "json", msgspec.json.encode({"campaign": "c", "members": MEMBERS})


@pytest.mark.parametrize(("kind", "body"), list(bodies()), ids=["csv", "ndjson", "array", "obj"])
def test_every_format_streams_without_holding_the_body(kind: str, body: bytes) -> None:
    """200,000 members (about 10 MB) read back from a file: Python's peak allocation stays
    under a bound that does not grow with the body."""
    with tempfile.TemporaryFile() as spooled:
        spooled.write(body)
        spooled.seek(0)
        tracemalloc.start()
        try:
            prefix = json_members_prefix(spooled) if kind == "json" else ""
            spooled.seek(0)
            count = last = 0
            for index, row, problem in upload_rows(spooled, kind, prefix):
                assert problem is None and row is not None
                count, last = count + 1, index
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (count, last) == (len(MEMBERS), len(MEMBERS) - 1)
    assert peak < PEAK_BOUND, f"peak {peak} bytes for a {len(body)}-byte body"


def test_whole_decode_would_fail_that_bound() -> None:
    """The bound above can fail: holding the members as objects breaks it."""
    body = msgspec.json.encode(MEMBERS)
    tracemalloc.start()
    try:
        decoded = msgspec.json.decode(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(decoded) == len(MEMBERS)
    assert peak > 10 * PEAK_BOUND


def test_json_rows_keep_their_index_and_reject_non_objects() -> None:
    body = b'{"members": [{"phoneE164": "+15550000001"}, [1], 5, {"phoneE164": 7}]}'
    rows = read(body, "json")
    assert [(i, r is None, p) for i, r, p in rows] == [
        (0, False, None),
        (1, True, "not a JSON object"),
        (2, True, "not a JSON object"),
        (3, False, None),
    ]
    assert rows[3][1] == {"phoneE164": 7}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'[{"phoneE164": "+15550000001"}, {"phoneE164": ', 400),
        (b'[{"phoneE164": "+15550000001"}] [1]', 400),
        (b"", 400),
        (b'{"members": 5}', 422),
        (b'{"people": []}', 422),
        (b'"just a string"', 422),
        (b"42", 422),
    ],
)
def test_a_bad_json_document_is_refused_before_any_row(body: bytes, status: int) -> None:
    with pytest.raises(BodyError) as caught:
        json_members_prefix(io.BytesIO(body))
    assert caught.value.status == status


def test_numbers_any_json_allows_are_read_and_rejected_as_rows() -> None:
    """Found by schemathesis: an integer beyond 64 bits (or 1e400) passed the check and then
    broke the read, a 500. Numbers are read exactly now; the row decides what is valid."""
    big = 21236042809838428413562849958
    body = b'{"members": [{"phoneE164": 1e400}, {"x": -%d}, {"phoneE164": "+1555"}]}' % big
    rows = read(body, "json")
    assert [(i, p) for i, _, p in rows] == [(0, None), (1, None), (2, None)]
    assert rows[1][1] == {"x": -big}


def test_a_bad_json_document_says_why_in_one_line() -> None:
    with pytest.raises(BodyError) as caught:
        json_members_prefix(io.BytesIO(b'["\xff"]'))
    assert caught.value.message.startswith("the body is not valid JSON: lexical error")
    assert "\n" not in caught.value.message


def test_empty_json_array_and_members_are_no_rows() -> None:
    assert read(b"[]", "json") == []
    assert read(b'{"members": []}', "json") == []
