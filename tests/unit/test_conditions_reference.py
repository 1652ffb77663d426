"""Hand-computed examples of the brute-force conditions reference, and a smoke test of the
strategies that feed it to the property tests."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.conditions_reference import (
    RefEvent,
    RefLead,
    bucket_variant,
    event_filter_keeps,
    leaf_count,
    leaf_holds,
    leaf_verdicts,
    node_holds,
    tree_depth,
    values_equal,
    where_holds,
)
from tests.support.conditions_strategies import (
    STRING_ALPHABET,
    buckets,
    event_filters,
    holdouts,
    regex_patterns,
    scenarios,
    split_pairs,
    splits,
    trees,
    wheres,
)

T = 1_000_000_000  # the fire time of every example
M = 60_000  # a minute in ms


def lead(*events: tuple[Any, ...], campaigns: frozenset[str] = frozenset()) -> RefLead:
    return RefLead([RefEvent(*e) for e in events], campaigns)


# --- where: equality -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicate", "value", "holds"),
    [
        (1, 1.0, True),  # numbers by value
        (1.0, 1, True),
        (0, -0.0, True),
        (True, 1, False),  # booleans apart
        (1, True, False),
        (False, 0, False),
        (True, True, True),
        ("5", 5, False),
        (5, "5", False),
        (None, None, True),  # null is a value
        (None, "", False),
        ("", None, False),
        ("ab", "ab", True),
        (1, [1], False),  # an array is never equal to a scalar
        (1, {"k": 1}, False),
        (2**53, 2**53 + 1, False),  # exact, as Python compares
        (float(2**53), 2**53, True),
    ],
)
def test_scalar_equality(predicate: Any, value: Any, holds: bool) -> None:
    assert where_holds({"k": predicate}, {"k": value}) is holds


def test_compound_values_are_never_equal() -> None:
    assert not values_equal([1], [1])
    assert not values_equal({"k": 1}, {"k": 1})


def test_missing_key_and_absent_metadata() -> None:
    assert not where_holds({"k": None}, {})  # missing is not null
    assert not where_holds({"k": None}, None)
    assert not where_holds({"k": {"ne": 5}}, {"n": 1})  # ne on a missing key fails
    assert not where_holds({"k": {"ne": 5}}, None)
    assert where_holds({"k": {"exists": False}}, None)
    assert where_holds({"k": {"exists": False}}, {"n": 1})
    assert not where_holds({"k": {"exists": True}}, None)
    assert where_holds(None, None) and where_holds({}, {"k": 1})


def test_exists_counts_a_null_value_as_present() -> None:
    assert where_holds({"k": {"exists": True}}, {"k": None})
    assert not where_holds({"k": {"exists": False}}, {"k": None})


@pytest.mark.parametrize(
    ("predicate", "value", "holds"),
    [
        ({"ne": 5}, "5", True),  # "5" ne 5
        ({"ne": 5}, 5.0, False),
        ({"ne": 5}, None, True),  # null is a value, other than 5
        ({"ne": None}, None, False),
        ({"ne": None}, 0, True),
        ({"ne": 1}, True, True),
        ({"ne": 1}, {"k": 1}, True),  # an object value is ne any scalar
        ({"ne": 1}, [1], True),
        ({"in": [1, "a", None]}, 1.0, True),
        ({"in": [1, "a", None]}, None, True),
        ({"in": [1, "a", None]}, True, False),
        ({"in": [1, "a", None]}, "b", False),
        ({"gt": 1}, 2, True),
        ({"gt": 1}, 1.0, False),
        ({"gte": 1}, 1.0, True),
        ({"lt": 1}, 0.5, True),
        ({"lte": 0}, -0.0, True),
        ({"gt": 0}, True, False),  # booleans are not numbers
        ({"lt": 10}, "5", False),  # strings are not numbers
        ({"lt": 10}, None, False),
        ({"gt": 2**53}, 2**53 + 1, True),
        ({"contains": "b"}, "abc", True),
        ({"contains": ""}, "", True),
        ({"contains": "1"}, 1, False),  # only strings
        ({"contains": "a"}, ["a"], False),
        ({"regex": "a[bc]*"}, "abcb", True),
        ({"regex": "a[bc]*"}, "abcbx", False),  # the whole string
        ({"regex": "b"}, "abc", False),
        ({"regex": "(a|b)+5?"}, "abba5", True),
        ({"regex": "1"}, 1, False),  # only strings
    ],
)
def test_predicates(predicate: dict[str, Any], value: Any, holds: bool) -> None:
    assert where_holds({"k": predicate}, {"k": value}) is holds


def test_where_needs_every_key() -> None:
    md = {"k": "a", "n": 3}
    assert where_holds({"k": "a", "n": {"gte": 3}}, md)
    assert not where_holds({"k": "a", "n": {"gt": 3}}, md)
    assert not where_holds({"k": "a", "zz": {"exists": True}}, md)


# --- event leaves --------------------------------------------------------------------------


def test_count_defaults_and_ranges() -> None:
    two = lead(("a", T - 1), ("a", T - 2), ("b", T))
    assert leaf_holds({"event": "a"}, two, T)
    assert not leaf_holds({"event": "c"}, two, T)
    assert leaf_holds({"event": "c", "count": {"max": 0}}, two, T)  # "no such event"
    assert not leaf_holds({"event": "a", "count": {"max": 0}}, two, T)
    assert leaf_holds({"event": "a", "count": {"max": 2}}, two, T)  # min 0 with max
    assert not leaf_holds({"event": "a", "count": {"max": 1}}, two, T)
    assert leaf_holds({"event": "c", "count": {"max": 1}}, two, T)
    assert leaf_holds({"event": "a", "count": {"min": 2}}, two, T)
    assert not leaf_holds({"event": "a", "count": {"min": 3}}, two, T)
    assert leaf_holds({"event": "c", "count": {"min": 0}}, two, T)
    assert leaf_holds({"event": "a", "count": {"min": 2, "max": 2}}, two, T)
    assert not leaf_holds({"event": "a", "count": {"min": 3, "max": 5}}, two, T)
    assert not leaf_holds({"event": "c", "count": {}}, two, T)  # {}: min 1


def test_within_edges_are_inclusive() -> None:
    leaf = {"event": "a", "within": {"minutes": 5}}
    assert leaf_holds(leaf, lead(("a", T - 5 * M)), T)
    assert not leaf_holds(leaf, lead(("a", T - 5 * M - 1)), T)
    assert leaf_holds(leaf, lead(("a", T)), T)
    assert not leaf_holds(leaf, lead(("a", T + 1)), T)  # a window ends at T


def test_between_edges_are_inclusive() -> None:
    leaf = {"event": "a", "between": {"fromMinutes": 60, "toMinutes": 5}}
    assert leaf_holds(leaf, lead(("a", T - 60 * M)), T)
    assert not leaf_holds(leaf, lead(("a", T - 60 * M - 1)), T)
    assert leaf_holds(leaf, lead(("a", T - 5 * M)), T)
    assert not leaf_holds(leaf, lead(("a", T - 5 * M + 1)), T)
    assert not leaf_holds(leaf, lead(("a", T)), T)
    to_now = {"event": "a", "between": {"fromMinutes": 1, "toMinutes": 0}}
    assert leaf_holds(to_now, lead(("a", T)), T)
    assert not leaf_holds(to_now, lead(("a", T + 1)), T)


def test_window_before_the_epoch_is_clamped() -> None:
    early = 2 * M  # a 60-minute window reaches back before 0
    assert leaf_holds({"event": "a", "within": {"minutes": 60}}, lead(("a", 0)), early)


def test_no_window_is_sticky_and_counts_events_after_t() -> None:
    after = lead(("a", T + 1), ("a", T + 10 * 24 * 60 * M))
    assert leaf_holds({"event": "a", "count": {"min": 2}}, after, T)
    assert not leaf_holds({"event": "a", "count": {"max": 0}}, after, T)
    assert not leaf_holds({"event": "a", "within": {"minutes": 60}}, after, T)


def test_event_leaf_where_filters_the_count() -> None:
    history = lead(("a", T - 1, {"k": 1}), ("a", T - 2, {"k": 2}), ("a", T - 3))
    assert leaf_holds({"event": "a", "where": {"k": 1.0}, "count": {"max": 1}}, history, T)
    assert leaf_holds({"event": "a", "where": {"k": {"exists": False}}}, history, T)
    leaf = {"event": "a", "where": {"k": {"gte": 1}}, "count": {"min": 2, "max": 2}}
    assert leaf_holds(leaf, history, T)


# --- sequence leaves -----------------------------------------------------------------------


def seq(**spec: Any) -> dict[str, Any]:
    body = {"first": {"event": "a"}, "then": {"event": "b"}, "withinMinutes": 5}
    body.update(spec)
    return {"sequence": body}


def test_sequence_gap_edges() -> None:
    a = T - 10 * M
    assert leaf_holds(seq(), lead(("a", a), ("b", a + 5 * M)), T)
    assert not leaf_holds(seq(), lead(("a", a), ("b", a + 5 * M + 1)), T)
    assert leaf_holds(seq(), lead(("a", a), ("b", a + 1)), T)
    assert not leaf_holds(seq(), lead(("b", a), ("a", a + 1)), T)  # B before A


def test_sequence_ties_never_pair() -> None:
    assert not leaf_holds(seq(), lead(("a", T - M), ("b", T - M)), T)


def test_sequence_counts_only_events_at_or_before_t() -> None:
    assert leaf_holds(seq(), lead(("a", T - 1), ("b", T)), T)
    assert not leaf_holds(seq(), lead(("a", T - 1), ("b", T + 1)), T)
    assert not leaf_holds(seq(), lead(("a", T + 1), ("b", T + 2)), T)


def test_sequence_of_one_type_needs_two_events() -> None:
    same = seq(first={"event": "a"}, then={"event": "a"})
    assert not leaf_holds(same, lead(("a", T - M)), T)
    assert leaf_holds(same, lead(("a", T - 2 * M), ("a", T - M)), T)
    absent = seq(first={"event": "a"}, then={"event": "a"}, thenAbsent=True)
    assert leaf_holds(absent, lead(("a", T - M)), T)  # the A itself is not its own B
    assert leaf_holds(absent, lead(("a", T - 20 * M), ("a", T - 2 * M)), T)  # the later A
    assert leaf_holds(absent, lead(("a", T - M), ("a", T)), T)  # the A at T has no room for a B
    keyed = seq(first={"event": "a"}, then={"event": "a"}, thenAbsent=True, sameKey="id")
    assert not leaf_holds(keyed, lead(("a", T - M), ("a", T)), T)  # no A carries the key
    # the A at T - 1 min is followed by an equal-keyed A; the A at T has an empty window
    assert leaf_holds(keyed, lead(("a", T - M, {"id": 1}), ("a", T, {"id": 1.0})), T)


def test_sequence_where_on_each_step() -> None:
    spec = seq(first={"event": "a", "where": {"k": 1}}, then={"event": "b", "where": {"k": 2}})
    assert leaf_holds(spec, lead(("a", T - 2, {"k": 1}), ("b", T - 1, {"k": 2})), T)
    assert not leaf_holds(spec, lead(("a", T - 2, {"k": 2}), ("b", T - 1, {"k": 2})), T)
    assert not leaf_holds(spec, lead(("a", T - 2, {"k": 1}), ("b", T - 1, {"k": 1})), T)


def test_same_key() -> None:
    spec = seq(sameKey="id")
    assert leaf_holds(spec, lead(("a", T - 2, {"id": 1}), ("b", T - 1, {"id": 1.0})), T)
    assert not leaf_holds(spec, lead(("a", T - 2, {"id": 1}), ("b", T - 1, {"id": True})), T)
    assert leaf_holds(spec, lead(("a", T - 2, {"id": None}), ("b", T - 1, {"id": None})), T)
    assert not leaf_holds(spec, lead(("a", T - 2, {"id": [1]}), ("b", T - 1, {"id": [1]})), T)
    assert not leaf_holds(spec, lead(("a", T - 2), ("b", T - 1)), T)  # no key: never pairs
    assert not leaf_holds(spec, lead(("a", T - 2, {"id": 1}), ("b", T - 1)), T)
    assert not leaf_holds(spec, lead(("a", T - 2), ("b", T - 1, {"id": 1})), T)


def test_then_absent() -> None:
    spec = seq(thenAbsent=True)
    assert leaf_holds(spec, lead(("a", T - 10 * M)), T)
    assert not leaf_holds(spec, lead(("b", T - 10 * M)), T)  # no A at all
    assert not leaf_holds(spec, lead(("a", T - 10 * M), ("b", T - 5 * M)), T)  # B at A + n
    assert leaf_holds(spec, lead(("a", T - 10 * M), ("b", T - 5 * M + 1)), T)  # B too late
    assert leaf_holds(spec, lead(("a", T - 10 * M), ("b", T - 10 * M)), T)  # a tie: no B
    assert not leaf_holds(spec, lead(("a", T + 1)), T)  # A after T does not count


def test_then_absent_window_cut_at_t() -> None:
    spec = seq(thenAbsent=True)
    # A at T - 1 min: the window (A, A + 5 min] is cut to (A, T]; a B after T does not count.
    assert leaf_holds(spec, lead(("a", T - M), ("b", T + 1)), T)
    assert not leaf_holds(spec, lead(("a", T - M), ("b", T)), T)


def test_then_absent_any_qualifying_a_will_do() -> None:
    spec = seq(thenAbsent=True)
    history = lead(("a", T - 30 * M), ("b", T - 29 * M), ("a", T - 10 * M))
    assert leaf_holds(spec, history, T)
    history = lead(("a", T - 30 * M), ("b", T - 29 * M), ("a", T - 10 * M), ("b", T - 9 * M))
    assert not leaf_holds(spec, history, T)


def test_then_absent_with_same_key() -> None:
    spec = seq(thenAbsent=True, sameKey="id")
    assert not leaf_holds(spec, lead(("a", T - M)), T)  # an A without the key never qualifies
    assert leaf_holds(spec, lead(("a", T - M, {"id": "x"})), T)
    # a B with another value, or without the key, is no partner: A still has no B
    assert leaf_holds(spec, lead(("a", T - M, {"id": "x"}), ("b", T - 1, {"id": "y"})), T)
    assert leaf_holds(spec, lead(("a", T - M, {"id": "x"}), ("b", T - 1)), T)
    assert not leaf_holds(spec, lead(("a", T - M, {"id": "x"}), ("b", T - 1, {"id": "x"})), T)


def test_then_where_limits_the_blocking_b() -> None:
    spec = seq(thenAbsent=True, then={"event": "b", "where": {"k": 1}})
    assert leaf_holds(spec, lead(("a", T - M), ("b", T - 1, {"k": 2})), T)
    assert not leaf_holds(spec, lead(("a", T - M), ("b", T - 1, {"k": 1})), T)


def test_sequence_within_limits_the_a_events() -> None:
    spec = seq(within={"minutes": 5})
    assert leaf_holds(spec, lead(("a", T - 5 * M), ("b", T - 4 * M)), T)
    assert not leaf_holds(spec, lead(("a", T - 5 * M - 1), ("b", T - 4 * M)), T)
    absent = seq(within={"minutes": 5}, thenAbsent=True)
    assert leaf_holds(absent, lead(("a", T - 5 * M)), T)
    assert not leaf_holds(absent, lead(("a", T - 5 * M - 1)), T)


# --- inCampaign, trees ---------------------------------------------------------------------


def test_in_campaign() -> None:
    member = lead(campaigns=frozenset({"c1"}))
    assert leaf_holds({"inCampaign": "c1"}, member, T)
    assert not leaf_holds({"inCampaign": "c2"}, member, T)


TREE = {
    "all": [
        {"event": "a"},
        {"not": {"any": [{"inCampaign": "c1"}, {"event": "b", "within": {"minutes": 1}}]}},
        {"any": [{"event": "c", "count": {"max": 0}}, {"sequence": seq()["sequence"]}]},
    ]
}


def test_nested_tree_and_leaf_verdicts_in_order() -> None:
    history = lead(("a", T - 3 * M), ("b", T - 2 * M), ("c", T))
    assert leaf_verdicts(TREE, history, T) == [True, False, False, False, True]
    assert node_holds(TREE, history, T)
    member = RefLead(history.events, frozenset({"c1"}))
    assert leaf_verdicts(TREE, member, T) == [True, True, False, False, True]
    assert not node_holds(TREE, member, T)
    assert tree_depth(TREE) == 3 and leaf_count(TREE) == 5
    assert tree_depth({"event": "a"}) == 0 and tree_depth({"not": {"event": "a"}}) == 1


def test_any_all_not() -> None:
    history = lead(("a", T))
    yes, no = {"event": "a"}, {"event": "b"}
    assert node_holds({"any": [no, yes]}, history, T)
    assert not node_holds({"all": [no, yes]}, history, T)
    assert node_holds({"not": {"all": [no, yes]}}, history, T)
    assert node_holds({"not": {"not": yes}}, history, T)


# --- section-4 event filters ---------------------------------------------------------------


def test_event_filter() -> None:
    history = lead(("a", T - 5 * M - 1, {"k": "x"}), ("a", T + 1, {"k": "y"}))
    assert event_filter_keeps({"mode": "include", "eventType": "a"}, history, T)
    assert not event_filter_keeps({"mode": "exclude", "eventType": "a"}, history, T)
    assert event_filter_keeps({"mode": "include", "eventType": "a", "minCount": 2}, history, T)
    windowed = {"mode": "include", "eventType": "a", "within": {"minutes": 5}}
    assert not event_filter_keeps(windowed, history, T)
    assert event_filter_keeps({**windowed, "mode": "exclude"}, history, T)
    wide = {"mode": "include", "eventType": "a", "within": {"minutes": 60}}
    assert event_filter_keeps(wide, history, T)
    assert not event_filter_keeps({**wide, "minCount": 2}, history, T)  # T + 1 is outside
    where = {"mode": "include", "eventType": "a", "where": {"k": {"in": ["y", 1]}}}
    assert event_filter_keeps(where, history, T)  # sticky: the event after T counts
    assert not event_filter_keeps({**where, "within": {"minutes": 60}}, history, T)


def test_duplicate_events_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        leaf_holds({"event": "a"}, lead(("a", T), ("a", T)), T)


# --- holdout and splits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        (0, (True, None)),
        (999, (True, None)),
        (1000, (False, "x")),
        (5499, (False, "x")),
        (5500, (False, "y")),
        (9999, (False, "y")),
    ],
)
def test_holdout_and_even_splits(bucket: int, expected: tuple[bool, str | None]) -> None:
    assert bucket_variant(bucket, 10, [("x", 50), ("y", 50)]) == expected


def test_uneven_splits() -> None:
    three = [("x", 33), ("y", 33), ("z", 34)]
    # no holdout: [0, 3300), [3300, 6600), [6600, 10000)
    assert bucket_variant(3299, None, three) == (False, "x")
    assert bucket_variant(3300, 0, three) == (False, "y")
    assert bucket_variant(6599, 0, three) == (False, "y")
    assert bucket_variant(6600, 0, three) == (False, "z")
    # holdout 7: R = 9300, edges 700 + floor(9300 * 33 / 100) = 3769 and 700 + 6138 = 6838
    assert bucket_variant(699, 7, three) == (True, None)
    assert bucket_variant(700, 7, three) == (False, "x")
    assert bucket_variant(3768, 7, three) == (False, "x")
    assert bucket_variant(3769, 7, three) == (False, "y")
    assert bucket_variant(6837, 7, three) == (False, "y")
    assert bucket_variant(6838, 7, three) == (False, "z")
    assert bucket_variant(9999, 7, three) == (False, "z")


def test_no_splits_and_no_holdout() -> None:
    assert bucket_variant(0, None, None) == (False, None)
    assert bucket_variant(4999, 50, None) == (True, None)
    assert bucket_variant(5000, 50, None) == (False, None)
    assert bucket_variant(0, 0, [("only", 100)]) == (False, "only")


# --- the strategies ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_strategies_generate_valid_documents(data: st.DataObject) -> None:
    started = time.monotonic()
    tree, history, at = data.draw(scenarios())
    assert tree_depth(tree) <= 8 and 1 <= leaf_count(tree) <= 64
    keys = [(e.event_type, e.occurred_at) for e in history.events]
    assert len(keys) == len(set(keys)) and all(ts >= 0 for _, ts in keys)
    assert len(leaf_verdicts(tree, history, at)) == leaf_count(tree)
    node_holds(tree, history, at)
    f = data.draw(event_filters())
    event_filter_keeps(f, history, at)
    for predicate in f.get("where", {}).values():
        assert not isinstance(predicate, dict) or set(predicate) == {"in"}
    holdout = data.draw(holdouts())
    doc = data.draw(splits())
    names = [s["name"] for s in doc]
    assert 1 <= len(doc) <= 10 and len(set(names)) == len(names)
    assert sum(s["percent"] for s in doc) == 100
    bucket = data.draw(buckets(holdout["percent"], [s["percent"] for s in doc]))
    held, variant = bucket_variant(bucket, holdout["percent"], split_pairs(doc))
    assert held == (bucket < 100 * holdout["percent"]) and (variant is None) == held
    where_holds(data.draw(wheres()), history.events[0].metadata if history.events else None)
    assert time.monotonic() - started < 2.0


@settings(max_examples=30, deadline=None)
@given(tree=trees(max_depth=2, max_leaves=3))
def test_trees_respect_smaller_limits(tree: dict[str, Any]) -> None:
    assert tree_depth(tree) <= 2 and leaf_count(tree) <= 3


_WORDS = ["".join(p) for n in range(5) for p in itertools.product(STRING_ALPHABET + "x", repeat=n)]


@settings(max_examples=40, deadline=None)
@given(pattern=regex_patterns())
def test_generated_patterns_agree_with_re2(pattern: str) -> None:
    """The reference matches with Python's re: the generated patterns must mean the same in
    RE2 (the contract's syntax) on every short string over the alphabet."""
    re2 = pytest.importorskip("re2")
    compiled = re2.compile(pattern)
    for word in _WORDS:
        assert (re.fullmatch(pattern, word) is None) == (compiled.fullmatch(word) is None), word
