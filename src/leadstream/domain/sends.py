"""Sends: trigger validation, event and audience filters, and materialization
(docs/contract.md, section 3).

Materialization of one send over one partition's leads counts each audience member at
the first step that drops it, in this order: opted out, audience filter, event filters
and conditions (:mod:`leadstream.domain.conditions`), frequency cap, quiet hours
(:mod:`leadstream.domain.controls`), holdout (:mod:`leadstream.domain.buckets`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, NamedTuple

import msgspec

from leadstream.domain.audience import normalize_external_id
from leadstream.domain.buckets import Allocation, Holdout, Split, parse_holdout, parse_splits
from leadstream.domain.conditions import (
    MAX_LEAVES,
    Conditions,
    LeadEvents,
    holds,
    parse_conditions,
)
from leadstream.domain.controls import (
    FrequencyCap,
    QuietHours,
    Where,
    WhereMatcher,
    parse_frequency_cap,
    parse_quiet_hours,
    parse_where,
    phone_zones,
)
from leadstream.domain.lead_index import LeadHistory
from leadstream.domain.normalize import (
    normalize_event_type,
    normalize_id,
    normalize_organization_id,
    normalize_phone,
    normalize_timestamp,
)
from leadstream.domain.partitioning import lead_partition
from leadstream.domain.policies.us_tcpa import UsTcpaPolicy, shipped_policy
from leadstream.domain.rejects import Reason, RowError
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = [
    "FILTER_DEADLINE_MS",
    "MAX_CONDITIONS",
    "TRIGGER_FIELDS",
    "AudienceFilterSpec",
    "Counts",
    "EventFilter",
    "Outcome",
    "PartitionResult",
    "SendId",
    "SendRules",
    "SendTrigger",
    "campaign_members",
    "filter_parts",
    "keeps",
    "known_fields",
    "lead_events",
    "parse_audience_filter",
    "parse_trigger",
    "resolve_audience_filter",
    "split_filter",
]

FILTER_DEADLINE_MS = 5 * 60_000
# Generous ceilings that keep every value inside the 64-bit encodings downstream.
MAX_WITHIN_MINUTES = 100 * 366 * 24 * 60
MAX_MIN_COUNT = 1_000_000
# Conditions of a send, at most (its event filters and the leaves of its conditions tree
# count): what evaluating a trigger costs is bounded whatever its body holds.
MAX_CONDITIONS = MAX_LEAVES
Mode = Literal["include", "exclude"]


class SendId(NamedTuple):
    """A send is named by its organization and its sendId (the first trigger wins)."""

    organization_id: str
    send_id: str


@dataclass(frozen=True, slots=True)
class EventFilter:
    mode: Mode
    event_type: str
    within_minutes: int | None = None
    min_count: int = 1
    # Metadata conditions an event must meet to count (empty: every event counts).
    where: Where = ()

    def window(self, scheduled_for: int) -> tuple[int, int] | None:
        """``[since, until]`` of a windowed filter at ``scheduled_for``; None when sticky."""
        if self.within_minutes is None:
            return None
        # No event is older than the epoch.
        return max(0, scheduled_for - self.within_minutes * 60_000), scheduled_for


@dataclass(frozen=True, slots=True)
class SendTrigger:
    """A validated ``send-triggers`` value; ``scheduled_for`` in UTC milliseconds."""

    organization_id: str
    campaign_id: str
    send_id: str
    scheduled_for: int
    event_filters: tuple[EventFilter, ...] = ()
    audience_filter_enabled: bool = False
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    # The conditions tree as compact JSON, valid by construction (parse_conditions).
    conditions: str | None = None
    holdout: Holdout | None = None
    splits: tuple[Split, ...] = ()

    def tree(self) -> Conditions | None:
        """The conditions, parsed (again: they were valid when the trigger was)."""
        if self.conditions is None:
            return None
        budget = MAX_LEAVES - len(self.event_filters)
        return parse_conditions(msgspec.json.decode(self.conditions), leaves_allowed=budget)

    def allocation(self) -> Allocation | None:
        """What the send does with buckets; None without holdout and splits."""
        if self.holdout is None and not self.splits:
            return None
        return Allocation.of(self.holdout, self.splits)

    @property
    def salt(self) -> str:
        return "" if self.holdout is None else self.holdout.salt

    def due_at(self, lead_ms: int) -> int:
        """When to materialize: ``scheduledFor - LEADSTREAM_MATERIALIZE_LEAD_SECONDS``."""
        return self.scheduled_for - lead_ms


@dataclass(frozen=True, slots=True)
class AudienceFilterSpec:
    """One received audience filter (or the part of it for one partition)."""

    mode: Mode
    external_ids: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()

    def digest(self) -> str:
        """Identity of the filter's content, to tell an identical repeat."""
        canonical = msgspec.json.encode([self.mode, sorted(self.external_ids), sorted(self.phones)])
        return hashlib.sha256(canonical).hexdigest()

    def matches(self, phone: str, external_id: str | None) -> bool:
        return phone in self.phones or (
            external_id is not None and external_id in self.external_ids
        )


