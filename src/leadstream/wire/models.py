"""Pydantic models of every topic value (docs/contract.md, section 4), the source of
``schemas/*.json``.

These models are the documented contract, not the hot path: ingest and materialization
validate with the plain functions of :mod:`leadstream.domain`, and write the records of
:mod:`leadstream.wire.records`. The models describe exactly what those functions accept
(inputs) and what leadstream emits (outputs; tests/unit/test_schemas.py holds each output
model against the record that is written), and where a rule cannot be written in JSON
Schema (control characters, the 4 KiB metadata limit, date validity, a known time zone,
quiet hours whose start and end differ) the model checks it by calling the same domain
function, and the schema states it in a ``description``.

Lead events, audience members and audience filters allow any extra key (docs/contract.md,
section 4); a send trigger and its objects forbid them (a misspelled filter must never widen
a send), and so do outputs, so a consumer can rely on the schema as the whole record.
Optional input keys that the domain treats as absent when ``null`` accept ``null``;
the others (e.g. a row's own ``eventType``) do not, because ``null`` there is rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypeAliasType

from leadstream.domain.controls import (
    MAX_CAP_HOURS,
    MAX_CAP_SENDS,
    MAX_WHERE_KEY_CHARS,
    MAX_WHERE_KEYS,
    MAX_WHERE_VALUES,
    parse_quiet_hours,
)
from leadstream.domain.ingest import MAX_BATCH_EVENTS, MAX_REJECT_PHONE_CHARS
from leadstream.domain.normalize import (
    MAX_ID_DIGITS,
    MAX_METADATA_BYTES,
    SAFE_ID_PATTERN,
    normalize_event_type,
    normalize_metadata,
    parse_rfc3339_ms,
)
from leadstream.domain.rejects import Reason
from leadstream.settings import MAX_CHUNK_SIZE
from leadstream.wire.records import MAX_REJECT_RAW_BYTES

__all__ = [
    "TOPIC_SCHEMAS",
    "AudienceFilter",
    "AudienceFilterLead",
    "AudienceFilterSwitch",
    "AudienceMember",
    "AudienceMemberBatch",
    "AudienceMemberRow",
    "AudienceMembersValue",
    "EventFilter",
    "FrequencyCap",
    "LeadByExternalId",
    "LeadByPhone",
    "LeadEventBatch",
    "LeadEventBatchRow",
    "LeadEventSingle",
    "LeadEventsValue",
    "QuietHours",
    "Recipient",
    "RecipientsChunk",
    "Reject",
    "SendCounts",
    "SendRecipientsValue",
    "SendSummary",
    "SendTrigger",
    "WhereIn",
    "Within",
]

_SAFE_ID_PATTERN = f"^{SAFE_ID_PATTERN}$"
_MAX_INT_ID_EXCLUSIVE = 10**MAX_ID_DIGITS
# The shape normalize._RFC3339 accepts; [0-9] rather than \d, which is Unicode-wide in
# some regex dialects. Date validity and the offset range are checked by parse_rfc3339_ms.
_RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_UTC_MILLIS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
# libphonenumber's E.164: '+', a 1-3 digit country code not starting with 0, and a national
# number of up to 17 digits (its MAX_LENGTH_FOR_NSN), so longer than ITU's 15 digits.
_E164_PATTERN = r"^\+[1-9][0-9]{1,19}$"
# A local time of day, 00:00 to 23:59.
_HH_MM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# The longest time zone name the domain accepts (IANA's are at most 32 characters).
_MAX_TIME_ZONE_CHARS = 64

_OUTPUT = ConfigDict(extra="forbid")


def _check_event_type(value: str) -> str:
    return normalize_event_type(value)


def _check_rfc3339(value: str) -> str:
    parse_rfc3339_ms(value)
    return value


def _check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    normalize_metadata(value)  # raises on size; the model keeps the object itself
    return value


Id = TypeAliasType(
    "Id",
    Annotated[
        Annotated[StrictInt, Field(gt=0, lt=_MAX_INT_ID_EXCLUSIVE)]
        | Annotated[str, StringConstraints(pattern=_SAFE_ID_PATTERN)],
        Field(
            description=(
                "A positive integer (at most 64 digits) or a string matching "
                f'{_SAFE_ID_PATTERN}. 42 and "42" are the same id; leadstream emits the '
                "string form. Integers written with a fraction (42.0) are rejected."
            ),
        ),
    ],
)

CanonicalId = TypeAliasType(
    "CanonicalId",
    Annotated[
        str,
        StringConstraints(pattern=_SAFE_ID_PATTERN),
        Field(description='An id in its canonical form: always a string (42 is emitted as "42").'),
    ],
)

EventType = TypeAliasType(
    "EventType",
    Annotated[
        str,
        StringConstraints(min_length=1, max_length=100),
        AfterValidator(_check_event_type),
        Field(
            description=(
                "Free, case-sensitive string of 1 to 100 characters, with no control "
                "characters (Unicode category Cc) and no leading or trailing whitespace. "
                "Such values are rejected (invalid_event_type), never trimmed."
            ),
        ),
    ],
)

Rfc3339Timestamp = TypeAliasType(
    "Rfc3339Timestamp",
    Annotated[
        str,
        StringConstraints(pattern=_RFC3339_PATTERN),
        AfterValidator(_check_rfc3339),
        Field(
            description=(
                "RFC 3339 date-time with an explicit offset ('Z' or '+hh:mm'/'-hh:mm'); a "
                "timestamp without an offset is rejected. The date and time must exist. "
                "Normalized to UTC at millisecond precision (finer digits are truncated)."
            ),
        ),
    ],
)

UtcMillisTimestamp = TypeAliasType(
    "UtcMillisTimestamp",
    Annotated[
        str,
        StringConstraints(pattern=_UTC_MILLIS_PATTERN),
        Field(
            description="A UTC instant as YYYY-MM-DDTHH:MM:SS.sssZ (always milliseconds, always Z)."
        ),
    ],
)

PhoneInput = TypeAliasType(
    "PhoneInput",
    Annotated[
        str,
        Field(
            description=(
                "A phone number as the source wrote it ('+15551234567', '15551234567', "
                "'(555) 123-4567'). Parsed with libphonenumber in the default region "
                "(LEADSTREAM_DEFAULT_REGION, default US); accepted when it is a possible "
                "number, not necessarily an assigned one (invalid_phone otherwise)."
            ),
        ),
    ],
)

E164 = TypeAliasType(
    "E164",
    Annotated[
        str,
        StringConstraints(pattern=_E164_PATTERN),
        Field(description="A phone number in canonical E.164 form, as libphonenumber formats it."),
    ],
)

Metadata = TypeAliasType(
    "Metadata",
    Annotated[
        dict[str, Any] | None,
        AfterValidator(_check_metadata),
        Field(
            description=(
                "Optional JSON object kept on the event, at most "
                f"{MAX_METADATA_BYTES} bytes (4 KiB) once serialized as compact UTF-8 JSON "
                "(metadata_too_large otherwise). null is the same as absent."
            ),
        ),
    ],
)

LocalTime = TypeAliasType(
    "LocalTime",
    Annotated[
        str,
        StringConstraints(pattern=_HH_MM_PATTERN),
        Field(description="A local time of day as HH:MM on a 24-hour clock, 00:00 to 23:59."),
    ],
)

TimeZoneName = TypeAliasType(
    "TimeZoneName",
    Annotated[
        str,
        StringConstraints(min_length=1, max_length=_MAX_TIME_ZONE_CHARS),
        Field(
            description=(
                "An IANA time zone name known to the tz database, e.g. 'America/New_York' "
                "(case-sensitive); an unknown name is rejected. Daylight saving time is "
                "applied."
            ),
        ),
    ],
)

WhereScalar = TypeAliasType(
    "WhereScalar",
    Annotated[
        StrictStr | StrictFloat | StrictBool | None,
        Field(
            description=(
                "A JSON string, number, boolean or null, compared with the metadata value: "
                "numbers as numbers (1 equals 1.0), booleans only with booleans, strings "
                "exactly (case-sensitive)."
            ),
        ),
    ],
)


class _Input(BaseModel):
    """Base of input values: any extra key is allowed and ignored.

    Keys named in ``_NOT_NULL`` are optional but, when present, must not be ``null``: the
    domain rejects an explicit ``null`` there instead of reading it as absent. Their
    schemas omit ``null`` (``SkipJsonSchema``); this validator makes the model agree.
    """

    model_config = ConfigDict(extra="allow")

    _NOT_NULL: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _no_explicit_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in cls._NOT_NULL:
                if key in data and data[key] is None:
                    raise ValueError(f"{key} must not be null (leave it out instead)")
        return data


# --- lead-events ----------------------------------------------------------------------------


class LeadEventSingle(_Input):
    """One real-time lead event. A value with an "events" key is a batch instead."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"not": {"required": ["events"]}})

    organizationId: Id = Field(description="The tenant the lead belongs to.")
    eventType: EventType = Field(description="What the lead did, e.g. 'mastery_purchase'.")
    phoneE164: PhoneInput = Field(description="The lead's phone.")
    occurredAt: Rfc3339Timestamp = Field(
        description=(
            "When it happened. Also rejected (occurred_at_out_of_range) before 2000-01-01 or "
            "more than LEADSTREAM_MAX_FUTURE_SKEW_SECONDS (default 900) after ingestion."
        ),
    )
    metadata: Metadata = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_batch(cls, data: Any) -> Any:
        # The ingest path tells the shapes apart by the presence of "events" alone.
        if isinstance(data, dict) and "events" in data:
            raise ValueError("a value with an 'events' key is a batch, not a single event")
        return data


