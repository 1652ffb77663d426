"""An erase leaves nothing of the lead in the compacted changelog (domain/relog.py): the
logged batches (``B`` and ``G`` records) holding any of its keys are logged again without
it and tombstoned, and nothing of any other lead is lost on the way.

The store is the worker's RocksDB adapter over real Rdicts, with its changelog recorded
(tests/support/changelog.py). "The compacted view" is what Kafka's log cleaner
leaves at worst: the last record of each key, tombstones gone, in offset order; replaying
it (expanding the batches, as a restore does) must give the live state back exactly.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadstream.domain.audience import MemberOp
from leadstream.domain.erase import erase_lead
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import apply_events, compact_partition
from leadstream.domain.relog import relog_legacy_batches
from leadstream.domain.send_state import apply_members, relog_memberships, store_filter_part
from leadstream.index.table import IndexedStore
from leadstream.state import keys, rocksdb
from leadstream.state.rocksdb import TableStore
from tests.support.changelog import (
    ChangelogRecord,
    FakeTable,
    RdictPerPartition,
    kafka_compacted,
    replay,
)
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

MIN = 60_000
HOUR = 60 * MIN
T = 1_781_000_000_000
ORG = "o"
P = 0
VICTIM = "+12125550123"
OTHER = "+14155550123"
THIRD = "+447911123456"
EVERYTHING = (b"", b"\xff\xff")


def all_items(store: object, partition: int = P) -> list[tuple[bytes, bytes]]:
    """Every key but the kept index's (its own tests: test_standby_index.py)."""
    items = store.iter_range(partition, *EVERYTHING)  # type: ignore[attr-defined]
    kept = keys.index_prefix()
    return [(bytes(k), bytes(v)) for k, v in items if not bytes(k).startswith(kept)]


# The victim's externalIds: long enough that no random byte of a batch key spells one (a
# two-letter id once matched 8 random bytes of a record's key).
OLD_ID, NEW_ID, C3_ID = "victim-crm-old", "victim-crm-new", "victim-crm-c3"


def needles(phone: str, *external_ids: str) -> list[bytes]:
    """What must not be left of a lead: its phone's digits (so also its E.164 form) and
    its externalIds."""
    return [phone.lstrip("+").encode(), *(x.encode() for x in external_ids)]


def traces(records: list[ChangelogRecord], what: list[bytes]) -> list[bytes]:
    """Keys of the records whose key or value holds any of ``what``."""
    return [r.key for r in records if any(n in r.key or (r.value and n in r.value) for n in what)]


def assert_compacted_replays_to(store: IndexedStore, table: FakeTable) -> None:
    """The compacted changelog, replayed, is the live state, and so is its index; but for
    the keys of folded events whose batch is not retired yet (their tombstones are gone
    from a compacted changelog), which count nothing and which the next compaction
    deletes again (lead_index.compact_partition)."""
    restored = replay(kafka_compacted(table.changelog))
    live = dict(all_items(store))
    for key, _ in all_items(restored):
        if key[:1] == b"E" and key not in live:
            org, phone, event_type, ts = keys.decode_event_key(key)
            folded = live.get(keys.compacted_key(org, phone, event_type))
            if folded is not None and ts <= keys.decode_compacted(folded)[1]:
                restored.delete(P, key)
    assert all_items(restored) == all_items(store)
    assert indexed_memory(inner=restored).index(P).snapshot() == store.index(P).snapshot()


def event(phone: str, event_type: str, at: int, metadata: object = None) -> LeadEvent:
    encoded = None if metadata is None else msgspec.json.encode(metadata)
    return LeadEvent(ORG, phone, event_type, at, encoded)


def member(phone: str, campaign: str, external_id: str | None = None, *, remove: bool = False):
    return MemberOp(ORG, campaign, phone, external_id, remove)


