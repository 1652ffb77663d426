"""Compression bombs on every input topic, through a real worker: a zstd and an lz4 batch
whose one value decompresses to 400 MB (12 KB and 1.6 MB on the wire), and a message over
the bound as it is (by its value, or by its key), each followed by a good message in the same
partition. Each is one
``too_large`` reject at its own offset, every good message is applied (two sends come out
exactly as a reference computed here says), and neither the worker nor its router child
grows by more than the bound and a stated margin over what it reached on normal traffic
(a 50,000-event batch) before the bombs. Before the bound, one such value took the worker
to 1.7 GB."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer

from leadstream.domain.rejects import Reason
from tests.support.bombs import bomb_batch, produce_batch
from tests.support.kafka import client_config, producer
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
# The bound of this test's worker: below the topics' 16 MiB, so that a message over it
# as it is can be written at all; above a 50,000-event batch (~5 MB).
BOUND = 8 * MiB
BOMB_BYTES = 400_000_000
# Peak RSS a process may gain over its peak on normal traffic: the bound (the one
# decompression buffer) and 16 MiB for the rest (the lz4 bombs as fetched, 1.6 MB each and
# a copy, four partitions at once; the allocator's slack). Without the bound one lz4 bomb
# added ~800 MB.
MARGIN = BOUND + 16 * MiB
ORG = "bombs"
CAMPAIGN = "spring"
LEADS = 20
LATE_PURCHASE = {
    "organizationId": ORG,
    "eventType": "purchase",
    "occurredAt": "2026-05-01T10:00:00Z",
}


def phone(i: int) -> str:
    return f"+1202555{i:04d}"


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def warmup_batch() -> bytes:
    """50,000 events of another organization: the normal traffic the footprint is
    measured on."""
    rows = [
        {"phoneE164": f"+1{area}555{i:04d}", "occurredAt": "2026-05-01T10:00:00Z"}
        for area in (201, 202, 212, 213, 214)
        for i in range(10_000)
    ]
    return msgspec.json.encode({"organizationId": "warm", "eventType": "visit", "events": rows})


def test_bombs_on_every_input_topic_are_rejected_and_the_partition_goes_on(
    kafka_bootstrap: str, make_stack: Callable[..., Stack]
) -> None:
    started = time.monotonic()
    # Materialized as soon as its trigger arrives, and its filters 10 minutes ahead of it.
    stack = make_stack(max_message_bytes=BOUND, materialize_lead_seconds=3600)
    t = stack.topics
    worker = stack.worker()
    assert worker.proc is not None
    stack.send_events([warmup_batch()])
    stack.wait_caught_up()
    processes = [worker.proc.pid, *children(worker.proc.pid)]
    assert len(processes) >= 2, "the worker and its input router"
    before = {pid: peak_rss(pid) for pid in processes}

    zstd = bomb_batch("zstd", BOMB_BYTES, b'{"organizationId": "')
    lz4 = bomb_batch("lz4", BOMB_BYTES, b'{"organizationId": "')
    print(f"bombs: zstd {len(zstd):,} bytes, lz4 {len(lz4):,} bytes, each {BOMB_BYTES:,} inside")
    over = b'{"organizationId": "' + b"x" * (BOUND + 1000) + b'"}'  # over the bound as it is
    p = producer(kafka_bootstrap)
    plain = Producer({**client_config(kafka_bootstrap), "message.max.bytes": 16 * MiB})
    too_large: set[tuple[str, int, int]] = set()
    offsets: list[int] = []

    def with_bombs(topic: str, partition: int, after_zstd: Any, after_lz4: Any) -> None:
        """A zstd bomb, a good message, an lz4 bomb, a good message."""
        for bomb, good in ((zstd, after_zstd), (lz4, after_lz4)):
            too_large.add(
                (topic, partition, produce_batch(kafka_bootstrap, topic, partition, bomb))
            )
            p.produce(topic, msgspec.json.encode(good), partition=partition)
            assert p.flush(30) == 0

    members = [{"phoneE164": phone(i), "externalId": f"x{i}"} for i in range(LEADS)]
    with_bombs(
        t.audience_members,
        1,
        {"organizationId": ORG, "campaignId": CAMPAIGN, "members": members[:10]},
        {"organizationId": ORG, "campaignId": CAMPAIGN, "members": members[10:]},
    )
    bought = {1, 2}
    with_bombs(
        t.lead_events,
        2,
        *({**LATE_PURCHASE, "phoneE164": phone(i)} for i in sorted(bought)),
    )
    # Two sends, each with its own filter: one read after each kind of bomb.
    excluded = {"A": 3, "B": 4}
    with_bombs(
        t.audience_filters,
        3,
        *(
            {
                "organizationId": ORG,
                "campaignId": CAMPAIGN,
                "sendId": send,
                "mode": "exclude",
                "leads": [{"externalId": f"x{lead}"}],
            }
            for send, lead in excluded.items()
        ),
    )
    stack.wait_caught_up(timeout=240)  # the filters are in before their triggers
    scheduled = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with_bombs(
        t.send_triggers,
        0,
        *(
            {
                "organizationId": ORG,
                "campaignId": CAMPAIGN,
                "sendId": send,
                "scheduledFor": scheduled,
                "eventFilter": {"mode": "exclude", "eventType": "purchase"},
                "audienceFilter": {"enabled": True},
            }
            for send in excluded
        ),
    )

    # Every good message applied: both sends are the reference's lists.
    for send, lead in excluded.items():
        result = stack.send_list(send, ORG, timeout=240)
        assert result.summary is not None
        got = sorted(r["phoneE164"] for r in result.recipients)
        assert got == sorted(phone(i) for i in range(LEADS) if i not in bought | {lead}), send
        assert result.summary["counts"]["audience"] == LEADS
    for i in bought:
        assert {e["eventType"] for e in worker.lead(ORG, phone(i))["events"]} == {"purchase"}

    # Memory: within the bound and the margin of the peak before the bombs.
    assert worker.alive()
    for pid, peak in before.items():
        after = peak_rss(pid)
        print(f"process {pid}: peak RSS {peak / MiB:.0f} MB before, {after / MiB:.0f} MB after")
        assert after <= peak + MARGIN, f"{pid}: {peak / MiB:.0f} -> {after / MiB:.0f} MB"

    # A message over the bound as it is, uncompressed, on each topic: too_large too, and
    # the partition goes on (an event after it is stored).
    for k, topic in enumerate(
        (t.audience_members, t.lead_events, t.audience_filters, t.send_triggers)
    ):
        offsets = []
        plain.produce(
            topic, over, partition=k, on_delivery=lambda _e, m: offsets.append(m.offset())
        )
        assert plain.flush(30) == 0 and len(offsets) == 1
        too_large.add((topic, k, offsets[0]))
    # A key over the bound (once: the value is small): too_large, and the reject has no
    # key (keyed with it, it was too large for the rejects topic: the router, failing to
    # write it, read the same message again for ever).
    offsets = []
    plain.produce(
        t.lead_events,
        b"{}",
        key=b"k" * (BOUND + 1000),
        partition=1,
        on_delivery=lambda _e, m: offsets.append(m.offset()),
    )
    assert plain.flush(30) == 0 and len(offsets) == 1
    too_large.add((t.lead_events, 1, offsets[0]))
    late_buyer = {**LATE_PURCHASE, "phoneE164": phone(7)}
    p.produce(t.lead_events, msgspec.json.encode(late_buyer), partition=1)
    assert p.flush(30) == 0
    stack.wait_caught_up(timeout=120)  # every bomb committed past, in each group
    assert {e["eventType"] for e in worker.lead(ORG, phone(7))["events"]} == {"purchase"}

    # Each bomb and each message over the bound: one too_large reject at its offset, and
    # nothing else rejected.
    rejects = stack.rejects(expect=len(too_large), timeout=120)
    assert {
        (r["source"], r["partition"], r["offset"]) for r in rejects if r["reason"] == "too_large"
    } == too_large
    assert {r["reason"] for r in rejects} == {Reason.TOO_LARGE.value}
    assert all(len(r["raw"]) <= 4096 for r in rejects)
    assert sum("decompresses to more than" in r["detail"] for r in rejects) == 8
    for pid in before:
        print(f"process {pid}: peak RSS {peak_rss(pid) / MiB:.0f} MB at the end")
    print(f"took {time.monotonic() - started:.0f} s")


def test_a_bomb_on_a_topic_only_leadstream_writes_stops_the_worker_with_one_clear_line(
    kafka_bootstrap: str, stack: Stack
) -> None:
    """The worker's own consumer reads only internal topics. A batch there beyond the bound
    was not written by leadstream: the worker stops (exit status 1) naming the topic,
    partition and offsets, instead of holding 400 MB or skipping a command."""
    worker = stack.worker()
    assert worker.proc is not None
    topic = stack.topics.by_lead
    offset = produce_batch(kafka_bootstrap, topic, 0, bomb_batch("lz4", BOMB_BYTES, b"\x92"))
    assert worker.proc.wait(60) == 1
    log = worker.tail(400)
    line = f"{topic}[0] offsets {offset}..{offset}: a batch compressed with lz4 decompresses"
    assert any(
        line in entry and "CRITICAL" in entry and "stopping" in entry for entry in log.splitlines()
    ), log
