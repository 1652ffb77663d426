"""The input router: a poll cut into runs of at most ROUTE_BYTES, in order, losing nothing;
each input topic's message turned into its commands or rejects, and nothing beyond the size
bound parsed."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from aiokafka.errors import NotCoordinatorForGroupError
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from leadstream.domain.partitioning import send_partition
from leadstream.domain.rejects import Reason
from leadstream.kafka import bounds
from leadstream.settings import Settings
from leadstream.streams.router import (
    MAX_REJECT_KEY_BYTES,
    InputRouter,
    _Commits,
    _InFlight,
    _next_offsets,
    _reject_key,
    size_slices,
)
from leadstream.wire.commands import ClaimTrigger, FilterPart, decode_command


def test_small_items_share_a_run_and_a_large_one_stands_alone() -> None:
    assert list(size_slices([3, 3, 3, 10, 1, 1], lambda n: n, 6)) == [[3, 3], [3], [10], [1, 1]]


def test_nothing_gives_no_runs() -> None:
    assert list(size_slices([], len, 10)) == []


@given(st.lists(st.integers(min_value=0, max_value=50)), st.integers(min_value=1, max_value=60))
def test_runs_keep_order_and_stay_within_the_limit(sizes: list[int], limit: int) -> None:
    runs = list(size_slices(sizes, lambda n: n, limit))
    assert [n for run in runs for n in run] == sizes
    for run in runs:
        assert run
        assert len(run) == 1 or sum(run) <= limit
    for before, after in zip(runs, runs[1:], strict=False):
        assert sum(before) + after[0] > limit  # a run ends only when the next item won't fit


# -- one message, as the router reads it -------------------------------------------------

SETTINGS = Settings(partitions=8, max_message_bytes=64 * 1024)
T = SETTINGS.topics
RECEIVED = 1_780_000_000_123  # the broker's LogAppendTime of the test messages


def message(
    topic: str, value: Any, *, partition: int = 3, offset: int = 41, key: bytes = b"k"
) -> ConsumerRecord:
    size = len(value) if isinstance(value, bytes) else 0
    return ConsumerRecord(
        topic, partition, offset, RECEIVED, 1, key, value, None, len(key), size, ()
    )


def reader() -> InputRouter:
    return InputRouter(SETTINGS, on_rejected=lambda _t, _n: None)


TRIGGER = {
    "organizationId": "42",
    "campaignId": "mastery",
    "sendId": "day2",
    "scheduledFor": "2026-06-13T18:00:00Z",  # after RECEIVED
}


def test_a_trigger_is_claimed_in_its_sends_home_partition_at_its_receive_time() -> None:
    routed = reader()._parse(message(T.send_triggers, msgspec.json.encode(TRIGGER)), now=0)
    assert routed.rejects == [] and routed.events == [] and routed.members == []
    ((partition, command),) = routed.commands
    assert partition == send_partition("42", "day2", SETTINGS.partitions)
    assert isinstance(command, ClaimTrigger)
    assert command.send.received_at == RECEIVED and not command.send.late
    assert command.send.trigger.send_id == "day2"
    # Late by the broker's receive time, not by the router's clock (now=0).
    earlier = msgspec.json.encode({**TRIGGER, "scheduledFor": "2026-05-20T18:00:00Z"})
    ((_, late),) = reader()._parse(message(T.send_triggers, earlier), now=0).commands
    assert isinstance(late, ClaimTrigger) and late.send.late


def test_a_bad_trigger_is_one_reject_with_its_bytes() -> None:
    value = msgspec.json.encode({**TRIGGER, "scheduledFor": "soon"})
    routed = reader()._parse(message(T.send_triggers, value), now=0)
    assert not routed.commands
    ((rejected),) = routed.rejects
    assert rejected.reason is Reason.INVALID_OCCURRED_AT and rejected.raw == value


def test_an_audience_filter_goes_to_every_partition_numbered_by_its_position() -> None:
    phones = [f"+1202555{i:04d}" for i in range(40)]
    value = msgspec.json.encode(
        {
            "organizationId": "42",
            "campaignId": "mastery",
            "sendId": "day2",
            "mode": "exclude",
            "leads": [{"externalId": "x1"}, *({"phoneE164": p} for p in phones)],
        }
    )
    routed = reader()._parse(message(T.audience_filters, value, partition=2, offset=9), now=0)
    assert routed.rejects == []
    parts = [command for _partition, command in routed.commands]
    assert all(isinstance(part, FilterPart) for part in parts)
    assert {partition for partition, _ in routed.commands} == set(range(SETTINGS.partitions))
    assert {(p.received_at, p.seq, p.mode) for p in parts} == {(RECEIVED, (2 << 48) | 9, "exclude")}
    assert all(p.external_ids == ["x1"] for p in parts)
    assert sorted(phone for p in parts for phone in p.phones) == phones


def test_a_bad_audience_filter_is_one_reject() -> None:
    value = b'{"organizationId": "42", "campaignId": "c", "sendId": "s", "mode": "maybe"}'
    routed = reader()._parse(message(T.audience_filters, value), now=0)
    assert not routed.commands and [r.reason for r in routed.rejects] == [Reason.INVALID_JSON]


@pytest.mark.parametrize(
    "topic", ["lead_events", "audience_members", "send_triggers", "audience_filters"]
)
def test_a_message_beyond_the_bound_is_too_large_before_it_is_parsed(topic: str) -> None:
    value = b'{"organizationId": "' + b"x" * SETTINGS.max_message_bytes + b'"}'
    routed = reader()._parse(message(getattr(T, topic), value), now=0)
    assert not routed.commands and routed.events == [] and routed.members == []
    ((rejected),) = routed.rejects
    assert rejected.reason is Reason.TOO_LARGE and rejected.raw == value
    size = len(value) + 1  # and its one-byte key
    assert str(size) in rejected.detail and str(SETTINGS.max_message_bytes) in rejected.detail
    at_the_bound = b" " * (SETTINGS.max_message_bytes - 3) + b"{}"
    (at,) = reader()._parse(message(getattr(T, topic), at_the_bound), now=0).rejects
    assert at.reason is not Reason.TOO_LARGE  # read, and refused for what it says
    # The key counts too: a small value under a key beyond the bound is too large.
    big_key = b"k" * SETTINGS.max_message_bytes
    (keyed,) = reader()._parse(message(getattr(T, topic), b"{}", key=big_key), now=0).rejects
    assert keyed.reason is Reason.TOO_LARGE


def test_a_reject_keeps_a_short_key_and_drops_a_long_one() -> None:
    """A reject keyed with a hostile message's huge key would itself be too large for the
    rejects topic: the router, failing to write it, read that message again for ever."""
    assert _reject_key(b"+15551234567") == b"+15551234567"
    assert _reject_key(b"k" * MAX_REJECT_KEY_BYTES) == b"k" * MAX_REJECT_KEY_BYTES
    assert _reject_key(b"k" * (MAX_REJECT_KEY_BYTES + 1)) is None
    assert _reject_key(None) is None


class _Producer:
    """What _route asks of a producer: produce(), recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append((topic, kwargs.get("partition"), kwargs["value"]))