def lived(store: IndexedStore, group: Iterator[int]) -> None:
    """Three leads' lives, the victim's keys spread over every kind of batch: events mixed
    with the others' in one command and alone in others, folded events whose batch is not
    retired yet, a membership whose externalId changed, one removed, one removed and
    added again, memberships logged again by the compaction timer, an audience filter
    held for a send to come."""
    apply_members(
        store,
        P,
        [member(VICTIM, "c1", OLD_ID), member(OTHER, "c1", "y1"), member(VICTIM, "c2")],
        group=next(group),
    )
    apply_members(store, P, [member(VICTIM, "c1", NEW_ID), member(THIRD, "c1")], group=next(group))
    apply_members(store, P, [member(VICTIM, "c2", remove=True)], group=next(group))
    apply_members(store, P, [member(VICTIM, "c3", C3_ID), member(OTHER, "c3")], group=next(group))
    apply_members(store, P, [member(VICTIM, "c3", remove=True)], group=next(group))
    apply_members(store, P, [member(VICTIM, "c3", C3_ID), member(THIRD, "c2")], group=next(group))
    old = next(group)
    apply_events(
        store,
        P,
        [
            event(VICTIM, "buy", T - 30 * HOUR, {"plan": "a"}),
            event(OTHER, "buy", T - 30 * HOUR),
            event(VICTIM, "click", T - 2 * HOUR),
        ],
        horizon_ms=0,
        now_ms=old,
    )
    apply_events(
        store,
        P,
        [
            event(VICTIM, "buy", T - HOUR, {"plan": "b"}),
            event(OTHER, "buy", T - HOUR, {"plan": "b"}),
            event(THIRD, "click", T - HOUR),
        ],
        horizon_ms=0,
        now_ms=next(group),
    )
    # A source duplicate (another command): counted, not logged again.
    apply_events(store, P, [event(VICTIM, "click", T - 2 * HOUR)], horizon_ms=0, now_ms=next(group))
    apply_events(store, P, [event(VICTIM, "opted_in", T)], horizon_ms=0, now_ms=next(group))
    # The 30-hour-old events are folded; their batch is younger than the retirement
    # bound, so it is still on the changelog, named by the folded records.
    compact_partition(store, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=70 * HOUR)
    assert store.get(P, keys.compacted_key(ORG, VICTIM, "buy")) is not None
    assert keys.compacted_refs(store.get(P, keys.compacted_key(ORG, VICTIM, "buy")) or b"")
    store_filter_part(
        store,
        P,
        org=ORG,
        send="later",
        received_at=T,
        seq=0,
        part=0,
        parts=1,
        mode="exclude",
        external_ids=["y1"],
        phones=[VICTIM, OTHER],
    )


@pytest.mark.parametrize("relog_first", [False, True])
def test_the_compacted_changelog_holds_nothing_of_an_erased_lead(
    tables: Callable[[str], FakeTable], monkeypatch: pytest.MonkeyPatch, relog_first: bool
) -> None:
    # Records of two items: a command's group is several records.
    monkeypatch.setattr(rocksdb, "LOGGED_BATCH_ITEMS", 2)
    table = tables("live")
    store = indexed_memory(inner=TableStore(table))
    group = itertools.count(T - 100 * HOUR, HOUR)
    lived(store, group)
    if relog_first:
        relog_memberships(store, P, now_ms=T, force=True)
    victim = needles(VICTIM, OLD_ID, NEW_ID, C3_ID)
    assert traces(kafka_compacted(table.changelog), victim), "nothing to erase"
    erased = erase_lead(store, P, ORG, VICTIM, now_ms=T + HOUR)
    assert (erased.events, erased.memberships) == (4, 2)
    assert traces(kafka_compacted(table.changelog), victim) == []
    assert_compacted_replays_to(store, table)
    assert_indexes_rebuild_equal(store, [P])
    # The others keep everything: their events, folded records and memberships.
    for phone, (n_events, campaigns) in {
        OTHER: (1, {"c1", "c3"}),  # and one folded
        THIRD: (1, {"c1", "c2"}),
    }.items():
        assert (
            len(list(store.iter_range(P, *_range(keys.lead_events_prefix(ORG, phone))))) == n_events
        )
        got = {
            keys.decode_member_key(k)[1]
            for k, _ in all_items(store)
            if k.startswith(b"M") and k.endswith(phone.encode())
        }
        assert got == campaigns
    assert store.get(P, keys.compacted_key(ORG, OTHER, "buy")) is not None
    assert keys.decode_external_id(store.get(P, keys.member_key(ORG, "c1", OTHER)) or b"") == "y1"
    # Nothing of it locally either (markers name lead ids, never phones).
    assert [k for k, v in all_items(store) if any(n in k or n in v for n in victim)] == []
    # A second erase finds nothing more and logs nothing of it.
    before = len(table.changelog)
    erase_lead(store, P, ORG, VICTIM, now_ms=T + 2 * HOUR)
    assert traces(table.changelog[before:], victim) == []


