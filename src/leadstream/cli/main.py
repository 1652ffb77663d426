"""``leadstream``: worker, local Kafka, publishing, inspection and schemas."""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from leadstream.settings import Settings

__all__ = ["main"]

logger = logging.getLogger(__name__)

# What a click decorator accepts and returns (click.decorators.FC).
_FC = TypeVar("_FC", bound=Callable[..., Any] | click.Command)


def _env_option(name: str, env: str, **kwargs: Any) -> Callable[[_FC], _FC]:
    return click.option(name, envvar=env, show_envvar=True, default=None, **kwargs)


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


bootstrap_option = _env_option(
    "--bootstrap",
    "LEADSTREAM_KAFKA_BOOTSTRAP",
    help="Kafka bootstrap servers [default: localhost:9092].",
)
data_dir_option = _env_option(
    "--data-dir",
    "LEADSTREAM_DATA_DIR",
    type=click.Path(path_type=Path),
    help="Directory for RocksDB state and the local broker [default: .leadstream].",
)
prefix_option = _env_option(
    "--topic-prefix", "LEADSTREAM_TOPIC_PREFIX", help="Prefix of topic names."
)


@click.group()
@click.version_option(package_name="leadstream")
def main() -> None:
    """leadstream: lead-event filtering for messaging campaigns, on Kafka."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@bootstrap_option
@data_dir_option
@_env_option("--app-id", "LEADSTREAM_APP_ID", help="Consumer group and internal topic prefix.")
@_env_option(
    "--partitions", "LEADSTREAM_PARTITIONS", type=int, help="Partitions of lead state [default: 8]."
)
@_env_option("--web-port", "LEADSTREAM_WEB_PORT", type=int, help="HTTP API port [default: 6066].")
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


@main.group()
def kafka() -> None:
    """A local single-node Apache Kafka (KRaft) for machines without Docker."""


def _local_kafka(bootstrap: str | None, data_dir: Path | None) -> Any:
    from leadstream.localkafka import LocalKafka

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


@main.group()
def publish() -> None:
    """Publish input files to Kafka."""


@publish.command("events")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the file name."
)
@click.option("--batch-size", default=50_000, show_default=True, type=click.IntRange(1, 50_000))
@bootstrap_option
@prefix_option
def publish_events(
    file: Path, fmt: str | None, batch_size: int, bootstrap: str | None, topic_prefix: str | None
) -> None:
    """Publish lead events from FILE (JSONL objects, or CSV with a header row:
    organizationId,eventType,phoneE164,occurredAt[,metadata]) as batch messages."""
    from tqdm import tqdm

    from leadstream.kafka_admin import ensure_topics
    from leadstream.publish import make_producer, publish_event_rows, read_event_rows

    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    topic = settings.topics.lead_events
    ensure_topics(settings, [topic])
    producer = make_producer(settings.kafka_bootstrap)
    with tqdm(
        total=file.stat().st_size, unit="B", unit_scale=True, desc=file.name, file=sys.stderr
    ) as bar:

        def rows() -> Any:
            last = 0
            for row in read_event_rows(file, fmt):
                bar.update(row.offset - last)
                last = row.offset
                yield row

        report = publish_event_rows(producer, topic, rows(), max_events=batch_size)
    for line in report.skipped[:20]:
        click.echo(f"skipped {line}", err=True)
    if len(report.skipped) > 20:
        click.echo(f"... and {len(report.skipped) - 20} more skipped lines", err=True)
    click.echo(report.summary(topic))
    sys.exit(1 if report.failed else 0)


@main.command()
@click.argument("organization_id")
@click.argument("phone")
@click.option(
    "--url", default=None, help="Worker base URL [default: http://127.0.0.1:$LEADSTREAM_WEB_PORT]."
)
def lead(organization_id: str, phone: str, url: str | None) -> None:
    """Show one lead's stored events (read-only, from a running worker)."""
    base = url or f"http://127.0.0.1:{Settings().web_port}"
    path = f"/api/v1/leads/{urllib.parse.quote(organization_id)}/{urllib.parse.quote(phone)}"
    try:
        with urllib.request.urlopen(base + path, timeout=10) as resp:  # noqa: S310 - user-given URL
            click.echo(json.dumps(json.load(resp), indent=2))
    except urllib.error.HTTPError as exc:
        click.echo(exc.read().decode(errors="replace"), err=True)
        sys.exit(1)


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
@click.option(
    "--check", is_flag=True, help="Exit 1 if the files differ from the models instead of writing."
)
def schemas(out: Path, check: bool) -> None:
    """Write the JSON Schema of every topic value (generated from the pydantic models)."""
    from leadstream.schemas import check_schemas, write_schemas

    if check:
        drift = check_schemas(out)
        for name in drift:
            click.echo(f"out of date: {out / name}", err=True)
        sys.exit(1 if drift else 0)
    for path in write_schemas(out):
        click.echo(str(path))
