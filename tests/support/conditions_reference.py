"""A brute-force reference of send conditions (section 11) and event filters (section 4).

Written from the contract text alone, for comparison with the product by property tests:
every rule is a plain loop over a lead's events, with no index and no cleverness. Where the
contract is silent, the team's decisions are followed (see the comments marked DECISION).

Times are UTC milliseconds; ``at`` is the fire time T of the send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MINUTE_MS = 60_000
BUCKETS = 10_000


@dataclass(frozen=True)
class RefEvent:
    event_type: str
    occurred_at: int
    metadata: dict[str, Any] | None = None


@dataclass
class RefLead:
    events: list[RefEvent]
    campaigns: frozenset[str] = frozenset()


# --- values and `where` ---------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """int or float, but not bool (booleans are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def values_equal(a: Any, b: Any) -> bool:
    """Equality of the contract: strings, booleans, nulls and numbers (by value, 1 == 1.0).

    Objects and arrays are never equal to anything (not even to an identical object).
    Numbers compare exactly, as Python compares int with float (2**53 + 1 != 2.0**53).
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return False


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or is_number(value)


def predicate_holds(predicate: Any, present: bool, value: Any) -> bool:
    """One `where` predicate against one metadata key (``present`` False: the key is missing)."""
    if not isinstance(predicate, dict):
        if not _is_scalar(predicate):
            raise ValueError(f"not a predicate: {predicate!r}")
        return present and values_equal(value, predicate)
    if len(predicate) != 1:
        raise ValueError(f"a predicate has exactly one operator: {predicate!r}")
    ((op, arg),) = predicate.items()
    if op == "exists":
        if not isinstance(arg, bool):
            raise ValueError(f"exists takes a boolean: {predicate!r}")
        return present == arg
    if not present:
        return False  # a missing key fails every predicate but {"exists": false}
    if op == "in":
        if not isinstance(arg, list) or not all(_is_scalar(x) for x in arg):
            raise ValueError(f"in takes a list of scalars: {predicate!r}")
        return any(values_equal(value, x) for x in arg)
    if op == "ne":
        if not _is_scalar(arg):
            raise ValueError(f"ne takes a scalar: {predicate!r}")
        return not values_equal(value, arg)
    if op in ("gt", "gte", "lt", "lte"):
        if not is_number(arg):
            raise ValueError(f"{op} takes a number: {predicate!r}")
        if not is_number(value):
            return False
        if op == "gt":
            return bool(value > arg)
        if op == "gte":
            return bool(value >= arg)
        if op == "lt":
            return bool(value < arg)
        return bool(value <= arg)
    if op == "contains":
        if not isinstance(arg, str):
            raise ValueError(f"contains takes a string: {predicate!r}")
        return isinstance(value, str) and arg in value
    if op == "regex":
        if not isinstance(arg, str) or len(arg) > 256:
            raise ValueError(f"regex takes a pattern of at most 256 characters: {predicate!r}")
        return isinstance(value, str) and re.fullmatch(arg, value) is not None
    raise ValueError(f"unknown predicate operator: {op!r}")


def where_holds(where: dict[str, Any] | None, metadata: dict[str, Any] | None) -> bool:
    """Every key of ``where`` holds on the event's metadata (absent metadata has no keys)."""
    if not where:
        return True
    fields = metadata if metadata is not None else {}
    for key, predicate in where.items():
        present = key in fields
        value = fields[key] if present else None
        if not predicate_holds(predicate, present, value):
            return False
    return True


# --- the lead's events ----------------------------------------------------------------------


def _events(lead: RefLead) -> list[RefEvent]:
    """The lead's events, checked to be deduped on (eventType, occurredAt)."""
    seen: set[tuple[str, int]] = set()
    for e in lead.events:
        key = (e.event_type, e.occurred_at)
        if key in seen:
            raise ValueError(f"duplicate event {key}: a lead's events are deduped")
        seen.add(key)
    return lead.events


def _window(at: int, from_minutes: int, to_minutes: int) -> tuple[int, int]:
    """[T - from, T - to] in ms, both ends inclusive, the lower end clamped to 0."""
    return max(0, at - from_minutes * MINUTE_MS), at - to_minutes * MINUTE_MS


# --- section 4: event filters ---------------------------------------------------------------


def event_filter_keeps(f: dict[str, Any], lead: RefLead, at: int) -> bool:
    """Whether the section-4 filter keeps the lead."""
    mode = f["mode"]
    if mode not in ("include", "exclude"):
        raise ValueError(f"unknown mode {mode!r}")
    min_count = f.get("minCount", 1)
    within = f.get("within")
    count = 0
    for e in _events(lead):
        if e.event_type != f["eventType"]:
            continue
        if within is not None:
            lo, hi = _window(at, within["minutes"], 0)
            if not lo <= e.occurred_at <= hi:
                continue
        # no `within`: sticky, events after T count too
        if not where_holds(f.get("where"), e.metadata):
            continue
        count += 1
    has = count >= min_count
    return has if mode == "include" else not has


# --- section 11: leaves ---------------------------------------------------------------------


def _event_leaf_holds(leaf: dict[str, Any], lead: RefLead, at: int) -> bool:
    if "within" in leaf and "between" in leaf:
        raise ValueError("an event leaf has `within` or `between`, not both")
    window: tuple[int, int] | None = None
    if "within" in leaf:
        window = _window(at, leaf["within"]["minutes"], 0)
    elif "between" in leaf:
        a, b = leaf["between"]["fromMinutes"], leaf["between"]["toMinutes"]
        if not a > b >= 0:
            raise ValueError(f"between needs fromMinutes > toMinutes >= 0: {leaf!r}")
        window = _window(at, a, b)
    count_spec = leaf.get("count") or {}
    max_count = count_spec.get("max")
    min_count = count_spec.get("min", 0 if max_count is not None else 1)
    count = 0
    for e in _events(lead):
        if e.event_type != leaf["event"]:
            continue
        if window is not None and not window[0] <= e.occurred_at <= window[1]:
            continue
        # no window: sticky as in section 4, events after T count too
        if not where_holds(leaf.get("where"), e.metadata):
            continue
        count += 1
    if count < min_count:
        return False
    return max_count is None or count <= max_count


def _same_key(key: str | None, first: RefEvent, then: RefEvent) -> bool:
    """The pair carries equal values of ``key`` (no key given: any pair will do)."""
    if key is None:
        return True
    a = first.metadata or {}
    b = then.metadata or {}
    if key not in a or key not in b:
        return False  # an event without the key never pairs
    return values_equal(a[key], b[key])


def _sequence_holds(spec: dict[str, Any], lead: RefLead, at: int) -> bool:
    first, then = spec["first"], spec["then"]
    gap = spec["withinMinutes"] * MINUTE_MS
    then_absent = spec.get("thenAbsent", False)
    key = spec.get("sameKey")
    a_window = _window(at, spec["within"]["minutes"], 0) if "within" in spec else None
    events = _events(lead)

    def is_a(e: RefEvent) -> bool:
        if e.event_type != first["event"] or e.occurred_at > at:
            return False
        if a_window is not None and not a_window[0] <= e.occurred_at <= a_window[1]:
            return False
        if key is not None and key not in (e.metadata or {}):
            return False  # an A without the key never pairs, so it never qualifies
        return where_holds(first.get("where"), e.metadata)

    def is_b_for(a: RefEvent, b: RefEvent, until: int) -> bool:
        if b.event_type != then["event"]:
            return False
        if not a.occurred_at < b.occurred_at <= until:
            return False  # strictly later: a tie never pairs, and B is never A itself
        return _same_key(key, a, b) and where_holds(then.get("where"), b.metadata)

    for a in events:
        if not is_a(a):
            continue
        until = min(a.occurred_at + gap, at)  # only events at or before T count
        has_b = any(is_b_for(a, b, until) for b in events)
        if then_absent and not has_b:
            return True
        if not then_absent and has_b:
            return True
    return False


def leaf_holds(leaf: dict[str, Any], lead: RefLead, at: int) -> bool:
    """An event, sequence or inCampaign leaf."""
    if "event" in leaf:
        return _event_leaf_holds(leaf, lead, at)
    if "sequence" in leaf:
        return _sequence_holds(leaf["sequence"], lead, at)
    if "inCampaign" in leaf:
        return leaf["inCampaign"] in lead.campaigns
    raise ValueError(f"not a leaf: {leaf!r}")


# --- section 11: trees ----------------------------------------------------------------------


def is_operator(node: dict[str, Any]) -> bool:
    return "all" in node or "any" in node or "not" in node


def node_holds(node: dict[str, Any], lead: RefLead, at: int) -> bool:
    """Any node of a condition tree."""
    if "all" in node:
        return all(node_holds(child, lead, at) for child in node["all"])
    if "any" in node:
        return any(node_holds(child, lead, at) for child in node["any"])
    if "not" in node:
        return not node_holds(node["not"], lead, at)
    return leaf_holds(node, lead, at)


def leaves(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The tree's leaves, depth-first, left to right."""
    if "all" in node:
        return [leaf for child in node["all"] for leaf in leaves(child)]
    if "any" in node:
        return [leaf for child in node["any"] for leaf in leaves(child)]
    if "not" in node:
        return leaves(node["not"])
    return [node]


def leaf_verdicts(node: dict[str, Any], lead: RefLead, at: int) -> list[bool]:
    """Every leaf's own verdict (not negated by an enclosing `not`), in leaves() order."""
    return [leaf_holds(leaf, lead, at) for leaf in leaves(node)]


def tree_depth(node: dict[str, Any]) -> int:
    """The most all/any/not operators on a path from the root to a leaf (a leaf: 0)."""
    if "all" in node:
        return 1 + max(tree_depth(child) for child in node["all"])
    if "any" in node:
        return 1 + max(tree_depth(child) for child in node["any"])
    if "not" in node:
        return 1 + tree_depth(node["not"])
    return 0


def leaf_count(node: dict[str, Any]) -> int:
    return len(leaves(node))


# --- holdout and splits ---------------------------------------------------------------------


def bucket_variant(
    bucket: int, holdout_percent: int | None, splits: list[tuple[str, int]] | None
) -> tuple[bool, str | None]:
    """(held out, variant name or None) of a lead in ``bucket`` (0..9999).

    Holdout takes buckets [0, 100 * percent); splits divide the rest, [100 * h, 10000), into
    consecutive ranges in list order: split i gets [start + floor(R * c_{i-1} / 100),
    start + floor(R * c_i / 100)) with R the remaining bucket count and c the cumulative
    percents. A held-out lead has no variant.
    """
    if not 0 <= bucket < BUCKETS:
        raise ValueError(f"bucket out of range: {bucket}")
    h = holdout_percent or 0
    if not 0 <= h <= 50:
        raise ValueError(f"holdout percent out of range: {h}")
    start = 100 * h
    if bucket < start:
        return True, None
    if not splits:
        return False, None
    if sum(p for _, p in splits) != 100:
        raise ValueError(f"split percents must sum to 100: {splits!r}")
    remaining = BUCKETS - start
    cumulative = 0
    for name, percent in splits:
        lo = start + remaining * cumulative // 100
        cumulative += percent
        hi = start + remaining * cumulative // 100
        if lo <= bucket < hi:
            return False, name
    raise AssertionError("unreachable: the ranges cover [start, 10000)")