def _range(prefix: bytes) -> tuple[bytes, bytes]:
    return prefix, keys.prefix_upper_bound(prefix)


def test_an_erase_logs_again_only_the_groups_holding_the_lead(
    tables: Callable[[str], FakeTable],
) -> None:
    """The groups are found from the lead's own values, and each is logged again from its
    leads' keys: a group without the lead is left as it is."""
    table = tables("live")
    store = indexed_memory(inner=TableStore(table))
    apply_events(store, P, [event(OTHER, "buy", T - 3 * HOUR)], horizon_ms=0, now_ms=T - 3 * HOUR)
    apply_events(
        store,
        P,
        [event(VICTIM, "buy", T - 2 * HOUR), event(THIRD, "buy", T - 2 * HOUR)],
        horizon_ms=0,
        now_ms=T - 2 * HOUR,
    )
    untouched = keys.logged_batch_group(T - 3 * HOUR)
    before = len(table.changelog)
    erase_lead(store, P, ORG, VICTIM, now_ms=T)
    written = table.changelog[before:]
    assert not any(r.key.startswith(untouched) for r in written)
    mixed = [r for r in written if r.key.startswith(keys.logged_batch_group(T - 2 * HOUR))]
    # The mixed group: logged again with THIRD's event only, then its old record tombstoned.
    assert [keys.decode_logged_batch(r.value) for r in mixed if r.value] == [
        [
            (
                keys.event_key(ORG, THIRD, "buy", T - 2 * HOUR),
                store.get(P, keys.event_key(ORG, THIRD, "buy", T - 2 * HOUR)),
            )
        ]
    ]
    assert [r.value for r in mixed][-1] is None
    assert_compacted_replays_to(store, table)


def test_a_duplicate_is_logged_again_only_by_its_own_command(
    tables: Callable[[str], FakeTable],
) -> None:
    """So every record holding an event key, or a membership key unchanged, is in the one
    group its value names: the same command applied again after a crash logs it again
    (its record may never have reached the changelog), another command does not."""
    table = tables("live")
    store = indexed_memory(inner=TableStore(table))
    evs = [event(VICTIM, "buy", T), event(OTHER, "buy", T)]
    ops = [member(VICTIM, "c1", "x"), member(OTHER, "c1")]
    apply_events(store, P, evs, horizon_ms=0, now_ms=T + 1, logged_ms=T)
    apply_members(store, P, ops, group=T)
    n = len(table.changelog)
    apply_events(store, P, evs, horizon_ms=0, now_ms=T + 2, logged_ms=T + 1)  # another command
    apply_members(store, P, ops, group=T + 1)
    assert len(table.changelog) == n
    apply_events(store, P, evs, horizon_ms=0, now_ms=T + 3, logged_ms=T)  # the same again
    apply_members(store, P, ops, group=T)
    again = table.changelog[n:]
    assert [r.key[:10] for r in again] == [keys.logged_batch_group(T), keys.member_batch_group(T)]
    assert [k for r in again for k, _ in keys.decode_logged_batch(r.value or b"")] == [
        keys.event_key(ORG, VICTIM, "buy", T),
        keys.event_key(ORG, OTHER, "buy", T),
        keys.member_key(ORG, "c1", VICTIM),
        keys.member_key(ORG, "c1", OTHER),
    ]
    for key in (keys.event_key(ORG, VICTIM, "buy", T), keys.member_key(ORG, "c1", VICTIM)):
        assert keys.value_refs(store.get(P, key) or b"") == (T,)
    # A changed externalId is a new write: its value names both groups now.
    apply_members(store, P, [member(VICTIM, "c1", "x2")], group=T + 5)
    assert keys.value_refs(store.get(P, keys.member_key(ORG, "c1", VICTIM)) or b"") == (T, T + 5)
    assert_compacted_replays_to(store, table)


