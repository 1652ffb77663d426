"""What the CLI writes to and reads from leadstream's topics: ``publish events|audience``,
``trigger`` and ``recipients``."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from confluent_kafka import Producer
from tqdm import tqdm

from leadstream.cli.options import (
    bootstrap_option,
    controls_options,
    event_filter_option,
    exits_when_kafka_refuses,
    prefix_option,
)
from leadstream.cli.options import settings_from as _settings
from leadstream.client.publish import (
    FileRow,
    PublishReport,
    build_trigger,
    make_producer,
    publish_event_rows,
    publish_member_rows,
    publish_values,
    read_event_rows,
)
from leadstream.client.recipients import iter_send
from leadstream.domain.rejects import RowError
from leadstream.domain.sends import parse_trigger
from leadstream.kafka.admin import ensure_topics, wait_for_broker
from leadstream.kafka.config import KafkaConnection
from leadstream.settings import Settings
from leadstream.wire.records import encode_json, send_key

__all__ = ["publish", "recipients", "trigger"]

_FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the file name."
)
_FILE = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.group()
def publish() -> None:
    """Publish input files to Kafka."""


Publisher = Callable[[Producer, str, Iterator[FileRow]], PublishReport]


def _publish_file(
    topic: str, settings: Settings, file: Path, fmt: str | None, publisher: Publisher
) -> None:
    """Publish ``file``'s rows to ``topic`` with a progress bar on stderr, report the lines
    that were skipped, and exit 1 if a message failed."""
    ensure_topics(settings, [topic])
    producer = make_producer(KafkaConnection.of(settings))
    size = file.stat().st_size
    with tqdm(total=size, unit="B", unit_scale=True, desc=file.name, file=sys.stderr) as bar:
        report = publisher(producer, topic, _rows_shown(file, fmt, bar))
    for line in report.skipped[:20]:
        click.echo(f"skipped {line}", err=True)
    if len(report.skipped) > 20:
        click.echo(f"... and {len(report.skipped) - 20} more skipped lines", err=True)
    click.echo(report.summary(topic))
    sys.exit(1 if report.failed else 0)


def _rows_shown(file: Path, fmt: str | None, bar: tqdm) -> Iterator[FileRow]:
    """The file's rows, moving the progress bar by the bytes read."""
    last = 0
    for row in read_event_rows(file, fmt):
        bar.update(row.offset - last)
        last = row.offset
        yield row


@publish.command("events")
@_FILE
@_FORMAT
@click.option("--batch-size", default=50_000, show_default=True, type=click.IntRange(1, 50_000))
@bootstrap_option
@prefix_option
@exits_when_kafka_refuses
def publish_events(
    file: Path, fmt: str | None, batch_size: int, bootstrap: str | None, topic_prefix: str | None
) -> None:
    """Publish lead events from FILE (JSONL objects, or CSV with a header row:
    organizationId,eventType,phoneE164,occurredAt[,metadata]) as batch messages."""
    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    _publish_file(
        settings.topics.lead_events,
        settings,
        file,
        fmt,
        lambda producer, topic, rows: publish_event_rows(
            producer, topic, rows, max_events=batch_size
        ),
    )


@publish.command("audience")
@_FILE
@click.option("--org", "organization_id", required=True, help="organizationId of every member.")
@click.option("--campaign", "campaign_id", required=True, help="campaignId of every member.")
@_FORMAT
@bootstrap_option
@prefix_option
@exits_when_kafka_refuses
def publish_audience(
    file: Path,
    organization_id: str,
    campaign_id: str,
    fmt: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
) -> None:
    """Publish a campaign's audience from FILE (CSV with a header row: phoneE164[,externalId][,op],
    or JSONL objects with those keys) in batches of up to 50,000 members."""
    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    _publish_file(
        settings.topics.audience_members,
        settings,
        file,
        fmt,
        lambda producer, topic, rows: publish_member_rows(
            producer, topic, rows, organization_id=organization_id, campaign_id=campaign_id
        ),
    )


@click.command()
@click.option("--org", "organization_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--send", "send_id", required=True)
@click.option(
    "--scheduled-for", required=True, help="RFC 3339 with offset, e.g. 2026-05-12T18:00:00Z."
)
@event_filter_option
@controls_options
@click.option(
    "--audience-filter/--no-audience-filter",
    default=False,
    help="Apply the send's audience filter.",
)
@bootstrap_option
@prefix_option
@exits_when_kafka_refuses
def trigger(
    organization_id: str,
    campaign_id: str,
    send_id: str,
    scheduled_for: str,
    filters: tuple[str, ...],
    quiet_hours: str | None,
    frequency_cap: str | None,
    conditions: str | None,
    holdout: str | None,
    splits: tuple[str, ...],
    audience_filter: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
) -> None:
    """Publish a send trigger."""
    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    try:
        value = build_trigger(
            organization_id=organization_id,
            campaign_id=campaign_id,
            send_id=send_id,
            scheduled_for=scheduled_for,
            filters=list(filters),
            audience_filter=audience_filter,
            frequency_cap=frequency_cap,
            quiet_hours=quiet_hours,
            conditions=conditions,
            holdout=holdout,
            splits=splits,
        )
        parse_trigger(value)  # refuse here what the worker would reject
    except (RowError, ValueError) as err:
        raise click.BadParameter(str(err)) from None
    topic = settings.topics.send_triggers
    ensure_topics(settings, [topic])
    _sent, failed = publish_values(
        make_producer(KafkaConnection.of(settings)),
        topic,
        [(send_key(organization_id, send_id).encode(), encode_json(value))],
    )
    click.echo(
        f"trigger for send {send_id} published to {topic}" if not failed else "delivery failed"
    )
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("send_id")
@click.option(
    "--org",
    "organization_id",
    default=None,
    help="organizationId (needed when sendIds repeat across organizations).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--timeout", default=300.0, show_default=True, help="Seconds to wait for the summary."
)
@bootstrap_option
@prefix_option
@exits_when_kafka_refuses
def recipients(
    send_id: str,
    organization_id: str | None,
    fmt: str,
    timeout: float,
    bootstrap: str | None,
    topic_prefix: str | None,
) -> None:
    """Print a send's recipients (read_committed, until its summary); the summary goes to
    stderr. Exit 2 when no summary arrived within --timeout."""
    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    connection = KafkaConnection.of(settings)
    wait_for_broker(connection)
    writer = csv.writer(sys.stdout) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["phoneE164", "externalId"])
    values = iter_send(
        connection,
        settings.topics.send_recipients,
        send_id,
        organization_id=organization_id,
        timeout=timeout,
    )
    try:
        for value in values:
            if value.get("type") == "summary":
                click.echo(json.dumps(value), err=True)
                return
            for r in value.get("recipients", []):
                if writer is not None:
                    writer.writerow([r["phoneE164"], r.get("externalId") or ""])
                else:
                    sys.stdout.write(json.dumps(r) + "\n")
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    click.echo(f"no summary for send {send_id} within {timeout:.0f} s", err=True)
    sys.exit(2)
