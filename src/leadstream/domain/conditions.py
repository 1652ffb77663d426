"""Audience conditions of a send (docs/contract.md, section 3.7): a tree of ``all``,
``any`` and ``not`` over three kinds of leaf, parsed here and answered for one lead.

* an event leaf counts the lead's events of one type in a window (sticky, ``within`` the
  last n minutes, or ``between`` two offsets before the moment) whose metadata meets a
  ``where``, and holds when the count lies in ``[min, max]``;
* a sequence leaf looks for an A event followed by a B event (or by none: ``thenAbsent``)
  within n minutes, optionally on the same metadata value (``sameKey``);
* a membership leaf holds for the members of another campaign of the organization.

A trigger keeps its conditions as compact JSON (:attr:`SendTrigger.conditions
<leadstream.domain.sends.SendTrigger.conditions>`), valid by construction: parsing again
never fails. :mod:`leadstream.domain.evaluate` answers a tree for a whole partition at
once from its index; :func:`holds` here answers it for one lead from its history (explain,
and the reference the property tests hold the index to).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import re2

from leadstream.domain.controls import tagged
from leadstream.domain.normalize import normalize_event_type, normalize_id
from leadstream.domain.rejects import Reason, RowError

__all__ = [
    "MAX_DEPTH",
    "MAX_LEAVES",
    "MAX_REGEX_CHARS",
    "AllOf",
    "AnyOf",
    "CampaignLeaf",
    "Conditions",
    "EventLeaf",
    "LeadEvents",
    "Leaf",
    "MetadataTest",
    "Node",
    "NotOf",
    "Predicate",
    "SequenceLeaf",
    "Side",
    "holds",
    "leaves",
    "parse_conditions",
    "verdicts",
]

MAX_DEPTH = 8
# The leaves of a tree plus the send's event filters: what evaluating a trigger costs is
# bounded whatever its body holds.
MAX_LEAVES = 64
MAX_REGEX_CHARS = 256
MAX_WHERE_KEYS = 16
MAX_KEY_CHARS = 128
MAX_IN_VALUES = 100
MAX_STRING_CHARS = 1024
MAX_MINUTES = 100 * 366 * 24 * 60
MAX_COUNT = 1_000_000
MINUTE_MS = 60_000
# Integers the internal encodings (msgpack) carry.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1

Op = Literal["eq", "in", "ne", "gt", "gte", "lt", "lte", "exists", "contains", "regex"]
_COMPARE = ("gt", "gte", "lt", "lte")
_OPS = frozenset({"in", "ne", *_COMPARE, "exists", "contains", "regex"})


def _invalid(path: str, message: str) -> RowError:
    # Cut: a path holds the sender's keys, of any length, and is echoed back.
    return RowError(Reason.INVALID_CONDITIONS, f"{path[:120]}: {message}", field=path[:120])


# -- metadata predicates -----------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(value: Any, scalar: Any) -> bool:
    """The contract's equality: numbers by value (1 == 1.0), booleans, strings and null
    each only among their own kind; an object or array equals no scalar."""
    if scalar is None:
        return value is None
    if isinstance(scalar, bool):
        return isinstance(value, bool) and value is scalar
    if isinstance(scalar, str):
        return isinstance(value, str) and value == scalar
    return _is_number(value) and bool(value == scalar)


_REGEX_OPTIONS = re2.Options()
_REGEX_OPTIONS.log_errors = False  # a bad pattern is the sender's, answered as a reject


@dataclass(frozen=True, slots=True)
class Predicate:
    """One metadata key's condition; ``operand`` is a scalar, a tuple of scalars (``in``),
    a number, a bool (``exists``) or a string (``contains``, ``regex``)."""

    key: str
    op: Op
    operand: Any

    def matcher(self) -> Callable[[dict[str, Any]], bool]:
        key, op, operand = self.key, self.op, self.operand
        missing = object()
        if op == "exists":
            return lambda doc: (key in doc) is operand
        if op == "regex":
            pattern = re2.compile(operand, _REGEX_OPTIONS)
            return lambda doc: (
                isinstance(v := doc.get(key, missing), str) and pattern.fullmatch(v) is not None
            )
        if op == "contains":
            return lambda doc: isinstance(v := doc.get(key, missing), str) and operand in v
        if op in _COMPARE:
            compare = _COMPARISONS[op]
            return lambda doc: _is_number(v := doc.get(key, missing)) and compare(v, operand)
        if op == "in":
            return lambda doc: (
                (v := doc.get(key, missing)) is not missing and any(equal(v, s) for s in operand)
            )
        if op == "ne":
            return lambda doc: (v := doc.get(key, missing)) is not missing and not equal(v, operand)
        return lambda doc: (v := doc.get(key, missing)) is not missing and equal(v, operand)

    def describe(self) -> Any:
        if self.op == "eq":
            return self.operand
        if self.op == "in":
            return {"in": list(self.operand)}
        return {self.op: self.operand}


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: bool(a > b),
    "gte": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "lte": lambda a, b: bool(a <= b),
}

_metadata = msgspec.json.Decoder()


class MetadataTest:
    """A ``where`` ready to test many events' stored metadata (compact JSON or None)."""

    __slots__ = ("_tests",)

    def __init__(self, where: Sequence[Predicate]) -> None:
        self._tests = tuple(p.matcher() for p in where)

    def __bool__(self) -> bool:
        return bool(self._tests)

    def on(self, doc: Any) -> bool:
        """On decoded metadata (None: the event has none, so no key)."""
        if not isinstance(doc, dict):
            doc = {}
        return all(test(doc) for test in self._tests)

    def __call__(self, metadata: bytes | None) -> bool:
        if not self._tests:
            return True
        return self.on(decode_metadata(metadata))


