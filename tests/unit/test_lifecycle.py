"""How a worker process ends: at once on an environment fault, and within its deadline when
a stop overruns (lifecycle.py). The exit itself is recorded instead of performed."""

from __future__ import annotations

import logging
import subprocess
import threading
import time

import pytest

from leadstream.lifecycle import EXIT_FAULT, EXIT_STOP_OVERRUN, Lifecycle


class Exits:
    """Records the exit codes asked for (os._exit would end the test session)."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def test_a_fault_turns_the_worker_unhealthy_logs_one_line_and_exits_with_its_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits = Exits()
    child = subprocess.Popen(["sleep", "60"])
    lifecycle = Lifecycle(30, exit=exits)
    lifecycle.add_child(lambda: child.pid)
    assert lifecycle.healthy()
    with caplog.at_level(logging.CRITICAL, logger="leadstream.lifecycle"):
        lifecycle.fault("by-lead[3]@17: the state store failed to write: File too large")
        lifecycle.fault("a second report")
    assert exits.called.wait(10)
    assert exits.codes == [EXIT_FAULT]
    assert not lifecycle.healthy()
    assert lifecycle.fault_cause is not None and "File too large" in lifecycle.fault_cause
    lines = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(lines) == 1 and "File too large" in lines[0].getMessage()
    # The child (the input router) was killed before the exit.
    assert child.wait(10) == -9


def test_a_stop_that_overruns_its_deadline_ends_the_process() -> None:
    exits = Exits()
    lifecycle = Lifecycle(0.2, exit=exits)
    lifecycle.stop_requested()
    lifecycle.stop_requested()  # a second signal does not arm a second deadline
    assert exits.called.wait(10)
    time.sleep(0.3)
    assert exits.codes == [EXIT_STOP_OVERRUN]
    assert lifecycle.healthy()  # a stop is not a fault
