"""JSON encodings of what leadstream writes to external topics (``rejects`` records)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from leadstream.domain.ingest import Rejected

__all__ = [
    "MAX_REJECT_RAW_BYTES",
    "encode_json",
    "reject_record",
]

logger = logging.getLogger(__name__)

MAX_REJECT_RAW_BYTES = 4096

_json = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    return _json.encode(value)


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


def reject_record(
    rejected: Rejected, *, source: str, partition: int, offset: int
) -> dict[str, Any]:
    """The ``rejects`` topic value (SPEC section 5); ``raw`` is the input cut to 4 KiB."""
    record: dict[str, Any] = {
        "source": source,
        "partition": partition,
        "offset": offset,
        "reason": rejected.reason.value,
        "detail": rejected.detail,
        "raw": _raw_text(rejected.raw),
    }
    if rejected.index is not None:
        record["index"] = rejected.index
    if rejected.phone is not None:
        record["phoneE164"] = rejected.phone
    if rejected.organization_id is not None:
        record["organizationId"] = rejected.organization_id
    return record
