"""The compliance controls end to end, on a real broker and real worker processes:
quiet hours, frequency caps (also across a SIGKILL), metadata conditions (``where``) on
event filters, the preview and explain of all three, and erasing a lead (also through a
rebuild of the state from the changelog).

Every expected answer is computed here, from the facts the test seeded (and, for caps,
from the earlier sends' recipients as read from ``send-recipients``), with phonenumbers
and zoneinfo directly: never with the engine's own functions (docs/contract.md 3.5, 3.6).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import msgspec
import phonenumbers
import pytest
from confluent_kafka import Consumer, TopicPartition
from phonenumbers import timezone as phone_timezones

from tests.conftest import new_stack
from tests.support.kafka import client_config, end_offsets
from tests.support.reference import iso
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
# Whole seconds: every instant the tests write survives the API's millisecond cut as is.
BASE = datetime.now(UTC).replace(microsecond=0)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def shown(at: datetime) -> str:
    """An instant as leadstream writes it (``YYYY-MM-DDTHH:MM:SS.sssZ``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def bearer(stack: Stack, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.api_key(org)}"}


@dataclass
class Sent:
    """A materialized send as a dispatcher reads it (read_committed)."""

    send_id: str
    at: datetime
    phones: set[str]
    summary: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.summary["counts"])


def materialized(stack: Stack, org: str, send: str, at: datetime, timeout: float = 120) -> Sent:
    """The send's recipients and summary, with the checks every summary must pass."""
    result = stack.send_list(send, org, timeout=timeout)
    assert result.summary is not None, f"no summary for send {send}"
    phones = [r["phoneE164"] for r in result.recipients]
    assert len(phones) == len(set(phones)), f"send {send}: a recipient appeared twice"
    summary = result.summary
    counts = summary["counts"]
    assert counts["audience"] == (
        summary["recipientCount"]
        + counts["optedOut"]
        + counts["droppedByAudienceFilter"]
        + counts["droppedByEventFilter"]
        + counts["droppedByFrequencyCap"]
        + counts["droppedByQuietHours"]
        + counts["heldOut"]
    ), summary
    assert summary["recipientCount"] == len(phones)
    assert summary["chunkCount"] == result.chunks
    assert summary["scheduledFor"] == shown(at)
    return Sent(send, at, set(phones), summary)


def send(stack: Stack, org: str, campaign: str, send_id: str, at: datetime, **fields: Any) -> Sent:
    stack.trigger(
        organizationId=org, campaignId=campaign, sendId=send_id, scheduledFor=iso(at), **fields
    )
    return materialized(stack, org, send_id, at)


