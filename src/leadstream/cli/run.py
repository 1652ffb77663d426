"""``leadstream worker`` and ``leadstream kafka start|stop|status``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from leadstream.cli.options import (
    bootstrap_option,
    data_dir_option,
    env_option,
    exits_when_kafka_refuses,
    prefix_option,
)
from leadstream.cli.options import settings_from as _settings
from leadstream.kafka.local import LocalKafka, LocalKafkaError

__all__ = ["kafka", "worker"]


def _local_kafka_failed(exc: LocalKafkaError) -> click.ClickException:
    """The local broker could not be fetched, checked or started: its message (which names
    the jar, the port or the log), not a traceback."""
    return click.ClickException(f"cannot start the local Kafka: {exc}")


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
@exits_when_kafka_refuses
def worker(local_kafka: bool, **options: Any) -> None:
    """Run the stream processor and its HTTP API."""
    # Imported here: faust and the stream layer take a while to import, and no other
    # command needs them.
    from leadstream.worker import run_worker

    settings = _settings(
        kafka_bootstrap=options["bootstrap"],
        data_dir=options["data_dir"],
        app_id=options["app_id"],
        partitions=options["partitions"],
        web_port=options["web_port"],
        topic_prefix=options["topic_prefix"],
    )
    try:
        run_worker(settings, local_kafka=local_kafka)
    except LocalKafkaError as exc:
        raise _local_kafka_failed(exc) from None


@click.group()
def kafka() -> None:
    """A local Apache Kafka (KRaft) for machines without Docker: one broker, or a replicated
    cluster, plaintext or secured."""


def _local_kafka(
    bootstrap: str | None,
    data_dir: Path | None,
    *,
    brokers: int | None = None,
    secure: bool = False,
    acls: bool = False,
) -> LocalKafka:
    settings = _settings(kafka_bootstrap=bootstrap, data_dir=data_dir)
    home = settings.data_dir / "kafka"
    # A cluster's bootstrap lists every node; the first one's address places them all.
    first = settings.kafka_bootstrap.split(",")[0]
    if brokers is None:
        return LocalKafka.existing(home, first)
    return LocalKafka(home, first, brokers=brokers, secure=secure, acls=acls)


@kafka.command("start")
@bootstrap_option
@data_dir_option
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="Nodes of the cluster, each on the next three ports (3: topics replicated 3 times).",
)
@click.option(
    "--secure",
    is_flag=True,
    help="Clients connect with SASL_SSL (SCRAM) or mutual TLS only; certificates, users and "
    "client properties files are made under DATA_DIR/kafka/secure.",
)
@click.option(
    "--acls",
    is_flag=True,
    help="With --secure: Kafka ACLs are enforced (StandardAuthorizer); only the brokers' "
    "own user may do anything without them.",
)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for readiness.")
def kafka_start(
    bootstrap: str | None,
    data_dir: Path | None,
    brokers: int,
    secure: bool,
    acls: bool,
    timeout: float,
) -> None:
    """Start the cluster (no-op when it already runs) and wait until it serves clients."""
    if acls and not secure:
        raise click.UsageError("--acls needs --secure")
    cluster = _local_kafka(bootstrap, data_dir, brokers=brokers, secure=secure, acls=acls)
    try:
        status = cluster.start(timeout=timeout)
    except LocalKafkaError as exc:
        raise _local_kafka_failed(exc) from None
    pids = ", ".join(str(node.pid) for node in status.nodes or (status,))
    click.echo(
        f"Kafka {status.version} running at {status.bootstrap} (pid {pids}); log: {status.log_path}"
    )
    if cluster.secure is not None:
        click.echo(
            f"SASL_SSL: LEADSTREAM_KAFKA_CONFIG_FILE={cluster.secure.sasl_properties}\n"
            f"mutual TLS ({cluster.mtls_bootstrap}): "
            f"LEADSTREAM_KAFKA_CONFIG_FILE={cluster.secure.mtls_properties}"
        )


@kafka.command("stop")
@bootstrap_option
@data_dir_option
def kafka_stop(bootstrap: str | None, data_dir: Path | None) -> None:
    """Stop every broker of the cluster cleanly (no-op when none runs)."""
    _local_kafka(bootstrap, data_dir).stop()
    click.echo("Kafka stopped")


@kafka.command("status")
@bootstrap_option
@data_dir_option
def kafka_status(bootstrap: str | None, data_dir: Path | None) -> None:
    """Say whether the cluster runs; exit 1 unless every broker does."""
    status = _local_kafka(bootstrap, data_dir).status()
    for node in status.nodes or (status,):
        state = f"running (pid {node.pid})" if node.running else "stopped"
        click.echo(f"Kafka {node.version} at {node.bootstrap}: {state}; log: {node.log_path}")
    sys.exit(0 if status.running else 1)