class LeadEventBatchRow(_Input):
    """One row of a batch; its own "eventType" overrides the batch's."""

    _NOT_NULL = ("eventType",)

    phoneE164: PhoneInput = Field(description="The lead's phone.")
    occurredAt: Rfc3339Timestamp = Field(
        description=(
            "When it happened. Also rejected (occurred_at_out_of_range) before 2000-01-01 or "
            "more than LEADSTREAM_MAX_FUTURE_SKEW_SECONDS (default 900) after ingestion."
        ),
    )
    metadata: Metadata = None
    eventType: EventType | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "Overrides the batch's eventType for this row; required when the batch has none. "
            "null is rejected (missing_field), not taken as absent."
        ),
    )


_BATCH_EVENT_TYPE_RULE: dict[str, Any] = {
    # Without a batch-level eventType every row must carry its own.
    "if": {"properties": {"eventType": {"type": "string"}}, "required": ["eventType"]},
    "else": {"properties": {"events": {"items": {"required": ["eventType"]}}}},
}


class LeadEventBatch(_Input):
    """A bulk batch of lead events of one organization.

    Each row is validated on its own: a bad row is rejected alone (with its index) and the
    rest are kept. A batch of more than 50,000 rows is rejected whole (batch_too_large).
    """

    model_config = ConfigDict(extra="allow", json_schema_extra=_BATCH_EVENT_TYPE_RULE)

    organizationId: Id = Field(description="The tenant of every row of the batch.")
    eventType: EventType | None = Field(
        default=None,
        description="The eventType of rows that carry none. null is the same as absent.",
    )
    events: list[LeadEventBatchRow] = Field(
        max_length=MAX_BATCH_EVENTS,
        description=f"The rows, at most {MAX_BATCH_EVENTS}.",
    )

    @model_validator(mode="after")
    def _every_row_has_a_type(self) -> Self:
        if self.eventType is None:
            missing = [i for i, row in enumerate(self.events) if row.eventType is None]
            if missing:
                raise ValueError(
                    f"the batch has no eventType and rows {missing[:10]} have none either"
                )
        return self


