"""What leadstream writes on topics, as typed records (snake_case here, camelCase on the
wire): the recipient chunks and summary of a send (``send-recipients``), each partition's
report on the internal progress topic, and the ``rejects`` record.

The field names and their order are the JSON a consumer reads; the pydantic models in
:mod:`leadstream.wire.models` describe the same records for the JSON Schemas, and a test
holds the two together. Chunks are assembled from recipient entries encoded once
(:func:`encode_recipient`, kept in the partition's index), so a send only joins bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from leadstream.domain.ingest import Rejected
from leadstream.domain.normalize import format_ms
from leadstream.domain.sends import Counts, SendTrigger
from leadstream.index.partition import EntryCodec

__all__ = [
    "MAX_REJECT_RAW_BYTES",
    "RECIPIENT_ENTRIES",
    "PartitionDone",
    "Progress",
    "RejectRecord",
    "SendCounts",
    "SendSummary",
    "Summarized",
    "decode_progress",
    "done_record",
    "encode_chunks",
    "encode_json",
    "decode_recipient",
    "encode_recipient",
    "reject_headers",
    "reject_record",
    "send_headers",
    "send_key",
    "summary_record",
]

MAX_REJECT_RAW_BYTES = 4096

_json = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    return _json.encode(value)


# -- send-recipients -------------------------------------------------------------------------


def send_key(org: str, send: str) -> str:
    """The ``send-recipients`` message key of a send (and of its progress records)."""
    return f"{org}:{send}"


class Recipient(msgspec.Struct, rename="camel"):
    phone_e164: str
    external_id: str | None


class _ChunkHead(msgspec.Struct, rename="camel", tag_field="type", tag="recipients"):
    """A chunk without its recipients, which :func:`encode_chunks` appends as bytes."""

    organization_id: str
    campaign_id: str
    send_id: str
    scheduled_for: str
    partition: int
    chunk: int


class SendCounts(msgspec.Struct, rename="camel"):
    audience: int
    opted_out: int
    dropped_by_audience_filter: int
    dropped_by_event_filter: int
    late_audience_filters: int
    dropped_by_frequency_cap: int
    dropped_by_quiet_hours: int
    held_out: int


class SendSummary(
    msgspec.Struct, rename="camel", tag_field="type", tag="summary", omit_defaults=True
):
    """The last record of a send: after every chunk, once."""

    organization_id: str
    campaign_id: str
    send_id: str
    scheduled_for: str
    materialized_at: str
    late: bool
    recipient_count: int
    chunk_count: int
    partitions: int
    counts: SendCounts
    # Recipients by split name, in the trigger's order (absent without splits).
    variants: dict[str, int] | None = None


def encode_recipient(phone: str, external_id: str | None) -> bytes:
    """One entry of a chunk's ``recipients``, encoded (chunks are assembled from these)."""
    return _json.encode(Recipient(phone, external_id))


_recipient_decoder = msgspec.json.Decoder(Recipient)


def decode_recipient(entry: bytes) -> tuple[str, str | None]:
    """``(phoneE164, externalId)`` of an entry made by :func:`encode_recipient`."""
    recipient = _recipient_decoder.decode(entry)
    return recipient.phone_e164, recipient.external_id


# The index keeps each member's entry made once, and reads its phone back from it.
RECIPIENT_ENTRIES = EntryCodec(encode_recipient, decode_recipient)


def encode_chunks(
    trigger: SendTrigger, partition: int, recipients: Sequence[bytes], chunk_size: int
) -> list[bytes]:
    """The ``recipients`` chunks of one partition as JSON (none when it has no recipient),
    from entries encoded by :func:`encode_recipient`."""
    out = []
    for index, start in enumerate(range(0, len(recipients), chunk_size)):
        head = _json.encode(
            _ChunkHead(
                trigger.organization_id,
                trigger.campaign_id,
                trigger.send_id,
                format_ms(trigger.scheduled_for),
                partition,
                index,
            )
        )
        body = b",".join(recipients[start : start + chunk_size])
        out.append(b"".join((head[:-1], b',"recipients":[', body, b"]}")))
    return out


def send_headers(
    organization_id: str, send_id: str, kind: str, chunk: int | None = None
) -> list[tuple[str, bytes]]:
    """The Kafka headers of a ``send-recipients`` record, so that a dispatcher routes it
    without parsing its JSON: ``organizationId``, ``sendId``, ``type`` (``recipients`` or
    ``summary``, as in the value) and, on a chunk, ``chunk`` (its index, decimal)."""
    headers = [
        ("organizationId", organization_id.encode()),
        ("sendId", send_id.encode()),
        ("type", kind.encode()),
    ]
    if chunk is not None:
        headers.append(("chunk", str(chunk).encode()))
    return headers


