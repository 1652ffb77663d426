"""A send's share of one partition, evaluated by set algebra on the partition's index.

The contract's order, each step a bitmap operation on the campaign's members:

    audience      A  = the campaign's members
    optedOut      O  = A & the organization's opted-out leads
    audience filter  R1 = A - O, then R2 = R1 & matched (include) or R1 - matched (exclude)
    event filters    R3 = R2, then for each filter R3 &= has (include) or R3 -= has,
                     then R3 = the leads of R3 the conditions tree holds for
    frequency cap    R4 = R3 - (leads in at least maxSends of the counted sends' recipients)
    quiet hours      R5 = R4 - (leads of the zone sets quiet at T)
    holdout          R6 = R5 - (leads whose bucket is held out); splits share R6

so every count is a cardinality and no member is looked at one by one; only the packed
events of a window's two edge hours, the externalIds named by an audience filter and,
for a filter with metadata conditions (``where``) or a sequence, the stored events of the
leads that have the types at all are, and a holdout hashes each remaining lead once.
:func:`leadstream.domain.sends.SendRules.outcome` answers the same question for one lead
from its history; the property tests hold the two equal.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import cast

import msgspec
import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from leadstream.domain.buckets import Allocation, bucket_key, buckets_of, organization_secret
from leadstream.domain.conditions import (
    AllOf,
    AnyOf,
    CampaignLeaf,
    EventLeaf,
    Node,
    NotOf,
    SequenceLeaf,
    count_events,
    sequence_holds,
)
from leadstream.domain.controls import FrequencyCap, WhereMatcher, phone_zones
from leadstream.domain.policies.us_tcpa import UsTcpaPolicy, decision_key
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

__all__ = [
    "Evaluation",
    "capped",
    "evaluate",
    "has_event",
    "materialize_partition",
    "partition_key",
]

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
    held_out: BitMap = field(default_factory=BitMap)
    # The recipients of each split, in the trigger's order (empty without splits).
    variants: dict[str, BitMap] = field(default_factory=dict)

    def counts(self) -> Counts:
        return Counts(
            audience=len(self.audience),
            opted_out=len(self.opted_out),
            dropped_by_audience_filter=len(self.dropped_by_audience_filter),
            dropped_by_event_filter=len(self.dropped_by_event_filter),
            dropped_by_frequency_cap=len(self.dropped_by_frequency_cap),
            dropped_by_quiet_hours=len(self.dropped_by_quiet_hours),
            held_out=len(self.held_out),
        )

    def variant_of(self, lead: int) -> str | None:
        for name, members in self.variants.items():
            if lead in members:
                return name
        return None

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
        entries = cast("list[bytes]", gathered)
        if self.variants:
            entries = self._with_variants(np.frombuffer(ids, dtype=np.uint32), entries)
        return entries

    def _with_variants(self, ids: npt.NDArray[np.uint32], entries: list[bytes]) -> list[bytes]:
        """Each entry with its split's name: the recipients' splits found at once (a
        sorted search per split), then one pass that ends each entry with its name."""
        which = np.zeros(len(ids), np.int64)
        tails = [b"}"]
        for name, members in self.variants.items():
            tails.append(b',"variant":' + msgspec.json.encode(name) + b"}")
            if members:
                found = np.frombuffer(members.to_array(), dtype=np.uint32)
                which[np.searchsorted(ids, found)] = len(tails) - 1
        return [entry[:-1] + tails[k] for entry, k in zip(entries, which.tolist(), strict=True)]

    def sample(self, n: int) -> list[tuple[str, str | None, str | None]]:
        """``(phoneE164, externalId, variant)`` of the first ``n`` recipients (in lead-id
        order)."""
        out: list[tuple[str, str | None, str | None]] = []
        for lead in self.recipients:
            if len(out) >= n:
                break
            entry = self.campaign.entries.get(lead) or self.index.plain[lead]
            if entry is not None:  # always: every member has its plain entry
                variant = self.variant_of(lead) if self.variants else None
                out.append((*self.index.codec.decode(entry), variant))
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
    tree = trigger.tree()
    if tree is not None and recipients:
        if store is None:
            raise ValueError("a send with conditions needs the partition's store")
        recipients = _Tree(store, partition, index, org, trigger.organization_id, at).run(
            tree.root, recipients
        )
    by_events = recipients
    if trigger.frequency_cap is not None and recipients:
        recipients = recipients - capped(org, trigger.frequency_cap, at, recipients)
    by_cap = recipients
    if trigger.quiet_hours is not None and recipients:
        rule = trigger.quiet_hours
        quiet = BitMap()
        if rule.start is not None:
            quiet = index.zones.quiet(
                recipients, lambda zones: rule.decide(zones, at).quiet, index.phone_of, phone_zones
            )
        if rule.policy is not None:
            quiet |= policy_quiet(rules.quiet_policy(), recipients - quiet, index.phone_of, at)
        recipients = recipients - quiet
    by_quiet = recipients
    held_out: BitMap = BitMap()
    variants: dict[str, BitMap] = {}
    allocation = trigger.allocation()
    if allocation is not None and recipients:
        if store is None:
            raise ValueError("a send with a holdout or splits needs the partition's store")
        held_out, variants = _allocate(store, partition, index, trigger, allocation, recipients)
        recipients = recipients - held_out
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
        by_cap - by_quiet,
        held_out,
        variants,
    )


def _allocate(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    trigger: SendTrigger,
    allocation: Allocation,
    leads: BitMap,
) -> tuple[BitMap, dict[str, BitMap]]:
    """The ``leads`` held out, and the others by split: every lead's bucket at once, from
    the digits of its phone (the partition keeps the names as integers)."""
    org = trigger.organization_id
    key = bucket_key(organization_secret(partition_key(store, partition), org), org, trigger.salt)
    ids = np.frombuffer(leads.to_array(), dtype=np.uint32)
    numbers = index.ids.phone_numbers(ids)
    odd = np.flatnonzero(numbers < 0)
    for at in odd:  # names not kept as integers: from the member's entry
        phone = index.phone_of(int(ids[at]))
        numbers[at] = int(phone[1:]) if phone is not None else 0
    buckets = buckets_of(key, numbers)

    def leads_in(mask: npt.NDArray[np.bool_]) -> BitMap:
        return BitMap(array("I", ids[mask].tobytes()))

    held = leads_in(buckets < allocation.held)
    return held, {
        name: leads_in((buckets >= start) & (buckets < end))
        for name, start, end in allocation.ranges
    }


def policy_quiet(
    policy: UsTcpaPolicy, leads: BitMap, phone_of: Callable[[int], str | None], at: int
) -> BitMap:
    """The ``leads`` the policy holds quiet at ``at``: decided once per group of numbers
    that it decides alike (:func:`decision_key`), from one number of the group."""
    groups: dict[str, list[int]] = {}
    first: dict[str, str] = {}
    for lead in leads:
        phone = phone_of(lead)
        key = decision_key(phone) if phone is not None else None
        if key is None or phone is None:  # not a US number: the policy says nothing
            continue
        members = groups.get(key)
        if members is None:
            members = groups[key] = []
            first[key] = phone
        members.append(lead)
    quiet = BitMap()
    for key, members in groups.items():
        decision = policy.decide(first[key], at)
        if decision is not None and decision.quiet:
            quiet.update(members)
    return quiet


def partition_key(store: PartitionStore, partition: int) -> bytes:
    """The partition's key of buckets (made with its first membership)."""
    key = store.get(partition, keys.bucket_key_key())
    if key is None:
        raise ValueError(f"partition {partition} holds members but no bucket key")
    return key