class LeadEventsValue(RootModel[LeadEventSingle | LeadEventBatch]):
    """A "lead-events" value: a single event, or a batch (told apart by "events")."""

    model_config = ConfigDict(title="LeadEventsValue")


# --- audience-members -----------------------------------------------------------------------


class AudienceMember(_Input):
    """Adds a lead to (or removes it from) a campaign's audience."""

    _NOT_NULL = ("externalId", "op")

    organizationId: Id = Field(description="The tenant.")
    campaignId: Id = Field(description="The campaign whose audience changes.")
    phoneE164: PhoneInput = Field(description="The member's phone.")
    externalId: str | SkipJsonSchema[None] = Field(
        default=None,
        description="The source system's id of the member; audience filters may match on it "
        "(case-sensitive).",
    )
    op: Literal["add", "remove"] = Field(default="add", description="Add or remove the member.")


class AudienceMemberRow(_Input):
    """One member of an audience batch."""

    _NOT_NULL = ("externalId", "op")

    phoneE164: PhoneInput = Field(description="The member's phone.")
    externalId: str | SkipJsonSchema[None] = Field(
        default=None, description="The source system's id of the member."
    )
    op: Literal["add", "remove"] = Field(default="add", description="Add or remove the member.")


class AudienceMemberBatch(_Input):
    """Many members of one campaign; each row is validated on its own (a bad row is
    rejected alone, with its index)."""

    organizationId: Id = Field(description="The tenant of every member.")
    campaignId: Id = Field(description="The campaign whose audience changes.")
    members: list[AudienceMemberRow] = Field(
        max_length=MAX_BATCH_EVENTS, description=f"The members, at most {MAX_BATCH_EVENTS}."
    )


