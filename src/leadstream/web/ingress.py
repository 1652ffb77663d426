"""What the HTTP API asks of the rest of the worker: one service, built in ``create_app``.

The views know this protocol and the domain, nothing of faust's agents or Kafka's
clients: the worker's implementation is :class:`leadstream.ingress.StreamIngress`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from leadstream.domain.audience import MemberOp
from leadstream.domain.explain import Explanation, SendRecord
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.sends import AudienceFilterSpec, Counts, SendId, SendTrigger
from leadstream.wire.records import PartitionDone

__all__ = [
    "Erasure",
    "Explained",
    "Ingress",
    "LeadState",
    "NotServedHere",
    "PreviewShare",
    "SendReports",
]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing a lead removed."""

    events: int
    memberships: int
    suppression_kept: bool


@dataclass(frozen=True, slots=True)
class LeadState:
    """One lead's stored events (type, occurredAt in UTC ms) and opt-out state."""

    partition: int
    opted_out: bool
    events: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class NotServedHere:
    """The lead's partition is not active on this worker (or the worker is not ready)."""

    partition: int
    ready: bool
    owner: str | None  # the worker that holds it, when known


@dataclass(frozen=True, slots=True)
class PreviewShare:
    """A preview evaluated over some partitions: their counts summed, and up to the asked
    number of recipients ``(phoneE164, externalId)``."""

    partitions: list[int]
    counts: Counts
    recipient_count: int
    # (phoneE164, externalId, variant)
    sample: list[tuple[str, str | None, str | None]]
    # Recipients by split name (empty without splits).
    variants: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Explained:
    """A lead in a materialized send: the send's record in the lead's partition and the
    explanation drawn from it."""

    record: SendRecord
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class SendReports:
    """A send as the progress topic tells it: the done report of each partition whose
    share is committed (in partition order), and whether its summary is committed."""

    dones: list[PartitionDone]
    summarized: bool


class Ingress(Protocol):
    """The worker's side of every HTTP endpoint. A write returns once Kafka has it (and,
    for events and filters, once it is applied); ``TimeoutError`` or ``OSError`` when
    Kafka does not confirm, and a retry of the same request is then safe."""

    async def apply_events(self, events: list[LeadEvent]) -> tuple[int, int]:
        """Route ``events`` by lead and wait until applied: ``(inserted, duplicates)``."""
        ...

    async def send_members(self, ops: list[MemberOp]) -> None:
        """Route membership operations by lead; returns once the broker has them."""
        ...

    async def decide_audience_filter(
        self, send: SendId, campaign: str, spec: AudienceFilterSpec
    ) -> str:
        """The send's home partition's decision: accepted, already_received or late."""
        ...

    def read_lead(self, org: str, phone: str) -> LeadState | NotServedHere:
        """A lead's state, from this worker's store."""
        ...

    async def erase(self, org: str, phone: str, request_id: str) -> Erasure:
        """Erase the lead in its partition (wherever it is served) and wait for it."""
        ...

    def preview(
        self,
        trigger: SendTrigger,
        audience_filter: AudienceFilterSpec | None,
        *,
        sample: int,
        partitions: list[int] | None = None,
    ) -> PreviewShare | NotServedHere:
        """The send ``trigger`` would be now, evaluated on this worker's indexes, nothing
        written: over ``partitions`` (default: every partition). NotServedHere names the
        first of them not active here (or that the worker is not ready)."""
        ...

    def partition_owners(self) -> dict[int, str | None]:
        """Which worker (its URL) holds each lead partition, as the group's assignment
        says; this worker's own are included."""
        ...

    def explain(self, org: str, send: str, phone: str) -> Explained | NotServedHere | None:
        """What send ``send`` did to the lead, from the lead's partition; None when that
        partition holds no record of the send (unknown, not materialized, or expired)."""
        ...

    def sends_reported(self, org: str) -> list[SendReports]:
        """The organization's sends with at least one partition's share committed, every
        partition's report included: the progress topic, which every worker reads whole."""
        ...

    async def ready_partitions(self) -> list[int] | None:
        """The partitions this worker serves, or None while it is not ready (broker
        unreachable, recovery running, an index not built yet, or no lead-events router)."""
        ...

    def count_rejected(self, rows: int) -> None:
        """Count rows refused before they reached Kafka (in the answer only)."""
        ...

    def metrics_text(self) -> str:
        """The Prometheus exposition of the worker's metrics."""
        ...