def zero_counts(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(
        (
            "audience",
            "optedOut",
            "droppedByAudienceFilter",
            "droppedByEventFilter",
            "lateAudienceFilters",
            "droppedByFrequencyCap",
            "droppedByQuietHours",
            "heldOut",
        ),
        0,
    )
    return {**base, **counts}


def event(phone: str, event_type: str, at: datetime, metadata: Any = None) -> dict[str, Any]:
    row: dict[str, Any] = {"phoneE164": phone, "eventType": event_type, "occurredAt": iso(at)}
    if metadata is not None:
        row["metadata"] = metadata
    return row


def webhook(worker: WorkerProcess, stack: Stack, org: str, rows: list[dict[str, Any]]) -> dict:
    """POST rows to the lead-events webhook; the answer comes once they are applied."""
    answer = httpx.post(
        f"{worker.url}/api/v1/webhooks/lead-events",
        content=msgspec.json.encode({"organizationId": org, "events": rows}),
        headers={**bearer(stack, org), "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def explain(worker: WorkerProcess, stack: Stack, org: str, send_id: str, phone: str) -> dict:
    answer = httpx.get(
        f"{worker.url}/api/v1/sends/{org}/{send_id}/leads/{phone}",
        headers=bearer(stack, org),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def preview(worker: WorkerProcess, stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{worker.url}/api/v1/sends/preview",
        content=msgspec.json.encode(body),
        headers={**bearer(stack, body["organizationId"]), "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


ORGS = ("qh", "wh", "pe")  # the organizations the tests call the HTTP API for


@pytest.fixture(scope="module")
def world(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess]]:
    """One worker; any send scheduled up to two days ahead materializes as its trigger
    arrives. Each test has an organization of its own (caps count every send of one)."""
    stack = new_stack(
        kafka_bootstrap, tmp_path_factory.mktemp("compliance"), materialize_lead_seconds=2 * 86_400
    )
    try:
        for org in ORGS:  # before the worker starts: it reads the auth file as it is
            stack.api_key(org)
        worker = stack.worker()
        yield stack, worker
    finally:
        stack.close()


# -- quiet hours: the reference ----------------------------------------------------------


def zones_of(phone: str) -> tuple[str, ...]:
    """The IANA zones libphonenumber places the number in (none: unknown)."""
    found = phone_timezones.time_zones_for_number(phonenumbers.parse(phone, None))
    return tuple(z for z in found if z != "Etc/Unknown")


def minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def quiet_in(zone: str, rule: dict[str, Any], at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(zone))
    now, start, end = local.hour * 60 + local.minute, minutes(rule["start"]), minutes(rule["end"])
    return start <= now < end if start < end else now >= start or now < end


def quiet_ref(phone: str, rule: dict[str, Any], at: datetime) -> tuple[bool, str | None]:
    """The contract's table: one zone decides; several: quiet if quiet in any, unless the
    rule's timeZone is given, which then decides; none: timeZone, else quiet. With the
    zone that decided (None: no known zone and no timeZone)."""
    zones = zones_of(phone)
    given = rule.get("timeZone")
    if len(zones) == 1:
        chosen: tuple[str, ...] = zones
    elif given is not None:
        chosen = (given,)
    elif zones:
        chosen = zones
    else:
        return True, None
    for zone in chosen:
        if quiet_in(zone, rule, at):
            return True, zone
    return False, chosen[0]


# Phones of many zones: single-zone US, Canada, Europe, Asia, South America; several zones
# (Alaska, toll-free, UK and Australian mobiles, Spain with the Canaries, Russian mobiles);
# numbers libphonenumber places in no zone (a fictional 555 number, international
# freephone, an Australian 08 range). ``+5215512345678`` (Mexico, old mobile prefix) is not
# a possible number for leadstream, so +525512345678 stands for Mexico City.
ZONE_PHONES = [
    "+12125550123",
    "+12125550124",
    "+13105550123",
    "+13125550123",
    "+13035550123",
    "+16025550123",
    "+18085550123",
    "+19075550123",
    "+14165550123",
    "+18005550123",
    "+15551234567",
    "+447911123456",
    "+442071234567",
    "+61412345678",
    "+61212345678",
    "+61812345678",
    "+34612345678",
    "+81312345678",
    "+819012345678",
    "+4915112345678",
    "+919812345678",
    "+9779812345678",
    "+5511987654321",
    "+525512345678",
    "+80012345678",
    "+79161234567",
]
NEW_YORK, LOS_ANGELES, UK_MOBILE, AU_MOBILE = (
    "+12125550123",
    "+13105550123",
    "+447911123456",
    "+61412345678",
)
UNKNOWN, TOKYO, SPAIN = "+15551234567", "+81312345678", "+34612345678"


def test_zone_phones_are_what_the_scenarios_need() -> None:
    """The premises of the quiet-hours scenarios, checked with libphonenumber itself."""
    for phone in ZONE_PHONES:
        number = phonenumbers.parse(phone, None)
        assert phonenumbers.is_possible_number(number), phone
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == phone
        for zone in zones_of(phone):
            ZoneInfo(zone)  # the tz database knows every zone
    assert zones_of(NEW_YORK) == ("America/New_York",)
    assert len(zones_of(UK_MOBILE)) > 1 and len(zones_of(AU_MOBILE)) > 1
    assert len(zones_of(SPAIN)) == 2
    assert zones_of(UNKNOWN) == () and zones_of("+80012345678") == ()
    assert zones_of(TOKYO) == ("Asia/Tokyo",)


QUIET = {"start": "21:00", "end": "08:00"}
# 23:30 UTC on 14 June: 08:30 in Tokyo (just after the end), 19:30 in New York, 00:30 in
# London, 09:30 in Sydney but 07:30 in Perth (an Australian mobile is quiet in some of
# its zones only).
JUNE = datetime(2026, 6, 14, 23, 30, tzinfo=UTC)
QUIET_SENDS: list[tuple[str, dict[str, Any], datetime]] = [
    ("q-june", QUIET, JUNE),
    ("q-june-sydney", {**QUIET, "timeZone": "Australia/Sydney"}, JUNE),
    (
        "q-june-la",
        {**QUIET, "timeZone": "America/Los_Angeles"},
        datetime(2026, 6, 15, 12, 0, tzinfo=UTC),
    ),
    # New York moves to daylight time at 07:00 UTC on 8 March 2026 (02:00 -> 03:00 local).
    # The day before, 12:30 UTC is 07:30 in New York: quiet.
    ("q-dst-before", QUIET, datetime(2026, 3, 7, 12, 30, tzinfo=UTC)),
    # On the day, 12:30 UTC is 08:30 EDT, not quiet; a fixed -05:00 would say 07:30, quiet.
    ("q-dst-after", QUIET, datetime(2026, 3, 8, 12, 30, tzinfo=UTC)),
    # 07:30 UTC on the day is 03:30 EDT, after a 02:00-03:00 window that the clocks
    # skipped; a fixed -05:00 would say 02:30, quiet. Los Angeles is still on PST.
    ("q-dst-gap", {"start": "02:00", "end": "03:00"}, datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
]


def test_quiet_hours_drop_by_the_local_time_of_each_phone(world) -> None:
    stack, _ = world
    org, campaign = "qh", "q"
    stack.members(org, campaign, [{"phoneE164": p} for p in ZONE_PHONES])
    # An opted-out member leaves at step 2: never counted as quiet.
    stack.send_events(
        [
            {
                "organizationId": org,
                **event("+12125550124", "opted_out", BASE - timedelta(days=1)),
            }
        ]
    )
    stack.wait_caught_up()
    results: dict[str, tuple[set[str], set[str]]] = {}
    for send_id, rule, at in QUIET_SENDS:
        got = send(stack, org, campaign, send_id, at, quietHours=rule)
        eligible = [p for p in ZONE_PHONES if p != "+12125550124"]
        quiet = {p for p in eligible if quiet_ref(p, rule, at)[0]}
        expected = set(eligible) - quiet
        assert got.phones == expected, (send_id, got.phones ^ expected)
        assert got.counts == zero_counts(
            audience=len(ZONE_PHONES), optedOut=1, droppedByQuietHours=len(quiet)
        ), send_id
        assert got.summary["late"] is True
        results[send_id] = (got.phones, quiet)

    # What the scenarios were meant to show, in the worker's answers.
    june, june_quiet = results["q-june"]
    assert june and june_quiet, "a scenario that keeps all or none tests little"
    assert TOKYO in june  # 08:30: the end of the window is not quiet
    assert NEW_YORK in june and LOS_ANGELES in june
    assert UK_MOBILE not in june and SPAIN not in june
    au = {z: quiet_in(z, QUIET, JUNE) for z in zones_of(AU_MOBILE)}
    assert any(au.values()) and not all(au.values()), au
    assert AU_MOBILE not in june  # quiet in some of its zones: quiet
    assert UNKNOWN not in june and "+80012345678" not in june  # no zone: quiet
    sydney, _ = results["q-june-sydney"]
    assert AU_MOBILE in sydney and UNKNOWN in sydney  # the rule's zone decides
    assert TOKYO in sydney and UK_MOBILE in sydney  # London is quiet, but Sydney decides
    assert "+442071234567" not in sydney  # one zone: the rule's timeZone is not used
    la, _ = results["q-june-la"]  # 05:00 in Los Angeles
    assert UNKNOWN not in la and AU_MOBILE not in la and "+18005550123" not in la
    assert TOKYO not in la  # 21:00 in Tokyo: the start of the window is quiet
    assert NEW_YORK in la  # 08:00 in New York: its end is not
    before, _ = results["q-dst-before"]
    after, _ = results["q-dst-after"]
    gap, _ = results["q-dst-gap"]
    assert NEW_YORK not in before and NEW_YORK in after and NEW_YORK in gap
    assert LOS_ANGELES not in after  # 05:30 PDT
    # A fixed offset (EST, -05:00) would have dropped New York in both: the tz database's
    # daylight saving time is what keeps it.
    est = timezone(timedelta(hours=-5))
    for send_id, rule, at in QUIET_SENDS[4:]:
        local = at.astimezone(est)
        fixed = local.hour * 60 + local.minute
        start, end = minutes(rule["start"]), minutes(rule["end"])
        assert (start <= fixed < end) if start < end else (fixed >= start or fixed < end), send_id


# -- frequency caps ----------------------------------------------------------------------

CAP1 = {"maxSends": 1, "withinHours": 24}
NO_BUYERS = {"mode": "exclude", "eventType": "purchase"}


def capped_ref(history: list[Sent], at: datetime, cap: dict[str, int], phones: set[str]) -> set:
    """The phones of ``phones`` that were recipients of at least maxSends of the
    ``history`` sends (as read from send-recipients) scheduled in [at - withinHours, at)."""
    lo = at - timedelta(hours=cap["withinHours"])
    counted = [s for s in history if lo <= s.at < at]
    return {p for p in phones if sum(p in s.phones for s in counted) >= cap["maxSends"]}


def test_frequency_cap_counts_the_committed_recipients_of_earlier_sends(world) -> None:
    stack, _ = world
    org = "fc"
    rng = random.Random(5)
    phones = [f"+1777000{i:04d}" for i in range(60)]
    campaigns = {"fa": phones[:40], "fb": phones[20:], "fall": phones}  # fa, fb share 20
    for name, members in campaigns.items():
        stack.members(org, name, [{"phoneE164": p} for p in members])
    opted_out = set(rng.sample(phones, 6))
    purchasers = set(rng.sample(phones, 15))
    stack.send_events(
        [
            {
                "organizationId": org,
                "events": [event(p, "opted_out", BASE - 2 * HOUR) for p in opted_out]
                + [event(p, "purchase", BASE - 30 * HOUR) for p in purchasers],
            }
        ]
    )
    stack.wait_caught_up()
    history: list[Sent] = []

    def capped_send(send_id: str, campaign: str, at: datetime, **fields: Any) -> tuple[Sent, set]:
        members = set(campaigns[campaign])
        eligible = members - opted_out
        by_events = eligible & purchasers if "eventFilter" in fields else set()
        eligible -= by_events
        cap = fields.get("frequencyCap")
        dropped = capped_ref(history, at, cap, eligible) if cap else set()
        got = send(stack, org, campaign, send_id, at, **fields)
        assert got.phones == eligible - dropped, (send_id, got.phones ^ (eligible - dropped))
        assert got.counts == zero_counts(
            audience=len(members),
            optedOut=len(members & opted_out),
            droppedByEventFilter=len(by_events),
            droppedByFrequencyCap=len(dropped),
        ), send_id
        history.append(got)
        return got, dropped

    ta = BASE - 6 * HOUR
    a, _ = capped_send("a", "fa", ta, eventFilter=NO_BUYERS)
    # B, 4 h after A, of the other campaign: A's recipients among its members are capped.
    b, dropped = capped_send("b", "fb", ta + 4 * HOUR, frequencyCap=CAP1)
    assert dropped == set(campaigns["fb"]) & a.phones and dropped, "B capped nobody"
    assert b.phones == set(campaigns["fb"]) - opted_out - a.phones
    # C, 24 h and 1 min after A: A is out of its window (not capped by A), B is in it.
    c, dropped = capped_send("c", "fa", ta + 24 * HOUR + timedelta(minutes=1), frequencyCap=CAP1)
    assert a.phones - b.phones and a.phones - b.phones <= c.phones
    assert dropped == set(campaigns["fa"]) & b.phones and dropped
    # D, exactly 24 h after A: the window's start is included, so A counts; C, committed
    # already but scheduled after D, does not.
    d, dropped = capped_send("d", "fa", ta + 24 * HOUR, frequencyCap=CAP1)
    assert dropped == (set(campaigns["fa"]) - opted_out) & (a.phones | b.phones)
    assert (c.phones - a.phones - b.phones) <= d.phones
    # E, at A's very instant: a send scheduled for the same moment never counts.
    e, dropped = capped_send("e", "fa", ta, frequencyCap=CAP1)
    assert not dropped and e.phones == set(campaigns["fa"]) - opted_out
    # F, maxSends 2, every phone: one earlier send in the window is not enough, two are.
    # Counted: A, B and E (C and D are scheduled after F).
    f, dropped = capped_send(
        "f", "fall", BASE + HOUR, frequencyCap={"maxSends": 2, "withinHours": 24}
    )
    received = {p: sum(p in s.phones for s in (a, b, e)) for p in set(phones) - opted_out}
    once = {p for p, n in received.items() if n == 1}
    twice = {p for p, n in received.items() if n >= 2}
    assert once and twice, "maxSends 2 needs leads with one and with two earlier sends"
    assert once <= f.phones and not twice & f.phones and dropped == twice


RACES = 6


def test_two_late_sends_racing_the_later_one_is_capped_by_the_earlier(world) -> None:
    """A and B (one minute later, capped) triggered together, both late, so that both
    are due at once: B still leaves out A's recipients. Six organizations race, one
    after the other, each with its own pair (an order that holds only by luck fails in
    one of them)."""
    stack, _ = world
    rng = random.Random(8)
    phones = [f"+1777100{i:04d}" for i in range(30)]
    purchasers = set(rng.sample(phones, 9))
    opted_out = set(rng.sample(phones, 3))
    orgs = [f"race{i}" for i in range(RACES)]
    for org in orgs:
        stack.members(org, "r", [{"phoneE164": p} for p in phones])
        stack.send_events(
            [
                {
                    "organizationId": org,
                    "events": [event(p, "opted_out", BASE - HOUR) for p in opted_out]
                    + [event(p, "purchase", BASE - HOUR) for p in purchasers],
                }
            ]
        )
    stack.wait_caught_up()
    ta = BASE - timedelta(minutes=10)
    tb = ta + timedelta(minutes=1)
    eligible = set(phones) - opted_out
    missed: dict[str, list[int]] = {}
    for org in orgs:  # one race after the other
        trigger = {"organizationId": org, "campaignId": "r"}
        stack.send(  # one producer, one flush, A first
            stack.topics.send_triggers,
            [
                {**trigger, "sendId": "race-a", "scheduledFor": iso(ta), "eventFilter": NO_BUYERS},
                {**trigger, "sendId": "race-b", "scheduledFor": iso(tb), "frequencyCap": CAP1},
            ],
        )
        a = materialized(stack, org, "race-a", ta)
        b = materialized(stack, org, "race-b", tb)
        assert a.summary["late"] and b.summary["late"]
        assert a.phones == eligible - purchasers
        both = a.phones & b.phones
        if both:
            # The lead-state partitions whose share of B did not count A.
            chunks = [v for k, v in stack.send_values() if k == f"{org}:race-b"]
            missed[org] = sorted(
                {
                    c["partition"]
                    for c in chunks
                    if c["type"] == "recipients"
                    for r in c["recipients"]
                    if r["phoneE164"] in both
                }
            )
            continue
        assert b.phones == eligible - a.phones
        assert b.counts == zero_counts(
            audience=len(phones), optedOut=len(opted_out), droppedByFrequencyCap=len(a.phones)
        )
    # Where each send is claimed and passed on to every partition (contract: CRC-32).
    homes = {
        org: [
            zlib.crc32(f"{org}\x00send\x00{s}".encode()) % stack.settings.partitions
            for s in ("race-a", "race-b")
        ]
        for org in missed
    }
    assert not missed, (
        "B, capped at one send a day, messaged recipients of A (one minute earlier) in"
        f" these organizations and lead partitions: {missed}; home partitions of A, B:"
        f" {homes}"
    )


# -- metadata conditions -----------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """The contract's equality: strings exactly, numbers by value, booleans only with
    booleans, null only with null; objects and arrays never."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def where_ref(where: dict[str, Any], metadata: Any) -> bool:
    if not isinstance(metadata, dict):
        return False
    for key, condition in where.items():
        if key not in metadata:
            return False
        accepted = condition["in"] if isinstance(condition, dict) else [condition]
        if not any(same(metadata[key], value) for value in accepted):
            return False
    return True


@dataclass
class Stored:
    """Every event as leadstream should keep it: the first metadata of an identity."""

    events: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    opted_out: set[str] = field(default_factory=set)

    def add(self, row: dict[str, Any]) -> bool:
        key = (row["phoneE164"], row["eventType"], ms(datetime.fromisoformat(row["occurredAt"])))
        if key in self.events:
            return False
        self.events[key] = row.get("metadata")
        if row["eventType"] == "opted_out":
            self.opted_out.add(row["phoneE164"])
        return True

    def keeps(self, event_filter: dict[str, Any], phone: str, at: datetime) -> bool:
        window = event_filter.get("within", {}).get("minutes")
        lo = ms(at) - window * 60_000 if window is not None else None
        matching = [
            meta
            for (p, typ, ts), meta in self.events.items()
            if p == phone
            and typ == event_filter["eventType"]
            and (lo is None or lo <= ts <= ms(at))
            and ("where" not in event_filter or where_ref(event_filter["where"], meta))
        ]
        has = len(matching) >= event_filter.get("minCount", 1)
        return has if event_filter["mode"] == "include" else not has


POOL: list[Any] = [
    {"product": "mastery", "qty": 1, "test": False},
    {"product": "mastery-plus", "qty": 1.0, "test": False},
    {"product": "Mastery", "qty": 2, "test": True},
    {"product": "mastery", "qty": True, "test": 1},
    {"product": None, "qty": 1.5},
    {"qty": 1},
    {"product": "mastery", "test": None, "nested": {"qty": 1}},
    None,
    {"product": ["mastery"], "qty": "1"},
    {"product": "mastery-plus", "qty": 2, "test": False},
]
HOURS_AGO = [1, 2, 5, 10, 20, 23, 25, 30, 48, 100]

WHERE_SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "equal": [{"mode": "include", "eventType": "purchase", "where": {"product": "mastery"}}],
    "number": [{"mode": "include", "eventType": "purchase", "where": {"qty": 1}}],
    "boolean": [{"mode": "include", "eventType": "purchase", "where": {"test": True}}],
    "one-not-true": [{"mode": "include", "eventType": "purchase", "where": {"test": 1}}],
    "null": [{"mode": "include", "eventType": "purchase", "where": {"product": None}}],
    "exclude-in": [
        {
            "mode": "exclude",
            "eventType": "purchase",
            "where": {"product": {"in": ["mastery", "mastery-plus"]}, "test": False},
        }
    ],
    "window-min-count": [
        {
            "mode": "include",
            "eventType": "purchase",
            "within": {"minutes": 24 * 60},
            "minCount": 2,
            "where": {"qty": {"in": [1, 2]}},
        }
    ],
    "window-two-filters": [
        {
            "mode": "exclude",
            "eventType": "purchase",
            "within": {"minutes": 24 * 60},
            "where": {"product": "mastery"},
        },
        {"mode": "include", "eventType": "refund", "where": {"reason": {"in": ["late", None]}}},
    ],
}


def test_where_counts_only_events_whose_first_metadata_matches(world) -> None:
    stack, worker = world
    org, campaign = "wh", "w"
    rng = random.Random(17)
    phones = [f"+1777200{i:04d}" for i in range(40)]
    p = phones
    # Probes: one question each.
    probes = {
        p[0]: {"qty": 1.0},  # 1.0 equals 1
        p[1]: {"qty": True, "test": 1},  # true is not 1, 1 is not true
        p[2]: {"test": True},
        p[3]: {"product": None},  # null equals null
        p[4]: {"qty": 1},  # no product: never matches, not even null
        p[5]: {"product": "mastery", "test": False},  # stored first (topic)
        p[6]: {"product": "other"},  # stored first (webhook)
    }
    first_rows = {q: event(q, "purchase", BASE - 3 * HOUR, meta) for q, meta in probes.items()}
    # p[7]: the same event twice in one batch, the first row's metadata matching.
    in_batch = [
        event(p[7], "purchase", BASE - 4 * HOUR, {"product": "mastery", "test": False}),
        event(p[7], "purchase", BASE - 4 * HOUR, {"product": "other", "qty": 1}),
    ]
    random_rows: dict[str, list[dict[str, Any]]] = {p[7]: in_batch}
    for q in p[8:]:
        rows = [
            event(q, "purchase", BASE - h * HOUR, rng.choice(POOL))
            for h in rng.sample(HOURS_AGO, rng.randint(0, 3))
        ]
        if rng.random() < 0.4:
            reason = rng.choice(["late", "broken", "Late", None, "no-metadata"])
            meta = None if reason == "no-metadata" else {"reason": reason}
            rows.append(event(q, "refund", BASE - rng.choice(HOURS_AGO) * HOUR, meta))
        if rng.random() < 0.1:
            rows.append(event(q, "opted_out", BASE - 50 * HOUR))
        random_rows[q] = rows
    by_topic = [first_rows[q] for q in p[:6]] + [r for q in p[7:23] for r in random_rows[q]]
    by_hook = [first_rows[p[6]]] + [r for q in p[23:] for r in random_rows[q]]
    # Duplicates (same phone, type and instant) with other metadata, by the other path.
    dup_of_topic = (
        [{**first_rows[p[5]], "metadata": {"product": "other"}}]
        + [
            {**r, "metadata": {"product": "mastery", "qty": 1, "test": True}}
            for r in by_topic[8:]  # after the probes
            if r["eventType"] == "purchase"
        ][:4]
    )
    dup_of_hook = [{**first_rows[p[6]], "metadata": {"product": "mastery", "test": False}}] + [
        {**r, "metadata": {"product": "other", "test": False}}
        for r in by_hook[1:]
        if r["eventType"] == "purchase"
    ][:4]
    assert len(dup_of_topic) == 5 and len(dup_of_hook) == 5

    stored = Stored()
    stack.members(org, campaign, [{"phoneE164": q} for q in phones])
    stack.send_events([{"organizationId": org, "events": by_topic}])
    assert [stored.add(r) for r in by_topic].count(False) == 1  # p[7]'s second row
    stack.wait_caught_up()
    answer = webhook(worker, stack, org, by_hook + dup_of_topic)
    inserted = sum(stored.add(r) for r in by_hook + dup_of_topic)
    assert (answer["inserted"], answer["duplicates"]) == (inserted, len(dup_of_topic))
    stack.send_events([{"organizationId": org, "events": dup_of_hook}])
    assert not any(stored.add(r) for r in dup_of_hook)
    stack.wait_caught_up()

    at = BASE + timedelta(minutes=30)
    results = {}
    for name, filters in WHERE_SCENARIOS.items():
        got = send(stack, org, campaign, f"w-{name}", at, eventFilters=filters)
        eligible = set(phones) - stored.opted_out
        expected = {q for q in eligible if all(stored.keeps(f, q, at) for f in filters)}
        assert got.phones == expected, (name, sorted(got.phones ^ expected))
        assert got.counts == zero_counts(
            audience=len(phones),
            optedOut=len(stored.opted_out),
            droppedByEventFilter=len(eligible - expected),
        ), name
        assert expected and eligible - expected, f"{name} keeps all or none: tests little"
        results[name] = got.phones
    # The probes, as the worker answered them.
    assert p[5] in results["equal"] and p[6] not in results["equal"]  # the first metadata
    assert p[7] in results["equal"] and p[7] not in results["number"]  # also in one batch
    assert p[0] in results["number"] and p[4] in results["number"]  # 1.0 == 1
    assert p[1] not in results["number"]  # true is not 1
    assert p[2] in results["boolean"] and p[1] not in results["boolean"]  # 1 is not true
    assert p[1] in results["one-not-true"] and p[2] not in results["one-not-true"]
    assert p[3] in results["null"] and p[4] not in results["null"]  # missing is not null
    assert p[5] not in results["exclude-in"] and p[6] in results["exclude-in"]


# -- preview and explain -----------------------------------------------------------------


def hhmm(zone: str, at: datetime, shift: int = 0) -> str:
    local = at.astimezone(ZoneInfo(zone)) + timedelta(minutes=shift)
    return f"{local.hour:02d}:{local.minute:02d}"


def test_preview_and_explain_show_the_controls(world) -> None:
    stack, worker = world
    org = "pe"
    ny = [f"+121255502{i:02d}" for i in range(8)]
    la = [f"+131055502{i:02d}" for i in range(8)]
    unknown = [f"+155512345{i:02d}" for i in range(4)]
    abroad = [TOKYO, UK_MOBILE]
    members = ny + la + unknown + abroad
    first = ny[:4] + la[:4]
    stack.members(org, "pe", [{"phoneE164": q} for q in members])
    stack.members(org, "pe-first", [{"phoneE164": q} for q in first])
    no_match = {ny[7]: {"product": "other"}, la[7]: {"product": "other"}, unknown[3]: None}
    stack.send_events(
        [
            {
                "organizationId": org,
                "events": [
                    event(q, "purchase", BASE - 5 * HOUR, no_match.get(q, {"product": "mastery"}))
                    for q in members
                ],
            }
        ]
    )
    stack.wait_caught_up()
    t1 = BASE - 3 * HOUR
    s1 = send(stack, org, "pe-first", "pe-first", t1)
    assert s1.phones == set(first)

    at = BASE + timedelta(minutes=30)
    # Quiet from an hour before New York's local time at T to an hour after it.
    rule = {"start": hhmm("America/New_York", at, -60), "end": hhmm("America/New_York", at, 60)}
    where_filter = {
        "mode": "include",
        "eventType": "purchase",
        "where": {"product": {"in": ["mastery"]}},
    }
    body = {
        "organizationId": org,
        "campaignId": "pe",
        "scheduledFor": iso(at),
        "eventFilter": where_filter,
        "frequencyCap": CAP1,
        "quietHours": rule,
    }

    def reference(when: datetime, history: list[Sent]) -> tuple[dict[str, int], set[str]]:
        by_where = set(no_match)
        kept = set(members) - by_where
        capped = capped_ref(history, when, CAP1, kept)
        kept -= capped
        quiet = {q for q in kept if quiet_ref(q, rule, when)[0]}
        return zero_counts(
            audience=len(members),
            droppedByEventFilter=len(by_where),
            droppedByFrequencyCap=len(capped),
            droppedByQuietHours=len(quiet),
        ), kept - quiet

    expected_counts, expected = reference(at, [s1])
    assert expected_counts["droppedByFrequencyCap"] and expected_counts["droppedByQuietHours"]
    assert set(la[4:7]) | set(abroad) == expected
    previewed = preview(worker, stack, {**body, "sample": 100})
    assert previewed["counts"] == expected_counts
    assert previewed["recipientCount"] == len(expected)
    assert {s["phoneE164"] for s in previewed["sample"]} == expected
    stack.trigger(**body, sendId="pe-x")
    x = materialized(stack, org, "pe-x", at)
    assert x.counts == previewed["counts"] and x.phones == expected
    # A preview counts what is committed when it is asked, an hour later pe-x too.
    later = at + HOUR
    again = preview(worker, stack, {**body, "scheduledFor": iso(later)})
    assert again["counts"] == reference(later, [s1, x])[0]

    capped = explain(worker, stack, org, "pe-x", ny[0])
    assert (capped["sent"], capped["step"], capped["consistent"]) == (False, "frequencyCap", True)
    assert capped["detail"]["maxSends"] == 1 and capped["detail"]["withinHours"] == 24
    assert capped["detail"]["sends"] == [{"sendId": "pe-first", "scheduledFor": shown(t1)}]
    assert capped["detail"]["message"]
    quiet = explain(worker, stack, org, "pe-x", ny[4])
    assert (quiet["sent"], quiet["step"], quiet["consistent"]) == (False, "quietHours", True)
    detail = quiet["detail"]
    assert detail["timeZone"] == "America/New_York"
    assert detail["localTime"] == hhmm("America/New_York", at)
    assert (detail["start"], detail["end"]) == (rule["start"], rule["end"])
    assert "America/New_York" in detail["message"]
    nowhere = explain(worker, stack, org, "pe-x", unknown[0])
    assert nowhere["step"] == "quietHours" and nowhere["detail"]["timeZone"] is None
    kept = explain(worker, stack, org, "pe-x", la[4])
    assert (kept["sent"], kept["step"]) == (True, "recipient")
    assert kept["detail"]["frequencyCap"]["sends"] == []
    assert kept["detail"]["quietHours"]["timeZone"] == "America/Los_Angeles"
    assert kept["detail"]["quietHours"]["localTime"] == hhmm("America/Los_Angeles", at)
    filtered = explain(worker, stack, org, "pe-x", ny[7])
    assert filtered["step"] == "eventFilter"
    assert filtered["detail"]["eventFilter"]["where"] == {"product": "mastery"}


# -- a crash in the middle of a send -----------------------------------------------------


SIGKILL_MEMBERS = 6000


class FirstChunk:
    """Sees the first chunk committed to send-recipients within a few milliseconds (the
    partitions' transactions of A commit over ~100 ms): a read_committed consumer from the
    topic's end, its connections made before the send is triggered. Killed then, the
    worker has committed some partition's output and likely not yet logged its history."""

    def __init__(self, stack: Stack) -> None:
        self.topic = stack.topics.send_recipients
        self.consumer = Consumer(
            {
                **client_config(stack.kafka),
                "group.id": f"leadstream-tests-first-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 5,
            }
        )
        ends = end_offsets(stack.kafka, self.topic)
        self.consumer.assign([TopicPartition(self.topic, p, end) for p, end in ends.items()])

    def __enter__(self) -> FirstChunk:
        deadline = time.monotonic() + 3  # fetch sessions up before the trigger
        while time.monotonic() < deadline:
            assert self.consumer.poll(0.1) is None, "send-recipients is written already"
        return self

    def wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.002)
            if msg is not None and msg.error() is None:
                return
        raise AssertionError("the send never started")

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()


def test_sigkill_mid_send_then_the_cap_counts_that_send_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker killed while send A is being written (one recipient a chunk); once a new
    worker finished A, send B capped at one send a day leaves out exactly A's committed
    recipients, and C, capped at two, nobody: A counts once, never twice, never missing."""
    org = "ft"
    stack = new_stack(kafka_bootstrap, tmp_path, chunk_size=1, materialize_lead_seconds=2 * 86_400)
    try:
        worker = stack.worker(name="before-kill")
        rng = random.Random(21)
        phones = [f"+177730{i:05d}" for i in range(SIGKILL_MEMBERS)]
        newcomers = [f"+1777400{i:04d}" for i in range(100)]
        opted_out = set(rng.sample(phones, SIGKILL_MEMBERS // 20))
        stack.members(org, "big", [{"phoneE164": q} for q in phones])
        stack.members(org, "next", [{"phoneE164": q} for q in phones + newcomers])
        stack.send_events(
            [
                {
                    "organizationId": org,
                    "events": [event(q, "opted_out", BASE - HOUR) for q in opted_out],
                }
            ]
        )
        stack.wait_caught_up()
        ta = BASE - 2 * HOUR
        with FirstChunk(stack) as first_chunk:
            stack.trigger(organizationId=org, campaignId="big", sendId="a", scheduledFor=iso(ta))
            first_chunk.wait()
            worker.kill()
        partial = stack.send_list("a", org, timeout=3)
        assert partial.summary is None, "the kill came after the send finished: nothing tested"
        expected_a = set(phones) - opted_out
        # Some partitions' output was committed, not every one: the kill cut A short.
        assert 0 < len(partial.recipients) < len(expected_a), "A was committed whole"

        stack.worker(name="after-kill", port=worker.port)
        a = materialized(stack, org, "a", ta, timeout=240)
        assert a.phones == expected_a
        values = [v for k, v in stack.send_values() if k == f"{org}:a"]
        assert [v["type"] for v in values].count("summary") == 1
        eligible = set(phones + newcomers) - opted_out
        b = send(stack, org, "next", "b", ta + HOUR, frequencyCap=CAP1)
        assert b.phones == eligible - a.phones == set(newcomers)
        assert b.counts == zero_counts(
            audience=len(phones) + len(newcomers),
            optedOut=len(opted_out),
            droppedByFrequencyCap=len(a.phones),
        )
        c = send(
            stack, org, "next", "c", ta + 2 * HOUR, frequencyCap={"maxSends": 2, "withinHours": 24}
        )
        assert c.phones == eligible and c.counts["droppedByFrequencyCap"] == 0
    finally:
        stack.close()


# -- erasing a lead ----------------------------------------------------------------------


def lead_url(worker: WorkerProcess, org: str, phone: str) -> str:
    return f"{worker.url}/api/v1/leads/{org}/{quote(phone, safe='')}"


def erase(worker: WorkerProcess, stack: Stack, org: str, phone: str) -> dict[str, Any]:
    answer = httpx.delete(lead_url(worker, org, phone), headers=bearer(stack, org), timeout=60)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def lead(worker: WorkerProcess, stack: Stack, org: str, phone: str) -> dict[str, Any]:
    answer = httpx.get(lead_url(worker, org, phone), headers=bearer(stack, org), timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_erase_is_refused_without_a_key_of_the_organization(world) -> None:
    """401 without a valid key, 403 with another organization's, 400 for a phone that is
    none (as the lead's GET): and the lead keeps its events."""
    stack, worker = world
    org, phone = "pe", "+12125550299"
    stack.send_events([{"organizationId": org, **event(phone, "page_view", BASE - HOUR)}])
    stack.wait_caught_up()
    url = lead_url(worker, org, phone)
    for headers, status, code in (
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer lsk_not_a_key"}, 401, "unauthorized"),
        (bearer(stack, "qh"), 403, "forbidden"),
    ):
        for method in ("DELETE", "GET"):
            answer = httpx.request(method, url, headers=headers, timeout=30)
            assert (answer.status_code, method) == (status, method), answer.text
            assert answer.json()["error"]["code"] == code
    bad = httpx.delete(lead_url(worker, org, "not-a-phone"), headers=bearer(stack, org), timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_phone"
    assert len(lead(worker, stack, org, phone)["events"]) == 1


def test_erase_through_http_and_a_rebuild_from_the_changelog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    org = "er"
    stack = new_stack(
        kafka_bootstrap, tmp_path, materialize_lead_seconds=2 * 86_400, log_format="json"
    )
    try:
        stack.api_key(org)
        worker = stack.worker(name="first")
        gone, out, cli = "+12125550300", "+12125550301", "+12125550302"
        others = [f"+121255503{i:02d}" for i in range(10, 16)]
        stack.members(org, "e", [{"phoneE164": q} for q in [gone, out, cli, *others]])
        stack.members(org, "e2", [{"phoneE164": gone}])
        stack.send_events(
            [
                {
                    "organizationId": org,
                    "events": [
                        event(gone, "purchase", BASE - 30 * HOUR),
                        event(gone, "purchase", BASE - 20 * HOUR),
                        event(gone, "page_view", BASE - 10 * HOUR, {"page": "a"}),
                        event(out, "page_view", BASE - 10 * HOUR),
                        event(out, "opted_out", BASE - 9 * HOUR),
                        event(cli, "page_view", BASE - 10 * HOUR),
                    ],
                }
            ]
        )
        stack.wait_caught_up()
        s0 = send(stack, org, "e", "s0", BASE - 3 * HOUR)
        assert s0.phones == {gone, cli, *others}

        erased = erase(worker, stack, org, gone)
        assert erased == {
            "erased": True,
            "requestId": erased["requestId"],
            "events": 3,
            "memberships": 2,
            "suppressionKept": False,
        }
        assert lead(worker, stack, org, gone)["events"] == []
        was = explain(worker, stack, org, "s0", gone)
        assert (was["sent"], was["step"]) == (False, "notInAudience")
        suppressed = erase(worker, stack, org, out)
        assert (suppressed["events"], suppressed["memberships"]) == (2, 1)
        assert suppressed["suppressionKept"] is True
        again = erase(worker, stack, org, gone)  # safe to repeat: zeros
        assert (again["erased"], again["events"], again["memberships"]) == (True, 0, 0)
        assert again["suppressionKept"] is False

        # The audit lines: the request id and the organization, never the phone.
        lines = [json.loads(t) for t in worker.log_path.read_text().splitlines() if t]
        for answer in (erased, suppressed, again):
            audit = [line for line in lines if line.get("request_id") == answer["requestId"]]
            assert audit, f"no log line of erase request {answer['requestId']}"
            assert all(line["organization"] == org for line in audit)
        text = worker.log_path.read_text()
        for phone in (gone, out):
            assert phone[1:] not in text and phone not in text

        # The opted-out phone comes back (member and event): a new lead, still opted out.
        stack.members(org, "e", [{"phoneE164": out}])
        back = event(out, "page_view", BASE - HOUR)
        stack.send_events([{"organizationId": org, "events": [back]}])
        stack.wait_caught_up()
        view = lead(worker, stack, org, out)
        assert view["optedOut"] is True
        assert [(e["eventType"], e["occurredAt"]) for e in view["events"]] == [
            ("page_view", shown(BASE - HOUR))
        ]
        s1 = send(stack, org, "e", "s1", BASE - 2 * HOUR)
        assert s1.phones == {cli, *others}
        assert s1.counts == zero_counts(audience=2 + len(others), optedOut=1)

        # The CLI erases as the HTTP route does.
        done = subprocess.run(
            [sys.executable, "-m", "leadstream.cli", "erase", org, cli, "--url", worker.url],
            env={**os.environ, **stack.env(), "LEADSTREAM_API_KEY": stack.api_key(org)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        printed = json.loads(done.stdout)
        assert (printed["erased"], printed["events"], printed["memberships"]) == (True, 1, 1)
        assert printed["suppressionKept"] is False

        # A rebuild: the worker's whole state deleted, restored from the changelog.
        worker.stop()
        shutil.rmtree(stack.settings.data_dir)
        worker = stack.worker(name="rebuilt", port=worker.port)
        for phone in (gone, cli):
            assert lead(worker, stack, org, phone)["events"] == [], phone
        # The indexes came back with the keys: read back from their logged copies (the
        # erases' scrubs included), not built from a scan of the keys.
        rebuilt = worker.log_path.read_text()
        read_back = {int(p) for p in re.findall(r"partition (\d+) index read back", rebuilt)}
        assert read_back == set(range(stack.settings.partitions)), worker.tail()
        assert "index built from its keys" not in rebuilt, worker.tail()
        view = lead(worker, stack, org, out)
        assert view["optedOut"] is True
        assert [e["occurredAt"] for e in view["events"]] == [shown(BASE - HOUR)]
        s2 = send(stack, org, "e", "s2", BASE - HOUR)
        assert s2.phones == set(others)
        assert s2.counts == zero_counts(audience=1 + len(others), optedOut=1)
        # The send history survived too: every other lead had s0, s1 and s2 today. The
        # phone erased by the CLI, a member again, had s0 and s1 before its erase: they
        # left the history with it.
        stack.members(org, "e", [{"phoneE164": cli}])
        stack.wait_caught_up()
        s3 = send(stack, org, "e", "s3", BASE, frequencyCap=CAP1)
        assert s3.phones == {cli}
        assert s3.counts == zero_counts(
            audience=2 + len(others), optedOut=1, droppedByFrequencyCap=len(others)
        )
        was = explain(worker, stack, org, "s0", gone)
        assert (was["sent"], was["step"]) == (False, "notInAudience")
    finally:
        stack.close()
