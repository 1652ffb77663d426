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


@publish.command("audience")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "organization_id", required=True, help="organizationId of every member.")
@click.option("--campaign", "campaign_id", required=True, help="campaignId of every member.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the file name."
)
@bootstrap_option
@prefix_option
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
    from tqdm import tqdm

    from leadstream.codec import encode_json
    from leadstream.kafka_admin import ensure_topics
    from leadstream.publish import batch_members, make_producer, publish_values, read_event_rows

    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    topic = settings.topics.audience_members
    ensure_topics(settings, [topic])
    members = 0
    skipped: list[str] = []
    with tqdm(
        total=file.stat().st_size, unit="B", unit_scale=True, desc=file.name, file=sys.stderr
    ) as bar:

        def values() -> Any:
            nonlocal members
            last = 0

            def rows() -> Any:
                nonlocal last
                for row in read_event_rows(file, fmt):
                    bar.update(row.offset - last)
                    last = row.offset
                    yield row

            for value, bad in batch_members(
                rows(), organization_id=organization_id, campaign_id=campaign_id
            ):
                skipped.extend(b.error or f"line {b.line}" for b in bad)
                if value["members"]:
                    members += len(value["members"])
                    yield organization_id.encode(), encode_json(value)

        messages, failed = publish_values(make_producer(settings.kafka_bootstrap), topic, values())
    for line in skipped[:20]:
        click.echo(f"skipped {line}", err=True)
    click.echo(
        f"published {members} members in {messages} messages to {topic}; "
        f"{len(skipped)} lines skipped; {failed} messages failed"
    )
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--org", "organization_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--send", "send_id", required=True)
@click.option(
    "--scheduled-for", required=True, help="RFC 3339 with offset, e.g. 2026-05-12T18:00:00Z."
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help="MODE:EVENT_TYPE[:within=MINUTES][:min=COUNT], e.g. exclude:webinar_attended:within=120. "
    "Repeat to AND several.",
)
@click.option(
    "--audience-filter/--no-audience-filter",
    default=False,
    help="Apply the send's audience filter.",
)
@bootstrap_option
@prefix_option
def trigger(
    organization_id: str,
    campaign_id: str,
    send_id: str,
    scheduled_for: str,
    filters: tuple[str, ...],
    audience_filter: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
) -> None:
    """Publish a send trigger."""
    from leadstream.codec import encode_json
    from leadstream.domain.rejects import RowError
    from leadstream.domain.sends import parse_trigger
    from leadstream.kafka_admin import ensure_topics
    from leadstream.publish import build_trigger, make_producer, publish_values

    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    try:
        value = build_trigger(
            organization_id=organization_id,
            campaign_id=campaign_id,
            send_id=send_id,
            scheduled_for=scheduled_for,
            filters=list(filters),
            audience_filter=audience_filter,
        )
        parse_trigger(value)  # refuse here what the worker would reject
    except (RowError, ValueError) as err:
        raise click.BadParameter(str(err)) from None
    topic = settings.topics.send_triggers
    ensure_topics(settings, [topic])
    _sent, failed = publish_values(
        make_producer(settings.kafka_bootstrap),
        topic,
        [(f"{organization_id}:{send_id}".encode(), encode_json(value))],
    )
    click.echo(
        f"trigger for send {send_id} published to {topic}" if not failed else "delivery failed"
    )
    sys.exit(1 if failed else 0)


@main.command()
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
    import csv

    from leadstream.recipients import iter_send

    settings = _settings(kafka_bootstrap=bootstrap, topic_prefix=topic_prefix)
    writer = csv.writer(sys.stdout) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["phoneE164", "externalId"])
    try:
        for value in iter_send(
            settings.kafka_bootstrap,
            settings.topics.send_recipients,
            send_id,
            organization_id=organization_id,
            timeout=timeout,
        ):
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


@main.group()
def keys() -> None:
    """Per-organization credentials in LEADSTREAM_AUTH_FILE (default DATA_DIR/auth.json)."""


def _auth_path(auth_file: Path | None, data_dir: Path | None) -> Path:
    return _settings(auth_file=auth_file, data_dir=data_dir).auth_path


