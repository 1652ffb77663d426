"""The flow control of the worker's faust app: resuming a flow that runs keeps what the
queues hold (streams/rebalance.py); and the worker's app is built on the mended parts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from leadstream.app import create_app
from leadstream.settings import Settings
from leadstream.streams.rebalance import LosslessFlowControl, RebalanceSafeApp


def queue_of(flow: FlowControlEvent) -> FlowControlQueue[str]:
    # As faust makes an agent's or a table's queue.
    return FlowControlQueue(flow_control=flow, clear_on_resume=True)


def test_resuming_a_running_flow_keeps_the_delivered_records() -> None:
    flow = LosslessFlowControl()
    queue = queue_of(flow)
    flow.resume()
    queue.put_nowait("read after the seek")
    flow.resume()  # what faust does once more when it resumes the streams
    assert queue.get_nowait() == "read after the seek"


def test_resuming_after_a_suspension_empties_the_queues() -> None:
    flow = LosslessFlowControl()
    queue = queue_of(flow)
    flow.resume()
    queue.put_nowait("of the generation before the rebalance")
    flow.suspend()
    flow.resume()
    assert queue.empty()


def test_mode_flow_control_throws_the_delivered_records_away() -> None:
    # The defect the class above mends: a resume of a running flow empties the queues.
    flow = FlowControlEvent()
    queue = queue_of(flow)
    flow.resume()
    queue.put_nowait("read after the seek")
    flow.resume()
    assert queue.empty()


def test_the_worker_app_runs_on_the_mended_consumer_and_flow_control(tmp_path: Path) -> None:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", app_id="x", data_dir=tmp_path))
    assert isinstance(app, RebalanceSafeApp)
    assert isinstance(app.flow_control, LosslessFlowControl)
    thread = app.consumer._thread
    assert type(thread).__module__ == "leadstream.streams.rebalance"


def test_the_worker_app_registers_its_tables_without_faust_s_wait(tmp_path: Path) -> None:
    """faust's table manager sleeps a second at start for tables declared late; every
    table here is declared before, and each start, restart and takeover paid that second."""
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", app_id="x", data_dir=tmp_path))
    tables: Any = app.tables
    calls: list[str] = []

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the table manager waited {seconds} s")

    async def register() -> None:
        calls.append("tables registered")

    async def recover() -> None:
        calls.append("recovery started")

    tables.sleep, tables._update_channels, tables.recovery.start = no_sleep, register, recover
    asyncio.run(tables.on_start())
    assert calls == ["tables registered", "recovery started"]
