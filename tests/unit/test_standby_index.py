"""A standby's copy of the kept index (index/durable.py): restored from the changelog with
the keys, in batches of any size and cut after any record (a crash of the owner, or a
takeover while the restore is under way), it reads back what a build from the same keys
gives, or it is not read back at all (then it is built); restored whole, it reads back the
owner's index."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from leadstream.domain.audience import MemberOp
from leadstream.domain.erase import erase_lead
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events, compact_partition
from leadstream.domain.send_state import apply_members
from leadstream.index import durable
from leadstream.index.partition import build
from leadstream.index.table import IndexedStore
from leadstream.state import keys, rocksdb
from leadstream.state.memory import MemoryStore
from leadstream.state.rocksdb import TableStore
from tests.support.changelog import FakeTable, LoggedStore, Standby
from tests.support.stores import indexed_memory

HOUR = 3_600_000
T = 1_781_000_000_000
P = 0
PHONES = [f"+1212555{i:04d}" for i in range(12)]


def history(store: IndexedStore) -> None:
    """Every writer of the index, with snapshots between (the unit tests' fixture makes
    one due every few changes): ingests, memberships added, changed, removed and added
    again, an erase (its scrub of what is kept), a compaction, an opt-out."""
    groups = itertools.count(T - 40 * HOUR, HOUR)
    for i, phone in enumerate(PHONES):
        events = [LeadEvent("o", phone, "buy", T - (30 - i) * HOUR)]
        if i % 3 == 0:
            events.append(LeadEvent("o", PHONES[i - 1], "click", T - (20 - i) * HOUR))
        apply_events(store, P, events, horizon_ms=0, now_ms=next(groups))
        if i % 4 == 1:
            members = [MemberOp("o", "c1", p, f"crm-{p[-4:]}") for p in PHONES[: i + 1 : 2]]
            apply_members(store, P, members, group=next(groups))
    apply_members(store, P, [MemberOp("o", "c1", PHONES[1], None, True)], group=next(groups))
    apply_members(store, P, [MemberOp("o", "c1", PHONES[1], "again")], group=next(groups))
    apply_events(
        store, P, [LeadEvent("o", PHONES[2], "opted_out", T - HOUR)], horizon_ms=0, now_ms=T
    )
    erase_lead(store, P, "o", PHONES[4], now_ms=T)
    compact_partition(store, P, horizon_ms=T - 20 * HOUR, max_future_skew_ms=HOUR)
    apply_events(store, P, [LeadEvent("o", PHONES[5], "buy", T)], horizon_ms=0, now_ms=T + 1)
    erase_lead(store, P, "o", PHONES[2], now_ms=T + 2)


def assert_reads_back_its_own_keys(standby: Standby, store: IndexedStore) -> bool:
    """What the standby would read back equals a build from its keys; whether it did."""
    replica = standby.store
    loaded = durable.load(replica, P, store._opt, store._codec)
    if loaded is None:
        return False
    assert loaded[0].snapshot() == build(replica, P, store._opt, store._codec).snapshot()
    return True


@pytest.mark.parametrize(("batch", "piece"), [(1, None), (3, None), ("random", None), (1, 40)])
def test_a_standby_cut_after_any_record_reads_back_what_its_keys_build(
    batch: object, piece: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if piece is not None:  # every value in many pieces, a record each
        monkeypatch.setattr(durable, "PIECE", piece)
    log = LoggedStore()
    store = indexed_memory(inner=log)
    history(store)
    assert any(k.startswith(keys.index_snapshot_prefix()) for _, k, _ in log.log)
    standby = Standby(log)
    rng = random.Random(7)
    cuts = iter(lambda: rng.randint(1, 30) if batch == "random" else int(str(batch)), None)
    commits = 0
    for end in range(1, len(log.log) + 1):
        standby.follow(cuts, until=end)
        read_back = assert_reads_back_its_own_keys(standby, store)
        _, key, value = log.log[end - 1]
        whole = end == len(log.log) or not log.log[end][1].startswith(key[:-2])  # last piece
        if keys.is_index_commit(key, value) and whole:
            # After each whole write (its journal entry, or a snapshot's meta part), a
            # takeover needs no build.
            assert read_back, end
            commits += 1
    assert commits > 20
    loaded = durable.load(standby.store, P, store._opt, store._codec)
    assert loaded is not None
    assert loaded[0].snapshot() == store.index(P).snapshot()


def test_a_snapshot_cut_before_its_meta_part_is_not_read_back() -> None:
    """The parts of a snapshot whose meta part never came are of a later snapshot than the
    meta part the standby has: mixed with that one's journal, they would count twice."""
    log = LoggedStore()
    store = indexed_memory(inner=log)
    apply_events(store, P, [LeadEvent("o", PHONES[0], "buy", T)], horizon_ms=0, now_ms=T)
    kept = store._kept[P]
    durable.write_snapshot(log, P, store.index(P), kept)
    apply_events(store, P, [LeadEvent("o", PHONES[0], "buy", T + 1)], horizon_ms=0, now_ms=T)
    start = len(log.log)
    durable.write_snapshot(log, P, store.index(P), kept)
    written = log.log[start:]
    meta = keys.index_piece_key(keys.index_snapshot_key("meta"), 0)
    at = next(i for i, (_, key, _) in enumerate(written) if key == meta)
    assert at > 0  # parts first
    standby = Standby(log)
    standby.follow(iter(lambda: 1, None), until=start + at)
    assert durable.load(standby.store, P, store._opt, store._codec) is None
    standby.follow(iter(lambda: 1, None))
    assert assert_reads_back_its_own_keys(standby, store)


