"""The indexed store: an index is read back from what was kept of it, or built from the
store when first asked for, and never kept half-updated."""

from __future__ import annotations

import pytest

from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events
from leadstream.index import durable
from leadstream.state import keys
from leadstream.state.memory import MemoryStore
from leadstream.state.port import iter_prefix
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

BASE = 1_700_000_000_000


class Boom(Exception):
    pass


class FailingAfterWrite(MemoryStore):
    """Writes the batch, then fails: a crash between the store write and the index's."""

    fail = False

    def put_batch(self, partition, items, *, created_ms, index=()):
        super().put_batch(partition, items, created_ms=created_ms, index=index)
        if self.fail:
            raise Boom


class FailingBeforeWrite(MemoryStore):
    """Fails the batch before anything is written (a full disk)."""

    fail = False

    def put_batch(self, partition, items, *, created_ms, index=()):
        if self.fail:
            raise Boom
        super().put_batch(partition, items, created_ms=created_ms, index=index)


def test_an_index_is_built_from_what_the_store_already_holds() -> None:
    inner = MemoryStore()
    first = indexed_memory(inner=inner)
    apply_events(first, 0, [LeadEvent("o", "+15550001", "buy", BASE)], horizon_ms=0, now_ms=0)
    second = indexed_memory(inner=inner)  # another process on the same data
    assert not second.has_index(0)
    assert second.index(0).lead_id("o", "+15550001") == first.index(0).lead_id("o", "+15550001")
    assert second.index(0).snapshot() == first.index(0).snapshot()


def test_a_write_that_fails_between_store_and_index_drops_the_index() -> None:
    inner = FailingAfterWrite()
    store = indexed_memory(inner=inner)
    apply_events(store, 0, [LeadEvent("o", "+15550001", "buy", BASE)], horizon_ms=0, now_ms=0)
    inner.fail = True
    with pytest.raises(Boom):
        apply_events(store, 0, [LeadEvent("o", "+15550002", "buy", BASE)], horizon_ms=0, now_ms=0)
    assert not store.has_index(0)
    inner.fail = False
    # The retry finds the event stored: a duplicate; the rebuilt index has both leads.
    again = apply_events(
        store, 0, [LeadEvent("o", "+15550002", "buy", BASE)], horizon_ms=0, now_ms=0
    )
    assert (again.inserted, again.duplicates) == (0, 1)
    assert len(store.index(0).orgs["o"].timelines["buy"].ever) == 2
    assert_indexes_rebuild_equal(store)


def test_an_ingest_that_fails_before_its_write_leaves_the_kept_index_as_it_was() -> None:
    inner = FailingBeforeWrite()
    store = indexed_memory(inner=inner)
    apply_events(store, 0, [LeadEvent("o", "+15550001", "buy", BASE)], horizon_ms=0, now_ms=0)
    inner.fail = True
    with pytest.raises(Boom):
        apply_events(store, 0, [LeadEvent("o", "+15550002", "buy", BASE)], horizon_ms=0, now_ms=0)
    assert not store.has_index(0)
    # The index learnt the event before the write that failed; read back, it has not.
    index = indexed_memory(inner=inner).index(0)
    assert index.lead_id("o", "+15550002") is None
    assert_indexes_rebuild_equal(store)


def test_a_writer_that_changes_the_index_after_its_one_write_is_refused() -> None:
    store = indexed_memory()
    with pytest.raises(RuntimeError), store.updating(0, one_write=True) as index:
        index.assign("o", "+15550001")
    assert not store.has_index(0)
    # What is kept says it may not agree with the keys: built again, without the lead.
    assert indexed_memory(inner=store._inner).index(0).lead_id("o", "+15550001") is None
    assert_indexes_rebuild_equal(store)


@pytest.mark.parametrize("damage", ["meta", "names:0", "timeline:o\0buy", "journal"])
def test_a_kept_index_that_cannot_be_read_back_is_built_from_the_keys(damage: str) -> None:
    inner = MemoryStore()
    first = indexed_memory(inner=inner)
    for i in range(3):
        event = LeadEvent("o", f"+1555000{i}", "buy", BASE + i)
        apply_events(first, 0, [event], horizon_ms=0, now_ms=i)
        if i == 1:  # a snapshot of the first two, the third in the journal
            durable.write_snapshot(inner, 0, first.index(0), first._kept[0])
    if damage == "journal":
        journal = [k for k, _ in iter_prefix(inner, 0, keys.index_journal_prefix())]
        assert journal
        inner.put(0, journal[-1], b"\xc1 not msgpack")
    else:
        key = keys.index_piece_key(keys.index_snapshot_key(damage), 0)
        assert inner.get(0, key) is not None
        inner.put(0, key, b"\x93\x01")  # msgpack, not of that shape
    restarted = indexed_memory(inner=inner)
    assert restarted.index(0).snapshot() == first.index(0).snapshot()
    assert durable.load(inner, 0, restarted._opt, restarted._codec) is not None  # kept again


