"""A send's share of one partition, evaluated by set algebra on the partition's index.

The contract's order, each step a bitmap operation on the campaign's members:

    audience      A  = the campaign's members
    optedOut      O  = A & the organization's opted-out leads
    audience filter  R1 = A - O, then R2 = R1 & matched (include) or R1 - matched (exclude)
    event filters    R3 = R2, then for each filter R3 &= has (include) or R3 -= has
    frequency cap    R4 = R3 - (leads in at least maxSends of the counted sends' recipients)
    quiet hours      R5 = R4 - (leads of the zone sets quiet at T)

so every count is a cardinality and no member is looked at one by one; only the packed
events of a window's two edge hours, the externalIds named by an audience filter and,
for a filter with metadata conditions (``where``), the stored events of the leads that
have the type at all are.
:func:`leadstream.domain.sends.SendRules.outcome` answers the same question for one lead
from its history; the property tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import cast

from pyroaring import BitMap

from leadstream.domain.controls import FrequencyCap, WhereMatcher, phone_zones
from leadstream.domain.sends import (
    AudienceFilterSpec,
    Counts,
    EventFilter,
    PartitionResult,
    SendRules,
    SendTrigger,
)
from leadstream.index.partition import Campaign, OrgIndex, PartitionIndex
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.port import PartitionStore

__all__ = ["Evaluation", "capped", "evaluate", "has_event", "materialize_partition"]

_EMPTY = Campaign()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Each step's leads (by id) of one send in one partition."""

    audience: BitMap
    opted_out: BitMap
    dropped_by_audience_filter: BitMap
    dropped_by_event_filter: BitMap
    recipients: BitMap
    campaign: Campaign
    index: PartitionIndex
    # The leads the audience filter names (None when the send applies none).
    named: BitMap | None = None
    dropped_by_frequency_cap: BitMap = field(default_factory=BitMap)
    dropped_by_quiet_hours: BitMap = field(default_factory=BitMap)

    def counts(self) -> Counts:
        return Counts(
            audience=len(self.audience),
            opted_out=len(self.opted_out),
            dropped_by_audience_filter=len(self.dropped_by_audience_filter),
            dropped_by_event_filter=len(self.dropped_by_event_filter),
            dropped_by_frequency_cap=len(self.dropped_by_frequency_cap),
            dropped_by_quiet_hours=len(self.dropped_by_quiet_hours),
        )

    def entries(self) -> list[bytes]:
        """The recipients as a chunk carries them, in lead-id order: one C-level gather
        from the partition's plain entries, then the members with an externalId."""
        recipients = self.recipients
        ids = recipients.to_array()
        if not ids:
            return []
        plain = self.index.plain
        gathered = [plain[ids[0]]] if len(ids) == 1 else list(itemgetter(*ids)(plain))
        campaign = self.campaign
        for lead in recipients & campaign.with_external:
            gathered[recipients.rank(lead) - 1] = campaign.entries[lead]
        # Every member has its plain entry: no None is gathered.
        return cast("list[bytes]", gathered)

    def sample(self, n: int) -> list[tuple[str, str | None]]:
        """``(phoneE164, externalId)`` of the first ``n`` recipients (in lead-id order)."""
        out: list[tuple[str, str | None]] = []
        for lead in self.recipients:
            if len(out) >= n:
                break
            entry = self.campaign.entries.get(lead) or self.index.plain[lead]
            if entry is not None:  # always: every member has its plain entry
                out.append(self.index.codec.decode(entry))
        return out


def evaluate(
    index: PartitionIndex,
    rules: SendRules,
    *,
    store: PartitionStore | None = None,
    partition: int = 0,
) -> Evaluation:
    """The send's steps in one partition. ``store`` (the partition's) is read only for
    event filters with metadata conditions; without it such a filter is an error."""
    trigger = rules.trigger
    org = index.orgs.get(trigger.organization_id)
    campaign = org.campaigns.get(trigger.campaign_id, _EMPTY) if org is not None else _EMPTY
    audience = campaign.members
    if org is None or not audience:
        empty = BitMap()
        return Evaluation(audience, empty, empty, empty, empty, campaign, index)
    opted_out = audience & org.opted_out
    kept = audience - opted_out
    by_filter = kept
    named = None
    if rules.audience_filter is not None:
        named = _matched(index, campaign, trigger.organization_id, rules.audience_filter)
        by_filter = kept & named if rules.audience_filter.mode == "include" else kept - named
    recipients = by_filter
    at = trigger.scheduled_for
    for event_filter in trigger.event_filters:
        if not recipients:
            break
        if event_filter.where:
            if store is None:
                raise ValueError("an event filter with where needs the partition's store")
            source = _EventSource(store, partition, index, trigger.organization_id)
            has = source.has(org, event_filter, at, recipients)
        else:
            has = has_event(org, event_filter, at, recipients)
        recipients = recipients & has if event_filter.mode == "include" else recipients - has
    by_events = recipients
    if trigger.frequency_cap is not None and recipients:
        recipients = recipients - capped(org, trigger.frequency_cap, at, recipients)
    by_cap = recipients
    if trigger.quiet_hours is not None and recipients:
        rule = trigger.quiet_hours
        recipients = recipients - index.zones.quiet(
            recipients, lambda zones: rule.decide(zones, at).quiet, index.phone_of, phone_zones
        )
    return Evaluation(
        audience,
        opted_out,
        kept - by_filter,
        by_filter - by_events,
        recipients,
        campaign,
        index,
        named,
        by_events - by_cap,
        by_cap - recipients,
    )