def test_an_oversize_batch_is_one_reject_named_by_its_first_offset_and_committed_past() -> None:
    oversize = bounds.OversizeBatch(17, 20, "lz4", SETTINGS.max_message_bytes + 1)
    msgs = [
        message(T.send_triggers, oversize, offset=20),  # the stand-in: at the batch's last
        message(T.send_triggers, msgspec.json.encode(TRIGGER), offset=21),
    ]
    producer = _Producer()
    batch = _InFlight(_next_offsets(msgs))
    reader()._route(producer, msgs, batch)  # type: ignore[arg-type]
    rejects = [msgspec.json.decode(v) for topic, _, v in producer.sent if topic == T.rejects]
    assert [(r["source"], r["partition"], r["offset"], r["reason"], r["raw"]) for r in rejects] == [
        (T.send_triggers, 3, 17, "too_large", "")
    ]
    assert "offsets 17 to 20" in rejects[0]["detail"] and "lz4" in rejects[0]["detail"]
    claims = [v for topic, _, v in producer.sent if topic == T.by_lead]
    assert len(claims) == 1 and isinstance(decode_command(claims[0]), ClaimTrigger)
    assert batch.waiting == 2 and batch.offsets == {(T.send_triggers, 3): 22}


# -- commits: one at a time, never an older offset after a newer one ----------------------


class _Deliveries:
    """A producer whose every message is delivered (poll and flush serve nothing)."""

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


