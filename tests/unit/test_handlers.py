"""The apply agent's handlers on the in-memory store: what each command writes and what it
asks the agent to send on."""

from __future__ import annotations

from typing import get_args

from leadstream.domain.audience import MemberOp
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.lead_index import lead_events
from leadstream.domain.send_state import PendingRecord, audience_filter_for, held_sends
from leadstream.domain.sends import (
    FILTER_DEADLINE_MS,
    AudienceFilterSpec,
    SendId,
    SendTrigger,
    campaign_members,
)
from leadstream.streams.handlers import HANDLERS, ApplyRules, Arrival, handle
from leadstream.wire.commands import (
    ApplyReply,
    BroadcastTrigger,
    ClaimTrigger,
    Command,
    EventsBatch,
    FilterPart,
    FilterReply,
    FilterRequest,
    MembersBatch,
    filter_commands,
)
from tests.support.stores import indexed_memory

RULES = ApplyRules(partitions=4, event_retention_days=400)
NOW = 1_780_000_000_000
T = NOW + 3_600_000
ORG, SEND = "42", "s1"


def at(partition: int = 0, offset: int = 7, timestamp_ms: int = NOW) -> Arrival:
    return Arrival(partition, offset, timestamp_ms, NOW)


def pending(scheduled_for: int = T, campaign: str = "c") -> PendingRecord:
    return PendingRecord.on_receipt(SendTrigger(ORG, campaign, SEND, scheduled_for), NOW)


def test_every_command_has_a_handler() -> None:
    assert set(HANDLERS) == set(get_args(Command))


def test_events_are_inserted_then_counted_as_duplicates_and_answered() -> None:
    store = indexed_memory()
    event = LeadEvent(ORG, "+15551234567", "buy", NOW - 1000)
    first = handle(store, at(), EventsBatch([event], reply_to="r1"), RULES)
    assert (first.inserted, first.duplicates, first.replies) == (1, 0, [ApplyReply("r1", 1, 0)])
    again = handle(store, at(), EventsBatch([event, event]), RULES)
    assert (again.inserted, again.duplicates, again.replies) == (0, 2, [])
    assert lead_events(store, 0, ORG, "+15551234567") == [("buy", NOW - 1000)]


def test_members_are_added_and_removed() -> None:
    store = indexed_memory()
    add = MemberOp(ORG, "c", "+15551234567", "x1")
    handle(store, at(), MembersBatch([add, MemberOp(ORG, "c", "+15551234568", None)]), RULES)
    handle(store, at(), MembersBatch([MemberOp(ORG, "c", "+15551234568", None, True)]), RULES)
    assert list(campaign_members(store, 0, ORG, "c")) == [("+15551234567", "x1")]


def test_the_first_claim_is_broadcast_and_a_different_trigger_only_counted() -> None:
    store = indexed_memory()
    first = handle(store, at(), ClaimTrigger(pending()), RULES)
    assert first.commands == [(p, BroadcastTrigger(pending())) for p in range(4)]
    assert first.duplicate_trigger is None
    # The same trigger again (a retry) is passed on again; harmless, and completes a
    # broadcast a crash cut short.
    assert len(handle(store, at(), ClaimTrigger(pending()), RULES).commands) == 4
    other = handle(store, at(), ClaimTrigger(pending(campaign="other")), RULES)
    assert (other.commands, other.duplicate_trigger) == ([], SendId(ORG, SEND))


def test_a_broadcast_trigger_is_held_once() -> None:
    store = indexed_memory()
    assert handle(store, at(2), BroadcastTrigger(pending()), RULES).held is True
    assert handle(store, at(2), BroadcastTrigger(pending()), RULES).held is False
    assert [r.trigger.send_id for r in held_sends(store, 2)] == [SEND]


def request(mode: str = "exclude", phones: tuple[str, ...] = ("+15551234567",)) -> FilterRequest:
    return FilterRequest(ORG, "c", SEND, mode, ["x1"], list(phones), "req-1")


def test_an_http_filter_is_passed_to_every_partition_and_answered() -> None:
    store = indexed_memory()
    effects = handle(store, at(offset=9), request(), RULES)
    spec = AudienceFilterSpec("exclude", frozenset({"x1"}), frozenset({"+15551234567"}))
    expected = filter_commands(SendId(ORG, SEND), "c", spec, received_at=NOW, seq=9, partitions=4)
    assert effects.commands == expected and len(expected) == 4
    assert effects.replies == [FilterReply("req-1", "accepted", 2)]
    # The identical filter again: answered, not passed on.
    repeat = handle(store, at(offset=10), request(), RULES)
    assert (repeat.commands, repeat.replies) == ([], [FilterReply("req-1", "already_received", 2)])


def test_an_http_filter_after_the_deadline_of_a_known_trigger_is_late() -> None:
    store = indexed_memory()
    handle(store, at(), ClaimTrigger(pending(scheduled_for=NOW + FILTER_DEADLINE_MS - 1)), RULES)
    effects = handle(store, at(), request(), RULES)
    assert effects.replies == [FilterReply("req-1", "late", 2)]
    assert len(effects.commands) == 4  # still stored everywhere, and counted late there


def test_filter_parts_make_the_filter_once_all_have_arrived() -> None:
    store = indexed_memory()
    spec = AudienceFilterSpec("include", frozenset({"x1", "x2"}), frozenset())
    parts = [
        part
        for partition, part in filter_commands(
            SendId(ORG, SEND), "c", spec, received_at=NOW, seq=1, partitions=1
        )
        if partition == 0
    ]
    assert all(isinstance(p, FilterPart) for p in parts)
    for part in parts:
        assert handle(store, at(), part, RULES).commands == []
    found, late = audience_filter_for(store, 0, pending().trigger)
    assert (found, late) == (spec, 0)