def reject_headers(source: str, reason: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of a ``rejects`` record: ``sourceTopic`` and ``reason``."""
    return [("sourceTopic", source.encode()), ("reason", reason.encode())]


# -- the progress topic (internal) -----------------------------------------------------------


class PartitionDone(msgspec.Struct, rename="camel", tag_field="type", tag="done"):
    """One partition's share of a send is committed: what the summary needs of it."""

    organization_id: str
    campaign_id: str
    send_id: str
    scheduled_for: int  # UTC milliseconds
    late: bool
    partition: int
    materialized_at: int  # UTC milliseconds
    recipient_count: int
    chunk_count: int
    # audience, opted out, dropped by the audience filter, by event filters, by the
    # frequency cap, by quiet hours, held out (those after the fourth absent from older
    # records: 0)
    counts: tuple[int, ...]
    late_audience_filters: int
    # When the trigger arrived (UTC milliseconds; 0 in records of versions before it).
    received_at: int = 0
    # Recipients by split name (empty without splits).
    variants: dict[str, int] = msgspec.field(default_factory=dict)
    # The trigger's traceparent, which the summary's span is a child of (empty: none).
    trace: str = ""


class Summarized(msgspec.Struct, rename="camel", tag_field="type", tag="summarized"):
    """The send's summary is committed; nobody emits it again."""

    organization_id: str
    send_id: str


Progress = PartitionDone | Summarized
_progress = msgspec.json.Decoder(Progress)


def decode_progress(value: bytes) -> Progress:
    """A progress record; ``msgspec.DecodeError`` for anything a materializer did not write."""
    return _progress.decode(value)


def done_record(
    trigger: SendTrigger,
    *,
    partition: int,
    late: bool,
    materialized_at: int,
    recipient_count: int,
    counts: Counts,
    chunk_count: int,
    late_audience_filters: int,
    received_at: int,
    variants: dict[str, int] | None = None,
    trace: str = "",
) -> PartitionDone:
    """What one partition reports once its chunks are committed."""
    return PartitionDone(
        trigger.organization_id,
        trigger.campaign_id,
        trigger.send_id,
        trigger.scheduled_for,
        late,
        partition,
        materialized_at,
        recipient_count,
        chunk_count,
        (
            counts.audience,
            counts.opted_out,
            counts.dropped_by_audience_filter,
            counts.dropped_by_event_filter,
            counts.dropped_by_frequency_cap,
            counts.dropped_by_quiet_hours,
            counts.held_out,
        ),
        late_audience_filters,
        received_at,
        dict(variants or {}),
        trace,
    )


def summary_record(dones: Sequence[PartitionDone]) -> SendSummary:
    """The one summary of a send, from the done reports of all its partitions."""
    first = dones[0]
    audience, opted_out, by_filter, by_events, by_cap, by_quiet, held_out = (
        sum(d.counts[i] if i < len(d.counts) else 0 for d in dones) for i in range(7)
    )
    variants: dict[str, int] | None = None
    for done in dones:
        for name, count in done.variants.items():
            variants = {} if variants is None else variants
            variants[name] = variants.get(name, 0) + count
    return SendSummary(
        first.organization_id,
        first.campaign_id,
        first.send_id,
        format_ms(first.scheduled_for),
        format_ms(max(d.materialized_at for d in dones)),
        any(d.late for d in dones),
        sum(d.recipient_count for d in dones),
        sum(d.chunk_count for d in dones),
        len(dones),
        SendCounts(
            audience,
            opted_out,
            by_filter,
            by_events,
            # Every partition saw the same broadcast filters; they agree on this count.
            max(d.late_audience_filters for d in dones),
            by_cap,
            by_quiet,
            held_out,
        ),
        variants,
    )


# -- rejects ---------------------------------------------------------------------------------


class RejectRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    """The ``rejects`` topic value: where the input was, why it was refused, the input cut
    to :data:`MAX_REJECT_RAW_BYTES`, and for a row its index, raw phone and organization."""

    source: str
    partition: int
    offset: int
    reason: str
    detail: str
    raw: str
    index: int | None = None
    phone_e164: str | None = None
    organization_id: str | None = None


def _raw_text(raw: Any) -> str:
    if isinstance(raw, bytes | bytearray):
        text = bytes(raw[:MAX_REJECT_RAW_BYTES]).decode("utf-8", errors="replace")
    else:
        try:
            text = _json.encode(raw)[:MAX_REJECT_RAW_BYTES].decode("utf-8", errors="ignore")
        except (TypeError, msgspec.EncodeError):
            text = repr(raw)
    # Replacement characters take 3 bytes each: cut again, on a character boundary.
    return text.encode()[:MAX_REJECT_RAW_BYTES].decode("utf-8", errors="ignore")


def reject_record(rejected: Rejected, *, source: str, partition: int, offset: int) -> RejectRecord:
    """The record of ``rejected``, read from ``source`` at ``partition``/``offset``."""
    return RejectRecord(
        source,
        partition,
        offset,
        rejected.reason.value,
        rejected.detail,
        _raw_text(rejected.raw),
        rejected.index,
        rejected.phone,
        rejected.organization_id,
    )