# --- an erase cut short ----------------------------------------------------------------------


@pytest.mark.parametrize("log", ["as written", "compacted"])
def test_an_erase_cut_short_then_restored_and_applied_again_is_the_whole_erase(
    tables: Callable[[str], FakeTable], monkeypatch: pytest.MonkeyPatch, log: str
) -> None:
    """For every point at which the erase's changelog records may stop (a crash before the
    producer flushed the rest): a new owner restores what reached the changelog, and the
    erase command, applied again, ends in the same state as the erase done once, with
    nothing of the lead in the compacted changelog."""
    monkeypatch.setattr(rocksdb, "LOGGED_BATCH_ITEMS", 2)
    table = tables("live")
    store = indexed_memory(inner=TableStore(table))
    lived(store, itertools.count(T - 100 * HOUR, HOUR))
    start = len(table.changelog)
    erase_lead(store, P, ORG, VICTIM, now_ms=T + HOUR)
    written = len(table.changelog) - start
    assert written > 5
    victim = needles(VICTIM, OLD_ID, NEW_ID, C3_ID)
    want = [(k, v) for k, v in all_items(store) if not k.startswith((b"B", b"G"))]
    for cut in range(written + 1):
        records = table.changelog[: start + cut]
        if log == "compacted":
            records = kafka_compacted(records)
        fresh = tables(f"cut{cut}")
        for r in records:  # restored as a worker does (a record a batch)
            db = fresh.data._db_for_partition(r.partition)
            rocksdb.write_restored(db, keys.expand_changelog_record(r.key, r.value))
        again = indexed_memory(inner=TableStore(fresh))
        erase_lead(again, P, ORG, VICTIM, now_ms=T + HOUR)
        if log == "compacted":
            # A compacted changelog also brings back the keys of folded events whose batch
            # is not retired yet (without their tombstones), until the next compaction.
            compact_partition(again, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=70 * HOUR)
        got = [(k, v) for k, v in all_items(again._inner) if not k.startswith((b"B", b"G"))]
        assert got == want, cut
        assert again.index(P).snapshot() == store.index(P).snapshot(), cut
        log_now = records + fresh.changelog
        assert traces(kafka_compacted(log_now), victim) == [], cut
        replayed = indexed_memory(inner=replay(kafka_compacted(log_now)))
        if log == "compacted":
            compact_partition(replayed, P, horizon_ms=T - 24 * HOUR, max_future_skew_ms=70 * HOUR)
        assert all_items(replayed) == all_items(again._inner), cut


# --- state written before groups existed -----------------------------------------------------


def legacy_batch(table: FakeTable, kind: bytes, items: list[tuple[bytes, bytes | None]]) -> None:
    """A batch as it was logged before groups existed: an events batch kept ``b""`` under
    ``B createdAt random``, a memberships batch its item count under ``G random``."""
    db = table.data._db_for_partition(P)
    wb = rocksdb.write_batch(items)
    if kind == b"B":
        log_key, local = keys.logged_batch_key(T - 50 * HOUR), b""
    else:
        log_key, local = b"G\x00" + bytes(range(8)), len(items).to_bytes(4, "big")
    wb.put(log_key, local)
    db.write(wb)
    table.send_changelog(P, log_key, keys.encode_logged_batch(items))


