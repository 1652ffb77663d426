"""The router cuts a poll into runs of at most ROUTE_BYTES, in order, losing nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from leadstream.streams.router import size_slices


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