def _mode(value: Any, what: str) -> Mode:
    if value == "include":
        return "include"
    if value == "exclude":
        return "exclude"
    raise RowError(Reason.INVALID_JSON, f'{what} must be "include" or "exclude", got {value!r:.40}')


def _positive_int(value: Any, what: str, ceiling: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
        raise RowError(
            Reason.INVALID_JSON, f"{what} must be an integer from 1 to {ceiling}, got {value!r:.40}"
        )
    return value


# The fields a send trigger's objects may carry (docs/contract.md, section 3): any other is
# refused, so that a misspelled filter can never widen a send.
TRIGGER_FIELDS = frozenset(
    {
        "organizationId",
        "campaignId",
        "sendId",
        "scheduledFor",
        "eventFilter",
        "eventFilters",
        "audienceFilter",
        "frequencyCap",
        "quietHours",
        "conditions",
        "holdout",
        "splits",
    }
)
_EVENT_FILTER_FIELDS = frozenset({"mode", "eventType", "within", "minCount", "where"})
_MAX_PATH_CHARS = 120
_NESTED_FIELDS = {
    "within": frozenset({"minutes"}),
    "audienceFilter": frozenset({"enabled"}),
    "frequencyCap": frozenset({"maxSends", "withinHours"}),
    "quietHours": frozenset({"start", "end", "timeZone", "policy"}),
}


def known_fields(doc: dict[str, Any], fields: frozenset[str], path: str = "") -> None:
    """Raise :class:`RowError` (``invalid_conditions``, with the field's JSON path) for the
    first key of ``doc`` that is not one of ``fields``."""
    for name in doc:
        if name not in fields:
            # Cut: the key is the sender's, of any length, and is echoed back.
            where = (f"{path}.{name}" if path else str(name))[:_MAX_PATH_CHARS]
            detail = f"{where} is not a field of a send trigger"
            raise RowError(Reason.INVALID_CONDITIONS, detail, field=where)


def _nested(doc: dict[str, Any], name: str, path: str = "") -> Any:
    """``doc[name]``, its keys checked when it is an object."""
    value = doc.get(name)
    if isinstance(value, dict):
        known_fields(value, _NESTED_FIELDS[name], f"{path}.{name}" if path else name)
    return value


def _event_filter(doc: Any, path: str) -> EventFilter:
    if not isinstance(doc, dict):
        raise RowError(Reason.INVALID_JSON, "an event filter must be a JSON object")
    known_fields(doc, _EVENT_FILTER_FIELDS, path)
    within = _nested(doc, "within", path)
    minutes = None
    if within is not None:
        if not isinstance(within, dict):
            raise RowError(Reason.INVALID_JSON, 'within must be {"minutes": int >= 1}')
        minutes = _positive_int(within.get("minutes"), "within.minutes", MAX_WITHIN_MINUTES)
    min_count = doc.get("minCount")
    where = doc.get("where")
    return EventFilter(
        _mode(doc.get("mode"), "eventFilter.mode"),
        normalize_event_type(doc.get("eventType")),
        minutes,
        1 if min_count is None else _positive_int(min_count, "minCount", MAX_MIN_COUNT),
        () if where is None else parse_where(where),
    )


def parse_trigger(doc: Any) -> SendTrigger:
    """Validate a ``send-triggers`` value or raise :class:`RowError`."""
    if not isinstance(doc, dict):
        raise RowError(Reason.INVALID_JSON, "a trigger must be a JSON object")
    known_fields(doc, TRIGGER_FIELDS)
    org = normalize_organization_id(doc.get("organizationId"))
    campaign = normalize_id(doc.get("campaignId"), reason=Reason.INVALID_JSON, what="campaignId")
    send = normalize_id(doc.get("sendId"), reason=Reason.INVALID_JSON, what="sendId")
    scheduled_ms = normalize_timestamp(doc.get("scheduledFor"), "scheduledFor")
    one, many = doc.get("eventFilter"), doc.get("eventFilters")
    if one is not None and many is not None:
        raise RowError(
            Reason.INVALID_JSON, "a trigger carries eventFilter or eventFilters, never both"
        )
    if many is not None and not isinstance(many, list):
        raise RowError(Reason.INVALID_JSON, "eventFilters must be a JSON array")
    if many is not None and len(many) > MAX_CONDITIONS:
        raise RowError(
            Reason.INVALID_JSON, f"a trigger holds at most {MAX_CONDITIONS} event filters"
        )
    filters = tuple(
        _event_filter(f, "eventFilter" if one is not None else f"eventFilters[{i}]")
        for i, f in enumerate([one] if one is not None else many or [])
    )
    switch = _nested(doc, "audienceFilter")
    enabled = False
    if switch is not None:
        if not isinstance(switch, dict) or not isinstance(switch.get("enabled", False), bool):
            raise RowError(Reason.INVALID_JSON, 'audienceFilter must be {"enabled": bool}')
        enabled = bool(switch.get("enabled", False))
    cap, quiet = _nested(doc, "frequencyCap"), _nested(doc, "quietHours")
    conditions = None
    if doc.get("conditions") is not None:
        budget = MAX_LEAVES - len(filters)
        parse_conditions(doc["conditions"], leaves_allowed=budget)
        conditions = msgspec.json.encode(doc["conditions"]).decode()
    holdout = parse_holdout(doc["holdout"]) if doc.get("holdout") is not None else None
    splits = parse_splits(doc["splits"]) if doc.get("splits") is not None else ()
    return SendTrigger(
        org,
        campaign,
        send,
        scheduled_ms,
        filters,
        enabled,
        None if cap is None else parse_frequency_cap(cap),
        None if quiet is None else parse_quiet_hours(quiet),
        conditions,
        holdout,
        splits,
    )


def parse_audience_filter(doc: Any, *, region: str) -> tuple[str, str, str, AudienceFilterSpec]:
    """``(organizationId, campaignId, sendId, filter)`` of an ``audience-filters`` value.

    Every lead entry must be valid: a filter that silently lost a lead would message
    someone it meant to exclude, so a bad entry rejects the whole filter.
    """
    if not isinstance(doc, dict):
        raise RowError(Reason.INVALID_JSON, "an audience filter must be a JSON object")
    org = normalize_organization_id(doc.get("organizationId"))
    campaign = normalize_id(doc.get("campaignId"), reason=Reason.INVALID_JSON, what="campaignId")
    send = normalize_id(doc.get("sendId"), reason=Reason.INVALID_JSON, what="sendId")
    mode = _mode(doc.get("mode"), "mode")
    leads = doc.get("leads")
    if not isinstance(leads, list):
        raise RowError(Reason.INVALID_JSON, "leads must be a JSON array")
    external_ids: set[str] = set()
    phones: set[str] = set()
    for index, lead in enumerate(leads):
        if not isinstance(lead, dict):
            raise RowError(Reason.INVALID_JSON, f"leads[{index}] must be a JSON object")
        try:
            if lead.get("externalId") is not None:
                external_ids.add(str(normalize_external_id(lead["externalId"])))
            elif lead.get("phoneE164") is not None:
                phones.add(normalize_phone(lead["phoneE164"], region))
            else:
                raise RowError(Reason.MISSING_FIELD, "needs externalId or phoneE164")
        except RowError as err:
            raise RowError(err.reason, f"leads[{index}]: {err.detail}") from None
    return org, campaign, send, AudienceFilterSpec(mode, frozenset(external_ids), frozenset(phones))


def resolve_audience_filter(
    received: Iterable[tuple[int, AudienceFilterSpec]], *, scheduled_for: int
) -> tuple[AudienceFilterSpec | None, int]:
    """The filter that applies and how many arrived too late.

    The most recent filter by receive time replaces earlier ones; one received later than
    5 minutes before ``scheduled_for`` is ignored and counted.
    """
    deadline = scheduled_for - FILTER_DEADLINE_MS
    latest: tuple[int, AudienceFilterSpec] | None = None
    late = 0
    for received_at, spec in received:
        if received_at > deadline:
            late += 1
        elif latest is None or received_at >= latest[0]:
            latest = (received_at, spec)
    return (latest[1] if latest else None), late


def keeps(history: LeadHistory, event_filter: EventFilter, scheduled_for: int) -> bool:
    """Does ``event_filter`` keep the lead for a send firing at ``scheduled_for``?"""
    window = event_filter.window(scheduled_for)
    has = (
        history.count(
            event_filter.event_type.encode(),
            since_ms=window[0] if window else None,
            until_ms=window[1] if window else None,
            limit=event_filter.min_count,
            where=WhereMatcher(event_filter.where) if event_filter.where else None,
        )
        >= event_filter.min_count
    )
    return has if event_filter.mode == "include" else not has


class Outcome(IntEnum):
    """What materialization does with one audience member: the first step that drops it."""

    RECIPIENT = 0
    OPTED_OUT = 1
    DROPPED_BY_AUDIENCE_FILTER = 2
    DROPPED_BY_EVENT_FILTER = 3
    DROPPED_BY_FREQUENCY_CAP = 4
    DROPPED_BY_QUIET_HOURS = 5
    HELD_OUT = 6


@dataclass(slots=True)
class Counts:
    audience: int = 0
    opted_out: int = 0
    dropped_by_audience_filter: int = 0
    dropped_by_event_filter: int = 0
    dropped_by_frequency_cap: int = 0
    dropped_by_quiet_hours: int = 0
    held_out: int = 0

    def add(self, other: Counts) -> None:
        self.audience += other.audience
        self.opted_out += other.opted_out
        self.dropped_by_audience_filter += other.dropped_by_audience_filter
        self.dropped_by_event_filter += other.dropped_by_event_filter
        self.dropped_by_frequency_cap += other.dropped_by_frequency_cap
        self.dropped_by_quiet_hours += other.dropped_by_quiet_hours
        self.held_out += other.held_out

    def record(self, outcome: Outcome) -> None:
        self.audience += 1
        if outcome is Outcome.OPTED_OUT:
            self.opted_out += 1
        elif outcome is Outcome.DROPPED_BY_AUDIENCE_FILTER:
            self.dropped_by_audience_filter += 1
        elif outcome is Outcome.DROPPED_BY_EVENT_FILTER:
            self.dropped_by_event_filter += 1
        elif outcome is Outcome.DROPPED_BY_FREQUENCY_CAP:
            self.dropped_by_frequency_cap += 1
        elif outcome is Outcome.DROPPED_BY_QUIET_HOURS:
            self.dropped_by_quiet_hours += 1
        elif outcome is Outcome.HELD_OUT:
            self.held_out += 1


@dataclass(slots=True)
class PartitionResult:
    recipients: list[tuple[str, str | None]] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True, slots=True)
