"""The benchmark dataset: deterministic, with the promised duplicates, span and filter shares."""

from __future__ import annotations

import pytest
from bench.dataset import (
    EVENT_TYPES,
    MINUTE_MS,
    SPAN_MS,
    Dataset,
    generate,
    stats,
    window_unchanged,
)

from leadstream.domain.normalize import normalize_phone

PHONES = 20_000
EVENTS = 40_000
FIRE_MS = 1_750_000_000_000


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return generate(PHONES, EVENTS, seed=11, fire_ms=FIRE_MS)


def test_same_seed_same_dataset(ds):
    again = generate(PHONES, EVENTS, seed=11, fire_ms=FIRE_MS)
    assert again == ds
    other = generate(PHONES, EVENTS, seed=12, fire_ms=FIRE_MS)
    assert other.events != ds.events
    assert other.phones != ds.phones


def test_phones_are_distinct_canonical_nanp(ds):
    assert len(ds.phones) == PHONES
    assert len(set(ds.phones)) == PHONES
    for phone in ds.phones[:500]:
        assert len(phone) == 12 and phone.startswith("+1")
        assert 200 <= int(phone[2:5]) <= 999 and 200 <= int(phone[5:8]) <= 999
        assert normalize_phone(phone, "US") == phone
    assert ds.audience(1_000) == ds.phones[:1_000]
    with pytest.raises(ValueError):
        ds.audience(PHONES + 1)


def test_duplicate_fraction(ds):
    assert len(ds.events) == EVENTS
    distinct = len(set(ds.events))
    assert distinct == ds.distinct_events == EVENTS * 9 // 10
    # Duplicates are spread through the shuffled rows, not appended at the end.
    seen: set[tuple[int, str, int]] = set()
    first_half_dups = 0
    for row in ds.events[: EVENTS // 2]:
        first_half_dups += row in seen
        seen.add(row)
    assert first_half_dups > 0


def test_events_span_the_30_days_before_fire(ds):
    times = [at for _, _, at in ds.events]
    assert max(times) <= FIRE_MS
    assert min(times) >= FIRE_MS - SPAN_MS
    # They really span the month, not a corner of it.
    assert min(times) < FIRE_MS - 27 * 24 * 60 * MINUTE_MS
    assert {t for _, t, _ in ds.events} == set(EVENT_TYPES)
    assert all(0 <= lead < PHONES for lead, _, _ in ds.events)


def test_filter_shares(ds):
    s = stats(ds, audience_sizes=(2_000,))
    leads = s["leads"]
    assert 0.05 * PHONES <= leads["attended_within_120min"] <= 0.15 * PHONES
    assert 0.08 * PHONES <= leads["purchase"] <= 0.12 * PHONES
    assert 0.20 * PHONES <= leads["doi_confirmed"] <= 0.30 * PHONES
    assert 0.01 * PHONES <= leads["opted_out_latest"] <= 0.03 * PHONES
    full = s["recipients"][str(PHONES)]
    assert 0.80 * PHONES < full["sticky_exclude"] < 0.92 * PHONES
    assert 0.80 * PHONES < full["window_exclude_120min"] < 0.92 * PHONES
    assert 0.18 * PHONES < full["include"] < 0.30 * PHONES
    assert set(s["recipients"]) == {str(PHONES), "2000"}


def test_window_attendance_comes_from_a_live_session(ds):
    since = FIRE_MS - 120 * MINUTE_MS
    live = [at for _, t, at in ds.events if t == "attended" and at >= since]
    # One session of 1-2 hours, not attendance scattered across the window.
    assert max(live) - min(live) <= 2 * 60 * MINUTE_MS
    assert max(live) < FIRE_MS


def test_window_counts_hold_a_few_minutes_around_the_fire_time(ds):
    """The bench's early sends fire minutes away from fire_ms with the same counts."""
    assert window_unchanged(ds, FIRE_MS - 5 * MINUTE_MS, FIRE_MS + 10 * MINUTE_MS)
    live = [at for _, t, at in ds.events if t == "attended" and at >= FIRE_MS - 120 * MINUTE_MS]
    # A fire time that slides the window's start past the session's first attendee differs.
    assert window_unchanged(ds, FIRE_MS, min(live) + 120 * MINUTE_MS)  # edges inclusive
    assert not window_unchanged(ds, FIRE_MS, min(live) + 120 * MINUTE_MS + 1)
    assert window_unchanged(ds, max(live), FIRE_MS)
    assert not window_unchanged(ds, max(live) - 1, FIRE_MS)


def test_stats_honour_opt_in_after_opt_out():
    ds = Dataset(
        fire_ms=FIRE_MS,
        phones=["+12025550100", "+12025550101", "+12025550102"],
        events=[
            (0, "opted_out", FIRE_MS - 10),
            (0, "opted_in", FIRE_MS - 5),
            (1, "opted_in", FIRE_MS - 10),
            (1, "opted_out", FIRE_MS - 10),
            (2, "purchase", FIRE_MS - 1),
        ],
        distinct_events=5,
    )
    s = stats(ds)
    assert s["leads"]["opted_out_latest"] == 1
    assert s["recipients"]["3"] == {
        "sticky_exclude": 1,
        "window_exclude_120min": 2,
        "include": 0,
    }


def test_too_few_events_is_refused():
    with pytest.raises(ValueError, match="do not fit"):
        generate(1_000, 500, fire_ms=FIRE_MS)
