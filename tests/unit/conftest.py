"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leadstream.index import durable
from tests.support.changelog import FakeTable, table_maker


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[Callable[[str], FakeTable]]:
    """Recorded-changelog tables over real Rdicts under ``tmp_path``, by name."""
    with table_maker(tmp_path) as make:
        yield make


@pytest.fixture(autouse=True)
def small_kept_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker keeps of its indexes, at the scale of unit tests: a snapshot every few
    changes (so that snapshots written part by part are read back by every test that
    holds an index equal to a restart's) and a few leads to a chunk (so that leads span
    several)."""
    monkeypatch.setattr(durable, "MIN_SNAPSHOT_AFTER", 5)
    monkeypatch.setattr(durable, "REWRITE_RATIO", 10**9)
    monkeypatch.setattr(durable, "ENTRY_WEIGHT", 1)
    monkeypatch.setattr(durable, "CHUNK", 8)
