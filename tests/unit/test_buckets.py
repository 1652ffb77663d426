"""Holdout and split buckets: parsing, the ranges, and the hash's statistics over
1,000,000 phones (uniform, independent between salts, keyed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from leadstream.domain.buckets import (
    BUCKETS,
    Allocation,
    Holdout,
    Split,
    bucket_key,
    bucket_of,
    buckets_of,
    organization_secret,
    parse_holdout,
    parse_splits,
    siphash24,
)
from leadstream.domain.rejects import Reason, RowError

KEY = bytes(range(32))
PHONES = 1_000_000


def phones(n: int = PHONES) -> list[str]:
    """Consecutive US numbers: the least random input a hash can be given."""
    return [f"+1212{i:07d}" for i in range(n)]


@pytest.fixture(scope="module")
def buckets() -> dict[str, list[int]]:
    secret = organization_secret(KEY, "org")
    numbers = np.array([int(p[1:]) for p in phones()], np.int64)
    return {
        salt: buckets_of(bucket_key(secret, "org", salt), numbers).tolist() for salt in ("", "b")
    }


def test_siphash_matches_the_reference_vector() -> None:
    """SipHash-2-4, key 00..0f, message 00..07: the reference implementation's vector."""
    key = (int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)), "little"))
    word = np.array([int.from_bytes(bytes(range(8)), "little")], np.uint64)
    assert int(siphash24(key, word)[0]) == 0x93F5F5799A932462


def test_one_lead_and_a_whole_send_hash_alike() -> None:
    secret = organization_secret(KEY, "org")
    sample = phones(500)
    numbers = np.array([int(p[1:]) for p in sample], np.int64)
    for salt in ("", "s"):
        together = buckets_of(bucket_key(secret, "org", salt), numbers).tolist()
        assert together == [bucket_of(secret, "org", p, salt) for p in sample]


def chi_square(observed: list[int], expected: float) -> float:
    return sum((o - expected) ** 2 / expected for o in observed)


def test_buckets_are_uniform_over_a_million_phones(buckets: dict[str, list[int]]) -> None:
    counts = [0] * BUCKETS
    for bucket in buckets[""]:
        counts[bucket] += 1
    stat = chi_square(counts, PHONES / BUCKETS)
    # 9,999 degrees of freedom: mean 9,999, standard deviation ~141.4; six of them either
    # way fails about once in 10**9 for a uniform hash.
    assert abs(stat - (BUCKETS - 1)) < 6 * 141.4, stat
    # And what a send sees: a 10% holdout holds 10% out.
    held = sum(1 for b in buckets[""] if b < 1000)
    assert abs(held - PHONES // 10) < 6 * (PHONES * 0.1 * 0.9) ** 0.5


def test_salts_draw_independent_buckets(buckets: dict[str, list[int]]) -> None:
    """The deciles under one salt against the deciles under another: a 10 x 10 table
    with 81 degrees of freedom (mean 81, standard deviation ~12.7)."""
    table = [0] * 100
    for a, b in zip(buckets[""], buckets["b"], strict=True):
        table[(a // 1000) * 10 + b // 1000] += 1
    stat = chi_square(table, PHONES / 100)
    assert abs(stat - 81) < 6 * 12.7, stat


def test_a_bucket_depends_on_the_secret_the_organization_and_the_phone() -> None:
    other_key = organization_secret(bytes(32), "org")
    secret = organization_secret(KEY, "org")
    assert organization_secret(KEY, "org2") != secret
    sample = phones(2000)
    same = sum(
        bucket_of(secret, "org", p, "") == bucket_of(other_key, "org", p, "") for p in sample
    )
    assert same < 10  # 2000 / 10000 expected by chance
    # Another organization under the same partition key draws other buckets too.
    other_org = organization_secret(KEY, "org2")
    same = sum(
        bucket_of(secret, "org", p, "") == bucket_of(other_org, "org2", p, "") for p in sample
    )
    assert same < 10


def test_a_bucket_is_the_same_every_time() -> None:
    secret = organization_secret(KEY, "org")
    first = [bucket_of(secret, "org", p, "s") for p in phones(100)]
    again = [bucket_of(organization_secret(KEY, "org"), "org", p, "s") for p in phones(100)]
    assert first == again
    assert all(0 <= b < BUCKETS for b in first)


@pytest.mark.parametrize(
    ("holdout", "splits", "cases"),
    [
        (
            10,
            [("a", 50), ("b", 50)],
            {
                0: (True, None),
                999: (True, None),
                1000: (False, "a"),
                5499: (False, "a"),
                5500: (False, "b"),
                9999: (False, "b"),
            },
        ),
        (
            None,
            [("a", 33), ("b", 33), ("c", 34)],
            {
                0: (False, "a"),
                3299: (False, "a"),
                3300: (False, "b"),
                6599: (False, "b"),
                6600: (False, "c"),
                9999: (False, "c"),
            },
        ),
        (50, [], {4999: (True, None), 5000: (False, None)}),
        (0, [("only", 100)], {0: (False, "only"), 9999: (False, "only")}),
        (7, [("x", 0), ("y", 100)], {699: (True, None), 700: (False, "y")}),
        (
            5,
            [("a", 1), ("b", 99)],
            {499: (True, None), 500: (False, "a"), 594: (False, "a"), 595: (False, "b")},
        ),
    ],
)
def test_allocation_ranges(
    holdout: int | None, splits: list[tuple[str, int]], cases: dict[int, tuple[bool, str | None]]
) -> None:
    allocation = Allocation.of(
        None if holdout is None else Holdout(holdout), [Split(n, p) for n, p in splits]
    )
    for bucket, want in cases.items():
        assert allocation.variant(bucket) == want, bucket
    # Consecutive ranges covering every bucket after the holdout.
    ends = [allocation.held] + [end for _, _, end in allocation.ranges]
    starts = [start for _, start, _ in allocation.ranges]
    assert starts == ends[:-1]
    if splits:
        assert ends[-1] == BUCKETS


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"percent": 51}, "holdout.percent"),
        ({"percent": -1}, "holdout.percent"),
        ({"percent": True}, "holdout.percent"),
        ({"percent": 10.0}, "holdout.percent"),
        ({}, "holdout.percent"),
        ({"percent": 10, "salt": 7}, "holdout.salt"),
        ({"percent": 10, "salt": "x" * 129}, "holdout.salt"),
        ({"percent": 10, "salt": "a\nb"}, "holdout.salt"),
        ({"percent": 10, "seed": 1}, "holdout.seed"),
        ([10], "holdout"),
    ],
)
def test_bad_holdouts(doc: Any, field: str) -> None:
    with pytest.raises(RowError) as info:
        parse_holdout(doc)
    assert (info.value.reason, info.value.field) == (Reason.INVALID_CONDITIONS, field)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([{"name": "a", "percent": 60}, {"name": "b", "percent": 30}], "splits"),
        ([{"name": "a", "percent": 60}, {"name": "a", "percent": 40}], "splits[1].name"),
        ([{"name": "", "percent": 100}], "splits[0].name"),
        ([{"name": "a", "percent": 101}], "splits[0].percent"),
        ([{"name": "a", "percent": "100"}], "splits[0].percent"),
        ([{"name": "a", "percent": 100, "copy": "x"}], "splits[0].copy"),
        ([{"name": str(i), "percent": 10 if i < 9 else 0} for i in range(11)], "splits"),
        ([], "splits"),
        ({"a": 100}, "splits"),
    ],
)
def test_bad_splits(doc: Any, field: str) -> None:
    with pytest.raises(RowError) as info:
        parse_splits(doc)
    assert (info.value.reason, info.value.field) == (Reason.INVALID_CONDITIONS, field)