def test_pieces_of_two_versions_of_a_value_are_not_put_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A value rewritten in place (an erase's scrub of a journal entry) and restored cut
    between its pieces: the first piece of the new version, the rest of the old."""
    monkeypatch.setattr(durable, "PIECE", 4)
    store = MemoryStore()
    kept = durable.Kept()
    key = keys.index_journal_key(0)
    store.write_index(P, kept.put(key, b"aaaabbbbcccc"))
    assert durable._get(store, P, key) == (b"aaaabbbbcccc", 0)
    rewrite = kept.put(key, b"xxxxyyyyzzzz")
    assert len(rewrite) == 3
    store.write_index(P, rewrite[:1])
    with pytest.raises(ValueError, match="another version"):
        durable._get(store, P, key)
    with pytest.raises(ValueError, match="another version"):
        list(durable._journal(store, P))
    store.write_index(P, rewrite[1:])
    assert [v for _, v in durable._journal(store, P)] == [b"xxxxyyyyzzzz"]
    # A shorter value deletes the pieces it no longer has.
    store.write_index(P, kept.put(key, b"short"))
    assert [k for k, _ in store.iter_range(P, b"I", b"J")] == [
        keys.index_piece_key(key, 0),
        keys.index_piece_key(key, 1),
    ]


def test_a_standby_of_the_rocksdb_store_restores_record_by_record(
    tables: Callable[[str], FakeTable],
) -> None:
    """The same, with the worker's RocksDB adapter on both sides: the changelog as it
    logs it (an ingest's journal entry riding in its record), restored a record at a time
    as a worker restores it (rocksdb.write_restored)."""
    owner = tables("owner")
    store = indexed_memory(inner=TableStore(owner))
    history(store)
    standby = tables("standby")
    replica = TableStore(standby)
    riding = 0
    for n, record in enumerate(owner.changelog, start=1):
        items = keys.expand_changelog_record(record.key, record.value)
        rides = record.key[:1] == b"B" and any(
            k.startswith(keys.index_journal_prefix()) for k, _ in items
        )
        riding += rides
        rocksdb.write_restored(standby.data._db_for_partition(record.partition), items)
        loaded = durable.load(replica, P, store._opt, store._codec)
        if loaded is not None:
            built = build(replica, P, store._opt, store._codec)
            assert loaded[0].snapshot() == built.snapshot(), n
        if rides or keys.is_index_commit(record.key, record.value):
            assert loaded is not None, n  # a whole write restored: read back
    assert riding > 5
    loaded = durable.load(replica, P, store._opt, store._codec)
    assert loaded is not None
    assert loaded[0].snapshot() == store.index(P).snapshot()


def test_a_membership_upload_journals_its_ids_and_its_members_as_one_op_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New leads' ids one after another are one op, the members set one after another in
    a campaign another (a journal of two ops a member logged more than the keys); read
    back, they give the index the writes made."""
    monkeypatch.setattr(durable, "MIN_SNAPSHOT_AFTER", 1_000)  # no snapshot folds it
    store = indexed_memory()
    ops = [MemberOp("o", "c1", p, f"crm-{i}" if i % 2 else None) for i, p in enumerate(PHONES)]
    apply_members(store, P, ops, group=T)
    entries = [durable._ops.decode(value) for _, value in durable._journal(store._inner, P)]
    assert [[op[0] for op in entry] for entry in entries] == [["A", "M"]]
    (a, m) = entries[0]
    assert a == ["A", "o", PHONES]
    assert m == ["M", "o", "c1", list(range(len(PHONES))), [op.external_id for op in ops]]
    loaded = durable.load(store._inner, P, store._opt, store._codec)
    assert loaded is not None
    assert loaded[0].snapshot() == store.index(P).snapshot()
