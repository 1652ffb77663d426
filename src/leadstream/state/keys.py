"""Every byte key of the lead-keyed table, defined in one place.

Layout: ``kind SEP field SEP field ...`` with ``SEP = b"\\x00"``. Identifiers cannot contain
NUL (organization ids are ``[A-Za-z0-9_-]``, phones are E.164, event types reject control
characters), so a prefix ending in ``SEP`` never matches a longer identifier. Timestamps are
unsigned 64-bit big-endian so that byte order is time order, which makes a time window one
bounded range scan.

=========  ==============================================  =============================
kind       key                                              value
=========  ==============================================  =============================
``E``      E org phone eventType occurredAt(u64)            ``b"\\x01"`` (presence)
``C``      C org phone eventType                            compacted: count u64, max u64
=========  ==============================================  =============================
"""

from __future__ import annotations

import logging
import struct

__all__ = [
    "SEP",
    "compacted_key",
    "compacted_value",
    "decode_compacted",
    "decode_event_key",
    "event_key",
    "event_type_prefix",
    "events_kind_prefix",
    "lead_events_prefix",
    "prefix_upper_bound",
    "ts_bytes",
]

logger = logging.getLogger(__name__)

SEP = b"\x00"
_EVENT = b"E"
_COMPACTED = b"C"
_U64 = struct.Struct(">Q")
_COMPACTED_VALUE = struct.Struct(">QQ")


def ts_bytes(ms: int) -> bytes:
    return _U64.pack(ms)


def lead_events_prefix(org: str, phone: str) -> bytes:
    return b"".join((_EVENT, SEP, org.encode(), SEP, phone.encode(), SEP))


def event_type_prefix(org: str, phone: str, event_type: str) -> bytes:
    return lead_events_prefix(org, phone) + event_type.encode() + SEP


def event_key(org: str, phone: str, event_type: str, occurred_at: int) -> bytes:
    return event_type_prefix(org, phone, event_type) + _U64.pack(occurred_at)


def events_kind_prefix() -> bytes:
    """Prefix of every event key of a partition (used by compaction)."""
    return _EVENT + SEP


def decode_event_key(key: bytes) -> tuple[str, str, str, int]:
    """(org, phone, eventType, occurredAt) of an event key."""
    body, ts = key[2:-8], key[-8:]
    org, phone, event_type, _ = body.split(SEP, 3)
    return org.decode(), phone.decode(), event_type.decode(), _U64.unpack(ts)[0]


def compacted_key(org: str, phone: str, event_type: str) -> bytes:
    return b"".join((_COMPACTED, SEP, org.encode(), SEP, phone.encode(), SEP, event_type.encode()))


def compacted_value(count: int, max_ts: int) -> bytes:
    return _COMPACTED_VALUE.pack(count, max_ts)


def decode_compacted(value: bytes) -> tuple[int, int]:
    """(count, max occurredAt) of the events folded away by compaction."""
    count, max_ts = _COMPACTED_VALUE.unpack(value)
    return int(count), int(max_ts)


def prefix_upper_bound(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a prefix of only 0xff bytes has no upper bound")
    return stripped[:-1] + bytes([stripped[-1] + 1])