class _Group:
    """A consumer's commit as aiokafka's behaves when the coordinator moves: each commit
    waits until the test lets it through, and may fail; the group keeps the offsets of
    the commits that succeed, in the order they land."""

    def __init__(self, assigned: set[tuple[str, int]]) -> None:
        self.assigned = assigned
        self.offsets: dict[tuple[str, int], int] = {}
        self.asked: list[dict[tuple[str, int], int]] = []
        self.gates: list[asyncio.Future[BaseException | None]] = []
        self.under_way = 0
        self.most_under_way = 0

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(topic, p) for topic, p in self.assigned}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.asked.append({(tp.topic, tp.partition): o for tp, o in offsets.items()})
        gate: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            failure = await gate
        finally:
            self.under_way -= 1
        if failure is not None:
            raise failure
        self.offsets.update({(tp.topic, tp.partition): o for tp, o in offsets.items()})


def settled(offsets: dict[tuple[str, int], int]) -> _InFlight:
    return _InFlight(offsets)  # waiting == 0: every message of it delivered


async def _turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_commit_settled_while_another_is_under_way_waits_for_it_and_carries_the_newest() -> None:
    async def run() -> None:
        group = _Group({("in", 2), ("in", 5)})
        commits = _Commits(group, _Deliveries())  # type: ignore[arg-type]
        commits.in_flight.append(settled({("in", 2): 100}))
        await commits.settle(wait=False)
        await _turn()
        assert group.asked == [{("in", 2): 100}]
        # Two more batches settle while the first commit is held (a coordinator moving).
        commits.in_flight.append(settled({("in", 2): 103}))
        await commits.settle(wait=False)
        commits.in_flight.append(settled({("in", 5): 7}))
        await commits.settle(wait=False)
        await _turn()
        assert len(group.asked) == 1, "a second commit started while the first was under way"
        group.gates[0].set_result(None)
        await _turn()
        await commits.settle(wait=False)
        await _turn()
        assert group.asked[1] == {("in", 2): 103, ("in", 5): 7}
        group.gates[1].set_result(None)
        await _turn()
        assert group.offsets == {("in", 2): 103, ("in", 5): 7}
        assert group.most_under_way == 1

    asyncio.run(run())


def test_a_failed_commit_goes_again_with_the_next_for_partitions_still_assigned() -> None:
    async def run() -> None:
        group = _Group({("in", 2)})
        commits = _Commits(group, _Deliveries())  # type: ignore[arg-type]
        commits.in_flight.append(settled({("in", 2): 100, ("in", 6): 40}))
        await commits.settle(wait=False)
        await _turn()
        commits.in_flight.append(settled({("in", 2): 120}))
        await commits.settle(wait=False)
        group.gates[0].set_result(NotCoordinatorForGroupError())
        await _turn()
        await commits.settle(wait=False)
        await _turn()
        # The newer offset of partition 2, and nothing of partition 6 (no longer here).
        assert group.asked[1] == {("in", 2): 120}
        group.gates[1].set_result(None)
        await _turn()
        assert group.offsets == {("in", 2): 120}

        # Alone, a failed commit's offsets are the next commit.
        commits.in_flight.append(settled({("in", 2): 130}))
        await commits.settle(wait=False)
        await _turn()
        group.gates[2].set_result(NotCoordinatorForGroupError())
        await _turn()
        await commits.settle(wait=False)
        await _turn()
        assert group.asked[3] == {("in", 2): 130}
        group.gates[3].set_result(None)
        await _turn()
        assert group.offsets == {("in", 2): 130}

    asyncio.run(run())


def test_settling_with_wait_returns_once_every_settled_offset_is_committed() -> None:
    async def run() -> None:
        group = _Group({("in", 1)})
        commits = _Commits(group, _Deliveries())  # type: ignore[arg-type]
        commits.in_flight.append(settled({("in", 1): 10}))
        await commits.settle(wait=False)
        await _turn()
        commits.in_flight.append(settled({("in", 1): 20}))
        waiting = asyncio.ensure_future(commits.settle(wait=True))
        await _turn()
        group.gates[0].set_result(None)
        await _turn()
        assert not waiting.done()  # the second commit is under way
        group.gates[1].set_result(None)
        assert await waiting == 1
        assert group.offsets == {("in", 1): 20}

    asyncio.run(run())