def decode_metadata(metadata: bytes | None) -> Any:
    if not metadata:
        return None
    try:
        return _metadata.decode(metadata)
    except msgspec.DecodeError:
        return None


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not _MIN_INT <= value <= _MAX_INT:
        raise _invalid(path, "integers must lie within -2**63 .. 2**64-1")
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise _invalid(path, f"strings have at most {MAX_STRING_CHARS} characters")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise _invalid(path, "must be a string, number, boolean or null")


def _predicate(key: str, doc: Any, path: str) -> Predicate:
    if not isinstance(doc, dict):
        return Predicate(key, "eq", _scalar(doc, path))
    if len(doc) != 1 or next(iter(doc)) not in _OPS:
        raise _invalid(
            path,
            "a predicate is a scalar or one object of in, ne, gt, gte, lt, lte, exists,"
            " contains or regex",
        )
    op, operand = next(iter(doc.items()))
    at = f"{path}.{op}"
    if op == "in":
        if not isinstance(operand, list) or not 1 <= len(operand) <= MAX_IN_VALUES:
            raise _invalid(at, f"must be an array of 1 to {MAX_IN_VALUES} scalars")
        return Predicate(key, "in", tuple(_scalar(v, f"{at}[{i}]") for i, v in enumerate(operand)))
    if op == "ne":
        return Predicate(key, "ne", _scalar(operand, at))
    if op in _COMPARE:
        if not _is_number(operand):
            raise _invalid(at, "must be a number")
        return Predicate(key, op, _scalar(operand, at))
    if op == "exists":
        if not isinstance(operand, bool):
            raise _invalid(at, "must be true or false")
        return Predicate(key, "exists", operand)
    if not isinstance(operand, str):
        raise _invalid(at, "must be a string")
    if op == "contains":
        return Predicate(key, "contains", _scalar(operand, at))
    if len(operand) > MAX_REGEX_CHARS:
        raise _invalid(at, f"a pattern has at most {MAX_REGEX_CHARS} characters")
    try:
        re2.compile(operand, _REGEX_OPTIONS)
    except re2.error as err:
        raise _invalid(at, f"not an RE2 pattern ({_regex_problem(err)})") from None
    return Predicate(key, "regex", operand)


