"""Reading lead-event files (JSONL or CSV) and producing them as batch messages."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from leadstream.domain.ingest import MAX_BATCH_EVENTS
from leadstream.domain.normalize import normalize_organization_id
from leadstream.domain.rejects import RowError
from leadstream.kafka.config import KafkaConnection
from leadstream.kafka.io import produce
from leadstream.wire.records import encode_json

__all__ = [
    "FileRow",
    "batch_members",
    "build_trigger",
    "PublishReport",
    "batch_rows",
    "make_producer",
    "publish_member_rows",
    "publish_values",
    "publish_event_rows",
    "read_event_rows",
]

logger = logging.getLogger(__name__)

EVENT_CSV_COLUMNS = ("organizationId", "eventType", "phoneE164", "occurredAt", "metadata")


@dataclass(slots=True)
class FileRow:
    """One input line: the parsed row, or the reason it could not be read."""

    line: int
    row: dict[str, Any] | None
    error: str | None = None
    offset: int = 0


@dataclass(slots=True)
class PublishReport:
    rows: int = 0
    messages: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: int = 0
    what: str = "events"

    def summary(self, topic: str) -> str:
        return (
            f"published {self.rows} {self.what} in {self.messages} messages to {topic}; "
            f"{len(self.skipped)} lines skipped; {self.failed} messages failed"
        )


def read_event_rows(path: Path, fmt: str | None = None) -> Iterator[FileRow]:
    """Rows of a JSONL (one event object a line) or CSV file (header row required).

    A line that cannot be read is yielded with ``error`` set, never dropped silently.
    """
    kind = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    with path.open("rb") as fh:
        if kind == "csv":
            yield from _read_csv(fh)
        else:
            yield from _read_jsonl(fh)


def _read_jsonl(fh: io.BufferedReader) -> Iterator[FileRow]:
    decoder = msgspec.json.Decoder()
    offset = 0
    for number, line in enumerate(fh, start=1):
        offset += len(line)
        if not line.strip():
            continue
        try:
            row = decoder.decode(line)
        except msgspec.DecodeError as exc:
            yield FileRow(number, None, f"line {number}: invalid JSON ({exc})", offset)
            continue
        if not isinstance(row, dict):
            yield FileRow(number, None, f"line {number}: not a JSON object", offset)
            continue
        yield FileRow(number, row, None, offset)


def _read_csv(fh: io.BufferedReader) -> Iterator[FileRow]:
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    reader = csv.DictReader(text)
    for number, record in enumerate(reader, start=2):
        row: dict[str, Any] = {k: v for k, v in record.items() if k and v not in (None, "")}
        meta = row.get("metadata")
        if isinstance(meta, str):
            try:
                row["metadata"] = msgspec.json.decode(meta)
            except msgspec.DecodeError:
                yield FileRow(number, None, f"line {number}: metadata is not JSON", fh.tell())
                continue
        yield FileRow(number, row, None, fh.tell())


def batch_rows(
    rows: Iterable[FileRow], *, max_events: int = MAX_BATCH_EVENTS
) -> Iterator[tuple[str, list[dict[str, Any]], list[FileRow]]]:
    """Group readable rows into per-organization batches of at most ``max_events``.

    Yields ``(organizationId, events, unreadable rows seen since the last batch)``; rows
    whose organizationId is invalid are reported as unreadable (a batch has one org).
    """
    open_batches: dict[str, list[dict[str, Any]]] = {}
    bad: list[FileRow] = []
    for item in rows:
        if item.row is None:
            bad.append(item)
            continue
        row = dict(item.row)
        try:
            org = normalize_organization_id(row.pop("organizationId", None))
        except RowError as err:
            bad.append(FileRow(item.line, None, f"line {item.line}: {err.detail}", item.offset))
            continue
        batch = open_batches.setdefault(org, [])
        batch.append(row)
        if len(batch) >= max_events:
            yield org, open_batches.pop(org), bad
            bad = []
    for org, batch in open_batches.items():
        yield org, batch, bad
        bad = []
    if bad:
        yield "", [], bad


def make_producer(connection: KafkaConnection) -> Producer:
    """An idempotent, acks=all producer able to send 50,000-event batches."""
    return connection.producer({"compression.type": "zstd", "linger.ms": 20})


def publish_event_rows(
    producer: Producer,
    topic: str,
    rows: Iterable[FileRow],
    *,
    max_events: int = MAX_BATCH_EVENTS,
) -> PublishReport:
    """Produce ``rows`` as batch-shaped messages; waits until every message is acknowledged."""
    report = PublishReport()

    def values() -> Iterator[tuple[bytes, bytes]]:
        for org, events, bad in batch_rows(rows, max_events=max_events):
            report.skipped.extend(b.error or f"line {b.line}" for b in bad)
            if events:
                report.rows += len(events)
                report.messages += 1
                yield org.encode(), encode_json({"organizationId": org, "events": events})

    _sent, report.failed = publish_values(producer, topic, values())
    return report


def batch_members(
    rows: Iterable[FileRow],
    *,
    organization_id: str,
    campaign_id: str,
    max_members: int = MAX_BATCH_EVENTS,
) -> Iterator[tuple[dict[str, Any], list[FileRow]]]:
    """Audience rows (``phoneE164``/``phone``, optional ``externalId``, ``op``) as batch values
    ``{organizationId, campaignId, members}``, with the unreadable rows seen on the way."""
    members: list[dict[str, Any]] = []
    bad: list[FileRow] = []
    for item in rows:
        if item.row is None:
            bad.append(item)
            continue
        row = item.row
        member = {"phoneE164": row.get("phoneE164", row.get("phone"))}
        for field_name in ("externalId", "op"):
            if row.get(field_name) not in (None, ""):
                member[field_name] = row[field_name]
        members.append(member)
        if len(members) >= max_members:
            yield (
                {"organizationId": organization_id, "campaignId": campaign_id, "members": members},
                bad,
            )
            members, bad = [], []
    if members or bad:
        yield (
            {"organizationId": organization_id, "campaignId": campaign_id, "members": members},
            bad,
        )


def publish_member_rows(
    producer: Producer,
    topic: str,
    rows: Iterable[FileRow],
    *,
    organization_id: str,
    campaign_id: str,
) -> PublishReport:
    """Produce audience ``rows`` as batch messages of up to 50,000 members (keyed by the
    organization); waits until every message is acknowledged."""
    report = PublishReport(what="members")

    def values() -> Iterator[tuple[bytes, bytes]]:
        batches = batch_members(rows, organization_id=organization_id, campaign_id=campaign_id)
        for value, bad in batches:
            report.skipped.extend(b.error or f"line {b.line}" for b in bad)
            if value["members"]:
                report.rows += len(value["members"])
                report.messages += 1
                yield organization_id.encode(), encode_json(value)

    _sent, report.failed = publish_values(producer, topic, values())
    return report


def publish_values(
    producer: Producer, topic: str, values: Iterable[tuple[bytes, bytes]]
) -> tuple[int, int]:
    """Produce ``(key, value)`` pairs and wait for all acks: ``(messages, failed)``."""
    failed = 0
    sent = 0

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        nonlocal failed
        if err is not None:
            failed += 1
            logger.error("delivery failed: %s", err)

    for key, value in values:
        produce(producer, topic, value, key, on_delivery=delivered)
        producer.poll(0)
        sent += 1
    failed += producer.flush(120)
    return sent, failed


def build_trigger(
    *,
    organization_id: str,
    campaign_id: str,
    send_id: str,
    scheduled_for: str,
    filters: list[str],
    audience_filter: bool,
    frequency_cap: str | None = None,
    quiet_hours: str | None = None,
    conditions: str | None = None,
    holdout: str | None = None,
    splits: Sequence[str] = (),
) -> dict[str, Any]:
    """A ``send-triggers`` value from CLI flags.

    A filter is written ``MODE:EVENT_TYPE[:within=MINUTES][:min=COUNT][:where=KEY=VALUE]``
    (``where`` repeatable; ``VALUE`` is a JSON scalar or else a string, ``a|b`` for either);
    a frequency cap ``MAX_SENDS/HOURS``; quiet hours ``HH:MM-HH:MM[@TIME_ZONE]``, ``us-tcpa``
    or both joined by ``+``; conditions a JSON file or JSON text; a holdout
    ``PERCENT[:SALT]``; a split ``NAME=PERCENT``.
    """
    parsed = [_filter_flag(spec) for spec in filters]
    trigger: dict[str, Any] = {
        "organizationId": organization_id,
        "campaignId": campaign_id,
        "sendId": send_id,
        "scheduledFor": scheduled_for,
    }
    if len(parsed) == 1:
        trigger["eventFilter"] = parsed[0]
    elif parsed:
        trigger["eventFilters"] = parsed
    if audience_filter:
        trigger["audienceFilter"] = {"enabled": True}
    if frequency_cap is not None:
        sends, slash, hours = frequency_cap.partition("/")
        if not slash:
            raise ValueError(f"a frequency cap is MAX_SENDS/HOURS, got {frequency_cap!r}")
        trigger["frequencyCap"] = {"maxSends": int(sends), "withinHours": int(hours)}
    if quiet_hours is not None:
        trigger["quietHours"] = _quiet_flag(quiet_hours)
    if conditions is not None:
        trigger["conditions"] = _json_flag(conditions)
    if holdout is not None:
        percent, colon, salt = holdout.partition(":")
        if not percent.isdigit():
            raise ValueError(f"a holdout is PERCENT[:SALT], got {holdout!r}")
        trigger["holdout"] = {"percent": int(percent)} | ({"salt": salt} if colon else {})
    if splits:
        trigger["splits"] = [_split_flag(spec) for spec in splits]
    return trigger


def _quiet_flag(text: str) -> dict[str, Any]:
    quiet: dict[str, Any] = {}
    for part in text.split("+"):
        if part == "us-tcpa":
            quiet["policy"] = part
            continue
        span, at, zone = part.partition("@")
        start, dash, end = span.partition("-")
        if not dash:
            raise ValueError(
                f"quiet hours are HH:MM-HH:MM[@TIME_ZONE], us-tcpa or both joined by +,"
                f" got {text!r}"
            )
        quiet |= {"start": start, "end": end} | ({"timeZone": zone} if at else {})
    return quiet


def _json_flag(text: str) -> Any:
    """JSON text, or the JSON in the file it names."""
    source = text
    if not text.lstrip().startswith(("{", "[")):
        try:
            source = Path(text).read_text()
        except OSError as err:
            raise ValueError(f"conditions: neither JSON nor a readable file: {err}") from None
    try:
        return json.loads(source)
    except ValueError as err:
        raise ValueError(f"conditions: not JSON: {err}") from None


def _split_flag(spec: str) -> dict[str, Any]:
    name, eq, percent = spec.rpartition("=")
    if not eq or not name or not percent.isdigit():
        raise ValueError(f"a split is NAME=PERCENT, got {spec!r}")
    return {"name": name, "percent": int(percent)}


def _filter_flag(spec: str) -> dict[str, Any]:
    mode, _, rest = spec.partition(":")
    event_type, *options = rest.split(":")
    item: dict[str, Any] = {"mode": mode, "eventType": event_type}
    for option in options:
        name, _, value = option.partition("=")
        if name == "within":
            item["within"] = {"minutes": int(value)}
        elif name == "min":
            item["minCount"] = int(value)
        elif name == "where" and "=" in value:
            key, _, wanted = value.partition("=")
            values = [_scalar_flag(v) for v in wanted.split("|")]
            item.setdefault("where", {})[key] = values[0] if len(values) == 1 else {"in": values}
        else:
            raise ValueError(
                f"unknown filter option {option!r} in {spec!r} (within=, min=, where=KEY=VALUE)"
            )
    return item


def _scalar_flag(text: str) -> Any:
    """A JSON scalar when ``text`` is one (``7``, ``true``, ``null``, ``"7"``), else the text."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    return value if not isinstance(value, dict | list) else text
