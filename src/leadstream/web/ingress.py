"""What the HTTP API asks of the rest of the worker: one service, built in ``create_app``.

The views know this protocol and the domain, nothing of faust's agents or Kafka's
clients: the worker's implementation is :class:`leadstream.ingress.StreamIngress`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from leadstream.domain.audience import MemberOp
from leadstream.domain.ingest import LeadEvent
from leadstream.domain.sends import AudienceFilterSpec, SendId

__all__ = ["Ingress", "LeadState", "NotServedHere"]


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

    async def ready_partitions(self) -> list[int] | None:
        """The partitions this worker serves, or None while it is not ready (broker
        unreachable, recovery running, or no lead-events router)."""
        ...

    def count_rejected(self, rows: int) -> None:
        """Count rows refused before they reached Kafka (in the answer only)."""
        ...

    def metrics_text(self) -> str:
        """The Prometheus exposition of the worker's metrics."""
        ...
