"""Pydantic models of every topic value (docs/contract.md, section 4), the source of
``schemas/*.json``.

These models are the documented contract, not the hot path: ingest and materialization
validate with the plain functions of :mod:`leadstream.domain`, and write the records of
:mod:`leadstream.wire.records`. The models describe exactly what those functions accept
(inputs) and what leadstream emits (outputs; tests/unit/test_schemas.py holds each output
model against the record that is written), and where a rule cannot be written in JSON
Schema (control characters, the 4 KiB metadata limit, date validity, a known time zone,
quiet hours whose start and end differ, the depth and leaves of conditions, splits adding up
to 100) the model checks it by calling the same domain function, and the schema states it in
a ``description``.

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
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypeAliasType

from leadstream.domain.buckets import (
    MAX_HOLDOUT_PERCENT,
    MAX_NAME_CHARS,
    MAX_SALT_CHARS,
    MAX_SPLITS,
    parse_holdout,
    parse_splits,
)
from leadstream.domain.conditions import (
    MAX_COUNT,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_KEY_CHARS,
    MAX_LEAVES,
    MAX_MINUTES,
    MAX_REGEX_CHARS,
    MAX_STRING_CHARS,
    parse_conditions,
)
from leadstream.domain.conditions import MAX_WHERE_KEYS as MAX_PREDICATE_KEYS
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
    "AllNode",
    "AnyNode",
    "Between",
    "Condition",
    "ConditionWithin",
    "Conditions",
    "Count",
    "EventFilter",
    "EventLeaf",
    "FrequencyCap",
    "Holdout",
    "InCampaignLeaf",
    "LeadByExternalId",
    "LeadByPhone",
    "LeadEventBatch",
    "LeadEventBatchRow",
    "LeadEventSingle",
    "LeadEventsValue",
    "NotNode",
    "PredicateScalar",
    "QuietHours",
    "Recipient",
    "RecipientsChunk",
    "Reject",
    "SendCounts",
    "SendRecipientsValue",
    "SendSummary",
    "SendTrigger",
    "SequenceLeaf",
    "SequenceRule",
    "SequenceStep",
    "Split",
    "SplitName",
    "Splits",
    "WhereIn",
    "WhereOperator",
    "WherePredicate",
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
    """Drops a lead whose local time at the send's scheduledFor is quiet: within
    [start, end), or outside what the named policy allows.

    The local time comes from the time zones libphonenumber gives the lead's phone. Either
    start and end (both), or a policy, or all three.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [{"required": ["start", "end"]}, {"required": ["policy"]}],
            "dependentRequired": {
                "start": ["end"],
                "end": ["start"],
                "timeZone": ["start", "end"],
            },
        },
    )

    _NOT_NULL = ("start", "end", "timeZone", "policy")

    start: LocalTime | SkipJsonSchema[None] = Field(
        default=None, description="Start of the quiet period, included. Only together with end."
    )
    end: LocalTime | SkipJsonSchema[None] = Field(
        default=None,
        description="End of the quiet period, excluded. Earlier than start: the period wraps "
        "midnight (21:00 to 08:00). Equal to start: rejected. Only together with start.",
    )
    timeZone: TimeZoneName | SkipJsonSchema[None] = Field(
        default=None,
        description="Decides for a phone with several time zones (otherwise: quiet when quiet "
        "in any of them) and for a phone with none (otherwise: always quiet, so dropped). "
        "Only with start and end.",
    )
    policy: Literal["us-tcpa"] | SkipJsonSchema[None] = Field(
        default=None,
        description='A named quiet-hours policy, the only one so far "us-tcpa": US numbers '
        "are quiet outside 08:00-21:00 local time, narrowed by state rules. Alone, or with "
        "start and end.",
    )

    @model_validator(mode="after")
    def _as_the_domain_reads_it(self) -> Self:
        if (self.start is None) != (self.end is None):
            raise ValueError("quietHours takes start and end together, or neither")
        if self.start is None or self.end is None:
            if self.policy is None:
                raise ValueError("quietHours needs start and end, or a policy")
            if self.timeZone is not None:
                raise ValueError("quietHours.timeZone goes with start and end")
            return self
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


# --- send-triggers: conditions, holdout and splits (docs/contract.md, section 11) --------


PredicateScalar = TypeAliasType(
    "PredicateScalar",
    Annotated[
        Annotated[StrictStr, StringConstraints(max_length=MAX_STRING_CHARS)]
        | StrictFloat
        | StrictBool
        | None,
        Field(
            description=(
                f"A JSON string (at most {MAX_STRING_CHARS} characters), number (an integer "
                "within -2^63 .. 2^64-1), boolean or null. Compared with the metadata value: "
                "numbers by value (1 equals 1.0), booleans only with booleans, strings exactly, "
                "null only with null."
            ),
        ),
    ],
)

