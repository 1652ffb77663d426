"""Seeded synthetic lead events shared by the product benchmark and its baselines.

``generate(seed=..., fire_ms=...)`` is deterministic: the same arguments give the same
phones, the same events in the same order. Events lie in the 30 days before ``fire_ms`` (the
send's materialize moment) and none after it; ``dup_fraction`` of the rows are exact copies
of other rows, as producers that retry would send.

The proportions make the three benchmarked filters meaningful (of ``n_phones`` leads):

* ``purchase``: about 10% of leads, 1-3 purchases each (sticky exclude);
* ``doi_confirmed``: 25% of leads, one confirmation each (include filter);
* ``opted_out``: 2% of leads, one opt-out each (dropped by every send);
* ``attended``: six live sessions of 1-2 hours, attendees' events inside the session. The
  last session runs within the 120 minutes before ``fire_ms`` and has 10% of the leads as
  attendees, so "attended within the last 120 minutes" matches about 10%. The five earlier
  sessions, days before, take the rest of the event budget.

Run ``python -m bench.dataset`` for the statistics of the default size and its generation time.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ATTENDED",
    "DAY_MS",
    "DOI",
    "EVENT_TYPES",
    "FILTER_KINDS",
    "MINUTE_MS",
    "OPT_IN",
    "OPT_OUT",
    "PURCHASE",
    "SPAN_MS",
    "WINDOW_MINUTES",
    "Dataset",
    "generate",
    "stats",
    "window_unchanged",
]

EVENT_TYPES = ("purchase", "attended", "doi_confirmed", "opted_out")
PURCHASE, ATTENDED, DOI, OPT_OUT = EVENT_TYPES
# The opt-in type the product and baselines honour; this dataset never emits it.
OPT_IN = "opted_in"
FILTER_KINDS = ("sticky_exclude", "window_exclude_120min", "include")
WINDOW_MINUTES = 120

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
SPAN_MS = 30 * DAY_MS

PURCHASE_LEADS = 0.10
DOI_LEADS = 0.25
OPT_OUT_LEADS = 0.02
LIVE_ATTENDEES = 0.10
# Purchases per purchaser, with weights: 1.7 on average.
PURCHASE_COUNTS = (1, 2, 3)
PURCHASE_WEIGHTS = (5, 3, 2)
# Days before fire_ms around which the five earlier sessions start (jittered by +-12 h).
EARLIER_SESSION_DAYS = (27, 22, 17, 12, 6)
# The live session: starts this long before fire_ms and lasts this long, inside the window.
LIVE_START_BEFORE_MS = 110 * MINUTE_MS
LIVE_DURATION_MS = 95 * MINUTE_MS

Event = tuple[int, str, int]


@dataclass(frozen=True)
class Dataset:
    """Phones and shuffled events (phone index, event type, occurredAt ms UTC)."""

    fire_ms: int
    phones: list[str]
    events: list[Event]
    distinct_events: int

    def audience(self, size: int) -> list[str]:
        """The first ``size`` phones: the campaign audience of that size."""
        if not 0 <= size <= len(self.phones):
            raise ValueError(f"audience size {size} is not within 0..{len(self.phones)}")
        return self.phones[:size]


def generate(
    n_phones: int = 1_000_000,
    n_events: int = 2_000_000,
    dup_fraction: float = 0.10,
    *,
    seed: int = 7,
    fire_ms: int | None = None,
) -> Dataset:
    """The dataset for ``seed``; ``fire_ms=None`` means now, floored to the minute."""
    if fire_ms is None:
        fire_ms = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    if not 0.0 <= dup_fraction < 1.0:
        raise ValueError("dup_fraction must be in [0, 1)")
    rng = random.Random(seed)
    phones = _phones(rng, n_phones)
    n_dups = round(n_events * dup_fraction)
    distinct = _distinct_events(rng, n_phones, n_events - n_dups, fire_ms)
    events = distinct + rng.choices(distinct, k=n_dups)
    rng.shuffle(events)
    return Dataset(fire_ms=fire_ms, phones=phones, events=events, distinct_events=len(distinct))


def _phones(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct NANP numbers in E.164: area code and exchange in 200-999."""
    # 800 area codes x 800 exchanges x 10,000 lines, indexed 0 .. 6.4e9 - 1.
    picks = rng.sample(range(800 * 800 * 10_000), n)
    return [f"+1{200 + i // 8_000_000}{200 + i // 10_000 % 800}{i % 10_000:04d}" for i in picks]


