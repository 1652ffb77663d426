"""Reject reason codes (docs/contract.md, section 2) and the error raised by row validators."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason", "RowError"]


class Reason(StrEnum):
    """Why a row or a message was rejected; the values are the contract's codes."""

    INVALID_PHONE = "invalid_phone"
    INVALID_OCCURRED_AT = "invalid_occurred_at"
    OCCURRED_AT_OUT_OF_RANGE = "occurred_at_out_of_range"
    INVALID_EVENT_TYPE = "invalid_event_type"
    MISSING_FIELD = "missing_field"
    INVALID_ORGANIZATION_ID = "invalid_organization_id"
    METADATA_TOO_LARGE = "metadata_too_large"
    INVALID_JSON = "invalid_json"
    # A send trigger's (or preview's) audience conditions are malformed, or it carries a
    # field the contract does not define: never a wider send than asked for.
    INVALID_CONDITIONS = "invalid_conditions"
    BATCH_TOO_LARGE = "batch_too_large"
    # A message larger than LEADSTREAM_MAX_MESSAGE_BYTES, or a compressed batch that would
    # decompress beyond it.
    TOO_LARGE = "too_large"
    # A message that raised something unexpected on every one of its bounded attempts.
    INTERNAL_ERROR = "internal_error"


class RowError(ValueError):
    """A value failed validation; carries the reason code and a human-readable detail."""

    def __init__(self, reason: Reason, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        # The JSON path of the value at fault (``eventFilters[0].within``), when known.
        self.field = field