def _regex_problem(err: Exception) -> str:
    message = err.args[0] if err.args else err
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return text[:120]


def parse_where(doc: Any, path: str) -> tuple[Predicate, ...]:
    if not isinstance(doc, dict) or not 1 <= len(doc) <= MAX_WHERE_KEYS:
        raise _invalid(path, f"must be an object of 1 to {MAX_WHERE_KEYS} metadata keys")
    out = []
    for key, condition in doc.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise _invalid(path, f"a metadata key has 1 to {MAX_KEY_CHARS} characters")
        out.append(_predicate(key, condition, f"{path}.{key}"))
    return tuple(out)


# -- the tree ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventLeaf:
    """Events of one type, in a window, meeting ``where``: their count in ``[min, max]``.

    ``window`` is ``(fromMinutes, toMinutes)`` before the moment (``within`` n is
    ``(n, 0)``); None is sticky: every event of the type, folded ones included when there
    is no ``where``."""

    event_type: str
    min_count: int = 1
    max_count: int | None = None
    window: tuple[int, int] | None = None
    where: tuple[Predicate, ...] = ()
    # ``where`` compiled once (its regexes too), for every event of every lead.
    test: MetadataTest = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", MetadataTest(self.where))

    def bounds(self, at: int) -> tuple[int, int] | None:
        """``[lo, hi]`` of the window at the moment ``at`` (ms); None when sticky."""
        if self.window is None:
            return None
        older, newer = self.window
        return max(0, at - older * MINUTE_MS), at - newer * MINUTE_MS

    def in_range(self, count: int) -> bool:
        return self.min_count <= count and (self.max_count is None or count <= self.max_count)


@dataclass(frozen=True, slots=True)
class Side:
    """One end of a sequence: an event type and what its metadata must meet."""

    event_type: str
    where: tuple[Predicate, ...] = ()
    test: MetadataTest = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", MetadataTest(self.where))


@dataclass(frozen=True, slots=True)
class SequenceLeaf:
    first: Side
    then: Side
    within_minutes: int
    then_absent: bool = False
    same_key: str | None = None
    # The A events considered: those in the last ``first_within`` minutes (None: all).
    first_within: int | None = None


@dataclass(frozen=True, slots=True)
class CampaignLeaf:
    campaign_id: str


Leaf = EventLeaf | SequenceLeaf | CampaignLeaf


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    child: Node


Node = AllOf | AnyOf | NotOf | Leaf


@dataclass(frozen=True, slots=True)
class Conditions:
    """A parsed tree with each leaf's JSON path and document (what explain reports)."""

    root: Node
    paths: tuple[tuple[Leaf, str, Any], ...]


_EVENT_FIELDS = frozenset({"event", "count", "within", "between", "where"})
_SEQUENCE_FIELDS = frozenset({"first", "then", "withinMinutes", "thenAbsent", "sameKey", "within"})
_KINDS = ("all", "any", "not", "event", "sequence", "inCampaign")


def _int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(path, f"must be an integer from {low} to {high}")
    return value