auth_file_option = _env_option(
    "--auth-file",
    "LEADSTREAM_AUTH_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The auth file [default: DATA_DIR/auth.json].",
)


@keys.command("create")
@click.option("--org", "organization_id", required=True)
@click.option(
    "--kind",
    type=click.Choice(["api", "signing"]),
    default="api",
    show_default=True,
    help="api: a Bearer token (stored as a hash); signing: an HMAC-SHA256 secret.",
)
@auth_file_option
@data_dir_option
def keys_create(
    organization_id: str, kind: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Create a key and print it once; it is never shown again."""
    import datetime
    import secrets as _secrets

    from leadstream.auth_file import load_auth, save_auth
    from leadstream.domain.auth import (
        ApiKey,
        SigningKey,
        hash_api_key,
        new_api_key,
        new_signing_secret,
        with_key,
    )
    from leadstream.domain.normalize import normalize_organization_id
    from leadstream.domain.rejects import RowError

    try:
        org = normalize_organization_id(organization_id)
    except RowError as err:
        raise click.BadParameter(err.detail) from None
    path = _auth_path(auth_file, data_dir)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    key_id = ("ak_" if kind == "api" else "sk_") + _secrets.token_hex(6)
    if kind == "api":
        secret = new_api_key()
        key: ApiKey | SigningKey = ApiKey(key_id, hash_api_key(secret), now)
    else:
        secret = new_signing_secret()
        key = SigningKey(key_id, secret, now)
    save_auth(path, with_key(load_auth(path), org, key))
    click.echo(f"{key_id} {secret}")


@keys.command("list")
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_list(organization_id: str, auth_file: Path | None, data_dir: Path | None) -> None:
    """List an organization's keys (ids, kinds, dates; never the secrets)."""
    from leadstream.auth_file import load_auth

    auth = load_auth(_auth_path(auth_file, data_dir)).organizations.get(str(organization_id))
    if auth is None:
        return
    for kind, items in (("api", auth.api_keys), ("signing", auth.signing_keys)):
        for k in items:
            state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
            click.echo(f"{k.id}\t{kind}\tcreated {k.created_at}\t{state}")


@keys.command("require-timestamp")
@click.argument("setting", type=click.Choice(["on", "off"]))
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_require_timestamp(
    setting: str, organization_id: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Require (on) or not (off) a signed X-Leadstream-Timestamp on HMAC requests."""
    from leadstream.auth_file import load_auth, save_auth
    from leadstream.domain.auth import with_timestamp_required

    path = _auth_path(auth_file, data_dir)
    save_auth(path, with_timestamp_required(load_auth(path), str(organization_id), setting == "on"))
    state = "required" if setting == "on" else "optional"
    click.echo(f"organization {organization_id}: signed timestamps {state}")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--org", "organization_id", required=True)
@auth_file_option
@data_dir_option
def keys_revoke(
    key_id: str, organization_id: str, auth_file: Path | None, data_dir: Path | None
) -> None:
    """Revoke one key of an organization."""
    import datetime

    from leadstream.auth_file import load_auth, save_auth
    from leadstream.domain.auth import revoked

    path = _auth_path(auth_file, data_dir)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    try:
        save_auth(path, revoked(load_auth(path), str(organization_id), key_id, now))
    except KeyError:
        raise click.BadParameter(f"organization {organization_id} has no key {key_id}") from None
    click.echo(f"revoked {key_id}")


@main.command()
@click.argument("organization_id")
@click.argument("phone")
@click.option(
    "--url", default=None, help="Worker base URL [default: http://127.0.0.1:$LEADSTREAM_WEB_PORT]."
)
@click.option(
    "--api-key",
    envvar="LEADSTREAM_API_KEY",
    show_envvar=True,
    required=True,
    help="An API key of the lead's organization (leadstream keys create).",
)
def lead(organization_id: str, phone: str, url: str | None, api_key: str) -> None:
    """Show one lead's stored events (read-only, from a running worker)."""
    base = url or f"http://127.0.0.1:{Settings().web_port}"
    path = f"/api/v1/leads/{urllib.parse.quote(organization_id)}/{urllib.parse.quote(phone)}"
    request = urllib.request.Request(  # noqa: S310 - user-given URL
        base + path, headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - user-given URL
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
