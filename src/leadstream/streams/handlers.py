"""What each lead-keyed command does to its partition: one handler per command type.

A handler takes the partition's store, where the command was read (:class:`Arrival`) and
the command, writes the partition's state through the store port, and returns what the
apply agent must do next (:class:`Effects`): commands to send on, replies for the HTTP
API, counts for the metrics. Handlers never send anything themselves, so each is a plain
function tested on the in-memory store (tests/unit/test_handlers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leadstream.domain.erase import Erased, erase_lead
from leadstream.domain.ingest import retention_horizon
from leadstream.domain.lead_index import apply_events
from leadstream.domain.send_state import (
    Claim,
    FilterDecision,
    apply_members,
    claim_trigger,
    decide_filter,
    store_filter_part,
    store_pending,
)
from leadstream.domain.sends import AudienceFilterSpec, SendId
from leadstream.index.table import IndexedStore
from leadstream.wire.commands import (
    ApplyReply,
    BroadcastTrigger,
    ClaimTrigger,
    Command,
    EraseLead,
    EraseReply,
    EventsBatch,
    FilterPart,
    FilterReply,
    FilterRequest,
    MembersBatch,
    Reply,
    filter_commands,
)

__all__ = ["HANDLERS", "ApplyRules", "Arrival", "Effects", "handle"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where and when a command was read: its partition and offset, the broker's timestamp
    of it (the same on every replay) and the time it is applied."""

    partition: int
    offset: int
    timestamp_ms: int
    now_ms: int

    @property
    def seq(self) -> int:
        """A number unique to this message, ordered within its partition."""
        return (self.partition << 48) | self.offset


@dataclass(frozen=True, slots=True)
class ApplyRules:
    """The settings the handlers need."""

    partitions: int
    event_retention_days: int


@dataclass(slots=True)
class Effects:
    """What applying one command asks of the agent."""

    # Lead-keyed commands to send on, each to its partition.
    commands: list[tuple[int, Command]] = field(default_factory=list)
    # Answers for an HTTP request waiting on the replies topic.
    replies: list[Reply] = field(default_factory=list)
    inserted: int = 0
    duplicates: int = 0
    # Audience member operations applied.
    members: int = 0
    # A send is held in this partition now: the materializer should look.
    held: bool = False
    # A trigger for a send already claimed (the first one wins): ignored, to be counted.
    duplicate_trigger: SendId | None = None
    # A lead was erased (for the audit log; its phone is not in here).
    erased: Erased | None = None


def on_events(store: IndexedStore, at: Arrival, cmd: EventsBatch, rules: ApplyRules) -> Effects:
    horizon = retention_horizon(at.now_ms, rules.event_retention_days)
    result = apply_events(
        store,
        at.partition,
        cmd.events,
        horizon_ms=horizon,
        now_ms=at.now_ms,
        logged_ms=at.timestamp_ms,
    )
    replies: list[Reply] = []
    if cmd.reply_to is not None:
        replies.append(ApplyReply(cmd.reply_to, result.inserted, result.duplicates))
    return Effects(replies=replies, inserted=result.inserted, duplicates=result.duplicates)


def on_members(store: IndexedStore, at: Arrival, cmd: MembersBatch, rules: ApplyRules) -> Effects:
    return Effects(members=apply_members(store, at.partition, cmd.ops, group=at.timestamp_ms))


def on_claim(store: IndexedStore, at: Arrival, cmd: ClaimTrigger, rules: ApplyRules) -> Effects:
    """In the send's home partition: the first trigger claims the send and is passed on to
    every partition; a later one is only counted."""
    if claim_trigger(store, at.partition, cmd.send) is Claim.DUPLICATE:
        trigger = cmd.send.trigger
        return Effects(duplicate_trigger=SendId(trigger.organization_id, trigger.send_id))
    broadcast = BroadcastTrigger(cmd.send)
    return Effects(commands=[(p, broadcast) for p in range(rules.partitions)])


def on_broadcast(
    store: IndexedStore, at: Arrival, cmd: BroadcastTrigger, rules: ApplyRules
) -> Effects:
    return Effects(held=store_pending(store, at.partition, cmd.send))


def on_filter_request(
    store: IndexedStore, at: Arrival, cmd: FilterRequest, rules: ApplyRules
) -> Effects:
    """In the send's home partition, for a filter sent over HTTP: decide it (against the
    deadline and the last accepted filter), pass it on unless it repeats the last one,
    and answer the request."""
    spec = AudienceFilterSpec(
        "include" if cmd.mode == "include" else "exclude",
        frozenset(cmd.external_ids),
        frozenset(cmd.phones),
    )
    send = SendId(cmd.organization_id, cmd.send_id)
    decision = decide_filter(store, at.partition, *send, spec.digest(), at.timestamp_ms)
    effects = Effects()
    if decision is not FilterDecision.ALREADY_RECEIVED:
        effects.commands.extend(
            filter_commands(
                send,
                cmd.campaign_id,
                spec,
                received_at=at.timestamp_ms,
                seq=at.seq,
                partitions=rules.partitions,
            )
        )
    lead_count = len(spec.external_ids) + len(spec.phones)
    effects.replies.append(FilterReply(cmd.reply_to, decision.value, lead_count))
    return effects


def on_filter_part(store: IndexedStore, at: Arrival, cmd: FilterPart, rules: ApplyRules) -> Effects:
    store_filter_part(
        store,
        at.partition,
        org=cmd.organization_id,
        send=cmd.send_id,
        received_at=cmd.received_at,
        seq=cmd.seq,
        part=cmd.part,
        parts=cmd.parts,
        mode=cmd.mode,
        external_ids=cmd.external_ids,
        phones=cmd.phones,
    )
    return Effects()


def on_erase(store: IndexedStore, at: Arrival, cmd: EraseLead, rules: ApplyRules) -> Effects:
    erased = erase_lead(store, at.partition, cmd.organization_id, cmd.phone, now_ms=at.now_ms)
    reply = EraseReply(cmd.reply_to, erased.events, erased.memberships, erased.suppression_kept)
    return Effects(replies=[reply], erased=erased)


Handler = Callable[[IndexedStore, Arrival, Any, ApplyRules], Effects]

HANDLERS: dict[type[Command], Handler] = {
    EventsBatch: on_events,
    MembersBatch: on_members,
    ClaimTrigger: on_claim,
    BroadcastTrigger: on_broadcast,
    FilterRequest: on_filter_request,
    FilterPart: on_filter_part,
    EraseLead: on_erase,
}


def handle(store: IndexedStore, at: Arrival, command: Command, rules: ApplyRules) -> Effects:
    """Apply ``command`` with its handler."""
    return HANDLERS[type(command)](store, at, command, rules)