class _Tree:
    """A conditions tree over a set of candidates, by set algebra on the partition's
    timelines; a ``where`` or a sequence reads the stored events of the candidates that
    have the types at all, after the cheaper conditions narrowed them."""

    def __init__(
        self,
        store: PartitionStore,
        partition: int,
        index: PartitionIndex,
        org: OrgIndex,
        org_name: str,
        at: int,
    ) -> None:
        self._store = store
        self._partition = partition
        self._phone_of = index.phone_of
        self._org = org
        self._name = org_name
        self._at = at

    @staticmethod
    def _reads(node: Node) -> bool:
        """Whether evaluating the node reads stored events (the costly conditions)."""
        if isinstance(node, AllOf | AnyOf):
            return any(_Tree._reads(child) for child in node.children)
        if isinstance(node, NotOf):
            return _Tree._reads(node.child)
        return isinstance(node, SequenceLeaf) or (isinstance(node, EventLeaf) and bool(node.where))

    def run(self, node: Node, candidates: BitMap) -> BitMap:
        """The ``candidates`` the node holds for."""
        if isinstance(node, AllOf):
            found = candidates
            for child in sorted(node.children, key=self._reads):
                if not found:
                    break
                found = self.run(child, found)
            return found
        if isinstance(node, AnyOf):
            found, rest = BitMap(), candidates
            for child in sorted(node.children, key=self._reads):
                if not rest:
                    break
                got = self.run(child, rest)
                found |= got
                rest = rest - got
            return found
        if isinstance(node, NotOf):
            return candidates - self.run(node.child, candidates)
        if isinstance(node, CampaignLeaf):
            campaign = self._org.campaigns.get(node.campaign_id)
            return campaign.members & candidates if campaign is not None else BitMap()
        if isinstance(node, EventLeaf):
            return self._event(node, candidates)
        return self._sequence(node, candidates)

    def _event(self, leaf: EventLeaf, candidates: BitMap) -> BitMap:
        timeline = self._org.timelines.get(leaf.event_type)
        if timeline is None:  # nobody has one: the count is 0
            return candidates if leaf.min_count == 0 else BitMap()
        bounds = leaf.bounds(self._at)
        if leaf.where:
            maybe = (
                timeline.ever & candidates
                if bounds is None
                else timeline.within(bounds[0], bounds[1], 1, candidates)
            )
            limit = (leaf.max_count if leaf.max_count is not None else leaf.min_count) + 1
            ok = BitMap(
                lead
                for lead in maybe
                if leaf.in_range(
                    count_events(leaf, self._read(lead, leaf.event_type, bounds), self._at, limit)
                )
            )
            return (candidates - maybe) | ok if leaf.min_count == 0 else ok

        def at_least(k: int) -> BitMap:
            if k <= 0:
                return candidates
            if bounds is None:
                return timeline.sticky(k) & candidates
            return timeline.within(bounds[0], bounds[1], k, candidates)

        found = at_least(leaf.min_count)
        if leaf.max_count is not None and found:
            found = found - at_least(leaf.max_count + 1)
        return found

    def _sequence(self, leaf: SequenceLeaf, candidates: BitMap) -> BitMap:
        first = self._org.timelines.get(leaf.first.event_type)
        if first is None:
            return BitMap()
        at = self._at
        since = 0 if leaf.first_within is None else max(0, at - leaf.first_within * 60_000)
        starts = first.within(since, at, 1, candidates)
        then = self._org.timelines.get(leaf.then.event_type)
        ended = then.within(since, at, 1, starts) if then is not None else BitMap()
        found = BitMap()
        if leaf.then_absent and not leaf.first.where and leaf.same_key is None:
            found = starts - ended  # any A event, and no B event at all
            starts = ended
        elif not leaf.then_absent:
            starts = ended  # a pair needs both
        window = (since, at)
        if not leaf.first.where and not leaf.then.where and leaf.same_key is None:
            # Times alone decide: from the timelines' packed events, no store read.
            a_times = first.times(since, at, starts)
            b_times = then.times(since, at, starts & ended) if then is not None else {}
            for lead in starts:
                a_keys: list[tuple[int, bytes | None]] = [(t, None) for t in a_times.get(lead, ())]
                b_keys: list[tuple[int, bytes | None]] = [(t, None) for t in b_times.get(lead, ())]
                if sequence_holds(leaf, a_keys, b_keys, at):
                    found.add(lead)
            return found
        for lead in starts:
            a = self._read(lead, leaf.first.event_type, window)
            b = self._read(lead, leaf.then.event_type, window) if lead in ended else []
            if sequence_holds(leaf, a, b, at):
                found.add(lead)
        return found

    def _read(
        self, lead: int, event_type: str, bounds: tuple[int, int] | None
    ) -> list[tuple[int, bytes | None]]:
        """The lead's event keys of a type, ``(occurredAt, metadata)`` ascending, those in
        ``bounds`` (None: all)."""
        phone = self._phone_of(lead)
        if phone is None:
            return []
        prefix = keys.event_type_prefix(self._name, phone, event_type)
        if bounds is None:
            lower, upper = prefix, keys.prefix_upper_bound(prefix)
        else:
            if bounds[1] < bounds[0]:
                return []
            lower, upper = prefix + keys.ts_bytes(bounds[0]), prefix + keys.ts_bytes(bounds[1] + 1)
        cut = len(prefix)
        return [
            (int.from_bytes(key[cut : cut + 8], "big"), keys.event_metadata(value))
            for key, value in self._store.iter_range(self._partition, lower, upper)
        ]


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
    sample = evaluation.sample(len(evaluation.recipients))
    return PartitionResult([(phone, x) for phone, x, _ in sample], evaluation.counts())


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
