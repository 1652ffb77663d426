"""Which partition a lead's state lives in. Changing this function orphans existing state."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Protocol, TypeVar

__all__ = ["HasLead", "group_by_partition", "lead_partition", "send_partition"]


def lead_partition(organization_id: str, phone: str, partitions: int) -> int:
    """Stable partition of the lead (organization_id, phone): CRC-32 of both, mod N."""
    return zlib.crc32(f"{organization_id}\x00{phone}".encode()) % partitions


def send_partition(organization_id: str, send_id: str, partitions: int) -> int:
    """Home partition of a send: where its trigger is claimed and its summary emitted."""
    return zlib.crc32(f"{organization_id}\x00send\x00{send_id}".encode()) % partitions


class HasLead(Protocol):
    @property
    def organization_id(self) -> str: ...

    @property
    def phone(self) -> str: ...


_T = TypeVar("_T", bound=HasLead)


def group_by_partition(items: Iterable[_T], partitions: int) -> dict[int, list[_T]]:
    """Split lead-keyed items by the partition that holds their lead, keeping their order."""
    groups: dict[int, list[_T]] = {}
    for item in items:
        groups.setdefault(lead_partition(item.organization_id, item.phone, partitions), []).append(
            item
        )
    return groups