class AudienceMembersValue(RootModel[AudienceMember | AudienceMemberBatch]):
    """An "audience-members" value: one member, or a batch (told apart by "members")."""

    model_config = ConfigDict(title="AudienceMembersValue")


# --- audience-filters -----------------------------------------------------------------------


class LeadByExternalId(_Input):
    """A lead named by the audience member's externalId (case-sensitive)."""

    externalId: str = Field(description="Compared exactly with the audience member's externalId.")


class LeadByPhone(_Input):
    """A lead named by its phone, compared after normalization."""

    phoneE164: PhoneInput = Field(description="Normalized like every phone before matching.")


AudienceFilterLead = LeadByExternalId | LeadByPhone


class AudienceFilter(_Input):
    """The include or exclude list of one send; the most recent one received wins.

    It is ignored (and counted) when received later than 5 minutes before the send's
    "scheduledFor", and applies only when the trigger enables it.
    """

    organizationId: Id = Field(description="The tenant.")
    campaignId: Id = Field(description="The campaign of the send.")
    sendId: Id = Field(description="The send this filter narrows.")
    mode: Literal["include", "exclude"] = Field(
        description="include keeps only the listed leads; exclude drops them."
    )
    leads: list[AudienceFilterLead] = Field(
        description="The leads, each by externalId or by phoneE164. An include list that names "
        "nobody keeps nobody.",
    )


# --- send-triggers --------------------------------------------------------------------------


class _TriggerPart(_Input):
    """Base of a send trigger and its objects: a key the contract does not define is
    refused (``invalid_conditions``), so that a misspelled filter never widens a send."""

    model_config = ConfigDict(extra="forbid")


class Within(_TriggerPart):
    """A look-back window ending at the send's scheduledFor."""

    minutes: StrictInt = Field(
        ge=1,
        description="Only events with occurredAt in [scheduledFor - minutes, scheduledFor] "
        "(both ends inclusive) match.",
    )


class WhereIn(BaseModel):
    """Matches when the metadata value equals one of the listed values.

    Unlike other inputs this object allows no other key: an object here is an operator,
    and an operator leadstream does not know must not silently read as a match.
    """

    model_config = ConfigDict(extra="forbid")

    in_: list[WhereScalar] = Field(
        alias="in",
        min_length=1,
        max_length=MAX_WHERE_VALUES,
        description=f"1 to {MAX_WHERE_VALUES} values; any one of them matches.",
    )


WhereKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_WHERE_KEY_CHARS)]
Where = Annotated[
    dict[WhereKey, WhereScalar | WhereIn], Field(min_length=1, max_length=MAX_WHERE_KEYS)
]


class EventFilter(_TriggerPart):
    """Keeps or drops a lead by whether it has an event of a given type."""

    _NOT_NULL = ("within", "minCount", "where")

    mode: Literal["include", "exclude"] = Field(
        description="include keeps the lead iff it has the event; exclude iff it does not."
    )
    eventType: EventType = Field(description="The exact (case-sensitive) event type to look for.")
    within: Within | SkipJsonSchema[None] = Field(
        default=None,
        description="Absent: sticky, every event of the lead counts, however old.",
    )
    minCount: StrictInt = Field(
        default=1,
        ge=1,
        description="The lead has the event when it has at least this many matching events.",
    )
    where: Where | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            f"Only events whose metadata matches count: 1 to {MAX_WHERE_KEYS} top-level "
            f"metadata keys (1 to {MAX_WHERE_KEY_CHARS} characters each), each with a value "
            '(equality) or {"in": [values]} (one of them). Every named key must be present '
            "and match; a missing key never matches, not even null. A duplicate event keeps "
            "the metadata stored first. Events folded by compaction carry no metadata, so "
            "they never count for a filter with where."
        ),
    )


class FrequencyCap(_TriggerPart):
    """Drops a lead that earlier sends of the organization already messaged often enough."""

    maxSends: StrictInt = Field(
        ge=1,
        le=MAX_CAP_SENDS,
        description="The lead is dropped when at least this many earlier sends messaged it.",
    )
    withinHours: StrictInt = Field(
        ge=1,
        le=MAX_CAP_HOURS,
        description="The earlier sends that count are those of the same organization (any "
        "campaign) whose scheduledFor lies in [scheduledFor - withinHours, scheduledFor), "
        "once their output is committed; each counts once.",
    )


