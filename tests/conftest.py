"""Shared fixtures. Kafka is real everywhere; see tests/support/kafka.py for the choice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kafka import broker
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A fresh application: uuid app id and topic prefix, data under tmp_path."""
    run = uuid.uuid4().hex[:10]
    s = Stack(kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path)
    try:
        yield s
    finally:
        s.close()