def test_good_holdout_and_splits() -> None:
    assert parse_holdout({"percent": 10}) == Holdout(10, "")
    assert parse_holdout({"percent": 0, "salt": "spring"}) == Holdout(0, "spring")
    ten = [{"name": f"v{i}", "percent": 10} for i in range(10)]
    assert [s.name for s in parse_splits(ten)] == [f"v{i}" for i in range(10)]


def test_the_secret_appears_in_nothing_a_send_writes_or_explains() -> None:
    """The partition's bucket key and the organization's secret derived from it are in the
    partition's state only: not in a chunk, a done report, a send's record, nor in explain."""
    import dataclasses
    import json

    from leadstream.domain.audience import MemberOp
    from leadstream.domain.evaluate import evaluate, partition_key
    from leadstream.domain.explain import explain_lead, read_send_record, record_send
    from leadstream.domain.send_state import apply_members
    from leadstream.domain.sends import SendRules, SendTrigger
    from leadstream.wire.records import done_record, encode_chunks, encode_json
    from tests.support.stores import indexed_memory

    store = indexed_memory()
    phones = [f"+1212555{i:04d}" for i in range(300)]
    apply_members(store, 0, [MemberOp("org", "c", p, None) for p in phones], group=1)
    trigger = dataclasses.replace(
        SendTrigger("org", "c", "s", 1_780_000_000_000),
        holdout=Holdout(20, "x"),
        splits=(Split("a", 50), Split("b", 50)),
    )
    rules = SendRules(trigger, None, "opted_out", "opted_in")
    evaluation = evaluate(store.index(0), rules, store=store, partition=0)
    record_send(store, 0, rules, evaluation, materialized_at=0)
    written = b"".join(encode_chunks(trigger, 0, evaluation.entries(), 100))
    written += encode_json(
        done_record(
            trigger,
            partition=0,
            late=False,
            materialized_at=0,
            recipient_count=len(evaluation.recipients),
            counts=evaluation.counts(),
            chunk_count=1,
            late_audience_filters=0,
            received_at=0,
            variants={n: len(m) for n, m in evaluation.variants.items()},
        )
    )
    record = read_send_record(store, 0, "org", "s")
    assert record is not None
    written += msgspec_encode(record)
    for phone in phones[:50]:
        why = explain_lead(
            store,
            0,
            store.index(0),
            record,
            phone,
            opt_out_type="opted_out",
            opt_in_type="opted_in",
        )
        written += json.dumps([why.detail, why.now_detail]).encode()
    key = partition_key(store, 0)
    for secret in (key, organization_secret(key, "org")):
        for form in (secret, secret.hex().encode(), secret[:8], secret.hex()[:16].encode()):
            assert form not in written


def msgspec_encode(value: object) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(value)


def test_a_partition_whose_members_came_before_holdouts_gets_its_key_once() -> None:
    """Members written by a version without holdouts left no key: the materializer makes
    one when it takes the partition, and never another."""
    from leadstream.domain.audience import MemberOp
    from leadstream.domain.evaluate import partition_key
    from leadstream.domain.send_state import apply_members, ensure_bucket_key
    from leadstream.state import keys
    from tests.support.stores import indexed_memory

    store = indexed_memory()
    apply_members(store, 0, [MemberOp("org", "c", "+12125550100", None)], group=1)
    store.delete(0, keys.bucket_key_key())  # as an older version left it
    with pytest.raises(ValueError, match="no bucket key"):
        partition_key(store, 0)
    ensure_bucket_key(store, 0)
    made = partition_key(store, 0)
    ensure_bucket_key(store, 0)
    apply_members(store, 0, [MemberOp("org", "c", "+12125550101", None)], group=2)
    assert partition_key(store, 0) == made
