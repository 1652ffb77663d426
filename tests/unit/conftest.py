"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.changelog import FakeTable, table_maker


@pytest.fixture
def tables(tmp_path: Path) -> Iterator[Callable[[str], FakeTable]]:
    """Recorded-changelog tables over real Rdicts under ``tmp_path``, by name."""
    with table_maker(tmp_path) as make:
        yield make
