"""Poison on every input topic, on a real broker: random bytes and random JSON trees (depth
up to 100,000, long strings, huge numbers, NaN, non-UTF-8, wrong types in every field)
interleaved with good messages. Every good message is applied and emitted exactly as an
independent reference says; every bad one is on ``rejects`` with a reason; no partition
stops and the worker's memory stays bounded."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from confluent_kafka import Producer

from leadstream.domain.rejects import Reason
from tests.support.kafka import producer, read_topic
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ORG = "fuzz"
CAMPAIGN = "spring"
SEND = "spring-1"
LEADS = 240
CONTRACT_REASONS = {r.value for r in Reason}
# Wrong values for a field, whatever it is: every one of them is refused by each field.
WRONG_ANYWHERE: list[Any] = [None, True, [], {}, 1.5, -1, 10**70, ["+15551234567"], {"a": 1}]


def phone(i: int) -> str:
    return f"+1202555{i:04d}"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def random_tree(rng: random.Random, depth: int) -> Any:
    """A JSON tree whose keys the contract never uses, with the kinds of leaves that broke
    decoders: long strings, huge and tiny numbers, control and non-ASCII characters."""
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(
            [
                "x" * rng.randint(0, 3000),
                10 ** rng.randint(0, 300),
                -(10 ** rng.randint(0, 30)),
                rng.random() * 1e300,
                '\x00\x01\u2028é\\"[{',
                None,
                True,
            ]
        )
    if rng.random() < 0.5:
        return [random_tree(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}": random_tree(rng, depth - 1) for i in range(rng.randint(0, 4))}


def raw_hostile(rng: random.Random) -> Iterator[bytes]:
    """Values that are not JSON objects of the contract at all."""
    for depth in (65, 1_000, 5_000, 100_000):
        yield b"[" * depth + b"]" * depth
        yield b'{"organizationId":' * depth + b"1" + b"}" * depth
    yield b"[" * 1_000_000  # 1 MB, never closed
    yield b'{"organizationId": "' + b"x" * 4_000_000 + b'"}'  # a 4 MB string
    yield b'{"organizationId": 1' + b"0" * 5_000 + b"}"  # beyond CPython's int digits
    yield b'{"organizationId": -1e400}'
    yield b'{"organizationId": NaN, "phoneE164": Infinity}'
    yield b'{"organizationId": "\xff\xfe", "eventType": "\xed\xa0\x80"}'
    yield b'{"organizationId": 1,}'
    yield b"\xef\xbb\xbf{}"
    yield b""
    yield b"   \n "
    yield b"null"
    for _ in range(25):
        yield bytes(rng.randrange(256) for _ in range(rng.randint(1, 2_000)))
    for _ in range(25):
        yield msgspec.json.encode(random_tree(rng, rng.randint(1, 12)))


# Optional fields: leaving them out is fine. And values of the WRONG_ANYWHERE list that
# happen to be valid for one field (an object is valid metadata, an empty list of leads a
# valid filter, null no event filter at all).
OPTIONAL = {"metadata", "externalId", "op", "eventFilter", "audienceFilter"}
VALID_ANYWAY = {
    "metadata": [None, {}, {"a": 1}],
    "externalId": [None],
    "op": [None],
    "eventFilter": [None],
    "audienceFilter": [None, {}, {"a": 1}],
    "leads": [[]],
}


def with_wrong_fields(good: dict[str, Any], extra: dict[str, list[Any]]) -> Iterator[bytes]:
    """``good`` with one field at a time set to a wrong value (or left out, when required),
    and once with a duplicate key whose last value is wrong."""
    for key in good:
        for wrong in [*WRONG_ANYWHERE, *extra.get(key, [])]:
            if wrong not in VALID_ANYWAY.get(key, []):
                yield msgspec.json.encode({**good, key: wrong})
        if key not in OPTIONAL:
            yield msgspec.json.encode({k: v for k, v in good.items() if k != key})
    first = next(iter(good))
    yield msgspec.json.encode(good)[:-1] + b', "' + first.encode() + b'": [1]}'


def bad_events(rng: random.Random) -> Iterator[bytes]:
    yield from raw_hostile(rng)
    good = {
        "organizationId": ORG,
        "eventType": "purchase",
        "phoneE164": phone(1),
        "occurredAt": "2026-05-12T18:34:00Z",
        "metadata": {"source": "fuzz"},
    }
    yield from with_wrong_fields(
        good,
        {
            "organizationId": ["a b", "x" * 65, 0],
            "eventType": ["", " purchase", "p" * 101, "a\x01b"],
            "phoneE164": ["abc", "555-1234", "+1" + "5" * 40, 10**30],
            "occurredAt": ["2026-05-12T18:34:00", "yesterday", "1999-12-31T23:59:59Z", 10**30],
            "metadata": ["x", [1], {"big": "y" * 5_000}],
        },
    )
    batch = {"organizationId": ORG, "eventType": "purchase", "events": [{"phoneE164": phone(2)}]}
    for wrong in ["x", {}, 5, None, {"0": {}}]:
        yield msgspec.json.encode({**batch, "events": wrong})
    yield msgspec.json.encode({**batch, "events": [{"phoneE164": phone(3)}] * 50_001})


def bad_members(rng: random.Random) -> Iterator[bytes]:
    yield from raw_hostile(rng)
    good = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "phoneE164": phone(1),
        "externalId": "x1",
        "op": "add",
    }
    yield from with_wrong_fields(
        good,
        {
            "campaignId": ["a b", "c" * 65],
            "externalId": ["", "e" * 300],
            "op": ["delete", "ADD"],
        },
    )
    yield msgspec.json.encode({"organizationId": ORG, "campaignId": CAMPAIGN, "members": "x"})


def bad_triggers(rng: random.Random, scheduled_for: str) -> Iterator[bytes]:
    yield from raw_hostile(rng)
    good = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "sendId": SEND,
        "scheduledFor": scheduled_for,
        "eventFilter": {"mode": "exclude", "eventType": "purchase"},
        "audienceFilter": {"enabled": True},
    }
    yield from with_wrong_fields(
        good,
        {
            "sendId": ["a b", "s" * 65],
            "scheduledFor": ["2026-05-12 18:00", "soon"],
            "eventFilter": [
                {"mode": "maybe", "eventType": "x"},
                {"mode": "include", "eventType": "x", "within": {"minutes": 0}},
                {"mode": "include", "eventType": "x", "minCount": 10**30},
            ],
            "audienceFilter": ["yes", {"enabled": "true"}],
        },
    )
    yield msgspec.json.encode({**good, "eventFilters": [{"mode": "exclude", "eventType": "y"}]})


def bad_filters(rng: random.Random) -> Iterator[bytes]:
    yield from raw_hostile(rng)
    good = {
        "organizationId": ORG,
        "campaignId": CAMPAIGN,
        "sendId": SEND,
        "mode": "exclude",
        "leads": [{"phoneE164": phone(0)}],
    }
    yield from with_wrong_fields(
        good,
        {
            "mode": ["maybe"],
            "leads": [[1], [{"phoneE164": "abc"}], [{"externalId": ""}], [{}]],
        },
    )


def produce_at(
    p: Producer, topic: str, values: list[tuple[bool, bytes]]
) -> list[tuple[bool, int, int]]:
    """Produce ``(bad, value)`` in order; ``(bad, partition, offset)`` of each."""
    placed: list[tuple[bool, int, int] | None] = [None] * len(values)

    def delivered(index: int, bad: bool) -> Any:
        def report(err: Any, msg: Any) -> None:
            assert err is None, err
            placed[index] = (bad, msg.partition(), msg.offset())

        return report

    for index, (bad, value) in enumerate(values):
        while True:
            try:
                p.produce(topic, value=value, on_delivery=delivered(index, bad))
                break
            except BufferError:
                p.poll(0.2)
        p.poll(0)
    assert p.flush(120) == 0
    assert all(x is not None for x in placed)
    return [x for x in placed if x is not None]


def interleave(
    rng: random.Random, good: list[bytes], bad: Iterator[bytes]
) -> list[tuple[bool, bytes]]:
    values = [(False, g) for g in good] + [(True, b) for b in bad]
    rng.shuffle(values)
    return values


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()]


def test_poison_on_every_input_topic_is_rejected_and_the_rest_is_applied(
    kafka_bootstrap: str, make_stack: Callable[..., Stack]
) -> None:
    rng = random.Random(20261130)
    # The send below is held until 30 s after its trigger, so that its audience filter
    # (which must arrive 5 minutes before scheduledFor) is in time.
    stack = make_stack(materialize_lead_seconds=370)
    t = stack.topics
    worker = stack.worker()
    assert worker.proc is not None
    # The reference: who is in the audience, who bought, who opted out.
    buyers = {i for i in range(LEADS) if rng.random() < 0.3}
    opted = {i for i in range(LEADS) if rng.random() < 0.15}
    good_events: list[bytes] = []
    for i in range(LEADS):
        if i in buyers:
            good_events.append(
                msgspec.json.encode(
                    {
                        "organizationId": ORG,
                        "eventType": "purchase",
                        "phoneE164": phone(i),
                        "occurredAt": "2026-05-01T10:00:00Z",
                    }
                )
            )
        if i in opted:
            row = {"phoneE164": phone(i), "occurredAt": "2026-05-02T10:00:00Z"}
            good_events.append(
                msgspec.json.encode(
                    {"organizationId": ORG, "eventType": "opted_out", "events": [row]}
                )
            )
    good_members = [
        msgspec.json.encode(
            {
                "organizationId": ORG,
                "campaignId": CAMPAIGN,
                "members": [
                    {"phoneE164": phone(i), "externalId": f"x{i}"} for i in range(k, k + 40)
                ],
            }
        )
        for k in range(0, LEADS, 40)
    ]
    p = producer(kafka_bootstrap)
    placed = {
        t.lead_events: produce_at(p, t.lead_events, interleave(rng, good_events, bad_events(rng))),
        t.audience_members: produce_at(
            p, t.audience_members, interleave(rng, good_members, bad_members(rng))
        ),
    }
    stack.wait_caught_up(timeout=300)

    # Now the send: a filter excluding two leads, then the trigger, each among poison.
    scheduled = datetime.now(UTC) + timedelta(seconds=400)
    excluded = {0, 1}
    good_filter = msgspec.json.encode(
        {
            "organizationId": ORG,
            "campaignId": CAMPAIGN,
            "sendId": SEND,
            "mode": "exclude",
            "leads": [{"externalId": f"x{i}"} for i in excluded],
        }
    )
    placed[t.audience_filters] = produce_at(
        p, t.audience_filters, interleave(rng, [good_filter], bad_filters(rng))
    )
    stack.wait_caught_up(timeout=300)
    good_trigger = msgspec.json.encode(
        {
            "organizationId": ORG,
            "campaignId": CAMPAIGN,
            "sendId": SEND,
            "scheduledFor": iso(scheduled),
            "eventFilter": {"mode": "exclude", "eventType": "purchase"},
            "audienceFilter": {"enabled": True},
        }
    )
    placed[t.send_triggers] = produce_at(
        p, t.send_triggers, interleave(rng, [good_trigger], bad_triggers(rng, iso(scheduled)))
    )

    # Every good message applied: the send is exactly the reference's list.
    expected = {phone(i) for i in range(LEADS) if i not in buyers | opted | excluded}
    result = stack.send_list(SEND, ORG, timeout=240)
    assert result.summary is not None
    got = [r["phoneE164"] for r in result.recipients]
    assert len(got) == len(set(got)) and set(got) == expected
    counts = result.summary["counts"]
    assert counts["audience"] == LEADS
    assert counts["optedOut"] == len(opted)
    assert counts["droppedByAudienceFilter"] == len(excluded - opted)
    for i in rng.sample(range(LEADS), 30):
        events = {e["eventType"] for e in worker.lead(ORG, phone(i))["events"]}
        wanted = ({"purchase"} if i in buyers else set()) | ({"opted_out"} if i in opted else set())
        assert events == wanted

    # Every bad message on rejects, at its own position, with a contract reason; no
    # good message rejected.
    bad_at = {(topic, pa, off) for topic, ps in placed.items() for b, pa, off in ps if b}
    good_at = {(topic, pa, off) for topic, ps in placed.items() for b, pa, off in ps if not b}
    seen: dict[tuple[str, int, int], set[str]] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not bad_at <= set(seen):
        for msg in read_topic(kafka_bootstrap, t.rejects, timeout=30):
            record = msgspec.json.decode(msg.value())
            at = (record["source"], record["partition"], record["offset"])
            seen.setdefault(at, set()).add(record["reason"])
    missing = bad_at - set(seen)
    assert not missing, f"{len(missing)} bad messages without a reject, e.g. {sorted(missing)[:5]}"
    assert not good_at & set(seen), "a good message was rejected"
    reasons = set().union(*seen.values())
    assert reasons <= CONTRACT_REASONS and Reason.INTERNAL_ERROR.value not in reasons, reasons

    # The worker is the one that started, and its memory (and its router's) stayed
    # bounded: before, one 40 KB body took a worker to 1 GB, a 200 KB one to 23 GB.
    assert worker.alive()
    for pid in [worker.proc.pid, *children(worker.proc.pid)]:
        peak = peak_rss_mb(pid)
        print(f"process {pid}: peak RSS {peak:.0f} MB after {len(bad_at)} bad messages")
        assert peak < 1_500, f"peak RSS {peak:.0f} MB"


def test_garbage_on_internal_topics_is_dead_lettered_or_skipped_and_the_worker_goes_on(
    stack: Stack,
) -> None:
    """Nothing but the worker should write the internal topics; a bug or an intruder that
    does must not stop them. A lead-keyed command that cannot be applied is retried, then
    dead-lettered (``internal_error``, counted in /metrics); a stray reply or progress
    record is skipped."""
    worker = stack.worker()
    t = stack.topics
    garbage = [b"\xc1", b"not msgpack at all", msgspec.msgpack.encode(["E", "x"]), b""]
    for partition in range(stack.settings.partitions):
        produce_to(stack.bootstrap, t.by_lead, garbage, partition)
    produce_to(stack.bootstrap, t.replies, garbage, 0)
    produce_to(stack.bootstrap, t.send_progress, [b"{", b"[1]", b'{"type": "done"}'], 0)

    dead = stack.rejects(expect=len(garbage) * stack.settings.partitions, timeout=120)
    assert {(r["source"], r["reason"]) for r in dead} == {(t.by_lead, "internal_error")}
    assert all("attempts" in r["detail"] and "Traceback" not in r["detail"] for r in dead)
    metrics = httpx.get(worker.url + "/metrics", timeout=10).text
    counted = f'leadstream_dead_letters_total{{topic="{t.by_lead}"}} '
    assert any(
        line.startswith(counted) and float(line.split()[-1]) >= len(dead)
        for line in metrics.splitlines()
    ), metrics

    # The same worker still applies, answers HTTP waits (replies) and emits sends (progress).
    key = stack.api_key(ORG)
    answer = httpx.post(
        f"{worker.url}/api/v1/webhooks/lead-events",
        content=msgspec.json.encode(
            {
                "organizationId": ORG,
                "eventType": "purchase",
                "events": [{"phoneE164": phone(7), "occurredAt": "2026-05-01T10:00:00Z"}],
            }
        ),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json()["inserted"] == 1
    stack.members(ORG, "after", [{"phoneE164": phone(i)} for i in range(5, 10)])
    stack.wait_caught_up()
    stack.trigger(
        organizationId=ORG,
        campaignId="after",
        sendId="after-garbage",
        scheduledFor=iso(datetime.now(UTC) - timedelta(minutes=1)),
        eventFilter={"mode": "exclude", "eventType": "purchase"},
    )
    result = stack.send_list("after-garbage", ORG, timeout=120)
    assert sorted(r["phoneE164"] for r in result.recipients) == [
        phone(i) for i in range(5, 10) if i != 7
    ]
    assert worker.alive()


def produce_to(bootstrap: str, topic: str, values: list[bytes], partition: int) -> None:
    p = producer(bootstrap)
    for value in values:
        p.produce(topic, value=value, partition=partition)
    assert p.flush(60) == 0
