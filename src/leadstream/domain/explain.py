"""Why a lead was, or was not, in a send: the record a materialization leaves in each
partition, and the explanation read from it.

When a partition materializes its share of a send it records (key ``X org sendId``) the
trigger, the moment, the audience filter's mode and, as compressed bitmaps of lead ids,
the members each step dropped and the recipients. Explaining a lead is then a lookup of
its id in those bitmaps (what the send did) and one evaluation of its history today with
:class:`~leadstream.domain.sends.SendRules`, which names the deciding facts. When the two
differ (events or memberships arrived after the moment) the explanation says so and
gives both.

Once the partition's output is committed, the send's recipients also go under
``H org sendId`` (:func:`deliver_send`): the send history a frequency cap counts.
Records and history older than ``LEADSTREAM_SEND_RETENTION_DAYS`` are deleted by the
compaction pass (:func:`expire_send_records`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
from pyroaring import BitMap

from leadstream.domain.buckets import bucket_of, organization_secret
from leadstream.domain.conditions import holds, verdicts
from leadstream.domain.controls import WhereMatcher, phone_zones
from leadstream.domain.evaluate import Evaluation
from leadstream.domain.lead_index import LeadHistory, lead_history
from leadstream.domain.normalize import format_ms
from leadstream.domain.policies.us_tcpa import UsTcpaPolicy
from leadstream.domain.sends import EventFilter, SendRules, SendTrigger, lead_events
from leadstream.index.partition import PartitionIndex
from leadstream.index.table import IndexedStore
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = [
    "Explanation",
    "SendRecord",
    "Step",
    "StepName",
    "deliver_send",
    "explain_lead",
    "received_sends",
    "expire_send_records",
    "read_send_record",
    "record_send",
]

DAY_MS = 86_400_000


StepName = Literal[
    "notInAudience",
    "optedOut",
    "audienceFilter",
    "eventFilter",
    "frequencyCap",
    "quietHours",
    "heldOut",
    "recipient",
]


class Step:
    """Where a lead left a send (the contract's names)."""

    NOT_IN_AUDIENCE: Final[StepName] = "notInAudience"
    OPTED_OUT: Final[StepName] = "optedOut"
    AUDIENCE_FILTER: Final[StepName] = "audienceFilter"
    EVENT_FILTER: Final[StepName] = "eventFilter"
    FREQUENCY_CAP: Final[StepName] = "frequencyCap"
    QUIET_HOURS: Final[StepName] = "quietHours"
    HELD_OUT: Final[StepName] = "heldOut"
    RECIPIENT: Final[StepName] = "recipient"


class SendRecord(msgspec.Struct, array_like=True, frozen=True):
    trigger: SendTrigger
    materialized_at: int
    audience_filter_mode: str | None
    opted_out: bytes
    dropped_by_audience_filter: bytes
    dropped_by_event_filter: bytes
    recipients: bytes
    # The leads the audience filter named (serialized bitmap; empty without a filter).
    audience_filter_named: bytes
    # Records written before the compliance controls have neither.
    dropped_by_frequency_cap: bytes = b""
    dropped_by_quiet_hours: bytes = b""
    # Records written before holdouts have none.
    held_out: bytes = b""

    def named_by_filter(self, lead: int | None) -> bool:
        return lead is not None and lead in BitMap.deserialize(self.audience_filter_named)

    def step_of(self, lead: int | None) -> StepName:
        """What the send did to lead id ``lead`` (None: a phone this partition never saw)."""
        if lead is None:
            return Step.NOT_IN_AUDIENCE
        for step, bitmap in (
            (Step.RECIPIENT, self.recipients),
            (Step.OPTED_OUT, self.opted_out),
            (Step.AUDIENCE_FILTER, self.dropped_by_audience_filter),
            (Step.EVENT_FILTER, self.dropped_by_event_filter),
            (Step.FREQUENCY_CAP, self.dropped_by_frequency_cap),
            (Step.QUIET_HOURS, self.dropped_by_quiet_hours),
            (Step.HELD_OUT, self.held_out),
        ):
            if bitmap and lead in BitMap.deserialize(bitmap):
                return step
        return Step.NOT_IN_AUDIENCE


_record_decoder = msgspec.msgpack.Decoder(SendRecord)
_encoder = msgspec.msgpack.Encoder()


def record_send(
    store: PartitionStore,
    partition: int,
    rules: SendRules,
    evaluation: Evaluation,
    *,
    materialized_at: int,
) -> None:
    trigger = rules.trigger
    record = SendRecord(
        trigger,
        materialized_at,
        rules.audience_filter.mode if rules.audience_filter is not None else None,
        evaluation.opted_out.serialize(),
        evaluation.dropped_by_audience_filter.serialize(),
        evaluation.dropped_by_event_filter.serialize(),
        evaluation.recipients.serialize(),
        (evaluation.named if evaluation.named is not None else BitMap()).serialize(),
        evaluation.dropped_by_frequency_cap.serialize(),
        evaluation.dropped_by_quiet_hours.serialize(),
        evaluation.held_out.serialize(),
    )
    key = keys.send_record_key(trigger.organization_id, trigger.send_id)
    store.put(partition, key, _encoder.encode(record))


def deliver_send(store: IndexedStore, partition: int, org: str, send: str) -> None:
    """The partition's output of the send is committed: from now on its recipients count
    against frequency caps (an ``H`` key, from the send's record). Idempotent, so the
    materializer repeats it when a crash came between the commit and this."""
    key = keys.history_key(org, send)
    if store.get(partition, key) is not None:
        return
    record = read_send_record(store, partition, org, send)
    if record is None:  # the record expired meanwhile: nothing left to count
        return
    at = record.trigger.scheduled_for
    with store.updating(partition) as index:
        store.put(partition, key, keys.history_value(at, record.recipients))
        index.send_delivered(org, send, at, BitMap.deserialize(record.recipients))


def received_sends(
    store: PartitionStore, partition: int, org: str, lead: int | None
) -> list[tuple[str, int]]:
    """``(sendId, scheduledFor)`` of the organization's committed sends that messaged the
    lead (id), oldest first."""
    if lead is None:
        return []
    out = []
    prefix = keys.history_key(org, "")
    for key, value in iter_prefix(store, partition, prefix):
        at, recipients = keys.decode_history(value)
        if lead in BitMap.deserialize(recipients):
            out.append((key[len(prefix) :].decode(), at))
    return sorted(out, key=lambda s: (s[1], s[0]))


def read_send_record(
    store: PartitionStore, partition: int, org: str, send: str
) -> SendRecord | None:
    value = store.get(partition, keys.send_record_key(org, send))
    return None if value is None else _record_decoder.decode(value)


def expire_send_records(
    store: IndexedStore, partition: int, *, now_ms: int, retention_days: int
) -> int:
    """Delete the records of sends materialized more than ``retention_days`` ago, and the
    send history of sends scheduled for before then."""
    horizon = now_ms - retention_days * DAY_MS
    old = [
        key
        for key, value in iter_prefix(store, partition, keys.send_record_prefix())
        if _record_decoder.decode(value).materialized_at < horizon
    ]
    for key in old:
        store.delete(partition, key)
    gone = [
        key
        for key, value in iter_prefix(store, partition, keys.history_prefix())
        if keys.decode_history(value)[0] < horizon
    ]
    with store.updating(partition) as index:
        for key in gone:
            store.delete(partition, key)
            org, send = key[2:].split(keys.SEP, 1)
            index.send_forgotten(org.decode(), send.decode())
    return len(old)


@dataclass(frozen=True, slots=True)
class Explanation:
    sent: bool
    step: StepName
    detail: dict[str, Any]
    consistent: bool
    # Today's evaluation, when it differs from what the send did.
    now_step: StepName | None = None
    now_detail: dict[str, Any] | None = None


def explain_lead(
    store: PartitionStore,
    partition: int,
    index: PartitionIndex,
    record: SendRecord,
    phone: str,
    *,
    opt_out_type: str,
    opt_in_type: str,
    policy: UsTcpaPolicy | None = None,
) -> Explanation:
    trigger = record.trigger
    org = trigger.organization_id
    lead = index.lead_id(org, phone)
    then = record.step_of(lead)
    history = lead_history(store, partition, org, phone, index=index)
    member = store.get(partition, keys.member_key(org, trigger.campaign_id, phone)) is not None
    rules = SendRules(trigger, None, opt_out_type, opt_in_type, policy)
    mode = record.audience_filter_mode
    dropped_by_filter = mode is not None and record.named_by_filter(lead) != (mode == "include")

    def member_of(campaign: str) -> bool:
        return store.get(partition, keys.member_key(org, campaign, phone)) is not None

    bucket = None
    if trigger.allocation() is not None:
        key = store.get(partition, keys.bucket_key_key())
        if key is not None:  # none: the partition never had a member, nor has the lead
            bucket = bucket_of(organization_secret(key, org), org, phone, trigger.salt)
    today = _Today(
        rules, history, phone, received_sends(store, partition, org, lead), member_of, bucket
    )
    now, detail = today.evaluate(member, dropped_by_filter, mode)
    if now == then:
        return Explanation(then == Step.RECIPIENT, then, detail, True)
    recorded = {
        "message": f"at materialization the lead left at step {then}; today's state says {now}",
    }
    return Explanation(then == Step.RECIPIENT, then, recorded, False, now, detail)


@dataclass(frozen=True, slots=True)
class _Today:
    """A lead's facts today: its history, its phone, the committed sends it received."""

    rules: SendRules
    history: LeadHistory
    phone: str
    received: list[tuple[str, int]]
    member_of: Callable[[str], bool]
    bucket: int | None

    def evaluate(
        self, member: bool, dropped_by_filter: bool, filter_mode: str | None
    ) -> tuple[StepName, dict[str, Any]]:
        step, detail = _evaluate_today(
            self.rules, self.history, member, dropped_by_filter, filter_mode, self.member_of
        )
        if step != Step.RECIPIENT:
            return step, detail
        trigger = self.rules.trigger
        at = trigger.scheduled_for
        cap = trigger.frequency_cap
        if cap is not None:
            counted = [(s, t) for s, t in self.received if cap.counts(at, t)]
            facts = {
                "maxSends": cap.max_sends,
                "withinHours": cap.within_hours,
                "sends": [{"sendId": s, "scheduledFor": format_ms(t)} for s, t in counted],
            }
            if len(counted) >= cap.max_sends:
                message = (
                    f"received {len(counted)} sends in the {cap.within_hours} hours before"
                    f" this one; the cap is {cap.max_sends}"
                )
                return Step.FREQUENCY_CAP, {"message": message, **facts}
            detail["frequencyCap"] = facts
        quiet = trigger.quiet_hours
        if quiet is not None:
            decision = quiet.decide_with(
                self.rules.quiet_policy(), self.phone, phone_zones(self.phone), at
            )
            facts = {
                **quiet.describe(),
                # The zone that decided (the rule's own timeZone is in the rule above).
                "timeZone": decision.zone,
                "localTime": decision.local_time,
                # What decided: "window" (start/end) or the policy's row.
                "rule": decision.rule,
            }
            if decision.quiet:
                where = decision.zone or "no known time zone (treated as quiet)"
                message = f"local time {decision.local_time or '?'} in {where} is in quiet hours"
                if decision.rule not in (None, "window"):
                    message += f" (us-tcpa rule {decision.rule})"
                return Step.QUIET_HOURS, {"message": message, **facts}
            detail["quietHours"] = facts
        allocation = trigger.allocation()
        if allocation is not None and self.bucket is not None:
            held, variant = allocation.variant(self.bucket)
            if held:
                message = (
                    f"bucket {self.bucket} is in the holdout (buckets 0 to {allocation.held - 1})"
                )
                return Step.HELD_OUT, {"message": message, "bucket": self.bucket}
            detail["bucket"] = self.bucket
            detail["variant"] = variant
        return step, detail


def _evaluate_today(
    rules: SendRules,
    history: LeadHistory,
    member: bool,
    dropped_by_filter: bool,
    filter_mode: str | None,
    member_of: Callable[[str], bool],
) -> tuple[StepName, dict[str, Any]]:
    """The lead's step for the send on today's state, and the facts that decide it, up to
    the event filters. The audience filter is the one the send applied, as the leads it
    named then (a lead that joined the campaign since with a named externalId is not among
    them)."""
    trigger = rules.trigger
    if not member:
        return Step.NOT_IN_AUDIENCE, {
            "message": f"not a member of campaign {trigger.campaign_id}",
            "campaignId": trigger.campaign_id,
        }
    opt = history.opt_state(rules.opt_out_type, rules.opt_in_type)
    if opt.opted_out and opt.latest_at is not None and opt.latest_at == history.suppressed_at:
        return Step.OPTED_OUT, {
            "message": "the phone was erased while opted out; its suppression keeps it opted out",
            "suppressedAt": format_ms(opt.latest_at),
        }
    if opt.opted_out:
        return Step.OPTED_OUT, {
            "message": f"latest opt event is {opt.latest_type}",
            "eventType": opt.latest_type,
            "occurredAt": format_ms(opt.latest_at) if opt.latest_at is not None else None,
        }
    if dropped_by_filter:
        named = "does not name" if filter_mode == "include" else "names"
        return Step.AUDIENCE_FILTER, {
            "message": f"the send's {filter_mode} audience filter {named} this lead",
            "mode": filter_mode,
        }
    filters = [_filter_facts(f, history, trigger.scheduled_for) for f in trigger.event_filters]
    for facts in filters:
        if not facts["keeps"]:
            return Step.EVENT_FILTER, {
                "message": _dropped_message(facts),
                **{k: v for k, v in facts.items() if k != "keeps"},
            }
    kept: dict[str, Any] = {
        "message": "kept by every step",
        "eventFilters": [{k: v for k, v in f.items() if k != "keeps"} for f in filters],
    }
    tree = trigger.tree()
    if tree is not None:
        lead = lead_events(history, member_of)
        leaves = verdicts(tree, lead, trigger.scheduled_for)
        if not holds(tree.root, lead, trigger.scheduled_for):
            failed = [v["path"] for v in leaves if not v["holds"]]
            return Step.EVENT_FILTER, {
                "message": "the send's conditions do not hold; conditions not met: "
                + ", ".join(failed[:8])
                + (" ..." if len(failed) > 8 else ""),
                "conditions": leaves,
            }
        kept["conditions"] = leaves
    return Step.RECIPIENT, kept


def _filter_facts(
    event_filter: EventFilter, history: LeadHistory, scheduled_for: int
) -> dict[str, Any]:
    since = None
    if event_filter.within_minutes is not None:
        since = max(0, scheduled_for - event_filter.within_minutes * 60_000)
    type_b = event_filter.event_type.encode()
    until = scheduled_for if since is not None else None
    where = WhereMatcher(event_filter.where) if event_filter.where else None
    count = history.count(type_b, since_ms=since, until_ms=until, where=where)
    all_times = history.times.get(type_b, [])
    metadata = history.metadata.get(type_b) or [None] * len(all_times)
    times = [
        ts
        for ts, meta in zip(all_times, metadata, strict=True)
        if (since is None or since <= ts)
        and (until is None or ts <= until)
        and (where is None or where(meta))
    ]
    has = count >= event_filter.min_count
    described: dict[str, Any] = {"mode": event_filter.mode, "eventType": event_filter.event_type}
    if event_filter.within_minutes is not None:
        described["within"] = {"minutes": event_filter.within_minutes}
    described["minCount"] = event_filter.min_count
    if event_filter.where:
        described["where"] = {
            k: v[0] if len(v) == 1 else {"in": list(v)} for k, v in event_filter.where
        }
    facts: dict[str, Any] = {
        "eventFilter": described,
        "matchingEvents": count,
        "occurredAt": [format_ms(ts) for ts in times[-20:]],
        "keeps": has if event_filter.mode == "include" else not has,
    }
    folded = history.folded.get(type_b)
    if since is None and folded is not None and where is None:
        facts["foldedEvents"] = folded[0]
    return facts


def _dropped_message(facts: dict[str, Any]) -> str:
    f = facts["eventFilter"]
    where = f" within {f['within']['minutes']} minutes" if "within" in f else ""
    if f["mode"] == "include":
        return (
            f"include {f['eventType']}{where}: {facts['matchingEvents']} matching events,"
            f" {f['minCount']} needed"
        )
    return f"exclude {f['eventType']}{where}: {facts['matchingEvents']} matching events"