_Number = Annotated[
    StrictFloat,
    Field(description="A JSON number (not a boolean); only a numeric metadata value compares."),
]
_PredicateKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_CHARS)]
_Minutes = Annotated[StrictInt, Field(ge=1, le=MAX_MINUTES)]
_CountBound = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]


class WhereOperator(_TriggerPart):
    """Exactly one operator, tested on the metadata value of its key (a missing key fails
    every operator but exists: false)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    _NOT_NULL = ("in", "gt", "gte", "lt", "lte", "exists", "contains", "regex")

    in_: (
        Annotated[list[PredicateScalar], Field(min_length=1, max_length=MAX_IN_VALUES)]
        | SkipJsonSchema[None]
    ) = Field(
        default=None,
        alias="in",
        description=f"1 to {MAX_IN_VALUES} scalars; the value equals one of them.",
    )
    ne: PredicateScalar = Field(
        default=None, description="The key is present and its value does not equal this one."
    )
    gt: _Number | SkipJsonSchema[None] = Field(default=None, description="Greater than.")
    gte: _Number | SkipJsonSchema[None] = Field(default=None, description="At least.")
    lt: _Number | SkipJsonSchema[None] = Field(default=None, description="Less than.")
    lte: _Number | SkipJsonSchema[None] = Field(default=None, description="At most.")
    exists: StrictBool | SkipJsonSchema[None] = Field(
        default=None, description="true: the key is present (whatever its value); false: absent."
    )
    contains: (
        Annotated[StrictStr, StringConstraints(max_length=MAX_STRING_CHARS)] | SkipJsonSchema[None]
    ) = Field(default=None, description="A substring of the value, which must be a string.")
    regex: (
        Annotated[StrictStr, StringConstraints(max_length=MAX_REGEX_CHARS)] | SkipJsonSchema[None]
    ) = Field(
        default=None,
        description=f"An RE2 pattern (at most {MAX_REGEX_CHARS} characters) that must match "
        "the whole string value. A pattern RE2 cannot compile is rejected (not expressible "
        "in JSON Schema).",
    )

    @model_validator(mode="after")
    def _one_operator(self) -> Self:
        if len(self.model_fields_set) != 1:
            raise ValueError("a predicate object holds exactly one operator")
        return self


WherePredicate = TypeAliasType(
    "WherePredicate",
    Annotated[
        PredicateScalar | WhereOperator,
        Field(description="A scalar (the value equals it) or one operator object."),
    ],
)

_PredicateWhere = Annotated[
    dict[_PredicateKey, WherePredicate],
    Field(
        min_length=1,
        max_length=MAX_PREDICATE_KEYS,
        description=f"Metadata tests, all of which must hold: 1 to {MAX_PREDICATE_KEYS} "
        f"top-level metadata keys (1 to {MAX_KEY_CHARS} characters each), each with a "
        "predicate. Events folded by compaction carry no metadata.",
    ),
]


class ConditionWithin(_TriggerPart):
    """The last ``minutes`` minutes before the send's scheduledFor, both ends included."""

    minutes: _Minutes = Field(description="How far back the window reaches.")


class Between(_TriggerPart):
    """A window of events with occurredAt in [scheduledFor - fromMinutes, scheduledFor -
    toMinutes], both ends included."""

    fromMinutes: _Minutes = Field(
        description="The older end, in minutes before scheduledFor; greater than toMinutes "
        "(not expressible in JSON Schema)."
    )
    toMinutes: Annotated[StrictInt, Field(ge=0, le=MAX_MINUTES)] = Field(
        description="The newer end, in minutes before scheduledFor (0: scheduledFor itself)."
    )


class Count(_TriggerPart):
    """The range, both ends included, that the number of matching events must lie in."""

    _NOT_NULL = ("min", "max")

    min: _CountBound | SkipJsonSchema[None] = Field(
        default=None, description="At least this many; default 1, or 0 when max is given."
    )
    max: _CountBound | SkipJsonSchema[None] = Field(
        default=None,
        description="At most this many (absent: no upper bound). Must not be below min "
        "(not expressible in JSON Schema).",
    )