def _fields(doc: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    for name in doc:
        if name not in allowed:
            raise _invalid(f"{path}.{name}", "not a field of this condition")


def _object(doc: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _invalid(path, "must be a JSON object")
    _fields(doc, allowed, path)
    return doc


def _event_type(value: Any, path: str) -> str:
    try:
        return normalize_event_type(value)
    except RowError as err:
        raise _invalid(path, err.detail) from None


class _Parser:
    def __init__(self, leaves_allowed: int) -> None:
        self.allowed = leaves_allowed
        self.paths: list[tuple[Leaf, str, Any]] = []

    def node(self, doc: Any, path: str, depth: int) -> Node:
        if not isinstance(doc, dict):
            raise _invalid(path, "a condition is a JSON object")
        kind = next((k for k in _KINDS if k in doc), None)
        if kind is None:
            raise _invalid(path, "a condition is all, any, not, an event, a sequence or inCampaign")
        if kind in ("all", "any", "not"):
            if len(doc) != 1:
                raise _invalid(path, f"{kind} takes no other field")
            if depth >= MAX_DEPTH:
                raise _invalid(path, f"conditions nest at most {MAX_DEPTH} operators deep")
            return self.operator(kind, doc[kind], f"{path}.{kind}", depth + 1)
        if len(self.paths) >= self.allowed:
            raise _invalid(path, f"a send holds at most {MAX_LEAVES} conditions in all")
        leaf: Leaf
        if kind == "event":
            leaf = self.event(doc, path)
        elif kind == "sequence":
            _fields(doc, frozenset({"sequence"}), path)
            leaf = self.sequence(doc["sequence"], f"{path}.sequence")
        else:
            _fields(doc, frozenset({"inCampaign"}), path)
            campaign = doc["inCampaign"]
            try:
                leaf = CampaignLeaf(
                    normalize_id(campaign, reason=Reason.INVALID_CONDITIONS, what="inCampaign")
                )
            except RowError as err:
                raise _invalid(f"{path}.inCampaign", err.detail) from None
        self.paths.append((leaf, path, doc))
        return leaf

    def operator(self, kind: str, value: Any, path: str, depth: int) -> Node:
        if kind == "not":
            return NotOf(self.node(value, path, depth))
        if not isinstance(value, list) or not value:
            raise _invalid(path, "must be a non-empty array of conditions")
        children = []
        for i, child in enumerate(value):
            if len(self.paths) >= self.allowed:  # before looking at the rest of a huge array
                raise _invalid(f"{path}[{i}]", f"a send holds at most {MAX_LEAVES} conditions")
            children.append(self.node(child, f"{path}[{i}]", depth))
        return AllOf(tuple(children)) if kind == "all" else AnyOf(tuple(children))

    def event(self, doc: dict[str, Any], path: str) -> EventLeaf:
        _fields(doc, _EVENT_FIELDS, path)
        event_type = _event_type(doc["event"], f"{path}.event")
        low, high = 1, None
        if "count" in doc:
            count = _object(doc["count"], f"{path}.count", frozenset({"min", "max"}))
            if "max" in count:
                high = _int(count["max"], f"{path}.count.max", 0, MAX_COUNT)
                low = 0
            if "min" in count:
                low = _int(count["min"], f"{path}.count.min", 0, MAX_COUNT)
            if high is not None and low > high:
                raise _invalid(f"{path}.count", "min is greater than max: it never holds")
        window = None
        if "within" in doc and "between" in doc:
            raise _invalid(path, "an event condition takes within or between, not both")
        if "within" in doc:
            within = _object(doc["within"], f"{path}.within", frozenset({"minutes"}))
            window = (_int(within.get("minutes"), f"{path}.within.minutes", 1, MAX_MINUTES), 0)
        if "between" in doc:
            at = f"{path}.between"
            between = _object(doc["between"], at, frozenset({"fromMinutes", "toMinutes"}))
            older = _int(between.get("fromMinutes"), f"{at}.fromMinutes", 1, MAX_MINUTES)
            newer = _int(between.get("toMinutes"), f"{at}.toMinutes", 0, MAX_MINUTES)
            if older <= newer:
                raise _invalid(at, "fromMinutes must be greater than toMinutes")
            window = (older, newer)
        where = parse_where(doc["where"], f"{path}.where") if "where" in doc else ()
        return EventLeaf(event_type, low, high, window, where)

    def side(self, doc: Any, path: str) -> Side:
        side = _object(doc, path, frozenset({"event", "where"}))
        where = parse_where(side["where"], f"{path}.where") if "where" in side else ()
        return Side(_event_type(side.get("event"), f"{path}.event"), where)

    def sequence(self, doc: Any, path: str) -> SequenceLeaf:
        doc = _object(doc, path, _SEQUENCE_FIELDS)
        for name in ("first", "then", "withinMinutes"):
            if name not in doc:
                raise _invalid(f"{path}.{name}", "is missing")
        absent = doc.get("thenAbsent", False)
        if not isinstance(absent, bool):
            raise _invalid(f"{path}.thenAbsent", "must be true or false")
        same_key = doc.get("sameKey")
        if same_key is not None and (
            not isinstance(same_key, str) or not 1 <= len(same_key) <= MAX_KEY_CHARS
        ):
            raise _invalid(f"{path}.sameKey", f"must be a metadata key of 1 to {MAX_KEY_CHARS}")
        first_within = None
        if "within" in doc:
            within = _object(doc["within"], f"{path}.within", frozenset({"minutes"}))
            first_within = _int(within.get("minutes"), f"{path}.within.minutes", 1, MAX_MINUTES)
        return SequenceLeaf(
            self.side(doc["first"], f"{path}.first"),
            self.side(doc["then"], f"{path}.then"),
            _int(doc["withinMinutes"], f"{path}.withinMinutes", 1, MAX_MINUTES),
            absent,
            same_key,
            first_within,
        )


def parse_conditions(
    doc: Any, *, path: str = "conditions", leaves_allowed: int = MAX_LEAVES
) -> Conditions:
    """Validate a ``conditions`` tree or raise :class:`RowError` (``invalid_conditions``,
    its ``field`` the JSON path at fault). Nothing deeper than :data:`MAX_DEPTH` or wider
    than ``leaves_allowed`` is looked at, whatever the document holds."""
    parser = _Parser(leaves_allowed)
    root = parser.node(doc, path, 0)
    return Conditions(root, tuple(parser.paths))


def leaves(node: Node) -> Iterator[Leaf]:
    """The tree's leaves, depth first, left to right (the order of their JSON)."""
    if isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from leaves(child)
    elif isinstance(node, NotOf):
        yield from leaves(node.child)
    else:
        yield node


# -- one lead ----------------------------------------------------------------------------


class LeadEvents:
    """What the conditions read of one lead: its event keys of a type, ``(occurredAt,
    metadata)`` ascending, its sticky count of a type (folded events included) and its
    memberships."""

    def __init__(
        self,
        events: Callable[[str], Sequence[tuple[int, bytes | None]]],
        sticky_count: Callable[[str], int],
        member_of: Callable[[str], bool],
    ) -> None:
        self.events = events
        self.sticky_count = sticky_count
        self.member_of = member_of


def count_events(
    leaf: EventLeaf, events: Sequence[tuple[int, bytes | None]], at: int, limit: int
) -> int:
    """The leaf's matching event keys among ``events``, at most ``limit``."""
    test = leaf.test
    bounds = leaf.bounds(at)
    count = 0
    for ts, metadata in events:
        if bounds is not None and not bounds[0] <= ts <= bounds[1]:
            continue
        if test(metadata):
            count += 1
            if count >= limit:
                break
    return count


def event_count(leaf: EventLeaf, lead: LeadEvents, at: int, limit: int | None = None) -> int:
    """How many of the lead's events the leaf counts (by default up to one past its
    range: enough to decide)."""
    if limit is None:
        limit = (leaf.max_count if leaf.max_count is not None else leaf.min_count) + 1
    if leaf.window is None and not leaf.where:
        return min(lead.sticky_count(leaf.event_type), limit)
    return count_events(leaf, lead.events(leaf.event_type), at, limit)


# A ``sameKey`` value that equals nothing, not even itself: an object or an array.
_UNPAIRED = ("", None)


class _Keyed:
    """A metadata value as equality sees it (1 and 1.0 alike, True apart); None when the
    key is missing, :data:`_UNPAIRED` for an object or an array (present, equal to
    nothing)."""

    @staticmethod
    def of(doc: Any, key: str) -> tuple[str, Any] | None:
        if not isinstance(doc, dict) or key not in doc:
            return None
        found = tagged(doc[key])  # equality's identity of a value (controls.py)
        return _UNPAIRED if found is None else found


def sequence_holds(
    leaf: SequenceLeaf,
    first: Sequence[tuple[int, bytes | None]],
    then: Sequence[tuple[int, bytes | None]],
    at: int,
) -> bool:
    """The sequence leaf on one lead's event keys of its two types (ascending)."""
    first_test, then_test = leaf.first.test, leaf.then.test
    key = leaf.same_key
    since = -1 if leaf.first_within is None else at - leaf.first_within * MINUTE_MS
    starts: list[tuple[int, tuple[str, Any] | None]] = []
    for ts, metadata in first:
        if since <= ts <= at:
            doc = decode_metadata(metadata)
            if first_test.on(doc):
                keyed = _Keyed.of(doc, key) if key is not None else None
                if key is None or keyed is not None:
                    starts.append((ts, keyed))
                # An A whose value pairs with nothing: followed by no B.
                if keyed is _UNPAIRED and leaf.then_absent:
                    return True
    if not starts:
        return False
    # The B events at or before the moment, by the value they pair on.
    ends: dict[tuple[str, Any] | None, list[int]] = {}
    for ts, metadata in then:
        if ts <= at:
            doc = decode_metadata(metadata)
            if then_test.on(doc):
                keyed = _Keyed.of(doc, key) if key is not None else None
                if key is None or (keyed is not None and keyed is not _UNPAIRED):
                    ends.setdefault(keyed, []).append(ts)
    span = leaf.within_minutes * MINUTE_MS
    for ts, keyed in starts:
        times = ends.get(keyed, []) if keyed is not _UNPAIRED else []
        nxt = bisect.bisect_right(times, ts)
        limit = min(ts + span, at) if leaf.then_absent else ts + span
        followed = nxt < len(times) and times[nxt] <= limit
        if followed != leaf.then_absent:
            return True
    return False


def leaf_holds(leaf: Leaf, lead: LeadEvents, at: int) -> bool:
    if isinstance(leaf, CampaignLeaf):
        return lead.member_of(leaf.campaign_id)
    if isinstance(leaf, EventLeaf):
        return leaf.in_range(event_count(leaf, lead, at))
    return sequence_holds(
        leaf, lead.events(leaf.first.event_type), lead.events(leaf.then.event_type), at
    )


def holds(node: Node, lead: LeadEvents, at: int) -> bool:
    """Does the tree hold for one lead at the send's moment ``at``?"""
    if isinstance(node, AllOf):
        return all(holds(child, lead, at) for child in node.children)
    if isinstance(node, AnyOf):
        return any(holds(child, lead, at) for child in node.children)
    if isinstance(node, NotOf):
        return not holds(node.child, lead, at)
    return leaf_holds(node, lead, at)


def verdicts(conditions: Conditions, lead: LeadEvents, at: int) -> list[dict[str, Any]]:
    """Each leaf's verdict for one lead (explain): its path, its JSON, whether it holds
    and, for an event leaf, how many events it counted."""
    out = []
    for leaf, path, doc in conditions.paths:
        verdict: dict[str, Any] = {"path": path, "condition": doc, "holds": False}
        if isinstance(leaf, EventLeaf):
            count = event_count(leaf, lead, at, limit=MAX_COUNT + 1)
            verdict["holds"] = leaf.in_range(count)
            verdict["matchingEvents"] = count
        else:
            verdict["holds"] = leaf_holds(leaf, lead, at)
        out.append(verdict)
    return out
