"""Running the stream processor: the entry the ``leadstream worker`` command loads."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import faust
from faust.worker import Worker

from leadstream import tracing
from leadstream.app import create_app
from leadstream.kafka.admin import ensure_topics
from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.local import LocalKafka
from leadstream.lifecycle import Lifecycle
from leadstream.logs import logging_config
from leadstream.settings import Settings

__all__ = ["BoundedStopWorker", "run_worker", "stored_instance_id"]

logger = logging.getLogger(__name__)


class BoundedStopWorker(Worker):
    """faust's worker, whose stop on SIGTERM or SIGINT has a deadline (lifecycle.py)."""

    def __init__(self, app: faust.App, lifecycle: Lifecycle, **options: Any) -> None:
        super().__init__(app, **options)
        self._lifecycle = lifecycle

    def _on_sigterm(self) -> None:
        self._lifecycle.stop_requested()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._lifecycle.stop_requested()
        super()._on_sigint()


def run_worker(settings: Settings, *, local_kafka: bool = False) -> None:
    """Start (optionally) the local broker, create the external topics, and run one worker.

    Blocks until the worker stops (SIGINT/SIGTERM).
    """
    if local_kafka:
        status = LocalKafka(settings.data_dir / "kafka", settings.kafka_bootstrap).start()
        logger.info(
            "local Kafka %s running at %s (log %s)",
            status.version,
            status.bootstrap,
            status.log_path,
        )
    connection = KafkaConnection.of(settings)  # every client of this process is built from it
    logger.info("Kafka at %s", connection.describe())
    ensure_topics(settings, connection=connection)  # waits for the cluster, or says why not
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.instance_id is None:
        settings = settings.model_copy(
            update={"instance_id": stored_instance_id(settings.data_dir)}
        )
    logger.info("group instance id %s (static membership)", settings.group_instance_id)
    if tracing.configure():
        logger.info("tracing on: spans exported as the OTEL_* variables say")
    lifecycle = Lifecycle(settings.shutdown_seconds)
    app = create_app(settings, lifecycle, connection=connection)
    worker = BoundedStopWorker(
        app,
        lifecycle,
        loglevel=settings.log_level,
        quiet=True,
        # faust (mode) sets up logging again as it starts: our handler and format instead
        # of its colored ones (leadstream/logs.py).
        logging_config=logging_config(settings.log_level, settings.log_format),
    )
    if settings.log_format == "json":
        # faust's terminal spinner (log levels from WARN up) writes escape codes to stdout.
        worker.spinner = None
    try:
        worker.execute_from_commandline()
    finally:
        tracing.shutdown()


def stored_instance_id(data_dir: Path) -> str:
    """The worker's instance id kept in ``data_dir/instance-id``, made on first use.

    It goes with the data directory on purpose: a worker restarted on the same state is
    the same member of its groups, and takes its partitions back without waiting for its
    old session to run out."""
    path = data_dir / "instance-id"
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    made = f"leadstream-{uuid.uuid4().hex[:12]}"
    path.write_text(made + "\n")
    return made