class EventLeaf(_TriggerPart):
    """Holds when the lead's number of matching events lies in count (default: at least
    one). An event matches when it has the type, lies in the window (absent: any age) and
    meets where."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"not": {"required": ["within", "between"]}}
    )

    _NOT_NULL = ("count", "within", "between", "where")

    event: EventType = Field(description="The exact (case-sensitive) event type.")
    count: Count | SkipJsonSchema[None] = Field(
        default=None, description="Absent: at least one matching event."
    )
    within: ConditionWithin | SkipJsonSchema[None] = Field(
        default=None, description="The last minutes up to scheduledFor. Never with between."
    )
    between: Between | SkipJsonSchema[None] = Field(
        default=None, description="A window ending before scheduledFor. Never with within."
    )
    where: _PredicateWhere | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _one_window(self) -> Self:
        if {"within", "between"} <= self.model_fields_set:
            raise ValueError("an event condition takes within or between, not both")
        return self


class SequenceStep(_TriggerPart):
    """One end of a sequence: an event type, and what its metadata must meet."""

    _NOT_NULL = ("where",)

    event: EventType = Field(description="The exact (case-sensitive) event type.")
    where: _PredicateWhere | SkipJsonSchema[None] = None


class SequenceRule(_TriggerPart):
    """An A event (first) followed, strictly later, by a B event (then) within
    withinMinutes; both at or before the send's scheduledFor."""

    _NOT_NULL = ("thenAbsent", "sameKey", "within")

    first: SequenceStep = Field(description="A: the event that starts the sequence.")
    then: SequenceStep = Field(description="B: the event that must follow A.")
    withinMinutes: _Minutes = Field(description="B comes at most this many minutes after A.")
    thenAbsent: StrictBool = Field(
        default=False,
        description="true: holds instead when an A event has no B after it within "
        "withinMinutes (as far as scheduledFor).",
    )
    sameKey: _PredicateKey | SkipJsonSchema[None] = Field(
        default=None,
        description="A and B must carry equal scalar values under this top-level metadata "
        "key; events without it do not pair.",
    )
    within: ConditionWithin | SkipJsonSchema[None] = Field(
        default=None, description="Only A events of these last minutes count (absent: any)."
    )


class SequenceLeaf(_TriggerPart):
    """Holds when the lead's events contain the sequence."""

    sequence: SequenceRule


class InCampaignLeaf(_TriggerPart):
    """Holds when the lead is a member of the campaign's audience (same organization)."""

    inCampaign: Id = Field(description="The campaign.")


class AllNode(_TriggerPart):
    """Holds when every child holds."""

    all: list[Condition] = Field(
        min_length=1, max_length=MAX_LEAVES, description="The children, at least one."
    )


class AnyNode(_TriggerPart):
    """Holds when at least one child holds."""

    any: list[Condition] = Field(
        min_length=1, max_length=MAX_LEAVES, description="The children, at least one."
    )


class NotNode(_TriggerPart):
    """Holds when its child does not."""

    not_: Condition = Field(alias="not", description="The negated condition.")


Condition = TypeAliasType(
    "Condition",
    Annotated[
        AllNode | AnyNode | NotNode | EventLeaf | SequenceLeaf | InCampaignLeaf,
        Field(
            description="A node of the conditions tree: an all, any or not operator, or an "
            "event, sequence or inCampaign leaf. An object is exactly one of them."
        ),
    ],
)

for _node in (AllNode, AnyNode, NotNode):
    _node.model_rebuild()