def test_drop_and_keep_only_forget_indexes() -> None:
    store = indexed_memory()
    for p in range(3):
        store.index(p)
    store.keep_only([1, 2])
    assert [store.has_index(p) for p in range(3)] == [False, True, True]
    store.drop([2])
    assert [store.has_index(p) for p in range(3)] == [False, True, False]


def test_a_snapshot_waits_for_a_journal_worth_the_parts_it_rewrites(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(durable, "REWRITE_RATIO", 2)
    monkeypatch.setattr(durable, "SNAPSHOT_AFTER", 100)
    monkeypatch.setattr(durable, "MIN_SNAPSHOT_AFTER", 10)
    index = indexed_memory().index(0)
    part = "timeline:o\0buy"
    kept = durable.Kept(dirty={part}, sizes={part: 1_000, "names:0": 10**6})
    kept.changes, kept.journal_bytes = 9, 10**6
    assert not kept.due(index)  # too little to replay
    kept.changes, kept.journal_bytes = 10, 499
    assert not kept.due(index)  # a thousand bytes rewritten for 499 logged
    kept.journal_bytes = 500
    assert kept.due(index)
    kept.changes, kept.journal_bytes = 100, 1
    assert kept.due(index)  # as much as a start should replay
    assert durable.Kept(changes=10).due(index)  # no snapshot yet: any is worth it


def _loaded(n: int) -> MemoryStore:
    """A store holding ``n`` leads' events, indexed and kept by another process."""
    inner = MemoryStore()
    writer = indexed_memory(inner=inner)
    events = [LeadEvent("o", f"+1555000{i:04d}", "buy", BASE + i) for i in range(n)]
    apply_events(writer, 0, events, horizon_ms=0, now_ms=BASE + n)
    return inner


@pytest.mark.parametrize("kept", [True, False])
def test_an_index_read_ahead_is_taken_when_nothing_changed_the_partition(kept: bool) -> None:
    """Read back (or, with nothing kept, built) off the loop, then taken: the same index
    a synchronous read gives."""
    inner = _loaded(50)
    if not kept:
        for key, _ in list(iter_prefix(inner, 0, keys.index_prefix())):
            inner.delete(0, key)
    store = indexed_memory(inner=inner)
    ahead = store.ahead(0)
    assert ahead is not None
    ahead.read()
    assert (ahead.loaded is not None) is kept
    assert store.take(ahead)
    assert store.ahead(0) is None  # in memory now
    assert store.index(0).snapshot() == indexed_memory(inner=inner).index(0).snapshot()
    assert_indexes_rebuild_equal(store, [0])


def test_an_index_read_ahead_is_not_taken_after_a_writer_indexed_the_partition() -> None:
    """A write between the read and the take indexes the partition itself (the index it
    keeps current has the write; the one read ahead may not): the read is not taken."""
    store = indexed_memory(inner=_loaded(50))
    ahead = store.ahead(0)
    assert ahead is not None
    ahead.read()
    later = [LeadEvent("o", "+15559999999", "buy", BASE + 99)]
    apply_events(store, 0, later, horizon_ms=0, now_ms=BASE + 100)
    assert not store.take(ahead)
    assert store.index(0).lead_id("o", "+15559999999") is not None
    assert_indexes_rebuild_equal(store, [0])


def test_an_index_read_ahead_is_not_taken_after_the_partition_was_dropped() -> None:
    """Dropped while it was read (a restore wrote the partition behind the port, or the
    partition left): not taken, and nothing is indexed until asked again."""
    inner = _loaded(50)
    store = indexed_memory(inner=inner)
    ahead = store.ahead(0)
    assert ahead is not None
    store.drop([0])
    ahead.read()
    assert not store.take(ahead)
    assert not store.has_index(0)
    again = store.ahead(0)
    assert again is not None
    again.read()
    assert store.take(again)