class QuietHours(_TriggerPart):
    """Drops a lead whose local time at the send's scheduledFor is within [start, end).

    The local time comes from the time zones libphonenumber gives the lead's phone.
    """

    _NOT_NULL = ("timeZone",)

    start: LocalTime = Field(description="Start of the quiet period, included.")
    end: LocalTime = Field(
        description="End of the quiet period, excluded. Earlier than start: the period wraps "
        "midnight (21:00 to 08:00). Equal to start: rejected."
    )
    timeZone: TimeZoneName | SkipJsonSchema[None] = Field(
        default=None,
        description="Decides for a phone with several time zones (otherwise: quiet when quiet "
        "in any of them) and for a phone with none (otherwise: always quiet, so dropped).",
    )

    @model_validator(mode="after")
    def _as_the_domain_reads_it(self) -> Self:
        # start == end and an unknown time zone: checked by the domain's own parser.
        doc: dict[str, str] = {"start": self.start, "end": self.end}
        if self.timeZone is not None:
            doc["timeZone"] = self.timeZone
        parse_quiet_hours(doc)
        return self


class AudienceFilterSwitch(_TriggerPart):
    """Whether the send's audience filter applies."""

    enabled: StrictBool = Field(
        description="true: apply the send's latest audience filter, if one arrived in time."
    )


class SendTrigger(_TriggerPart):
    """Asks for a send's recipient list; the first trigger per (organizationId, sendId) wins.
    A key the contract does not define is refused, here and in every object within."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"not": {"required": ["eventFilter", "eventFilters"]}},
    )

    _NOT_NULL = ("eventFilter", "eventFilters", "audienceFilter", "frequencyCap", "quietHours")

    organizationId: Id = Field(description="The tenant.")
    campaignId: Id = Field(description="The campaign whose audience is materialized.")
    sendId: Id = Field(description="The send; triggers after the first for it are ignored.")
    scheduledFor: Rfc3339Timestamp = Field(
        description="When the send fires (T of the event filters' windows, of the frequency "
        "cap's look-back and of quiet hours). Materialized "
        "LEADSTREAM_MATERIALIZE_LEAD_SECONDS (default 60) before; at once, and marked late, "
        "when it arrives after this instant.",
    )
    eventFilter: EventFilter | SkipJsonSchema[None] = Field(
        default=None, description="One event filter. Never together with eventFilters."
    )
    eventFilters: list[EventFilter] | SkipJsonSchema[None] = Field(
        default=None,
        description="Event filters, all ANDed. Never together with eventFilter.",
    )
    audienceFilter: AudienceFilterSwitch | SkipJsonSchema[None] = Field(
        default=None, description="Absent: the send's audience filter does not apply."
    )
    frequencyCap: FrequencyCap | SkipJsonSchema[None] = Field(
        default=None, description="Absent: no frequency cap step."
    )
    quietHours: QuietHours | SkipJsonSchema[None] = Field(
        default=None, description="Absent: no quiet hours step."
    )

    @model_validator(mode="after")
    def _one_filter_form(self) -> Self:
        fields = self.model_fields_set
        if "eventFilter" in fields and "eventFilters" in fields:
            raise ValueError("a trigger carries eventFilter or eventFilters, never both")
        return self


# --- send-recipients ------------------------------------------------------------------------


class Recipient(BaseModel):
    """One lead the dispatcher should message."""

    model_config = _OUTPUT

    phoneE164: E164 = Field(description="The recipient's canonical phone.")
    externalId: str | None = Field(
        description="The audience member's externalId, null when it has none."
    )


class RecipientsChunk(BaseModel):
    """A slice of a send's recipients; every recipient is in exactly one chunk."""

    model_config = _OUTPUT

    type: Literal["recipients"] = Field(description="Tells a chunk from the summary.")
    organizationId: CanonicalId = Field(description="The tenant.")
    campaignId: CanonicalId = Field(description="The campaign.")
    sendId: CanonicalId = Field(description="The send.")
    scheduledFor: UtcMillisTimestamp = Field(description="The trigger's scheduledFor, normalized.")
    partition: StrictInt = Field(ge=0, description="The lead-state partition that produced it.")
    chunk: StrictInt = Field(ge=0, description="The chunk's number within its partition.")
    recipients: list[Recipient] = Field(
        max_length=MAX_CHUNK_SIZE,
        description="At most LEADSTREAM_CHUNK_SIZE (default 5,000) recipients.",
    )


