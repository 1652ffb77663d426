"""What travels on the lead-keyed internal topic: one tagged msgpack command per message.

Every write to the lead table goes through this topic, so that a partition's events,
memberships, triggers and filters are applied in one order by the one agent that owns
the partition (and so are in the same changelog partition).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import msgspec

from leadstream.domain.audience import MemberOp
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.send_state import PendingRecord
from leadstream.domain.sends import AudienceFilterSpec, SendId, filter_parts

__all__ = [
    "ApplyReply",
    "EraseLead",
    "EraseReply",
    "ClaimTrigger",
    "Command",
    "EventsBatch",
    "FilterPart",
    "FilterReply",
    "FilterRequest",
    "MembersBatch",
    "Reply",
    "BroadcastTrigger",
    "COMMAND_ROWS",
    "decode_command",
    "decode_reply",
    "encode_command",
    "encode_reply",
    "filter_commands",
    "row_slices",
]

# Rows per command message: keeps each well under Kafka's default 1 MB limit.
COMMAND_ROWS = 5_000
T = TypeVar("T")


def row_slices(rows: Sequence[T]) -> Iterator[list[T]]:
    """``rows`` in slices of at most :data:`COMMAND_ROWS`, one per command."""
    for i in range(0, len(rows), COMMAND_ROWS):
        yield list(rows[i : i + COMMAND_ROWS])


class EventsBatch(msgspec.Struct, tag="E", array_like=True):
    events: list[LeadEvent]
    # Set by the HTTP API: the apply agent answers on the replies topic with the counts.
    reply_to: str | None = None


class ApplyReply(msgspec.Struct, tag="A", array_like=True, frozen=True):
    """What the apply agent reports for an EventsBatch that asked for a reply."""

    request: str
    inserted: int
    duplicates: int


class FilterReply(msgspec.Struct, tag="R", array_like=True, frozen=True):
    """The home partition's decision on an audience filter sent over HTTP."""

    request: str
    status: str  # accepted | already_received | late
    lead_count: int


class EraseReply(msgspec.Struct, tag="X", array_like=True, frozen=True):
    """What the lead's partition erased."""

    request: str
    events: int
    memberships: int
    suppression_kept: bool


Reply = ApplyReply | FilterReply | EraseReply


class MembersBatch(msgspec.Struct, tag="M", array_like=True):
    ops: list[MemberOp]


class ClaimTrigger(msgspec.Struct, tag="C", array_like=True):
    """Sent to the send's home partition: the first trigger per (org, sendId) wins."""

    send: PendingRecord


class BroadcastTrigger(msgspec.Struct, tag="T", array_like=True):
    """Sent by the home partition to every partition once the claim is won."""

    send: PendingRecord


class FilterPart(msgspec.Struct, tag="F", array_like=True):
    """An audience filter as one partition needs it: all externalIds, its own phones."""

    organization_id: str
    campaign_id: str
    send_id: str
    received_at: int
    seq: int
    part: int
    parts: int
    mode: str
    external_ids: list[str]
    phones: list[str]


class FilterRequest(msgspec.Struct, tag="Q", array_like=True):
    """An audience filter received over HTTP, sent to the send's home partition, which
    knows the trigger (deadline) and the last filter accepted (identical repeats)."""

    organization_id: str
    campaign_id: str
    send_id: str
    mode: str
    external_ids: list[str]
    phones: list[str]
    reply_to: str


class EraseLead(msgspec.Struct, tag="Z", array_like=True):
    """Erase one lead, in its partition; ``reply_to`` names the HTTP request waiting."""

    organization_id: str
    phone: str
    reply_to: str


Command = (
    EventsBatch
    | MembersBatch
    | ClaimTrigger
    | BroadcastTrigger
    | FilterPart
    | FilterRequest
    | EraseLead
)


def filter_commands(
    send: SendId,
    campaign: str,
    spec: AudienceFilterSpec,
    *,
    received_at: int,
    seq: int,
    partitions: int,
) -> list[tuple[int, FilterPart]]:
    """An audience filter as the parts each partition receives (see ``filter_parts``):
    ``(partition, part)`` pairs, at most :data:`COMMAND_ROWS` leads a part."""
    org = send.organization_id
    out: list[tuple[int, FilterPart]] = []
    for partition, parts in filter_parts(org, spec, partitions, COMMAND_ROWS).items():
        for index, (external_ids, phones) in enumerate(parts):
            part = FilterPart(
                org,
                campaign,
                send.send_id,
                received_at,
                seq,
                index,
                len(parts),
                spec.mode,
                external_ids,
                phones,
            )
            out.append((partition, part))
    return out


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(data: bytes) -> Command:
    return _decoder.decode(data)


_reply_decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)


def encode_reply(reply: Reply) -> bytes:
    return _encoder.encode(reply)


def decode_reply(data: bytes) -> Reply:
    return _reply_decoder.decode(data)