def test_batches_logged_before_groups_existed_are_logged_again_once(
    tables: Callable[[str], FakeTable],
) -> None:
    """Values without refs, batches with the old markers: the first erase (or compaction
    pass) logs every key they may hold again, in groups, and tombstones them; then the
    erase finds the lead's groups as usual."""
    table = tables("live")
    lead = {VICTIM: 0, OTHER: 1}
    legacy_batch(
        table,
        b"B",
        [
            (keys.event_key(ORG, VICTIM, "buy", T - 50 * HOUR), lead[VICTIM].to_bytes(4, "big")),
            (
                keys.event_key(ORG, OTHER, "buy", T - 50 * HOUR),
                lead[OTHER].to_bytes(4, "big") + b'{"a":1}',
            ),
        ],
    )
    legacy_batch(
        table,
        b"G",
        [
            (
                keys.member_key(ORG, "c1", VICTIM),
                lead[VICTIM].to_bytes(4, "big") + b"\x01victim-crm-legacy",
            ),
            (keys.member_key(ORG, "c1", OTHER), lead[OTHER].to_bytes(4, "big") + b"\x00"),
        ],
    )
    store = indexed_memory(inner=TableStore(table))
    assert store.index(P).lead_id(ORG, OTHER) == 1
    apply_events(store, P, [event(VICTIM, "click", T)], horizon_ms=0, now_ms=T)
    victim = needles(VICTIM, "victim-crm-legacy")
    assert traces(kafka_compacted(table.changelog), victim)
    erase_lead(store, P, ORG, VICTIM, now_ms=T + HOUR)
    assert traces(kafka_compacted(table.changelog), victim) == []
    assert_compacted_replays_to(store, table)
    # OTHER's event and membership are in groups now, as they were.
    value = store.get(P, keys.event_key(ORG, OTHER, "buy", T - 50 * HOUR)) or b""
    assert (keys.value_refs(value), keys.event_metadata(value)) == ((T - 50 * HOUR,), b'{"a":1}')
    assert keys.value_refs(store.get(P, keys.member_key(ORG, "c1", OTHER)) or b"")
    assert relog_legacy_batches(store, P, store.index(P), now_ms=T) == 0
    store.drop([P])
    assert relog_legacy_batches(store, P, store.index(P), now_ms=T) == 0  # none left


# --- any history, any erase ------------------------------------------------------------------

PHONES = [VICTIM, OTHER, THIRD, "+33612345678"]
EXTERNAL = [None, "crm-a", "crm-b"]

op_strategy = st.one_of(
    st.tuples(
        st.just("events"),
        st.lists(
            st.tuples(
                st.sampled_from(PHONES),
                st.sampled_from(["buy", "click"]),
                st.integers(0, 40),
                st.booleans(),
            ),
            min_size=1,
            max_size=6,
        ),
        st.integers(0, 3),  # 0: a new command; else that earlier one applied again
    ),
    st.tuples(
        st.just("members"),
        st.lists(
            st.tuples(
                st.sampled_from(PHONES),
                st.sampled_from(["c1", "c2"]),
                st.sampled_from(EXTERNAL),
                st.booleans(),
            ),
            min_size=1,
            max_size=5,
        ),
        st.integers(0, 3),
    ),
    st.tuples(st.just("compact"), st.integers(0, 40)),
    st.tuples(st.just("relog")),
    st.tuples(st.just("erase"), st.sampled_from(PHONES)),
)


REMOVED_BESIDE = [
    ("members", [(OTHER, "c1", None, False)], 0),
    ("members", [(VICTIM, "c1", "crm-a", False), (OTHER, "c1", None, True)], 0),
    ("erase", VICTIM),
]


