"""The store port's contract (state/port.py), run against every implementation.

TableStore runs over a stand-in for a faust table whose per-partition DBs are REAL rocksdict
Rdicts on tmp_path (raw mode, as faust's rocksdict driver opens them); only the changelog
producer is recorded instead of sent. rocksdict itself is never mocked.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rocksdict import Options, Rdict

from leadstream.domain.audience import MemberOp
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import (
    apply_events,
    compact_partition,
    count_events,
    latest_opt,
    lead_events,
)
from leadstream.domain.send_state import apply_members
from leadstream.state import keys, rocksdb
from leadstream.state.memory import MemoryStore
from leadstream.state.port import iter_prefix
from leadstream.state.rocksdb import LOGGED_BATCH_ITEMS, TableStore
from tests.support.changelog import (
    ChangelogRecord,
    FakeTable,
    RdictPerPartition,
    kafka_compacted,
    replay,
)
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory


@dataclass
class Subject:
    store: Any
    table: FakeTable | None = None

    @property
    def changelog(self) -> list[ChangelogRecord] | None:
        return None if self.table is None else self.table.changelog


@pytest.fixture
def table_subject(tmp_path):
    table = FakeTable(RdictPerPartition(tmp_path))
    try:
        yield Subject(TableStore(table), table)
    finally:
        table.data.close()


@pytest.fixture(params=["memory", "rocksdb"])
def subject(request, tmp_path):
    if request.param == "memory":
        yield Subject(MemoryStore())
        return
    table = FakeTable(RdictPerPartition(tmp_path))
    try:
        yield Subject(TableStore(table), table)
    finally:
        table.data.close()


def items(it) -> list[tuple[bytes, bytes]]:
    return [(bytes(k), bytes(v)) for k, v in it]


KEYS = [b"a", b"a\x00", b"a\x00b", b"a\x01", b"ab", b"b", b"b\xff", b"c", b"\x00", b"\xff\xfe"]


def fill(store, partition=0, keys=KEYS):
    for k in keys:
        store.put(partition, k, b"v:" + k)


# --- point operations ------------------------------------------------------------------------


def test_get_missing_is_none(subject):
    assert subject.store.get(0, b"nope") is None
    assert subject.store.get(7, b"nope") is None


def test_put_then_get(subject):
    s = subject.store
    s.put(0, b"k", b"v")
    got = s.get(0, b"k")
    assert got == b"v"
    assert type(got) is bytes


def test_overwrite(subject):
    s = subject.store
    s.put(0, b"k", b"one")
    s.put(0, b"k", b"two")
    assert s.get(0, b"k") == b"two"
    assert items(s.iter_range(0, b"", b"\xff")) == [(b"k", b"two")]


def test_get_many_answers_every_key_in_order(subject):
    s = subject.store
    s.put(0, b"a", b"1")
    s.put(0, b"c", b"")
    s.put(1, b"b", b"other partition")
    got = s.get_many(0, [b"c", b"b", b"a", b"a", b"zz"])
    assert got == [b"", None, b"1", b"1", None]
    assert all(type(v) is bytes for v in got if v is not None)
    assert s.get_many(0, []) == []


def test_empty_value_is_not_missing(subject):
    s = subject.store
    s.put(0, b"k", b"")
    assert s.get(0, b"k") == b""
    assert items(s.iter_range(0, b"k", b"l")) == [(b"k", b"")]
    s.delete(0, b"k")
    assert s.get(0, b"k") is None


def test_binary_keys_and_values(subject):
    s = subject.store
    key, value = b"E\x00\xff\x00" + bytes(range(256)), bytes(range(256))[::-1]
    s.put(0, key, value)
    assert s.get(0, key) == value


def test_delete(subject):
    s = subject.store
    s.put(0, b"k", b"v")
    s.put(0, b"k2", b"v2")
    s.delete(0, b"k")
    assert s.get(0, b"k") is None
    assert s.get(0, b"k2") == b"v2"
    assert items(s.iter_range(0, b"", b"\xff")) == [(b"k2", b"v2")]
    s.put(0, b"k", b"again")
    assert s.get(0, b"k") == b"again"


def test_delete_missing_is_fine(subject):
    s = subject.store
    s.delete(0, b"never")
    s.delete(5, b"never")
    s.put(0, b"k", b"v")
    s.delete(0, b"k")
    s.delete(0, b"k")
    assert s.get(0, b"k") is None


def test_partitions_are_isolated(subject):
    s = subject.store
    s.put(0, b"k", b"zero")
    s.put(1, b"k", b"one")
    s.put(1, b"only1", b"x")
    assert s.get(0, b"k") == b"zero"
    assert s.get(1, b"k") == b"one"
    assert s.get(0, b"only1") is None
    assert s.get(2, b"k") is None
    s.delete(1, b"k")
    assert s.get(0, b"k") == b"zero"
    assert items(s.iter_range(0, b"", b"\xff")) == [(b"k", b"zero")]
    assert items(s.iter_range(1, b"", b"\xff")) == [(b"only1", b"x")]
    assert items(s.iter_range(2, b"", b"\xff")) == []


# --- range scans ------------------------------------------------------------------------------


def test_iter_range_bounds(subject):
    s = subject.store
    fill(s)
    got = [k for k, _ in s.iter_range(0, b"a\x00", b"b")]
    assert got == [b"a\x00", b"a\x00b", b"a\x01", b"ab"]  # lower inclusive, upper exclusive


def test_iter_range_lower_bound_is_honoured(subject):
    s = subject.store
    fill(s)
    assert [k for k, _ in s.iter_range(0, b"b", b"c")] == [b"b", b"b\xff"]
    assert [k for k, _ in s.iter_range(0, b"b", b"\xff\xff")] == [b"b", b"b\xff", b"c", b"\xff\xfe"]


def test_iter_range_values(subject):
    s = subject.store
    fill(s)
    assert items(s.iter_range(0, b"ab", b"b\x00")) == [(b"ab", b"v:ab"), (b"b", b"v:b")]


def test_iter_range_reverse(subject):
    s = subject.store
    fill(s)
    forward = items(s.iter_range(0, b"a\x00", b"c"))
    assert items(s.iter_range(0, b"a\x00", b"c", reverse=True)) == forward[::-1]
    # reverse, lower bound honoured: the first item of a reverse scan is the greatest key < upper
    first = next(iter(s.iter_range(0, b"b", b"c", reverse=True)))
    assert first[0] == b"b\xff"
    assert [k for k, _ in s.iter_range(0, b"b", b"c", reverse=True)] == [b"b\xff", b"b"]


def test_iter_range_empty_ranges(subject):
    s = subject.store
    fill(s)
    assert items(s.iter_range(0, b"b", b"b")) == []
    assert items(s.iter_range(0, b"c", b"b")) == []
    assert items(s.iter_range(0, b"b\x00", b"b\x01")) == []
    assert items(s.iter_range(0, b"b", b"b", reverse=True)) == []
    assert items(s.iter_range(3, b"", b"\xff")) == []


def test_iter_prefix(subject):
    s = subject.store
    fill(s)
    assert [k for k, _ in iter_prefix(s, 0, b"a\x00")] == [b"a\x00", b"a\x00b"]
    assert [k for k, _ in iter_prefix(s, 0, b"a")] == [b"a", b"a\x00", b"a\x00b", b"a\x01", b"ab"]
    assert [k for k, _ in iter_prefix(s, 0, b"b")] == [b"b", b"b\xff"]
    assert [k for k, _ in iter_prefix(s, 0, b"b", reverse=True)] == [b"b\xff", b"b"]
    assert [k for k, _ in iter_prefix(s, 0, b"zz")] == []
    # a prefix ending in 0xff: its bound is the next prefix up, b"c"
    assert [k for k, _ in iter_prefix(s, 0, b"b\xff")] == [b"b\xff"]
    assert [k for k, _ in iter_prefix(s, 0, b"\xff\xfe")] == [b"\xff\xfe"]


def test_iter_sees_writes_and_deletes(subject):
    s = subject.store
    fill(s)
    s.delete(0, b"ab")
    s.put(0, b"aa", b"new")
    assert [k for k, _ in iter_prefix(s, 0, b"a")] == [b"a", b"a\x00", b"a\x00b", b"a\x01", b"aa"]


_partition_counter = itertools.count(100)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sets(st.binary(min_size=0, max_size=4), max_size=25),
    st.binary(max_size=3),
    st.binary(max_size=3),
    st.booleans(),
)
def test_iter_range_matches_sorted_reference(subject, keys_, lower, upper, reverse):
    s = subject.store
    partition = next(_partition_counter)  # a fresh partition per example
    keys_ = {k for k in keys_ if k}  # the port never writes an empty key
    for k in keys_:
        s.put(partition, k, k[::-1])
    expected = [(k, k[::-1]) for k in sorted(keys_) if lower <= k < upper]
    if reverse:
        expected.reverse()
    assert items(s.iter_range(partition, lower, upper, reverse=reverse)) == expected


def test_write_index_puts_and_deletes_at_once(subject):
    s = subject.store
    s.put(0, b"gone", b"x")
    s.write_index(0, [(b"gone", None), (b"a", b"1"), (b"never-there", None), (b"b", b"2")])
    assert items(s.iter_range(0, b"", b"\xff")) == [(b"a", b"1"), (b"b", b"2")]
    s.write_index(1, [(b"a", None)])
    assert s.get(0, b"a") == b"1"
    s.write_index(0, [(b"a", b"3"), (b"a", None)])  # in order: the last wins
    assert s.get(0, b"a") is None


# --- changelog (TableStore only) ------------------------------------------------------------


def test_the_kept_index_is_logged_after_the_keys_it_describes(table_subject):
    s = table_subject.store
    part = b"I\x00s\x00meta\x00\x00\x00"
    s.write_index(0, [(b"I\x00j\x00old", None), (part, b"kept"), (keys.index_open_key(), b"")])
    # In order; the marks speak of this copy only: never logged.
    assert [(r.key, r.value) for r in table_subject.changelog] == [
        (b"I\x00j\x00old", None),
        (part, b"kept"),
    ]
    assert s.get(0, keys.index_open_key()) == b""
    table_subject.changelog.clear()
    s.put_batch(0, [(b"E\x00k", b"v")], created_ms=1, index=[(b"I\x00j\x00e", b"entry")])
    # A write's journal entry rides in its one record, after its keys, out of its marker.
    (record,) = table_subject.changelog
    assert keys.decode_logged_batch(record.value or b"") == [
        (b"E\x00k", b"v"),
        (b"I\x00j\x00e", b"entry"),
    ]
    assert s.get(0, b"I\x00j\x00e") == b"entry"
    restored = keys.expand_changelog_record(record.key, record.value)
    assert restored[-1] == (record.key, s.get(0, record.key))
    # Once the write takes more than one record, the entry has records of its own.
    table_subject.changelog.clear()
    many = [(f"E\x00{i:05d}".encode(), b"v") for i in range(LOGGED_BATCH_ITEMS + 1)]
    s.put_batch(0, many, created_ms=2, index=[(b"I\x00j\x00f", b"entry")])
    assert [r.key[:1] for r in table_subject.changelog] == [b"B", b"B", b"I"]


def _event(lead: int, ref: int = 1) -> bytes:
    return keys.event_value(lead, ref)


def test_a_restore_marks_the_index_when_keys_it_reads_change_after_its_last_record(tmp_path):
    db = Rdict(str(tmp_path / "p0"), Options(raw_mode=True))
    mark = functools.partial(rocksdb.restore_mark, functools.partial(rocksdb._get_many, db))
    event = keys.event_key("o", "+1555", "buy", 5)
    journal = (keys.index_piece_key(keys.index_journal_key(0), 0), b"entry")
    try:
        db[event] = _event(7)
        # What the worker wrote itself, read back from the changelog: nothing changes.
        assert mark([(event, _event(7)), (b"E\x00gone", None)]) is None
        # Logged again in another group: the index reads the lead id only.
        assert mark([(event, _event(7, ref=2))]) is None
        # Keys that no index reads (a pending trigger) never mark it.
        assert mark([(keys.pending_key("o", "s"), b"x")]) is None
        assert mark([(event, _event(8))]) is True
        assert mark([(keys.event_key("o", "+1556", "buy", 5), _event(9))]) is True
        assert mark([(event, None)]) is True
        # The last write of a key in the batch is what counts.
        assert mark([(event, _event(8)), (event, _event(7))]) is None
        # The index record after the keys: the journal entry of their write.
        assert mark([(event, _event(8)), journal]) is False
        assert mark([journal, (event, _event(8))]) is True
        db[keys.index_restored_key()] = b""  # marked already: no need to look
        assert mark([(event, _event(8))]) is None
    finally:
        db.close()


def test_each_write_is_one_changelog_record(table_subject):
    subject = table_subject
    s = subject.store
    s.put(0, b"k", b"v1")
    s.put(3, b"k", b"other partition")
    s.put(0, b"k", b"v2")
    s.delete(0, b"k")
    s.delete(0, b"missing")
    s.put(0, b"", b"")  # odd but legal
    log = subject.changelog
    assert [(r.partition, r.key, r.value) for r in log] == [
        (0, b"k", b"v1"),
        (3, b"k", b"other partition"),
        (0, b"k", b"v2"),
        (0, b"k", None),
        (0, b"missing", None),
        (0, b"", b""),
    ]
    # bytes go to the changelog as they are, not through faust's default (json) serializer
    assert {(r.key_serializer, r.value_serializer) for r in log} == {("raw", "raw")}


def test_a_batch_is_a_few_changelog_records_and_its_markers(table_subject):
    subject = table_subject
    s = subject.store
    items_ = [(b"E%06d" % i, b"v%d" % i) for i in range(2 * LOGGED_BATCH_ITEMS + 1)]
    s.put_batch(1, items_, created_ms=1234)
    log = subject.changelog
    assert len(log) == 3
    assert all(r.partition == 1 and r.key.startswith(keys.logged_batch_prefix()) for r in log)
    assert [keys.decode_logged_batch_key(r.key) for r in log] == [1234] * 3
    assert [kv for r in log for kv in keys.decode_logged_batch(r.value)] == items_
    markers = items(iter_prefix(s, 1, keys.logged_batch_prefix()))
    assert markers == sorted(
        (r.key, keys.event_batch_marker(keys.decode_logged_batch(r.value))) for r in log
    )
    assert all(s.get(1, k) == v for k, v in items_)


def test_a_batch_of_long_keys_is_split_by_bytes(table_subject):
    subject = table_subject
    items_ = [(b"E%0200d" % i, b"\x01") for i in range(3_000)]  # ~600 KB of keys
    subject.store.put_batch(0, items_, created_ms=1)
    sizes = [len(r.value) for r in subject.changelog]
    assert len(sizes) == 3 and max(sizes) < 300 * 1024
    assert [kv for r in subject.changelog for kv in keys.decode_logged_batch(r.value)] == items_


def test_put_batch_is_readable_and_marked_in_every_store(subject):
    s = subject.store
    s.put_batch(0, [(b"k1", b"a"), (b"k2", b"b")], created_ms=5)
    s.put_batch(0, [(b"k1", b"c")], created_ms=6)
    assert (s.get(0, b"k1"), s.get(0, b"k2"), s.get(1, b"k1")) == (b"c", b"b", None)
    markers = [k for k, _ in iter_prefix(s, 0, keys.logged_batch_prefix())]
    assert sorted(keys.decode_logged_batch_key(k) for k in markers) == [5, 6]


def test_reads_do_not_write_the_changelog(table_subject):
    subject = table_subject
    s = subject.store
    s.put(0, b"k", b"v")
    n = len(subject.changelog)
    s.get(0, b"k")
    s.get(0, b"missing")
    list(s.iter_range(0, b"", b"\xff"))
    list(iter_prefix(s, 0, b"k", reverse=True))
    assert len(subject.changelog) == n


def test_changelog_replays_to_the_same_state(table_subject, tmp_path):
    """Restoring a partition from its changelog gives the same DB (what faust does on recovery)."""
    subject = table_subject
    s = subject.store
    fill(s, 2)
    s.delete(2, b"ab")
    s.put(2, b"a", b"changed")
    s.put_batch(2, [(b"E%06d" % i, b"\x01") for i in range(LOGGED_BATCH_ITEMS + 5)], created_ms=7)
    s.put_batch(2, [(b"ab", b"again"), (b"b", b"batched")], created_ms=8)
    s.put(2, b"b", b"after the batch")
    restored = MemoryStore()
    for r in subject.changelog:
        for key, value in keys.expand_changelog_record(r.key, r.value):
            if value is None:
                restored.delete(r.partition, key)
            else:
                restored.put(r.partition, key, value)
    everything = (b"", b"\xff\xff")
    assert items(restored.iter_range(2, *everything)) == items(s.iter_range(2, *everything))


# --- the domain over each store --------------------------------------------------------------


def test_lead_index_answers_agree_across_stores(subject):
    """The index's questions get the same answers whichever store holds the state.

    Two leads share a partition; "+15551234568" sorts after "+15551234567" and its events
    must not leak into the other lead's window counts or opt state. The partition's index,
    kept current by the writes, equals one rebuilt from the store's keys.
    """
    s = indexed_memory(inner=subject.store)
    base = 1_700_000_000_000
    a = ("1", "+15551234567")
    b = ("1", "+15551234568")
    apply_events(
        s,
        0,
        [
            LeadEvent(*a, "buy", base + 10),
            LeadEvent(*a, "opted_in", base + 20),
            LeadEvent(*b, "buy", base + 5),
            LeadEvent(*b, "buy", base + 15),
            LeadEvent(*b, "opted_out", base + 30),
            LeadEvent("0", a[1], "buy", base + 12),
        ],
        horizon_ms=0,
        now_ms=0,
    )
    assert count_events(s, 0, *a, "buy") == 1
    assert count_events(s, 0, *a, "buy", since_ms=base, until_ms=base + 100) == 1
    assert count_events(s, 0, *b, "buy", since_ms=base + 6, until_ms=base + 100) == 1
    assert count_events(s, 0, *a, "opted_out", since_ms=base, until_ms=base + 100) == 0
    assert not latest_opt(s, 0, *a, opt_out_type="opted_out", opt_in_type="opted_in").opted_out
    assert latest_opt(s, 0, *b, opt_out_type="opted_out", opt_in_type="opted_in").opted_out
    assert lead_events(s, 0, *a) == [("buy", base + 10), ("opted_in", base + 20)]
    assert_indexes_rebuild_equal(s, [0])


def test_indexes_rebuilt_from_a_restored_changelog_equal_the_live_ones(table_subject):
    """What a new owner builds after restoring the changelog (events, memberships, a
    compaction, lead ids in every value) is the index the old owner kept current."""
    live = indexed_memory(inner=table_subject.store)
    base = 1_700_000_000_000
    hour = 3_600_000
    phones = [f"+1555000{i:04d}" for i in range(40)]
    events = [
        LeadEvent(org, phone, event_type, base + (i * 7919 % 50) * hour // 3 + i)
        for i, phone in enumerate(phones)
        for org in ("1", "2")
        for event_type in ("buy", "opted_out", "opted_in")
        if (i + len(event_type)) % 3
    ]
    apply_events(live, 0, events, horizon_ms=0, now_ms=base)
    apply_events(live, 0, events[:10], horizon_ms=0, now_ms=base)  # duplicates
    apply_members(
        live,
        0,
        [MemberOp("1", "c", phone, f"x{i}" if i % 2 else None) for i, phone in enumerate(phones)]
        + [
            MemberOp("1", "c", phones[3], None, remove=True),
            MemberOp("2", "d", "+15559999999", None),
        ],
        group=1,
    )
    compact_partition(live, 0, horizon_ms=base + 5 * hour, max_future_skew_ms=0)
    apply_events(
        live, 0, [LeadEvent("1", phones[5], "buy", base + 60 * hour)], horizon_ms=0, now_ms=base
    )
    restored = MemoryStore()
    for r in table_subject.changelog:
        for key, value in keys.expand_changelog_record(r.key, r.value):
            if value is None:
                restored.delete(r.partition, key)
            else:
                restored.put(r.partition, key, value)
    rebuilt = indexed_memory(inner=restored)
    assert rebuilt.index(0).snapshot() == live.index(0).snapshot()
    assert rebuilt.index(0).next_id == live.index(0).next_id


# --- memberships on the changelog ------------------------------------------------------------


def membership_keys(store, partition=0):
    out = []
    for prefix in (keys.members_kind_prefix(), keys.lead_prefix()):
        out += items(iter_prefix(store, partition, prefix))
    return out


def test_memberships_are_a_few_changelog_records_with_deletions_inside(table_subject):
    s = indexed_memory(inner=table_subject.store)
    phones = [f"+1555100{i:04d}" for i in range(LOGGED_BATCH_ITEMS + 10)]
    apply_members(s, 0, [MemberOp("1", "c", p, None) for p in phones], group=2)
    index = keys.index_prefix()
    # The index's own records (its mark, journal, snapshot) are logged after these, and
    # the partition's bucket key once, with its first members.
    bucket = keys.bucket_key_key()
    assert len([r for r in table_subject.changelog if r.key == bucket]) == 1
    log = [r for r in table_subject.changelog if not r.key.startswith((index, bucket))]
    assert len(log) == 2
    assert all(r.key.startswith(keys.member_batch_prefix()) for r in log)
    counts = [keys.decode_member_batch_items(v) for _, v in iter_prefix(s, 0, b"G\x00")]
    assert sorted(counts) == [10, LOGGED_BATCH_ITEMS]
    # The same members again: nothing changes, nothing is logged.
    apply_members(s, 0, [MemberOp("1", "c", p, None) for p in phones], group=3)
    log = [r for r in table_subject.changelog if not r.key.startswith((index, bucket))]
    assert len(log) == 2
    # A removal: the key's own tombstone, then a batch with the deletion and the lead key.
    apply_members(s, 0, [MemberOp("1", "c", phones[0], None, remove=True)], group=4)
    log = [r for r in table_subject.changelog if not r.key.startswith((index, bucket))]
    assert [r.key for r in log[2:3]] == [keys.member_key("1", "c", phones[0])]
    assert log[2].value is None
    inside = keys.decode_logged_batch(log[3].value)
    assert (keys.member_key("1", "c", phones[0]), None) in inside
    assert any(k == keys.lead_key("1", phones[0]) for k, _ in inside)
    assert membership_keys(replay(log)) == membership_keys(s)


@pytest.mark.parametrize("relog", [False, True])
def test_memberships_survive_a_compacted_changelog(table_subject, monkeypatch, relog):
    """Adds, externalId updates, removals and re-adds, with a membership logged the old way
    (a record of its own) among them: the compacted changelog replays to the live keys,
    with and without the memberships logged again."""
    from leadstream.domain import send_state

    s = indexed_memory(inner=table_subject.store)
    phones = [f"+1555200{i:04d}" for i in range(60)]
    legacy = phones[59]
    s.put(
        0,
        keys.member_key("1", "c", legacy),
        # The value as it was then: the lead id and the tagged externalId, no groups.
        keys.lead_id_bytes(s.index(0).assign("1", legacy)[0]) + keys.encode_external_id(None),
    )
    s.drop([0])  # the index is rebuilt from the keys, the legacy member's included
    apply_members(s, 0, [MemberOp("1", "c", p, None) for p in phones[:40]], group=5)
    apply_members(
        s, 0, [MemberOp("1", "c", p, f"x{i}") for i, p in enumerate(phones[:10])], group=6
    )
    apply_members(
        s, 0, [MemberOp("1", "c", p, None, remove=True) for p in [*phones[5:20], legacy]], group=7
    )
    apply_members(s, 0, [MemberOp("1", "c", p, "back") for p in phones[15:18]], group=8)
    apply_members(s, 0, [MemberOp("1", "d", p, None) for p in phones[30:60]], group=9)
    monkeypatch.setattr(send_state, "RELOG_SLACK", -(10**9) if relog else 10**9)
    before = len(table_subject.changelog)
    relogged = send_state.relog_memberships(s, 0, now_ms=10**6)
    assert (relogged > 0) is relog
    if relog:
        assert not any(
            k in {r.key for r in table_subject.changelog[:before]}
            for k, _ in iter_prefix(s, 0, keys.member_batch_prefix())
        ), "the batches logged again are new records"
    live = membership_keys(s)
    assert live, "nothing to compare"
    assert membership_keys(replay(table_subject.changelog)) == live
    assert membership_keys(replay(kafka_compacted(table_subject.changelog))) == live
    rebuilt = indexed_memory(inner=replay(kafka_compacted(table_subject.changelog)))
    assert rebuilt.index(0).snapshot() == s.index(0).snapshot()
