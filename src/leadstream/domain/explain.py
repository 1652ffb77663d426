"""Why a lead was, or was not, in a send: the record a materialization leaves in each
partition, and the explanation read from it.

When a partition materializes its share of a send it records (key ``X org sendId``) the
trigger, the moment, the audience filter's mode and, as compressed bitmaps of lead ids,
the members each step dropped and the recipients. Explaining a lead is then a lookup of
its id in those bitmaps (what the send did) and one evaluation of its history today with
:class:`~leadstream.domain.sends.SendRules`, which names the deciding facts. When the two
differ (events or memberships arrived after the moment) the explanation says so and
gives both. Records older than ``LEADSTREAM_SEND_RETENTION_DAYS`` are deleted by the
compaction pass (:func:`expire_send_records`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from pyroaring import BitMap

from leadstream.domain.lead_index import LeadHistory, lead_history
from leadstream.domain.normalize import format_ms
from leadstream.domain.sends import EventFilter, SendRules, SendTrigger
from leadstream.index.evaluate import Evaluation
from leadstream.index.partition import PartitionIndex
from leadstream.state import keys
from leadstream.state.port import PartitionStore, iter_prefix

__all__ = [
    "Explanation",
    "SendRecord",
    "Step",
    "explain_lead",
    "expire_send_records",
    "read_send_record",
    "record_send",
]

DAY_MS = 86_400_000


class Step:
    """Where a lead left a send (the contract's names)."""

    NOT_IN_AUDIENCE = "notInAudience"
    OPTED_OUT = "optedOut"
    AUDIENCE_FILTER = "audienceFilter"
    EVENT_FILTER = "eventFilter"
    RECIPIENT = "recipient"


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

    def named_by_filter(self, lead: int | None) -> bool:
        return lead is not None and lead in BitMap.deserialize(self.audience_filter_named)

    def step_of(self, lead: int | None) -> str:
        """What the send did to lead id ``lead`` (None: a phone this partition never saw)."""
        if lead is None:
            return Step.NOT_IN_AUDIENCE
        for step, bitmap in (
            (Step.RECIPIENT, self.recipients),
            (Step.OPTED_OUT, self.opted_out),
            (Step.AUDIENCE_FILTER, self.dropped_by_audience_filter),
            (Step.EVENT_FILTER, self.dropped_by_event_filter),
        ):
            if lead in BitMap.deserialize(bitmap):
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
    )
    key = keys.send_record_key(trigger.organization_id, trigger.send_id)
    store.put(partition, key, _encoder.encode(record))


def read_send_record(
    store: PartitionStore, partition: int, org: str, send: str
) -> SendRecord | None:
    value = store.get(partition, keys.send_record_key(org, send))
    return None if value is None else _record_decoder.decode(value)


def expire_send_records(
    store: PartitionStore, partition: int, *, now_ms: int, retention_days: int
) -> int:
    """Delete the records of sends materialized more than ``retention_days`` ago."""
    horizon = now_ms - retention_days * DAY_MS
    old = [
        key
        for key, value in iter_prefix(store, partition, keys.send_record_prefix())
        if _record_decoder.decode(value).materialized_at < horizon
    ]
    for key in old:
        store.delete(partition, key)
    return len(old)


@dataclass(frozen=True, slots=True)
class Explanation:
    sent: bool
    step: str
    detail: dict[str, Any]
    consistent: bool
    # Today's evaluation, when it differs from what the send did.
    now_step: str | None = None
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
) -> Explanation:
    trigger = record.trigger
    org = trigger.organization_id
    lead = index.lead_id(org, phone)
    then = record.step_of(lead)
    history = lead_history(store, partition, org, phone)
    member = store.get(partition, keys.member_key(org, trigger.campaign_id, phone)) is not None
    rules = SendRules(trigger, None, opt_out_type, opt_in_type)
    mode = record.audience_filter_mode
    dropped_by_filter = mode is not None and record.named_by_filter(lead) != (mode == "include")
    now, detail = _evaluate_today(rules, history, member, dropped_by_filter, mode)
    if now == then:
        return Explanation(then == Step.RECIPIENT, then, detail, True)
    recorded = {
        "message": f"at materialization the lead left at step {then}; today's state says {now}",
    }
    return Explanation(then == Step.RECIPIENT, then, recorded, False, now, detail)


def _evaluate_today(
    rules: SendRules,
    history: LeadHistory,
    member: bool,
    dropped_by_filter: bool,
    filter_mode: str | None,
) -> tuple[str, dict[str, Any]]:
    """The lead's step for the send on today's state, and the facts that decide it. The
    audience filter is the one the send applied, as the leads it named then (a lead that
    joined the campaign since with a named externalId is not among them)."""
    trigger = rules.trigger
    if not member:
        return Step.NOT_IN_AUDIENCE, {
            "message": f"not a member of campaign {trigger.campaign_id}",
            "campaignId": trigger.campaign_id,
        }
    opt = history.opt_state(rules.opt_out_type, rules.opt_in_type)
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
    return Step.RECIPIENT, {
        "message": "kept by every step",
        "eventFilters": [{k: v for k, v in f.items() if k != "keeps"} for f in filters],
    }


def _filter_facts(
    event_filter: EventFilter, history: LeadHistory, scheduled_for: int
) -> dict[str, Any]:
    since = None
    if event_filter.within_minutes is not None:
        since = max(0, scheduled_for - event_filter.within_minutes * 60_000)
    type_b = event_filter.event_type.encode()
    until = scheduled_for if since is not None else None
    count = history.count(type_b, since_ms=since, until_ms=until)
    times = [
        ts
        for ts in history.times.get(type_b, ())
        if (since is None or since <= ts) and (until is None or ts <= until)
    ]
    has = count >= event_filter.min_count
    described: dict[str, Any] = {"mode": event_filter.mode, "eventType": event_filter.event_type}
    if event_filter.within_minutes is not None:
        described["within"] = {"minutes": event_filter.within_minutes}
    described["minCount"] = event_filter.min_count
    facts: dict[str, Any] = {
        "eventFilter": described,
        "matchingEvents": count,
        "occurredAt": [format_ms(ts) for ts in times[-20:]],
        "keeps": has if event_filter.mode == "include" else not has,
    }
    folded = history.folded.get(type_b)
    if since is None and folded is not None:
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
