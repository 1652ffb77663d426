"""A brute-force reference of the lead state, for comparing with a worker's answers."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from leadstream.domain.normalize import format_ms, parse_rfc3339_ms

if TYPE_CHECKING:
    from tests.support.stack import Stack


class Reference:
    """Distinct (eventType, occurredAt) per lead, by plain Python sets."""

    def __init__(self, opt_out: str = "opted_out", opt_in: str = "opted_in") -> None:
        self.events: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
        self.opt_out, self.opt_in = opt_out, opt_in

    def add(self, org: str, phone: str, event_type: str, occurred_at: str) -> None:
        self.events[(org, phone)].add((event_type, parse_rfc3339_ms(occurred_at)))

    def expected(self, org: str, phone: str) -> dict[str, Any]:
        evs = self.events[(org, phone)]
        outs = [ts for t, ts in evs if t == self.opt_out]
        ins = [ts for t, ts in evs if t == self.opt_in]
        opted_out = bool(outs) and (not ins or max(outs) >= max(ins))
        return {
            "optedOut": opted_out,
            "events": sorted((t, format_ms(ts)) for t, ts in evs),
        }


def observed(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "optedOut": view["optedOut"],
        "events": sorted((e["eventType"], e["occurredAt"]) for e in view["events"]),
    }


def synthetic_batches(
    *, org: str, leads: int, events: int, batch_size: int, seed: int, types: tuple[str, ...]
) -> tuple[list[dict[str, Any]], Reference]:
    """Seeded batches over ``leads`` phones, with some exact duplicates and offset variants."""
    rng = random.Random(seed)
    ref = Reference()
    rows: list[dict[str, Any]] = []
    for _ in range(events):
        phone = f"+1555{rng.randrange(leads):07d}"
        event_type = rng.choice(types)
        day, hour, minute = rng.randint(1, 28), rng.randint(0, 21), rng.randint(0, 59)
        if rng.random() < 0.5:
            occurred_at = f"2026-05-{day:02d}T{hour:02d}:{minute:02d}:00Z"
        else:  # the same instant written with another offset
            occurred_at = f"2026-05-{day:02d}T{hour + 2:02d}:{minute:02d}:00.000+02:00"
        row = {"phoneE164": phone, "eventType": event_type, "occurredAt": occurred_at}
        rows.append(row)
        ref.add(org, phone, event_type, occurred_at)
        if rng.random() < 0.1:
            rows.append(dict(row))
    batches = [
        {"organizationId": org, "events": rows[i : i + batch_size]}
        for i in range(0, len(rows), batch_size)
    ]
    return batches, ref


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed(stack: Stack, leads: int, *, seed: int, org: str = "eo") -> dict[str, set[str]]:
    """Audience of ``leads`` phones, some opted out, some purchasers, some attendees."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    phones = [f"+1444{i:07d}" for i in range(leads)]
    stack.members(
        org, "camp", [{"phoneE164": p, "externalId": f"e{i}"} for i, p in enumerate(phones)]
    )
    facts: dict[str, set[str]] = {"opted_out": set(), "purchase": set(), "attended": set()}
    rows = []
    for p in phones:
        if rng.random() < 0.1:
            facts["opted_out"].add(p)
            rows.append(
                {
                    "phoneE164": p,
                    "eventType": "opted_out",
                    "occurredAt": iso(now - timedelta(days=2)),
                }
            )
        if rng.random() < 0.2:
            facts["purchase"].add(p)
            rows.append(
                {
                    "phoneE164": p,
                    "eventType": "purchase",
                    "occurredAt": iso(now - timedelta(days=rng.randint(1, 20))),
                }
            )
        if rng.random() < 0.3:
            recent = rng.random() < 0.5
            if recent:
                facts["attended"].add(p)
            rows.append(
                {
                    "phoneE164": p,
                    "eventType": "attended",
                    "occurredAt": iso(
                        now - (timedelta(minutes=30) if recent else timedelta(days=1))
                    ),
                }
            )
    stack.send_events(
        [
            {"organizationId": org, "events": rows[i : i + 50_000]}
            for i in range(0, len(rows), 50_000)
        ]
    )
    facts["all"] = set(phones)
    return facts
