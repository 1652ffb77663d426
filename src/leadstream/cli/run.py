"""``leadstream worker`` and ``leadstream kafka start|stop|status``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from leadstream.cli.options import bootstrap_option, data_dir_option, env_option, prefix_option
from leadstream.cli.options import settings_from as _settings
from leadstream.kafka.local import LocalKafka

__all__ = ["kafka", "worker"]


@click.command()
@bootstrap_option
@data_dir_option
@env_option("--app-id", "LEADSTREAM_APP_ID", help="Consumer group and internal topic prefix.")
@env_option(
    "--partitions", "LEADSTREAM_PARTITIONS", type=int, help="Partitions of lead state [default: 8]."
)
@env_option("--web-port", "LEADSTREAM_WEB_PORT", type=int, help="HTTP API port [default: 6066].")
@prefix_option
@click.option(
    "--local-kafka",
    is_flag=True,
    envvar="LEADSTREAM_LOCAL_KAFKA",
    show_envvar=True,
    help="Start the local single-node Kafka under DATA_DIR/kafka first (if not running).",
)
def worker(local_kafka: bool, **options: Any) -> None:
    """Run the stream processor and its HTTP API."""
    # Imported here: faust and the stream layer take a while to import, and no other
    # command needs them.
    from leadstream.worker import run_worker

    run_worker(
        _settings(
            kafka_bootstrap=options["bootstrap"],
            data_dir=options["data_dir"],
            app_id=options["app_id"],
            partitions=options["partitions"],
            web_port=options["web_port"],
            topic_prefix=options["topic_prefix"],
        ),
        local_kafka=local_kafka,
    )


@click.group()
def kafka() -> None:
    """A local single-node Apache Kafka (KRaft) for machines without Docker."""


def _local_kafka(bootstrap: str | None, data_dir: Path | None) -> LocalKafka:
    settings = _settings(kafka_bootstrap=bootstrap, data_dir=data_dir)
    return LocalKafka(settings.data_dir / "kafka", settings.kafka_bootstrap)


@kafka.command("start")
@bootstrap_option
@data_dir_option
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for readiness.")
def kafka_start(bootstrap: str | None, data_dir: Path | None, timeout: float) -> None:
    """Start the broker (no-op when it already runs) and wait until it serves clients."""
    status = _local_kafka(bootstrap, data_dir).start(timeout=timeout)
    click.echo(
        f"Kafka {status.version} running at {status.bootstrap} (pid {status.pid}); "
        f"log: {status.log_path}"
    )


@kafka.command("stop")
@bootstrap_option
@data_dir_option
def kafka_stop(bootstrap: str | None, data_dir: Path | None) -> None:
    """Stop the broker cleanly (no-op when it is not running)."""
    _local_kafka(bootstrap, data_dir).stop()
    click.echo("Kafka stopped")


@kafka.command("status")
@bootstrap_option
@data_dir_option
def kafka_status(bootstrap: str | None, data_dir: Path | None) -> None:
    """Say whether the broker runs; exit 1 when it does not."""
    status = _local_kafka(bootstrap, data_dir).status()
    state = f"running (pid {status.pid})" if status.running else "stopped"
    click.echo(f"Kafka {status.version} at {status.bootstrap}: {state}; log: {status.log_path}")
    sys.exit(0 if status.running else 1)