def capped(org: OrgIndex, cap: FrequencyCap, scheduled_for: int, candidates: BitMap) -> BitMap:
    """The ``candidates`` that received at least ``cap.max_sends`` of the committed sends
    counted against a send at ``scheduled_for``."""
    counted = [
        recipients & candidates
        for at, recipients in org.sends.values()
        if cap.counts(scheduled_for, at)
    ]
    counted = [members for members in counted if members]
    need = cap.max_sends
    if len(counted) < need:
        return BitMap()
    if need == 1:
        return BitMap.union(*counted)
    return _at_least(counted, need)


def _at_least(sets: list[BitMap], need: int) -> BitMap:
    """The leads in at least ``need`` of ``sets``: each lead's count kept in binary, one
    bitmap per digit (adding a set is a ripple of carries), then compared with ``need``
    from the highest digit down; O(sets x log(sets)) bitmap operations for any ``need``."""
    digits: list[BitMap] = []
    for members in sets:
        carry = members
        for j, digit in enumerate(digits):
            if not carry:
                break
            digits[j], carry = digit ^ carry, digit & carry
        else:
            if carry:
                digits.append(carry)
    greater = BitMap()
    equal = BitMap.union(*sets)  # leads counted at least once; need >= 1
    for j in range(max(len(digits), need.bit_length()) - 1, -1, -1):
        digit = digits[j] if j < len(digits) else BitMap()
        if need >> j & 1:
            equal &= digit
        else:
            greater |= equal & digit
            equal -= digit
    return greater | equal


class _EventSource:
    """Counts of a filter's events that meet its metadata conditions, read from the
    partition's event keys (the index keeps no metadata) for the leads that have the
    type at all."""

    def __init__(
        self, store: PartitionStore, partition: int, index: PartitionIndex, org: str
    ) -> None:
        self._store = store
        self._partition = partition
        self._phone_of = index.phone_of
        self._org = org

    def has(
        self, org: OrgIndex, event_filter: EventFilter, scheduled_for: int, candidates: BitMap
    ) -> BitMap:
        timeline = org.timelines.get(event_filter.event_type)
        if timeline is None:
            return BitMap()
        window = event_filter.window(scheduled_for)
        if window is None:
            maybe = timeline.ever & candidates
        else:
            maybe = timeline.within(window[0], window[1], 1, candidates)
        matches = WhereMatcher(event_filter.where)
        need = event_filter.min_count
        found = BitMap()
        for lead in maybe:
            phone = self._phone_of(lead)
            if phone is None:
                continue
            prefix = keys.event_type_prefix(self._org, phone, event_filter.event_type)
            lower, upper = (
                (prefix, keys.prefix_upper_bound(prefix))
                if window is None
                else (prefix + keys.ts_bytes(window[0]), prefix + keys.ts_bytes(window[1] + 1))
            )
            count = 0
            for _, value in self._store.iter_range(self._partition, lower, upper):
                if matches(keys.event_metadata(value)):
                    count += 1
                    if count >= need:
                        found.add(lead)
                        break
        return found


def materialize_partition(
    store: IndexedStore,
    partition: int,
    trigger: SendTrigger,
    audience_filter: AudienceFilterSpec | None,
    *,
    opt_out_type: str,
    opt_in_type: str,
) -> PartitionResult:
    """The send's recipients (in lead-id order) and counts in one partition."""
    rules = SendRules.of(
        trigger, audience_filter, opt_out_type=opt_out_type, opt_in_type=opt_in_type
    )
    evaluation = evaluate(store.index(partition), rules, store=store, partition=partition)
    return PartitionResult(evaluation.sample(len(evaluation.recipients)), evaluation.counts())


def has_event(
    org: OrgIndex, event_filter: EventFilter, scheduled_for: int, candidates: BitMap
) -> BitMap:
    """The leads among ``candidates`` that have the filter's event (before its mode)."""
    timeline = org.timelines.get(event_filter.event_type)
    if timeline is None:
        return BitMap()
    if event_filter.within_minutes is None:
        return timeline.sticky(event_filter.min_count) & candidates
    # No event is older than the epoch (as in leadstream.domain.sends.keeps).
    since = max(0, scheduled_for - event_filter.within_minutes * 60_000)
    return timeline.within(since, scheduled_for, event_filter.min_count, candidates)


def _matched(
    index: PartitionIndex, campaign: Campaign, org: str, spec: AudienceFilterSpec
) -> BitMap:
    """Members the audience filter names, by phone or by externalId."""
    matched = BitMap()
    for phone in spec.phones:
        lead = index.lead_id(org, phone)
        if lead is not None:
            matched.add(lead)
    if spec.external_ids and campaign.external_ids:
        wanted = spec.external_ids
        matched.update(lead for lead, x in campaign.external_ids.items() if x in wanted)
    return matched