def _distinct_events(rng: random.Random, n_phones: int, budget: int, fire_ms: int) -> list[Event]:
    """``budget`` distinct (phone index, type, occurredAt) rows, unique by construction."""
    start = fire_ms - SPAN_MS
    rows: list[Event] = []
    rows += _once_each(rng, _leads(rng, n_phones, DOI_LEADS), DOI, start, SPAN_MS)
    rows += _once_each(rng, _leads(rng, n_phones, OPT_OUT_LEADS), OPT_OUT, start, SPAN_MS)
    rows += _purchases(rng, _leads(rng, n_phones, PURCHASE_LEADS), start)
    live = _leads(rng, n_phones, LIVE_ATTENDEES)
    rows += _once_each(rng, live, ATTENDED, fire_ms - LIVE_START_BEFORE_MS, LIVE_DURATION_MS)
    left = budget - len(rows)
    sessions = len(EARLIER_SESSION_DAYS)
    if left < 0 or left > sessions * n_phones:
        raise ValueError(
            f"{budget} distinct events do not fit {n_phones} phones: the fixed filters take "
            f"{len(rows)}, and {sessions} earlier sessions hold at most {sessions * n_phones}"
        )
    for i, days in enumerate(EARLIER_SESSION_DAYS):
        size = left // sessions + (1 if i < left % sessions else 0)
        begin = fire_ms - days * DAY_MS + rng.randrange(-DAY_MS // 2, DAY_MS // 2)
        duration = rng.randrange(60, 121) * MINUTE_MS
        rows += _once_each(rng, rng.sample(range(n_phones), size), ATTENDED, begin, duration)
    return rows


def _leads(rng: random.Random, n_phones: int, fraction: float) -> list[int]:
    return rng.sample(range(n_phones), round(n_phones * fraction))


def _once_each(
    rng: random.Random, leads: Iterable[int], event_type: str, begin: int, length: int
) -> list[Event]:
    """One event per lead at a uniform instant in ``[begin, begin + length)``."""
    rand = rng.random
    return [(lead, event_type, begin + int(rand() * length)) for lead in leads]


def _purchases(rng: random.Random, leads: Sequence[int], start: int) -> list[Event]:
    """1-3 purchases per lead, each in its own slice of the span, so never the same instant."""
    rand = rng.random
    counts = rng.choices(PURCHASE_COUNTS, PURCHASE_WEIGHTS, k=len(leads))
    return [
        (lead, PURCHASE, start + int((j + rand()) * SPAN_MS / k))
        for lead, k in zip(leads, counts, strict=True)
        for j in range(k)
    ]


def stats(ds: Dataset, audience_sizes: Sequence[int] = ()) -> dict[str, Any]:
    """Counts computed from the events: leads per filter and the expected recipients.

    ``recipients`` maps each audience size (always the whole population, plus
    ``audience_sizes``) to the recipient count of each filter kind, opted-out leads dropped.
    """
    since = ds.fire_ms - WINDOW_MINUTES * MINUTE_MS
    holders: dict[str, set[int]] = {t: set() for t in EVENT_TYPES}
    in_window: set[int] = set()
    latest_opt: dict[int, tuple[int, bool]] = {}
    for lead, event_type, at in ds.events:
        if event_type in holders:
            holders[event_type].add(lead)
        if event_type == ATTENDED and since <= at <= ds.fire_ms:
            in_window.add(lead)
        if event_type in (OPT_OUT, OPT_IN):
            # Later instant wins; on the same instant the opt-out wins (True > False).
            key = (at, event_type == OPT_OUT)
            if lead not in latest_opt or key > latest_opt[lead]:
                latest_opt[lead] = key
    opted_out = {lead for lead, (_, out) in latest_opt.items() if out}
    sizes = sorted({len(ds.phones), *audience_sizes}, reverse=True)
    return {
        "fire_ms": ds.fire_ms,
        "phones": len(ds.phones),
        "events": len(ds.events),
        "distinct_events": ds.distinct_events,
        "duplicates": len(ds.events) - ds.distinct_events,
        "leads": {
            **{t: len(holders[t]) for t in EVENT_TYPES},
            "attended_within_120min": len(in_window),
            "opted_out_latest": len(opted_out),
        },
        "recipients": {
            str(size): _recipients(size, opted_out, holders[PURCHASE], in_window, holders[DOI])
            for size in sizes
        },
    }


def window_unchanged(ds: Dataset, first_ms: int, last_ms: int) -> bool:
    """Do the 120-minute windows of every fire time from ``first_ms`` to ``last_ms`` hold
    the same attendance as the window of ``ds.fire_ms``? True when no attendance lies where
    any of them differs from it. Then :func:`stats` gives the recipients of a send
    scheduled anywhere in that range."""
    width = WINDOW_MINUTES * MINUTE_MS
    lo, hi = min(first_ms, ds.fire_ms), max(last_ms, ds.fire_ms)
    return not any(
        event_type == ATTENDED and (lo - width <= at < hi - width or lo < at <= hi)
        for _, event_type, at in ds.events
    )


def _recipients(
    size: int, opted_out: set[int], purchasers: set[int], in_window: set[int], doi: set[int]
) -> dict[str, int]:
    kept = [lead for lead in range(size) if lead not in opted_out]
    return {
        "sticky_exclude": sum(1 for lead in kept if lead not in purchasers),
        "window_exclude_120min": sum(1 for lead in kept if lead not in in_window),
        "include": sum(1 for lead in kept if lead in doi),
    }


def main() -> None:
    started = time.perf_counter()
    ds = generate()
    took = time.perf_counter() - started
    out = stats(ds, audience_sizes=(100_000,))
    out["generate_seconds"] = round(took, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
