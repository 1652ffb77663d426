"""Shared fixtures. Kafka is real everywhere; see tests/support/kafka.py for the choice."""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import alone
from tests.support.kafka import broker
from tests.support.stack import Stack


@pytest.fixture(autouse=True)
def _turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test in the session's room; one marked ``alone`` with nobody else in it."""
    worker_input = getattr(request.config, "workerinput", None)
    run_id = worker_input["testrunuid"] if worker_input is not None else None
    with alone.turn(run_id, alone=request.node.get_closest_marker("alone") is not None):
        yield


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A fresh application: uuid app id and topic prefix, data under tmp_path."""
    s = new_stack(kafka_bootstrap, tmp_path)
    try:
        yield s
    finally:
        s.close()


def new_stack(bootstrap: str, root: Path, **overrides: Any) -> Stack:
    """A stack of its own: uuid app id and topic prefix, data under ``root``."""
    run = uuid.uuid4().hex[:10]
    return Stack(bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=root, **overrides)


@pytest.fixture
def make_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``make_stack(**settings)``: a fresh stack with those settings, closed at the end."""
    made: list[Stack] = []

    def make(**overrides: Any) -> Stack:
        made.append(new_stack(kafka_bootstrap, tmp_path / f"s{len(made)}", **overrides))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes the process's logging: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
