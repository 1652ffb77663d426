"""Running the stream processor: the entry the ``leadstream worker`` command loads."""

from __future__ import annotations

import logging

from leadstream.app import create_app
from leadstream.kafka_admin import ensure_topics, wait_for_broker
from leadstream.settings import Settings

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, *, local_kafka: bool = False) -> None:
    """Start (optionally) the local broker, create the external topics, and run one worker.

    Blocks until the worker stops (SIGINT/SIGTERM).
    """
    from faust.worker import Worker

    if local_kafka:
        from leadstream.localkafka import LocalKafka

        status = LocalKafka(settings.data_dir / "kafka", settings.kafka_bootstrap).start()
        logger.info(
            "local Kafka %s running at %s (log %s)",
            status.version,
            status.bootstrap,
            status.log_path,
        )
    wait_for_broker(settings.kafka_bootstrap)
    ensure_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
