"""A send's share of one partition, evaluated by set algebra on the partition's index.

The contract's order, each step a bitmap operation on the campaign's members:

    audience      A  = the campaign's members
    optedOut      O  = A & the organization's opted-out leads
    audience filter  R1 = A - O, then R2 = R1 & matched (include) or R1 - matched (exclude)
    event filters    R3 = R2, then for each filter R3 &= has (include) or R3 -= has

so every count is a cardinality and no member is looked at one by one; only the packed
events of a window's two edge hours and the externalIds named by an audience filter are.
:func:`leadstream.domain.sends.SendRules.outcome` answers the same question for one lead
from its history; the property tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import cast

from pyroaring import BitMap

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
from leadstream.wire.records import decode_recipient

__all__ = ["Evaluation", "evaluate", "has_event", "materialize_partition"]

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

    def counts(self) -> Counts:
        return Counts(
            audience=len(self.audience),
            opted_out=len(self.opted_out),
            dropped_by_audience_filter=len(self.dropped_by_audience_filter),
            dropped_by_event_filter=len(self.dropped_by_event_filter),
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
                out.append(decode_recipient(entry))
        return out


def evaluate(index: PartitionIndex, rules: SendRules) -> Evaluation:
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
    for event_filter in trigger.event_filters:
        if not recipients:
            break
        has = has_event(org, event_filter, trigger.scheduled_for, recipients)
        recipients = recipients & has if event_filter.mode == "include" else recipients - has
    return Evaluation(
        audience,
        opted_out,
        kept - by_filter,
        by_filter - recipients,
        recipients,
        campaign,
        index,
        named,
    )


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
    evaluation = evaluate(store.index(partition), rules)
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