class SendRules:
    """Everything that decides a member's :class:`Outcome` for one send, in the contract's order."""

    trigger: SendTrigger
    # None when the trigger does not enable it, or enables it and none was received.
    audience_filter: AudienceFilterSpec | None
    opt_out_type: str
    opt_in_type: str
    # The us-tcpa table the worker runs with (None: the one shipped with leadstream).
    policy: UsTcpaPolicy | None = None

    def quiet_policy(self) -> UsTcpaPolicy:
        return self.policy if self.policy is not None else shipped_policy()

    @classmethod
    def of(
        cls,
        trigger: SendTrigger,
        audience_filter: AudienceFilterSpec | None,
        *,
        opt_out_type: str,
        opt_in_type: str,
        policy: UsTcpaPolicy | None = None,
    ) -> SendRules:
        active = audience_filter if trigger.audience_filter_enabled else None
        return cls(trigger, active, opt_out_type, opt_in_type, policy)

    def outcome(
        self,
        history: LeadHistory,
        phone: str,
        external_id: str | None,
        received: Sequence[int] = (),
        *,
        member_of: Callable[[str], bool] | None = None,
        bucket: int | None = None,
    ) -> Outcome:
        """The lead's outcome; ``received``: the scheduledFor of every committed send of
        the organization that messaged the lead (for the frequency cap); ``member_of``:
        the lead's membership of a campaign (for ``inCampaign`` conditions); ``bucket``:
        its bucket under the send's salt (for holdouts)."""
        if history.opt_state(self.opt_out_type, self.opt_in_type).opted_out:
            return Outcome.OPTED_OUT
        af = self.audience_filter
        if af is not None and af.matches(phone, external_id) != (af.mode == "include"):
            return Outcome.DROPPED_BY_AUDIENCE_FILTER
        trigger = self.trigger
        at = trigger.scheduled_for
        if not all(keeps(history, f, at) for f in trigger.event_filters):
            return Outcome.DROPPED_BY_EVENT_FILTER
        tree = trigger.tree()
        if tree is not None and not holds(tree.root, lead_events(history, member_of), at):
            return Outcome.DROPPED_BY_EVENT_FILTER
        cap = trigger.frequency_cap
        if cap is not None and sum(cap.counts(at, r) for r in received) >= cap.max_sends:
            return Outcome.DROPPED_BY_FREQUENCY_CAP
        quiet = trigger.quiet_hours
        if quiet is not None:
            decision = quiet.decide_with(self.quiet_policy(), phone, phone_zones(phone), at)
            if decision.quiet:
                return Outcome.DROPPED_BY_QUIET_HOURS
        allocation = trigger.allocation()
        if allocation is not None:
            if bucket is None:
                raise ValueError("a send with a holdout or splits needs the lead's bucket")
            if allocation.variant(bucket)[0]:
                return Outcome.HELD_OUT
        return Outcome.RECIPIENT


