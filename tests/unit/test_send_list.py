"""The sends list's pure parts: a send's counts summed from its partitions' done reports as
the summary sums them, the most recent sends first, and the limit bounded."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadstream.domain.normalize import format_ms
from leadstream.web.http import BodyError
from leadstream.web.ingress import SendReports
from leadstream.web.send_list import MAX_LIMIT, _limit, listed_send, recent_sends
from leadstream.wire.records import PartitionDone

ORG = "42"
HOUR = 3_600_000
T0 = 1_778_000_000_000
STEPS = (
    "audience",
    "optedOut",
    "droppedByAudienceFilter",
    "droppedByEventFilter",
    "droppedByFrequencyCap",
    "droppedByQuietHours",
    "heldOut",
)


def done(send: str, partition: int, rng: random.Random, *, at: int = T0) -> PartitionDone:
    drops = [rng.randint(0, 50) for _ in range(6)]
    recipients = rng.randint(0, 200)
    return PartitionDone(
        ORG,
        "camp",
        send,
        at,
        rng.random() < 0.2,
        partition,
        at + rng.randint(0, 5000),
        recipients,
        rng.randint(0, 3),
        (recipients + sum(drops), *drops),
        rng.randint(0, 2),
        at - 60_000,
        {"a": recipients // 2, "b": recipients - recipients // 2},
    )


@given(st.integers(0, 2**32), st.integers(1, 8), st.integers(1, 8))
def test_a_send_sums_its_partitions_as_the_summary_does(seed: int, partitions: int, done_n: int):
    rng = random.Random(seed)
    reported = sorted(rng.sample(range(partitions), min(done_n, partitions)))
    dones = [done("day2", p, rng) for p in reported]
    listed = msgspec.to_builtins(listed_send(SendReports(dones, False), partitions))

    # The reference: each count summed by hand; late audience filters are the same
    # broadcast filters in every partition, counted once (the largest report).
    expected = {step: sum(d.counts[i] for d in dones) for i, step in enumerate(STEPS)}
    expected["lateAudienceFilters"] = max(d.late_audience_filters for d in dones)
    assert listed["counts"] == expected
    assert listed["recipientCount"] == sum(d.recipient_count for d in dones)
    assert listed["counts"]["audience"] == listed["recipientCount"] + sum(
        listed["counts"][step] for step in STEPS[1:]
    )
    assert listed["variants"] == {
        "a": sum(d.variants["a"] for d in dones),
        "b": sum(d.variants["b"] for d in dones),
    }
    assert listed["materializedAt"] == format_ms(max(d.materialized_at for d in dones))
    assert listed["scheduledFor"] == format_ms(T0)
    assert listed["late"] == any(d.late for d in dones)
    assert (listed["partitionsDone"], listed["partitions"]) == (len(dones), partitions)
    assert listed["complete"] == (len(dones) == partitions)
    assert (listed["sendId"], listed["campaignId"], listed["summarized"]) == ("day2", "camp", False)


def test_a_send_without_splits_lists_no_variants() -> None:
    rng = random.Random(3)
    plain = msgspec.structs.replace(done("s", 0, rng), variants={})
    listed = msgspec.to_builtins(listed_send(SendReports([plain], True), 1))
    assert "variants" not in listed and listed["summarized"] and listed["complete"]


def test_the_latest_sends_come_first_and_no_more_than_the_limit() -> None:
    rng = random.Random(7)
    moments = {f"s{i}": T0 + rng.randint(-10, 10) * HOUR for i in range(30)}
    moments["tie-a"] = moments["tie-b"] = T0 + 1000 * HOUR
    dones = {send: [done(send, p, rng, at=at) for p in range(2)] for send, at in moments.items()}
    # The same moment and materialization: by sendId.
    dones["tie-b"] = [msgspec.structs.replace(d, send_id="tie-b") for d in dones["tie-a"]]
    reports = [SendReports(d, True) for d in dones.values()]
    rng.shuffle(reports)
    listed = recent_sends([*reports, SendReports([], False)], 2, 10)

    def latest(send: str) -> tuple[int, int, str]:
        return moments[send], max(d.materialized_at for d in dones[send]), send

    expected = sorted(moments, key=latest, reverse=True)[:10]
    assert [s.send_id for s in listed] == expected
    assert expected[:2] == ["tie-b", "tie-a"]
    assert len({moments[s] for s in expected}) < len(expected), "no two at one moment: untested"
    assert len(recent_sends(reports, 2, MAX_LIMIT)) == len(reports)


@pytest.mark.parametrize(("raw", "limit"), [(None, 20), ("1", 1), ("7", 7), ("100", 100)])
def test_a_limit_from_1_to_100(raw: str | None, limit: int) -> None:
    assert _limit(raw) == limit


@pytest.mark.parametrize("raw", ["0", "101", "-1", "", "abc", "1e2", " 5", "5.0", "٣", "0001"])
def test_any_other_limit_is_a_400(raw: str) -> None:
    with pytest.raises(BodyError) as refused:
        _limit(raw)
    assert (refused.value.status, refused.value.code) == (400, "invalid_limit")