class SendCounts(BaseModel):
    """Where the audience went, in the order of the steps: audience = recipientCount +
    optedOut + droppedByAudienceFilter + droppedByEventFilter + droppedByFrequencyCap +
    droppedByQuietHours."""

    model_config = _OUTPUT

    audience: StrictInt = Field(ge=0, description="The campaign's audience members.")
    optedOut: StrictInt = Field(ge=0, description="Dropped because they are opted out.")
    droppedByAudienceFilter: StrictInt = Field(ge=0, description="Dropped by the audience filter.")
    droppedByEventFilter: StrictInt = Field(ge=0, description="Dropped by the event filters.")
    droppedByFrequencyCap: StrictInt = Field(
        ge=0, description="Dropped by the frequency cap (0 without one)."
    )
    droppedByQuietHours: StrictInt = Field(
        ge=0, description="Dropped by quiet hours (0 without them)."
    )
    lateAudienceFilters: StrictInt = Field(
        ge=0, description="Audience filters ignored because they arrived after the deadline."
    )


class SendSummary(BaseModel):
    """The single last record of a send, after all of its chunks."""

    model_config = _OUTPUT

    type: Literal["summary"] = Field(description="Tells the summary from a chunk.")
    organizationId: CanonicalId = Field(description="The tenant.")
    campaignId: CanonicalId = Field(description="The campaign.")
    sendId: CanonicalId = Field(description="The send.")
    scheduledFor: UtcMillisTimestamp = Field(description="The trigger's scheduledFor, normalized.")
    materializedAt: UtcMillisTimestamp = Field(description="When the list was materialized.")
    late: StrictBool = Field(description="true when the trigger arrived after scheduledFor.")
    recipientCount: StrictInt = Field(ge=0, description="Recipients over all chunks.")
    chunkCount: StrictInt = Field(ge=0, description="Chunks emitted for the send.")
    partitions: StrictInt = Field(
        ge=0, description="The number of lead-state partitions the send was materialized over."
    )
    counts: SendCounts = Field(description="Where each audience member went.")


class SendRecipientsValue(
    RootModel[Annotated[RecipientsChunk | SendSummary, Field(discriminator="type")]]
):
    """A "send-recipients" value; its Kafka key is "{organizationId}:{sendId}"."""

    model_config = ConfigDict(title="SendRecipientsValue")


# --- rejects --------------------------------------------------------------------------------


_RejectPhone = Annotated[str, Field(max_length=MAX_REJECT_PHONE_CHARS)]


class Reject(BaseModel):
    """An input row or message that was not accepted, with why."""

    model_config = _OUTPUT

    source: str = Field(description="The topic (or entry point) the input came from.")
    partition: StrictInt = Field(ge=0, description="The input's partition.")
    offset: StrictInt = Field(ge=0, description="The input's offset.")
    index: Annotated[StrictInt, Field(ge=0)] | SkipJsonSchema[None] = Field(
        default=None, description="The row's index in its batch; absent for a whole message."
    )
    reason: Reason = Field(description="The reason code (docs/contract.md).")
    detail: str = Field(description="Human-readable explanation.")
    raw: str = Field(
        max_length=MAX_REJECT_RAW_BYTES,
        description="The rejected input as text, cut to 4 KiB: the row or message re-encoded "
        "as compact JSON, or the received bytes (invalid UTF-8 replaced) when they were not JSON.",
    )
    phoneE164: _RejectPhone | SkipJsonSchema[None] = Field(
        default=None,
        description="The row's phone as written (not normalized), where present.",
    )
    organizationId: CanonicalId | SkipJsonSchema[None] = Field(
        default=None, description="The canonical organizationId, where it was valid."
    )


TOPIC_SCHEMAS: dict[str, type[BaseModel]] = {
    "lead-events": LeadEventsValue,
    "audience-members": AudienceMembersValue,
    "audience-filters": AudienceFilter,
    "send-triggers": SendTrigger,
    "send-recipients": SendRecipientsValue,
    "rejects": Reject,
}
"""Topic name (without LEADSTREAM_TOPIC_PREFIX) -> the model of its values."""