def lead_events(history: LeadHistory, member_of: Callable[[str], bool] | None) -> LeadEvents:
    """What conditions read of a lead, from its history (and its memberships)."""

    def events(event_type: str) -> list[tuple[int, bytes | None]]:
        key = event_type.encode()
        times = history.times.get(key, [])
        metadata = history.metadata.get(key) or [None] * len(times)
        return list(zip(times, metadata, strict=True))

    def not_told(campaign: str) -> bool:
        raise ValueError("an inCampaign condition needs the lead's memberships")

    return LeadEvents(
        events, lambda t: history.count(t.encode()), member_of if member_of else not_told
    )


def campaign_members(
    store: PartitionStore, partition: int, org: str, campaign: str
) -> Iterator[tuple[str, str | None]]:
    """``(phone, externalId)`` of the campaign's members in this partition: one bounded scan."""
    prefix = keys.member_prefix(org, campaign)
    for key, value in iter_prefix(store, partition, prefix):
        yield key[len(prefix) :].decode(), keys.decode_external_id(value)


def split_filter(
    external_ids: list[str], phones: list[str], rows: int
) -> list[tuple[list[str], list[str]]]:
    """Cut one partition's view of an audience filter into parts of at most ``rows`` leads."""
    items = [("e", x) for x in external_ids] + [("p", x) for x in phones]
    parts = [items[i : i + rows] for i in range(0, len(items), rows)] or [[]]
    return [([x for k, x in part if k == "e"], [x for k, x in part if k == "p"]) for part in parts]


def filter_parts(
    org: str, spec: AudienceFilterSpec, partitions: int, rows: int
) -> dict[int, list[tuple[list[str], list[str]]]]:
    """What each partition receives of a filter: every externalId (they are matched against
    members, wherever they live) and only its own phones, in parts of at most ``rows``."""
    external_ids = sorted(spec.external_ids)
    phones: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for phone in sorted(spec.phones):
        phones[lead_partition(org, phone, partitions)].append(phone)
    return {p: split_filter(external_ids, own, rows) for p, own in phones.items()}