def _check_conditions(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Depth, the leaf count, count ranges, between's order, RE2 patterns and integer
    # ranges are beyond JSON Schema: the domain's own parser checks them, first, as it
    # never reads past its limits.
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    parse_conditions(value)
    return handler(value)


Conditions = Annotated[Condition, WrapValidator(_check_conditions)]
"""The ``conditions`` of a trigger: a :data:`Condition` tree, checked whole by the domain."""

_CONDITIONS_RULES = (
    f"At most {MAX_DEPTH} operators (all, any, not) deep, and at most {MAX_LEAVES} leaves "
    "together with the trigger's event filters (JSON Schema cannot express either limit)."
)


def _leaf_count(node: Condition) -> int:
    if isinstance(node, AllNode):
        return sum(_leaf_count(child) for child in node.all)
    if isinstance(node, AnyNode):
        return sum(_leaf_count(child) for child in node.any)
    if isinstance(node, NotNode):
        return _leaf_count(node.not_)
    return 1


class Holdout(_TriggerPart):
    """A control group. Every lead has a bucket from 0 to 9999 (a keyed hash of the
    organization, the phone and salt); a lead left after quiet hours whose bucket is below
    100 * percent is held out: counted in counts.heldOut, not messaged."""

    _NOT_NULL = ("salt",)

    percent: StrictInt = Field(
        ge=0,
        le=MAX_HOLDOUT_PERCENT,
        description=f"0 to {MAX_HOLDOUT_PERCENT}: the share of buckets held out.",
    )
    salt: Annotated[str, StringConstraints(max_length=MAX_SALT_CHARS)] | SkipJsonSchema[None] = (
        Field(
            default=None,
            description=f"Another salt, another bucketing (default: empty); at most "
            f"{MAX_SALT_CHARS} printable characters. The same salt holds out the same leads "
            "send after send.",
        )
    )

    @model_validator(mode="after")
    def _as_the_domain_reads_it(self) -> Self:
        parse_holdout(self.model_dump(exclude_unset=True))  # printable salt
        return self


SplitName = TypeAliasType(
    "SplitName",
    Annotated[
        str,
        StringConstraints(min_length=1, max_length=MAX_NAME_CHARS),
        Field(description=f"A split's name: 1 to {MAX_NAME_CHARS} printable characters."),
    ],
)


class Split(_TriggerPart):
    """One variant of the send."""

    name: SplitName = Field(description="Unique among the splits; its recipients carry it.")
    percent: StrictInt = Field(
        ge=0, le=100, description="Its share (0 to 100) of the buckets not held out."
    )


def _check_splits(splits: list[Split]) -> list[Split]:
    parse_splits([split.model_dump() for split in splits])  # the sum, unique names
    return splits


Splits = Annotated[
    list[Split], Field(min_length=1, max_length=MAX_SPLITS), AfterValidator(_check_splits)
]
_SPLITS_RULES = (
    f"1 to {MAX_SPLITS} splits sharing the buckets not held out, in list order. The "
    "percents add up to 100 and the names differ (JSON Schema cannot express either). Each "
    "recipient carries its split's name as variant; the summary counts them in variants."
)


class SendTrigger(_TriggerPart):
    """Asks for a send's recipient list; the first trigger per (organizationId, sendId) wins.
    A key the contract does not define is refused, here and in every object within."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"not": {"required": ["eventFilter", "eventFilters"]}},
    )

    _NOT_NULL = (
        "eventFilter",
        "eventFilters",
        "audienceFilter",
        "frequencyCap",
        "quietHours",
        "conditions",
        "holdout",
        "splits",
    )

    organizationId: Id = Field(description="The tenant.")
    campaignId: Id = Field(description="The campaign whose audience is materialized.")
    sendId: Id = Field(description="The send; triggers after the first for it are ignored.")
    scheduledFor: Rfc3339Timestamp = Field(
        description="When the send fires (T of the event filters' and conditions' windows, "
        "of the frequency cap's look-back and of quiet hours). Materialized "
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
    conditions: Conditions | SkipJsonSchema[None] = Field(
        default=None,
        description="Keeps only the leads for which the tree holds; checked with the event "
        f"filters (a lead dropped is counted in droppedByEventFilter). {_CONDITIONS_RULES}",
    )
    holdout: Holdout | SkipJsonSchema[None] = Field(
        default=None, description="Absent: nobody is held out."
    )
    splits: Splits | SkipJsonSchema[None] = Field(default=None, description=_SPLITS_RULES)

    @model_validator(mode="after")
    def _one_filter_form(self) -> Self:
        fields = self.model_fields_set
        if "eventFilter" in fields and "eventFilters" in fields:
            raise ValueError("a trigger carries eventFilter or eventFilters, never both")
        return self

    @model_validator(mode="after")
    def _leaf_budget(self) -> Self:
        if self.conditions is not None:
            filters = len(self.eventFilters or ()) + (self.eventFilter is not None)
            if filters + _leaf_count(self.conditions) > MAX_LEAVES:
                raise ValueError(
                    f"a send holds at most {MAX_LEAVES} conditions (event filters and leaves)"
                )
        return self


# --- send-recipients ------------------------------------------------------------------------


class Recipient(BaseModel):
    """One lead the dispatcher should message."""

    model_config = _OUTPUT

    phoneE164: E164 = Field(description="The recipient's canonical phone.")
    externalId: str | None = Field(
        description="The audience member's externalId, null when it has none."
    )
    variant: SplitName | SkipJsonSchema[None] = Field(
        default=None, description="The recipient's split; present only when the send has splits."
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
    droppedByQuietHours + heldOut."""

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
    heldOut: StrictInt = Field(ge=0, description="Held out by the holdout (0 without one).")
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
    variants: dict[SplitName, Annotated[StrictInt, Field(ge=0)]] | SkipJsonSchema[None] = Field(
        default=None,
        description="Recipients per split name, every split named (0 included); present only "
        "when the trigger has splits.",
    )


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