# Items a record: 2 or 3 (a command's group is several records, and a record holds keys
# of several leads), or as many as the worker's.
@example(2, REMOVED_BESIDE)  # OTHER's deletion in the victim's record: logged again
@example(3, REMOVED_BESIDE)  # and OTHER's L key too
@example(  # the victim's own deletion in a record of OTHER's, its L key in the next one
    2,
    [
        ("members", [(VICTIM, "c1", None, False)], 0),
        ("members", [(OTHER, "c2", None, False), (VICTIM, "c1", None, True)], 0),
        ("erase", VICTIM),
    ],
)
@example(  # a folded event whose batch is not retired: named by the folded record
    2,
    [
        ("events", [(VICTIM, "buy", 3, False), (OTHER, "buy", 3, True)], 0),
        ("compact", 1),
        ("erase", VICTIM),
    ],
)
@example(  # a command applied again, a source duplicate, memberships logged again
    2,
    [
        ("events", [(VICTIM, "buy", 0, True), (THIRD, "click", 1, False)], 0),
        ("events", [(VICTIM, "buy", 0, False), (OTHER, "buy", 1, False)], 0),
        ("events", [(VICTIM, "buy", 0, True)], 2),
        ("members", [(VICTIM, "c2", "crm-b", False), (THIRD, "c2", None, False)], 0),
        ("relog",),
        ("members", [(VICTIM, "c2", "crm-a", False)], 0),
        ("erase", VICTIM),
    ],
)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.sampled_from([2, 3, 1000]), st.lists(op_strategy, min_size=1, max_size=25))
def test_any_history_any_erase_the_compacted_changelog_replays_and_forgets(
    per_record: int, ops: list
) -> None:
    """Random histories of events (duplicates, commands applied again), memberships (adds,
    externalId changes, removals), compactions, memberships logged again and erases: the
    compacted changelog always replays to the live state, and holds nothing of a phone
    erased and not written since."""
    with tempfile.TemporaryDirectory() as root:
        table = FakeTable(RdictPerPartition(Path(root)))
        old_items = rocksdb.LOGGED_BATCH_ITEMS
        rocksdb.LOGGED_BATCH_ITEMS = per_record
        try:
            _run_history(table, ops)
        finally:
            rocksdb.LOGGED_BATCH_ITEMS = old_items
            table.data.close()


def _run_history(table: FakeTable, ops: list) -> None:
    store = indexed_memory(inner=TableStore(table))
    # Commands half an hour apart, each event at or before its command's time (as the
    # skew check at ingest makes it): a compaction retires whole groups of folded events.
    clock = itertools.count(T - 60 * HOUR, 30 * MIN)
    commands: list[int] = []
    gone: dict[str, set[str]] = {}  # erased phone -> its externalIds, while not written again
    ext_of: dict[str, set[str]] = {p: set() for p in PHONES}
    for op in ops:
        kind = op[0]
        if kind in ("events", "members"):
            group = commands[-op[2]] if 0 < op[2] <= len(commands) else next(clock)
            commands.append(group)
        if kind == "events":
            evs = [
                event(p, t, group - at * HOUR, {"m": 1} if meta else None)
                for p, t, at, meta in op[1]
            ]
            apply_events(store, P, evs, horizon_ms=0, now_ms=next(clock), logged_ms=group)
            touched = {p for p, *_ in op[1]}
        elif kind == "members":
            ops_ = [member(p, c, x, remove=r) for p, c, x, r in op[1]]
            apply_members(store, P, ops_, group=group)
            touched = {p for p, _, _, r in op[1] if not r}
            for p, _, x, r in op[1]:
                if x is not None and not r:
                    ext_of[p].add(x)
        elif kind == "compact":
            now = next(clock)
            compact_partition(store, P, horizon_ms=now - op[1] * HOUR, max_future_skew_ms=0)
            touched = set()
        elif kind == "relog":
            relog_memberships(store, P, now_ms=next(clock), force=True)
            touched = set()
        else:
            erase_lead(store, P, ORG, op[1], now_ms=next(clock))
            gone[op[1]] = set(ext_of[op[1]])
            ext_of[op[1]] = set()
            touched = set()
        for phone in touched:
            gone.pop(phone, None)
    assert_compacted_replays_to(store, table)
    assert_indexes_rebuild_equal(store, [P])
    view = kafka_compacted(table.changelog)
    # An externalId another lead still has (or had after) may stay: only the phone's own.
    in_use = set().union(*ext_of.values())
    for phone, external_ids in gone.items():
        assert traces(view, needles(phone, *(external_ids - in_use))) == [], phone
