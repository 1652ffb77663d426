"""Reading audience uploads: every format streams, a bad JSON document is refused whole."""

from __future__ import annotations

import io
import subprocess
import sys
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


def test_numbers_beyond_64_bits_or_a_double_refuse_the_document_whole() -> None:
    """Numbers are read as yajl reads them. Exact reading (Decimal and Python int) made
    ijson crash the whole worker with a segmentation fault on an integer of more than
    4,300 digits (CPython's int-from-string limit); now an integer beyond 64 bits or a
    float beyond a double is a 400 naming the overflow, before any row is applied."""
    big = 21236042809838428413562849958
    for body in (
        b'{"members": [{"phoneE164": 1e400}]}',
        b'{"members": [{"x": -%d}]}' % big,
        b'[{"phoneE164": 1' + b"0" * 5000 + b"}]",
    ):
        with pytest.raises(BodyError) as caught:
            json_members_prefix(io.BytesIO(body))
        assert caught.value.status == 400 and "overflow" in caught.value.message
    rows = read(b'{"members": [{"phoneE164": 15551234567, "x": 1.5e300}]}', "json")
    assert rows == [(0, {"phoneE164": 15551234567, "x": 1.5e300}, None)]


def test_a_five_thousand_digit_integer_does_not_crash_the_process() -> None:
    """The crash above, in a process of its own so that a regression shows as an exit
    code rather than as the end of the test run."""
    code = (
        "import io; from leadstream.web.audience import BodyError, json_members_prefix\n"
        "body = b'[{\"a\": 1' + b'0' * 5000 + b'}]'\n"
        "try:\n    json_members_prefix(io.BytesIO(body))\n"
        "except BodyError as err:\n    print(err.status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "400"), done.stderr


def test_depth_beyond_the_bound_is_refused_in_the_check_pass_without_building_it() -> None:
    deep = b'{"members": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    tracemalloc.start()
    try:
        with pytest.raises(BodyError) as caught:
            json_members_prefix(io.BytesIO(deep))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.status == 400 and "deeper than 64" in caught.value.message
    assert peak < PEAK_BOUND
    fine = b'{"members": [{"phoneE164": "+15550000001", "m": ' + b"[" * 60 + b"]" * 60 + b"}]}"
    assert [i for i, _, _ in read(fine, "json")] == [0]


def test_a_csv_line_the_csv_module_refuses_is_one_rejected_row() -> None:
    body = b'phoneE164,externalId\n+15550000001,a\n"' + b"x" * 200_000 + b'",b\n+15550000002,c\n'
    rows = read(body, "csv")
    assert [(i, r, p and p.split(":")[0]) for i, r, p in rows] == [
        (0, {"phoneE164": "+15550000001", "externalId": "a"}, None),
        (1, None, "unreadable CSV line"),
        (2, {"phoneE164": "+15550000002", "externalId": "c"}, None),
    ]


def test_an_ndjson_line_too_deep_is_one_rejected_row() -> None:
    body = b'{"phoneE164": "+15550000001"}\n' + b"[" * 5000 + b"]" * 5000 + b"\n{}\n"
    rows = read(body, "ndjson")
    assert [(i, p is None) for i, _, p in rows] == [(0, True), (1, False), (2, True)]
    assert "deeper than 64" in str(rows[1][2])


def test_a_bad_json_document_says_why_in_one_line() -> None:
    with pytest.raises(BodyError) as caught:
        json_members_prefix(io.BytesIO(b'["\xff"]'))
    assert caught.value.message.startswith("the body is not valid JSON: lexical error")
    assert "\n" not in caught.value.message


def test_empty_json_array_and_members_are_no_rows() -> None:
    assert read(b"[]", "json") == []
    assert read(b'{"members": []}', "json") == []


class _RecordingIngress:
    """Takes what an upload sends on (the upload's logic alone, no worker)."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send_members(self, ops: list[object]) -> None:
        self.sent.extend(ops)


def test_past_the_member_limit_what_was_accepted_is_sent_and_the_answer_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from leadstream.web import audience

    monkeypatch.setattr(audience, "MAX_AUDIENCE_MEMBERS", 10)
    body = b"".join(msgspec.json.encode(m) + b"\n" for m in MEMBERS[:15])
    rows = upload_rows(io.BytesIO(body), "ndjson", "")
    outcomes = audience.member_outcomes(rows, "42", "c", "US")
    ingress = _RecordingIngress()
    with pytest.raises(BodyError) as caught:
        asyncio.run(audience._send(ingress, outcomes))  # type: ignore[arg-type]
    assert caught.value.status == 413
    assert "the first 10 were applied" in caught.value.message
    assert [op.phone for op in ingress.sent] == [m["phoneE164"] for m in MEMBERS[:10]]  # type: ignore[attr-defined]
