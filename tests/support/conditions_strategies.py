"""Hypothesis strategies for condition trees, event filters, lead histories and splits.

Small vocabularies on purpose, so that leaves hit: four event types, four metadata keys (and a
fifth, "zz", that `where` may name but no event carries), short strings over "ab5", and the
window minutes WINDOW_MINUTES, whose edges the generated histories land on exactly and at
+-1 ms around the fire time.

Usage::

    @given(data=st.data())
    def test(data):
        at = data.draw(fire_times())
        tree = data.draw(trees())
        lead = data.draw(histories(at))

or ``tree, lead, at = data.draw(scenarios())``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.support.conditions_reference import MINUTE_MS, RefEvent, RefLead, leaves

EVENT_TYPES = ("a", "b", "c", "d")
METADATA_KEYS = ("k", "n", "s", "id")
WHERE_KEYS = (*METADATA_KEYS, "zz")  # "zz" is never carried: a missing key
CAMPAIGNS = ("c1", "c2", "c3")
WINDOW_MINUTES = (1, 5, 60)
STRING_ALPHABET = "ab5"

#: A typical fire time (2023-11-14T22:13:20Z), and one so early that a 60-minute window's
#: lower end falls before the epoch and is clamped to 0.
FIRE_AT = 1_700_000_000_000
EARLY_FIRE_AT = 2 * MINUTE_MS + 30_000

event_types = st.sampled_from(EVENT_TYPES)

_BIG = 2**53 + 1
_INTS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 5, 10, _BIG, -_BIG, 2**53, 2**63]),
    st.integers(-20, 20),
)
_FLOATS = st.one_of(
    st.sampled_from([1.0, 0.0, -0.0, 0.5, 2.0, 5.0, -1.5, float(2**53), 1e300]),
    st.floats(-20, 20, allow_nan=False, allow_infinity=False),
)
_NUMBERS = st.one_of(_INTS, _FLOATS)
_STRINGS = st.one_of(
    st.text(STRING_ALPHABET, max_size=3),
    st.sampled_from(["", "a", "5", "1", "ab", "null", "true"]),
)


# Strategies are built once, at import: hypothesis validates a strategy on its first draw,
# and validating freshly built ones at every draw costs more than the drawing.
_SCALARS = st.one_of(_STRINGS, _INTS, _FLOATS, st.booleans(), st.none())
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(METADATA_KEYS), inner, max_size=2),
    ),
    max_leaves=4,
)
# Each key leans to a kind of value, so that predicates and sameKey hit: "n" numbers, "s"
# strings, "id" a few values equal across events (1 and 1.0 among them), "k" anything.
_METADATA = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "k": st.one_of(_SCALARS, _VALUES),
            "n": st.one_of(_NUMBERS, _NUMBERS, _VALUES),
            "s": st.one_of(_STRINGS, _STRINGS, _VALUES),
            "id": st.one_of(st.sampled_from(["x", "y", "1", 1, 1.0, True, None]), _VALUES),
        },
    ),
)


def scalars() -> st.SearchStrategy[Any]:
    """JSON scalars: str, int, float, bool, null."""
    return _SCALARS


def metadata_values() -> st.SearchStrategy[Any]:
    """Any JSON value: the scalars, and small lists and nested objects of them."""
    return _VALUES


def metadata() -> st.SearchStrategy[dict[str, Any] | None]:
    """Absent, or an object over METADATA_KEYS (any JSON values, scalars mostly)."""
    return _METADATA


def edge_offsets() -> list[int]:
    """Offsets from the fire time on the edges of every window the trees use, and +-1 ms."""
    marks = {0}
    for m in WINDOW_MINUTES:
        marks.add(-m * MINUTE_MS)
        marks.add(m * MINUTE_MS)
    for m1 in WINDOW_MINUTES:  # two windows back to back: a sequence's gap ends at another edge
        for m2 in WINDOW_MINUTES:
            marks.add(-(m1 + m2) * MINUTE_MS)
    return sorted({mark + d for mark in marks for d in (-1, 0, 1)})


_EDGES = edge_offsets()


_OFFSETS = st.one_of(
    st.sampled_from(_EDGES),
    st.sampled_from(_EDGES),
    st.integers(-130 * MINUTE_MS, 70 * MINUTE_MS),
)
_STEPS = st.sampled_from(
    [-(m * MINUTE_MS + d) for m in WINDOW_MINUTES for d in (-1, 0, 1)] + [-1, 1]
)
_CAMPAIGN_SETS = st.frozensets(st.sampled_from(CAMPAIGNS))


def fire_times() -> st.SearchStrategy[int]:
    """The fire time T of a send: mostly FIRE_AT, sometimes EARLY_FIRE_AT or arbitrary."""
    return st.one_of(
        st.just(FIRE_AT),
        st.just(FIRE_AT),
        st.just(EARLY_FIRE_AT),
        st.integers(0, 2 * FIRE_AT),
    )


@st.composite
def histories(
    draw: st.DrawFn, at: int, max_events: int = 12, types: tuple[str, ...] = EVENT_TYPES
) -> RefLead:
    """A lead with 0..max_events events of ``types`` around ``at``, in 0..3 campaigns.

    Times come from a small pool (1..8 instants), so that several events share an occurredAt:
    1..3 anchors (mostly on the window edges around ``at``, +-1 ms), and up to 5 instants each
    an anchor less a window's minutes (+-1 ms) or +-1 ms, so that sequences' gaps also end on
    their edges. (event_type, occurred_at) is unique (the dedupe). Every occurredAt is >= 0: an
    instant before the epoch becomes 0, itself a window edge when ``at`` is early.
    """
    anchors = draw(st.lists(_OFFSETS, min_size=1, max_size=3))
    picks = st.tuples(st.integers(0, len(anchors) - 1), _STEPS)
    derived = [anchors[i] + step for i, step in draw(st.lists(picks, max_size=5))]
    pool = sorted({max(0, at + offset) for offset in anchors + derived})
    wanted = draw(st.integers(0, max_events) | st.integers(max_events // 3, max_events))
    size = min(wanted, len(types) * len(set(pool)))
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(types), st.sampled_from(pool)),
            min_size=size,
            max_size=size,
            unique=True,
        )
    )
    events = [RefEvent(t, ts, draw(_METADATA)) for t, ts in keys]
    campaigns = draw(_CAMPAIGN_SETS)
    return RefLead(events=events, campaigns=campaigns)


# --- where ----------------------------------------------------------------------------------


@st.composite
def regex_patterns(draw: st.DrawFn, depth: int = 2) -> str:
    """Patterns on which Python's re and RE2 agree: literals over STRING_ALPHABET, classes,
    `.`, `*`, `+`, `?` (each on an atom, never doubled), `|` and groups; no anchors."""

    def atom(d: int) -> str:
        kinds = ["lit", "lit", "class", "dot"] + (["group"] if d > 0 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "lit":
            return draw(st.sampled_from(STRING_ALPHABET))
        if kind == "class":
            chars = draw(st.sets(st.sampled_from(STRING_ALPHABET), min_size=1))
            negate = draw(st.booleans())
            return "[" + ("^" if negate else "") + "".join(sorted(chars)) + "]"
        if kind == "dot":
            return "."
        return "(" + alternation(d - 1) + ")"

    def piece(d: int) -> str:
        return atom(d) + draw(st.sampled_from(["", "", "*", "+", "?"]))

    def alternation(d: int) -> str:
        branches = draw(st.integers(1, 2))
        return "|".join(
            "".join(piece(d) for _ in range(draw(st.integers(1, 3)))) for _ in range(branches)
        )

    return alternation(depth)


_IN = st.builds(lambda xs: {"in": xs}, st.lists(_SCALARS, min_size=1, max_size=3))
_PREDICATES = st.one_of(
    _SCALARS,
    _IN,
    st.builds(lambda x: {"ne": x}, _SCALARS),
    st.builds(lambda op, x: {op: x}, st.sampled_from(["gt", "gte", "lt", "lte"]), _NUMBERS),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(lambda s: {"contains": s}, _STRINGS),
    st.builds(lambda p: {"regex": p}, regex_patterns().filter(lambda p: len(p) <= 256)),
)
_SIMPLE_PREDICATES = st.one_of(_SCALARS, _IN)


def predicates() -> st.SearchStrategy[Any]:
    """Every predicate kind of `where`."""
    return _PREDICATES


def _wheres(predicate: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(WHERE_KEYS), predicate, min_size=1, max_size=2)


_WHERES = _wheres(_PREDICATES)
_SIMPLE_WHERES = _wheres(_SIMPLE_PREDICATES)


def wheres(simple: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """`where`: 1..2 keys (one may be the missing key "zz"); every predicate kind, or with
    ``simple`` only scalars and {"in": [...]} (as section-4 filters take)."""
    return _SIMPLE_WHERES if simple else _WHERES


# --- leaves ---------------------------------------------------------------------------------

_MINUTES = st.sampled_from(WINDOW_MINUTES)


@st.composite
def counts(draw: st.DrawFn) -> dict[str, int]:
    """{}, {"min"}, {"max"} or {"min", "max"} with min <= max, all in 0..3."""
    kind = draw(st.sampled_from(["empty", "min", "max", "max0", "both"]))
    if kind == "empty":
        return {}
    if kind == "min":
        return {"min": draw(st.integers(0, 3))}
    if kind == "max":
        return {"max": draw(st.integers(0, 3))}
    if kind == "max0":
        return {"max": 0}
    lo = draw(st.integers(0, 3))
    return {"min": lo, "max": draw(st.integers(lo, 3))}


@st.composite
def betweens(draw: st.DrawFn) -> dict[str, int]:
    """{"fromMinutes": a, "toMinutes": b} with a > b >= 0, from the window minutes and 0."""
    a = draw(_MINUTES)
    b = draw(st.sampled_from([m for m in (0, *WINDOW_MINUTES) if m < a]))
    return {"fromMinutes": a, "toMinutes": b}


@st.composite
def event_leaves(draw: st.DrawFn) -> dict[str, Any]:
    leaf: dict[str, Any] = {"event": draw(event_types)}
    if draw(st.booleans()):
        leaf["count"] = draw(counts())
    window = draw(st.sampled_from(["none", "within", "between"]))
    if window == "within":
        leaf["within"] = {"minutes": draw(_MINUTES)}
    elif window == "between":
        leaf["between"] = draw(betweens())
    if draw(st.booleans()):
        leaf["where"] = draw(_WHERES)
    return leaf


@st.composite
def sequence_leaves(draw: st.DrawFn) -> dict[str, Any]:
    def step() -> dict[str, Any]:
        s: dict[str, Any] = {"event": draw(event_types)}
        if draw(st.integers(0, 3)) == 3:
            s["where"] = draw(_WHERES)
        return s

    spec: dict[str, Any] = {"first": step(), "then": step(), "withinMinutes": draw(_MINUTES)}
    then_absent = draw(st.sampled_from([None, False, True]))
    if then_absent is not None:
        spec["thenAbsent"] = then_absent
    if draw(st.booleans()):
        spec["sameKey"] = draw(st.sampled_from(METADATA_KEYS))
    if draw(st.booleans()):
        spec["within"] = {"minutes": draw(_MINUTES)}
    return {"sequence": spec}


_CAMPAIGN_LEAVES = st.builds(lambda c: {"inCampaign": c}, st.sampled_from(CAMPAIGNS))
_LEAVES = st.one_of(event_leaves(), event_leaves(), sequence_leaves(), _CAMPAIGN_LEAVES)


def campaign_leaves() -> st.SearchStrategy[dict[str, Any]]:
    return _CAMPAIGN_LEAVES


def leaf_nodes() -> st.SearchStrategy[dict[str, Any]]:
    """An event (half the time), sequence or inCampaign leaf."""
    return _LEAVES


# --- trees ----------------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn, max_depth: int = 8, max_leaves: int = 64) -> dict[str, Any]:
    """A valid condition tree: depth <= max_depth, 1..max_leaves leaves, non-empty all/any.

    Mostly small trees; now and then a deep one (its first path exactly max_depth operators
    long) or a wide one (up to max_leaves leaves).
    """
    shape = draw(st.sampled_from(["small", "small", "small", "deep", "wide"]))
    if shape == "small":
        budget, fanout, p_op = min(max_leaves, 6), 3, 45
    elif shape == "deep":
        budget, fanout, p_op = min(max_leaves, 12), 2, 50
    else:
        budget, fanout, p_op = max_leaves, 8, 60

    def node(depth_left: int, leaves_left: int, force: bool) -> tuple[dict[str, Any], int]:
        """A node with at most depth_left operators down any path and leaves_left leaves;
        ``force``: operators all the way down its first children, to exactly depth_left."""
        if depth_left == 0 or (not force and draw(st.integers(0, 99)) < 100 - p_op):
            return draw(_LEAVES), 1  # the roll shrinks to 0: a leaf, for small examples
        op = draw(st.sampled_from(["all", "any", "not"]))
        if op == "not":
            child, used = node(depth_left - 1, leaves_left, force)
            return {"not": child}, used
        k = draw(st.integers(1, max(1, min(fanout, leaves_left))))
        children: list[dict[str, Any]] = []
        used = 0
        for i in range(k):
            reserve = k - i - 1  # one leaf at least for each child still to come
            child, n = node(depth_left - 1, leaves_left - used - reserve, force and i == 0)
            children.append(child)
            used += n
        return {op: children}, used

    tree, _ = node(max_depth, max(1, budget), shape == "deep")
    return tree


@st.composite
def event_filters(draw: st.DrawFn) -> dict[str, Any]:
    """Section-4 filters; their `where` uses only scalar and {"in": [...]} predicates."""
    f: dict[str, Any] = {
        "mode": draw(st.sampled_from(["include", "exclude"])),
        "eventType": draw(event_types),
    }
    if draw(st.booleans()):
        f["within"] = {"minutes": draw(_MINUTES)}
    if draw(st.booleans()):
        f["minCount"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        f["where"] = draw(_SIMPLE_WHERES)
    return f


@st.composite
def scenarios(
    draw: st.DrawFn, max_depth: int = 8, max_leaves: int = 64
) -> tuple[dict[str, Any], RefLead, int]:
    """(tree, lead, at): a fire time, a tree and a history around that time; half the time
    the history has only the event types the tree names, so that its leaves hit more."""
    at = draw(fire_times())
    tree = draw(trees(max_depth=max_depth, max_leaves=max_leaves))
    types = EVENT_TYPES
    named = tuple(sorted(tree_event_types(tree)))
    if named and draw(st.booleans()):
        types = named
    return tree, draw(histories(at, types=types)), at


def tree_event_types(tree: dict[str, Any]) -> set[str]:
    """The event types the tree's leaves name."""
    names: set[str] = set()
    for leaf in leaves(tree):
        if "event" in leaf:
            names.add(leaf["event"])
        elif "sequence" in leaf:
            names.add(leaf["sequence"]["first"]["event"])
            names.add(leaf["sequence"]["then"]["event"])
    return names


