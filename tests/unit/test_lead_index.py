"""docs/contract.md, section 2: dedupe, counts, opt state and compaction of the per-lead event index.

Everything is checked against a brute-force reference: a plain Python set of
``(org, phone, eventType, occurredAt)`` tuples.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from leadstream.domain.ingest import LeadEvent, group_by_partition
from leadstream.domain.lead_index import (
    apply_events,
    compact_partition,
    count_events,
    latest_opt,
    lead_events,
)
from leadstream.domain.partitioning import lead_partition
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.port import iter_prefix
from tests.support.stores import assert_indexes_rebuild_equal, indexed_memory

PROPS = settings(max_examples=120, deadline=None)
BASE = 1_700_000_000_000
PARTITIONS = 3
# Prefix-sharing identifiers on purpose: "1"/"10", "buy"/"buy_more"/"b", phones one digit apart.
ORGS = ["1", "10", "a"]
PHONES = ["+15551234567", "+15551234568"]
TYPES = ["buy", "buy_more", "b"]
OPT_NAMES = [("opted_out", "opted_in"), ("stop", "start"), ("unsub", "unsub_")]
LEADS = [(o, p) for o in ORGS for p in PHONES]


def ev(org: str, phone: str, event_type: str, ts: int) -> LeadEvent:
    return LeadEvent(org, phone, event_type, ts)


def part(org: str, phone: str) -> int:
    return lead_partition(org, phone, PARTITIONS)


class Reference:
    """The contract, by brute force.

    ``events`` is the logical set of distinct events. ``folded_max`` mirrors the documented
    rule of compaction: once events of a (lead, type) older than a horizon are folded, an
    event older than the apply horizon and not newer than the folded maximum is a duplicate.
    ``live`` is the subset not folded yet (what ``lead_events`` can still list).
    """

    def __init__(self) -> None:
        self.events: set[tuple[str, str, str, int]] = set()
        self.live: set[tuple[str, str, str, int]] = set()
        self.folded_max: dict[tuple[str, str, str], int] = {}

    def apply(self, events: Iterable[LeadEvent], horizon: int) -> tuple[int, int]:
        inserted = duplicates = 0
        for e in events:
            key = e.dedupe_key
            fmax = self.folded_max.get(key[:3])
            if e.occurred_at < horizon and fmax is not None and e.occurred_at <= fmax:
                duplicates += 1
            elif key in self.events:
                duplicates += 1
            else:
                self.events.add(key)
                self.live.add(key)
                inserted += 1
        return inserted, duplicates

    def compact(self, horizon: int) -> None:
        for key in [k for k in self.live if k[3] < horizon]:
            self.live.discard(key)
            lt = key[:3]
            self.folded_max[lt] = max(self.folded_max.get(lt, -1), key[3])

    def count(self, org, phone, event_type, since=None, until=None) -> int:
        return sum(
            1
            for o, p, t, ts in self.events
            if (o, p, t) == (org, phone, event_type)
            and (since is None or ts >= since)
            and (until is None or ts <= until)
        )

    def opted_out(self, org, phone, out_type, in_type) -> tuple[bool, str | None, int | None]:
        opts = [
            (ts, t)
            for o, p, t, ts in self.events
            if (o, p) == (org, phone) and t in (out_type, in_type)
        ]
        if not opts:
            return False, None, None
        latest = max(ts for ts, _ in opts)
        if (latest, out_type) in opts:
            return True, out_type, latest
        return False, in_type, latest

    def lead_events(self, org, phone) -> list[tuple[str, int]]:
        return sorted((t, ts) for o, p, t, ts in self.live if (o, p) == (org, phone))


def apply_all(store, events, horizon) -> tuple[int, int]:
    inserted = duplicates = 0
    for p, group in group_by_partition(list(events), PARTITIONS).items():
        res = apply_events(store, p, group, horizon_ms=horizon, now_ms=0)
        inserted += res.inserted
        duplicates += res.duplicates
    return inserted, duplicates


def compact_all(store, horizon) -> int:
    return sum(
        compact_partition(store, p, horizon_ms=horizon, max_future_skew_ms=0)
        for p in range(PARTITIONS)
    )


def opt_state(store, org, phone, names):
    out_t, in_t = names
    s = latest_opt(store, part(org, phone), org, phone, opt_out_type=out_t, opt_in_type=in_t)
    return s.opted_out, s.latest_type, s.latest_at


def events_strategy(types=TYPES + ["opted_out", "opted_in"], ts_span=30, max_size=40):
    one = st.builds(
        ev,
        st.sampled_from(ORGS),
        st.sampled_from(PHONES),
        st.sampled_from(types),
        st.integers(BASE, BASE + ts_span),
    )
    # Draw some events, then replay a random sample of them to force duplicates.
    return (
        st.lists(one, max_size=max_size)
        .flatmap(
            lambda evs: (
                st.lists(st.sampled_from(evs), max_size=len(evs)).map(lambda dups: evs + dups)
                if evs
                else st.just(evs)
            )
        )
        .flatmap(st.permutations)
    )


def assert_same_answers(store, ref, *, names=OPT_NAMES[0], window_from=None):
    """Sticky counts, opt state (and windows from ``window_from`` on) agree with ``ref``."""
    for org, phone in LEADS:
        p = part(org, phone)
        for t in TYPES + list(names):
            got = count_events(store, p, org, phone, t)
            assert got == ref.count(org, phone, t), (org, phone, t)
            for k in (1, 2, 3):
                got = count_events(store, p, org, phone, t, limit=k)
                assert min(got, k) == min(ref.count(org, phone, t), k)
            if window_from is not None:
                for since in (window_from, window_from + 3):
                    for until in (since, since + 5, BASE + 40):
                        assert count_events(
                            store, p, org, phone, t, since_ms=since, until_ms=until
                        ) == ref.count(org, phone, t, since, until), (org, phone, t, since, until)
        assert opt_state(store, org, phone, names) == ref.opted_out(org, phone, *names)


# --- apply_events / dedupe -------------------------------------------------------------------


@PROPS
@given(events_strategy())
def test_apply_counts_match_reference(events):
    store, ref = indexed_memory(), Reference()
    assert apply_all(store, events, horizon=0) == ref.apply(events, 0)
    for org, phone in LEADS:
        assert lead_events(store, part(org, phone), org, phone) == ref.lead_events(org, phone)


@PROPS
@given(events_strategy(), st.integers(0, 40))
def test_apply_in_pieces_equals_apply_at_once(events, cut):
    """Real-time single events and bulk batches produce identical state."""
    whole, pieces = indexed_memory(), indexed_memory()
    apply_all(whole, events, 0)
    a = apply_all(pieces, events[:cut], 0)
    b = apply_all(pieces, events[cut:], 0)
    assert a[0] + b[0] == apply_all(indexed_memory(), events, 0)[0]
    for p in range(PARTITIONS):
        assert state(whole, p) == state(pieces, p)


def state(store, partition):
    """Everything but the logged-batch markers (their keys are random) and the kept index
    (its journal follows the writes, not only what they wrote)."""
    skip = (keys.logged_batch_prefix(), keys.index_prefix())
    return [kv for kv in store.iter_range(partition, b"", b"\xff") if not kv[0].startswith(skip)]


def test_apply_is_idempotent_and_exact():
    store = indexed_memory()
    e = ev("1", "+15551234567", "buy", BASE)
    r = apply_events(store, 0, [e, e, e], horizon_ms=0, now_ms=0)
    assert (r.inserted, r.duplicates) == (1, 2)
    r = apply_events(store, 0, [e], horizon_ms=0, now_ms=0)
    assert (r.inserted, r.duplicates) == (0, 1)


# --- count_events ----------------------------------------------------------------------------


@PROPS
@given(
    events_strategy(),
    st.sampled_from(LEADS),
    st.sampled_from(TYPES),
    st.integers(BASE - 2, BASE + 32),
    st.integers(-2, 34),
)
def test_count_windows_match_reference(events, lead, event_type, since, width):
    store, ref = indexed_memory(), Reference()
    apply_all(store, events, 0)
    ref.apply(events, 0)
    org, phone = lead
    p = part(org, phone)
    until = since + width
    got = count_events(store, p, org, phone, event_type, since_ms=since, until_ms=until)
    assert got == ref.count(org, phone, event_type, since, until)
    assert count_events(store, p, org, phone, event_type) == ref.count(org, phone, event_type)
    assert count_events(store, p, org, phone, event_type, since_ms=since) == ref.count(
        org, phone, event_type, since=since
    )
    assert count_events(store, p, org, phone, event_type, until_ms=until) == ref.count(
        org, phone, event_type, until=until
    )


def test_window_ends_are_inclusive():
    store = indexed_memory()
    apply_events(
        store, 0, [ev("1", "+1", "buy", BASE + i) for i in (0, 10, 20)], horizon_ms=0, now_ms=0
    )
    c = lambda a, b: count_events(store, 0, "1", "+1", "buy", since_ms=a, until_ms=b)  # noqa: E731
    assert c(BASE, BASE + 20) == 3
    assert c(BASE + 1, BASE + 19) == 1
    assert c(BASE + 10, BASE + 10) == 1
    assert c(BASE + 11, BASE + 19) == 0
    assert c(BASE + 20, BASE + 10) == 0


# --- latest_opt ------------------------------------------------------------------------------


@PROPS
@given(st.data(), st.sampled_from(OPT_NAMES))
def test_latest_opt_matches_reference(data, names):
    events = data.draw(events_strategy(types=[*names, "buy"], ts_span=6))
    store, ref = indexed_memory(), Reference()
    apply_all(store, events, 0)
    ref.apply(events, 0)
    for org, phone in LEADS:
        assert opt_state(store, org, phone, names) == ref.opted_out(org, phone, *names)


@pytest.mark.parametrize(
    ("history", "opted_out"),
    [
        ([], False),
        ([("opted_in", 5)], False),
        ([("opted_out", 5)], True),
        ([("opted_out", 5), ("opted_in", 6)], False),
        ([("opted_in", 5), ("opted_out", 6)], True),
        ([("opted_in", 6), ("opted_out", 5)], False),  # order of arrival does not matter
        ([("opted_in", 5), ("opted_out", 5)], True),  # same instant: opted_out wins
        ([("opted_out", 5), ("opted_in", 5)], True),
        ([("opted_out", 9), ("opted_in", 5), ("opted_in", 7)], True),
    ],
)
def test_latest_opt_rule(history, opted_out):
    store = indexed_memory()
    apply_events(
        store, 0, [ev("1", "+1", t, BASE + ts) for t, ts in history], horizon_ms=0, now_ms=0
    )
    s = latest_opt(store, 0, "1", "+1", opt_out_type="opted_out", opt_in_type="opted_in")
    assert s.opted_out is opted_out
    if history:
        assert s.latest_at == BASE + max(ts for _, ts in history)


def test_opt_type_names_are_configurable():
    store = indexed_memory()
    history = [ev("1", "+1", "stop", BASE), ev("1", "+1", "opted_in", BASE + 1)]
    apply_events(store, 0, history, horizon_ms=0, now_ms=0)
    assert latest_opt(store, 0, "1", "+1", opt_out_type="stop", opt_in_type="start").opted_out
    default = latest_opt(store, 0, "1", "+1", opt_out_type="opted_out", opt_in_type="opted_in")
    assert not default.opted_out


# --- compaction ------------------------------------------------------------------------------


@PROPS
@given(events_strategy(types=TYPES + list(OPT_NAMES[0])), st.integers(BASE - 1, BASE + 32))
def test_compaction_keeps_answers(events, horizon):
    store, ref = indexed_memory(), Reference()
    apply_all(store, events, 0)
    ref.apply(events, 0)
    before = {p: state(store, p) for p in range(PARTITIONS)}
    removed = compact_all(store, horizon)
    ref.compact(horizon)
    assert removed == len({e for e in (x.dedupe_key for x in events) if e[3] < horizon})
    assert_same_answers(store, ref, window_from=horizon)
    for org, phone in LEADS:
        assert lead_events(store, part(org, phone), org, phone) == ref.lead_events(org, phone)
    # a second run changes nothing
    after = {p: state(store, p) for p in range(PARTITIONS)}
    assert compact_all(store, horizon) == 0
    assert {p: state(store, p) for p in range(PARTITIONS)} == after
    assert_same_answers(store, ref, window_from=horizon)
    if horizon <= BASE:
        assert after == before


def test_compaction_retires_logged_batches_whose_events_are_all_folded():
    """A batch created at T holds events up to T + skew: it goes once that is below the
    horizon, and not before (its events would be lost from the changelog)."""
    store = indexed_memory()
    lead = ("1", "+15551234567")
    skew = 5
    for created in (BASE, BASE + 10, BASE + 20):
        apply_events(store, 0, [ev(*lead, "buy", created)], horizon_ms=0, now_ms=created)

    def markers() -> int:
        return len(list(iter_prefix(store, 0, keys.logged_batch_prefix())))

    assert markers() == 3
    compact_partition(store, 0, horizon_ms=BASE + skew, max_future_skew_ms=skew)
    assert markers() == 3  # BASE + skew is not below the horizon yet
    compact_partition(store, 0, horizon_ms=BASE + skew + 11, max_future_skew_ms=skew)
    assert markers() == 1
    assert count_events(store, 0, *lead, "buy") == 3


class Crash(Exception):
    pass


class CrashingStore:
    """Delegates to a real store and raises after ``budget`` writes: a crash mid-compaction."""

    def __init__(self, inner: IndexedStore, budget: int) -> None:
        self.inner = inner
        self.budget = budget

    def get(self, partition, key):
        return self.inner.get(partition, key)

    def updating(self, partition):
        return self.inner.updating(partition)

    def iter_range(self, partition, lower, upper, *, reverse=False):
        return self.inner.iter_range(partition, lower, upper, reverse=reverse)

    def _spend(self):
        if self.budget <= 0:
            raise Crash
        self.budget -= 1

    def put(self, partition, key, value):
        self._spend()
        self.inner.put(partition, key, value)

    def delete(self, partition, key):
        self._spend()
        self.inner.delete(partition, key)

    def put_batch(self, partition, items, *, created_ms):
        self._spend()
        self.inner.put_batch(partition, items, created_ms=created_ms)


@PROPS
@given(
    events_strategy(types=TYPES + list(OPT_NAMES[0])),
    st.integers(BASE, BASE + 32),
    st.integers(BASE, BASE + 32),
    st.integers(0, 60),
)
def test_interrupted_compaction_then_rerun_keeps_answers(events, h1, h2, budget):
    h1, h2 = sorted((h1, h2))
    store, ref = indexed_memory(), Reference()
    apply_all(store, events, 0)
    ref.apply(events, 0)
    compact_all(store, h1)
    ref.compact(h1)
    crashing = CrashingStore(store, budget)
    try:
        compact_all(crashing, h2)
    except Crash:
        store.drop(range(8))  # the process died: a restart builds the indexes again
    compact_all(store, h2)  # the next timer run after restart
    assert_indexes_rebuild_equal(store)
    ref.compact(h2)
    assert_same_answers(store, ref, window_from=h2)
    for org, phone in LEADS:
        assert lead_events(store, part(org, phone), org, phone) == ref.lead_events(org, phone)


def test_answers_hold_while_a_compaction_is_interrupted():
    """Between a crash and the next compaction run, answers must not change either.

    Found bug: compact_partition writes the ``C`` summary first and deletes the folded ``E``
    keys afterwards, while count_events adds the folded count to every remaining ``E`` key.
    A crash after the summary put leaves events counted twice until the next run.
    """
    store = indexed_memory()
    lead = ("1", "+15551234567")
    apply_events(store, 0, [ev(*lead, "buy", BASE + i) for i in (1, 2, 3)], horizon_ms=0, now_ms=0)
    crashing = CrashingStore(store, budget=1)  # the summary put happens, no delete does
    with pytest.raises(Crash):
        compact_partition(crashing, 0, horizon_ms=BASE + 10, max_future_skew_ms=0)
    store.drop([0])
    assert store.get(0, keys.compacted_key(*lead, "buy")) is not None
    assert count_events(store, 0, *lead, "buy") == 3
    assert count_events(store, 0, *lead, "buy", limit=4) < 4  # minCount 4 must not pass


def test_folded_event_replay_is_a_duplicate():
    store, ref = indexed_memory(), Reference()
    lead = ("1", "+15551234567")
    old = [ev(*lead, "buy", BASE + i) for i in (1, 2, 3)]
    apply_events(store, 0, old, horizon_ms=0, now_ms=0)
    ref.apply(old, 0)
    assert compact_partition(store, 0, horizon_ms=BASE + 10, max_future_skew_ms=0) == 3
    assert lead_events(store, 0, *lead) == []
    r = apply_events(store, 0, old, horizon_ms=BASE + 10, now_ms=0)
    assert (r.inserted, r.duplicates) == (0, 3)
    assert count_events(store, 0, *lead, "buy") == 3
    # a newer-than-folded event before the horizon is still new, and folds correctly later
    r = apply_events(store, 0, [ev(*lead, "buy", BASE + 5)], horizon_ms=BASE + 10, now_ms=0)
    assert (r.inserted, r.duplicates) == (1, 0)
    assert count_events(store, 0, *lead, "buy") == 4
    compact_partition(store, 0, horizon_ms=BASE + 10, max_future_skew_ms=0)
    assert count_events(store, 0, *lead, "buy") == 4
    r = apply_events(store, 0, [ev(*lead, "buy", BASE + 5)], horizon_ms=BASE + 10, now_ms=0)
    assert r.duplicates == 1


def test_compaction_keeps_opt_out_beyond_retention():
    store = indexed_memory()
    lead = ("1", "+15551234567")
    apply_events(
        store,
        0,
        [
            ev(*lead, "opted_in", BASE),
            ev(*lead, "opted_out", BASE + 5),
            ev(*lead, "opted_in", BASE + 5),
        ],
        horizon_ms=0,
        now_ms=0,
    )
    compact_partition(store, 0, horizon_ms=BASE + 100, max_future_skew_ms=0)
    s = latest_opt(store, 0, *lead, opt_out_type="opted_out", opt_in_type="opted_in")
    assert (s.opted_out, s.latest_at) == (True, BASE + 5)
    apply_events(store, 0, [ev(*lead, "opted_in", BASE + 200)], horizon_ms=BASE + 100, now_ms=0)
    s = latest_opt(store, 0, *lead, opt_out_type="opted_out", opt_in_type="opted_in")
    assert not s.opted_out


# --- isolation -------------------------------------------------------------------------------


@PROPS
@given(events_strategy())
def test_two_orgs_same_phone_never_share_state(events):
    """Whatever org "10" does, org "1"'s answers are those of org "1"'s events alone."""
    phone = PHONES[0]
    mine = [e for e in events if e.organization_id == "1"]
    alone, shared = indexed_memory(), indexed_memory()
    # everything in one partition, the worst case for prefix mix-ups
    apply_events(alone, 0, mine, horizon_ms=0, now_ms=0)
    apply_events(shared, 0, events, horizon_ms=0, now_ms=0)
    for store in (alone, shared):
        compact_partition(store, 0, horizon_ms=BASE + 15, max_future_skew_ms=0)
    for t in TYPES + ["opted_out", "opted_in"]:
        assert count_events(shared, 0, "1", phone, t) == count_events(alone, 0, "1", phone, t)
        assert count_events(shared, 0, "1", phone, t, since_ms=BASE + 15) == count_events(
            alone, 0, "1", phone, t, since_ms=BASE + 15
        )
    opt = {"opt_out_type": "opted_out", "opt_in_type": "opted_in"}
    assert latest_opt(shared, 0, "1", phone, **opt) == latest_opt(alone, 0, "1", phone, **opt)
    assert lead_events(shared, 0, "1", phone) == lead_events(alone, 0, "1", phone)


def test_same_event_in_two_orgs_is_two_events():
    store = indexed_memory()
    same = [ev("1", "+15551234567", "buy", BASE), ev("10", "+15551234567", "buy", BASE)]
    r = apply_events(store, 0, same, horizon_ms=0, now_ms=0)
    assert (r.inserted, r.duplicates) == (2, 0)


# --- the whole life cycle, as a state machine ------------------------------------------------


class LeadIndexMachine(RuleBasedStateMachine):
    """Applies, compactions (some interrupted) and a moving horizon, against the reference."""

    @initialize(names=st.sampled_from(OPT_NAMES))
    def setup(self, names):
        self.names = names
        self.store = indexed_memory()
        self.ref = Reference()
        self.horizon = BASE - 1  # where "now" puts the retention horizon
        self.compacted = BASE - 1  # the horizon of the last compaction

    @rule(
        events=st.lists(
            st.builds(
                ev,
                st.sampled_from(ORGS),
                st.sampled_from(PHONES),
                st.sampled_from(TYPES[:2] + [n for pair in OPT_NAMES for n in pair]),
                st.integers(BASE, BASE + 30),
            ),
            max_size=10,
        )
    )
    def apply(self, events):
        assert apply_all(self.store, events, self.horizon) == self.ref.apply(events, self.horizon)

    @rule(data=st.data())
    def replay_known(self, data):
        if not self.ref.events:
            return
        known = st.sampled_from(sorted(self.ref.events))
        keys_ = data.draw(st.lists(known, min_size=1, max_size=5))
        events = [ev(*k) for k in keys_]
        assert apply_all(self.store, events, self.horizon) == (0, len(events))

    @rule(delta=st.integers(0, 8))
    def time_passes(self, delta):
        self.horizon += delta

    @rule()
    def compact(self):
        compact_all(self.store, self.horizon)
        self.ref.compact(self.horizon)
        self.compacted = self.horizon

    @rule(budget=st.integers(0, 20))
    def compact_interrupted_then_again(self, budget):
        try:
            compact_all(CrashingStore(self.store, budget), self.horizon)
        except Crash:
            pass
        compact_all(self.store, self.horizon)
        self.ref.compact(self.horizon)
        self.compacted = self.horizon

    @invariant()
    def answers_agree(self):
        if not hasattr(self, "store"):
            return
        assert_same_answers(self.store, self.ref, names=self.names, window_from=self.compacted)
        for org, phone in LEADS:
            got = lead_events(self.store, part(org, phone), org, phone)
            assert got == self.ref.lead_events(org, phone)


LeadIndexMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
TestLeadIndexMachine = LeadIndexMachine.TestCase