# --- holdout and splits ---------------------------------------------------------------------


@st.composite
def holdouts(draw: st.DrawFn) -> dict[str, Any]:
    """{"percent": 0..50, "salt"?: str}."""
    doc: dict[str, Any] = {
        "percent": draw(st.sampled_from([0, 1, 10, 33, 50]) | st.integers(0, 50))
    }
    if draw(st.booleans()):
        doc["salt"] = draw(st.text("abcxyz-", min_size=1, max_size=8))
    return doc


@st.composite
def splits(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1..10 splits with unique names, each percent >= 1, summing to 100."""
    k = draw(st.integers(1, 10))
    cuts = sorted(draw(st.sets(st.integers(1, 99), min_size=k - 1, max_size=k - 1)))
    bounds = [0, *cuts, 100]
    names = draw(
        st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=k, max_size=k, unique=True)
    )
    return [{"name": name, "percent": bounds[i + 1] - bounds[i]} for i, name in enumerate(names)]


def split_pairs(doc: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """A splits document as bucket_variant takes it."""
    return [(s["name"], s["percent"]) for s in doc]


def buckets(
    holdout_percent: int | None = None, split_percents: list[int] | None = None
) -> st.SearchStrategy[int]:
    """Buckets 0..9999, often on a range edge or 1 below it: multiples of 100 (holdout
    edges), and the split edges of the given holdout percent and split percents."""
    marks = set(range(0, 10_001, 100))
    start = 100 * (holdout_percent or 0)
    cumulative = 0
    for p in split_percents or []:
        cumulative += p
        marks.add(start + (10_000 - start) * cumulative // 100)
    edges = sorted({b for m in marks for b in (m - 1, m) if 0 <= b < 10_000})
    return st.one_of(st.sampled_from(edges), st.integers(0, 9_999))
