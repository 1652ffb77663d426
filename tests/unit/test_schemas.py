"""The checked-in JSON Schemas match the models, and describe the contract's values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadstream.domain.ingest import IngestRules, parse_lead_events
from leadstream.domain.rejects import RowError
from leadstream.domain.sends import parse_trigger
from leadstream.wire import records
from leadstream.wire.models import TOPIC_SCHEMAS, SendTrigger
from leadstream.wire.schemas import check_schemas, render_schemas, write_schemas
from tests.support import conditions_strategies as cst


def reject_record(rejected: Any, **where: Any) -> dict[str, Any]:
    """The reject as a consumer of ``rejects`` reads it."""
    return msgspec.json.decode(records.encode_json(records.reject_record(rejected, **where)))


SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
NOW_MS = 1_778_610_000_000  # 2026-05-12T18:20:00Z


def _validator(topic: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(render_schemas()[f"{topic}.schema.json"])
    return jsonschema.Draft202012Validator(schema)


def _model_accepts(topic: str, value: Any) -> bool:
    try:
        TOPIC_SCHEMAS[topic].model_validate(value)
    except pydantic.ValidationError:
        return False
    return True


# --- the checked-in files ------------------------------------------------------------------


def test_checked_in_schemas_match_the_models() -> None:
    stale = check_schemas(SCHEMA_DIR)
    assert stale == [], (
        f"schemas/ is out of date with leadstream.wire.models ({', '.join(stale)}); "
        "run `leadstream schemas` and commit the result"
    )


def test_one_schema_per_topic_each_a_valid_2020_12_document() -> None:
    rendered = render_schemas()
    assert sorted(rendered) == sorted(f"{t}.schema.json" for t in TOPIC_SCHEMAS)
    assert set(TOPIC_SCHEMAS) == {
        "lead-events",
        "audience-members",
        "audience-filters",
        "send-triggers",
        "send-recipients",
        "rejects",
    }
    for name, text in rendered.items():
        assert text.endswith("}\n"), name
        schema = json.loads(text)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"urn:leadstream:schema:{name.removesuffix('.schema.json')}"
        assert schema["title"]
        jsonschema.Draft202012Validator.check_schema(schema)


def test_rendering_is_deterministic() -> None:
    assert render_schemas() == render_schemas()


def test_check_schemas_names_missing_different_and_extra_files(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert {p.name for p in written} == set(render_schemas())
    assert check_schemas(tmp_path) == []

    (tmp_path / "rejects.schema.json").unlink()
    (tmp_path / "send-triggers.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "old-topic.schema.json").write_text("{}\n", encoding="utf-8")
    assert sorted(check_schemas(tmp_path)) == [
        "old-topic.schema.json",
        "rejects.schema.json",
        "send-triggers.schema.json",
    ]

    write_schemas(tmp_path)
    assert check_schemas(tmp_path) == []
    assert not (tmp_path / "old-topic.schema.json").exists()


def test_check_schemas_of_a_missing_directory_names_every_file(tmp_path: Path) -> None:
    assert sorted(check_schemas(tmp_path / "nope")) == sorted(render_schemas())


# --- examples of the contract (docs/contract.md) -----------------------------------------

SINGLE_EVENT = {
    "organizationId": 42,
    "eventType": "mastery_purchase",
    "phoneE164": "+15551234567",
    "occurredAt": "2026-05-12T18:34:00Z",
    "metadata": {"orderId": "A-1001", "amount": 497},
}

BATCH_WITH_OVERRIDE = {
    "organizationId": "42",
    "eventType": "webinar_attended",
    "events": [
        {"phoneE164": "15551234567", "occurredAt": "2026-05-12T20:34:00.000+02:00"},
        {
            "phoneE164": "(555) 123-4567",
            "occurredAt": "2026-05-12T18:00:00Z",
            "eventType": "opted_out",
            "metadata": None,
        },
    ],
    "source": "crm-export",  # inputs may have any key
}

BATCH_EVERY_ROW_TYPED = {
    "organizationId": "acme_co-1",
    "events": [
        {"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z", "eventType": "a"},
    ],
}

TRIGGER_ONE_FILTER = {
    "organizationId": 42,
    "campaignId": 7,
    "sendId": "send-2026-05-12-intro",
    "scheduledFor": "2026-05-12T20:00:00-04:00",
    "eventFilter": {"mode": "exclude", "eventType": "mastery_purchase"},
}

TRIGGER_FILTER_LIST = {
    "organizationId": 42,
    "campaignId": 7,
    "sendId": 1001,
    "scheduledFor": "2026-05-12T22:00:00Z",
    "eventFilters": [
        {"mode": "exclude", "eventType": "webinar_attended", "within": {"minutes": 120}},
        {"mode": "include", "eventType": "double_opt_in_confirmed", "minCount": 1},
    ],
    "audienceFilter": {"enabled": True},
}

TRIGGER_COMPLIANCE: dict[str, Any] = {
    "organizationId": 42,
    "campaignId": "mastery",
    "sendId": "day2",
    "scheduledFor": "2026-05-13T18:00:00Z",
    "eventFilters": [
        {
            "mode": "exclude",
            "eventType": "purchase",
            "within": {"minutes": 10080},
            "where": {"product": {"in": ["mastery", "mastery-plus"]}, "test": False},
        },
        {
            "mode": "include",
            "eventType": "webinar_attended",
            "where": {"seats": 1, "ratio": 0.5, "coupon": None, "source": "zoom"},
        },
    ],
    "frequencyCap": {"maxSends": 2, "withinHours": 24},
    # Wraps midnight: quiet from 21:00 until 08:00 the next morning.
    "quietHours": {"start": "21:00", "end": "08:00", "timeZone": "America/New_York"},
}

CHUNK = {
    "type": "recipients",
    "organizationId": "42",
    "campaignId": "7",
    "sendId": "1001",
    "scheduledFor": "2026-05-12T22:00:00.000Z",
    "partition": 3,
    "chunk": 0,
    "recipients": [
        {"phoneE164": "+15551234567", "externalId": "crm-981"},
        {"phoneE164": "+447911123456", "externalId": None},
    ],
}

SUMMARY: dict[str, Any] = {
    "type": "summary",
    "organizationId": "42",
    "campaignId": "7",
    "sendId": "1001",
    "scheduledFor": "2026-05-12T22:00:00.000Z",
    "materializedAt": "2026-05-12T21:59:00.012Z",
    "late": False,
    "recipientCount": 2,
    "chunkCount": 1,
    "partitions": 8,
    "counts": {
        "audience": 5,
        "optedOut": 1,
        "droppedByAudienceFilter": 1,
        "droppedByEventFilter": 1,
        "droppedByFrequencyCap": 0,
        "droppedByQuietHours": 0,
        "lateAudienceFilters": 0,
        "heldOut": 0,
    },
}

# With a holdout and splits: every recipient carries its variant, and the summary counts
# them per split.
CHUNK_WITH_VARIANTS = {
    **CHUNK,
    "recipients": [
        {"phoneE164": "+15551234567", "externalId": "crm-981", "variant": "A"},
        {"phoneE164": "+447911123456", "externalId": None, "variant": "control-copy"},
    ],
}

SUMMARY_WITH_VARIANTS = {
    **SUMMARY,
    "recipientCount": 2,
    "counts": {**SUMMARY["counts"], "droppedByEventFilter": 0, "heldOut": 1},
    "variants": {"A": 1, "B": 0, "control-copy": 1},
}

REJECT = {
    "source": "lead-events",
    "partition": 0,
    "offset": 12,
    "index": 3,
    "reason": "invalid_phone",
    "detail": "'12' is not a possible phone number",
    "raw": '{"phoneE164":"12","occurredAt":"2026-05-12T18:34:00Z"}',
    "phoneE164": "12",
    "organizationId": "42",
}

AUDIENCE_MEMBER = {"organizationId": 42, "campaignId": 7, "phoneE164": "+15551234567"}
AUDIENCE_FILTER = {
    "organizationId": 42,
    "campaignId": 7,
    "sendId": 1001,
    "mode": "include",
    "leads": [{"externalId": "crm-981"}, {"phoneE164": "(555) 123-4567"}],
}


# Section 11: a three-level tree with every kind of leaf and every predicate.
CONDITIONS = {
    "all": [
        {
            "any": [
                {
                    "event": "webinar_attended",
                    "count": {"min": 2, "max": 5},
                    "within": {"minutes": 10080},
                    "where": {
                        "source": "zoom",
                        "seats": 1,
                        "ratio": 0.5,
                        "coupon": None,
                        "vip": True,
                        "plan": {"in": ["gold", 2, True, None]},
                        "region": {"ne": "eu"},
                        "score": {"gt": 10},
                        "age": {"gte": 18},
                        "risk": {"lt": 0.7},
                        "tries": {"lte": 3},
                        "email": {"exists": True},
                        "utm": {"contains": "spring"},
                        "sku": {"regex": "SKU-[0-9]{4}"},
                    },
                },
                {"inCampaign": "vip-list"},
            ]
        },
        {"not": {"event": "purchase", "between": {"fromMinutes": 1440, "toMinutes": 60}}},
        {
            "sequence": {
                "first": {"event": "cart_created", "where": {"value": {"gte": 100}}},
                "then": {"event": "purchase", "where": {"refunded": {"exists": False}}},
                "withinMinutes": 60,
                "thenAbsent": True,
                "sameKey": "cartId",
                "within": {"minutes": 2880},
            }
        },
    ]
}

TRIGGER_CONDITIONS = {
    "organizationId": 42,
    "campaignId": "mastery",
    "sendId": "day3",
    "scheduledFor": "2026-05-14T18:00:00Z",
    "conditions": CONDITIONS,
}

TRIGGER_HOLDOUT_SPLITS = {
    **TRIGGER_ONE_FILTER,
    "holdout": {"percent": 10, "salt": "spring-2026"},
    "splits": [
        {"name": "A", "percent": 50},
        {"name": "B", "percent": 30},
        {"name": "control-copy", "percent": 20},
    ],
}

TRIGGER_TCPA = {**TRIGGER_ONE_FILTER, "quietHours": {"policy": "us-tcpa"}}
TRIGGER_TCPA_ID = "trigger-quietHours-policy-alone"


def _nested_nots(operators: int) -> dict[str, Any]:
    node: dict[str, Any] = {"event": "a"}
    for _ in range(operators):
        node = {"not": node}
    return node


def _conditions(conditions: Any) -> dict[str, Any]:
    return {**TRIGGER_ONE_FILTER, "conditions": conditions}


def _leaf_where(predicate: Any) -> dict[str, Any]:
    """A trigger whose one condition is an event leaf testing "plan" with ``predicate``."""
    return _conditions({"all": [{"event": "a", "where": {"plan": predicate}}]})


def _with_where(trigger: dict[str, Any], where: Any) -> dict[str, Any]:
    """The trigger with ``where`` on its one eventFilter."""
    doc = copy.deepcopy(trigger)
    doc["eventFilter"]["where"] = where
    return doc


VALID = [
    pytest.param("lead-events", SINGLE_EVENT, id="single-event"),
    pytest.param("lead-events", BATCH_WITH_OVERRIDE, id="batch-with-row-eventType"),
    pytest.param("lead-events", BATCH_EVERY_ROW_TYPED, id="batch-without-batch-eventType"),
    pytest.param("send-triggers", TRIGGER_ONE_FILTER, id="trigger-eventFilter"),
    pytest.param("send-triggers", TRIGGER_FILTER_LIST, id="trigger-eventFilters"),
    pytest.param("send-triggers", TRIGGER_COMPLIANCE, id="trigger-compliance-controls"),
    pytest.param(
        "send-triggers",
        {
            **TRIGGER_ONE_FILTER,
            "quietHours": {"start": "12:00", "end": "13:30"},
            "frequencyCap": {"maxSends": 1000, "withinHours": 720},
        },
        id="trigger-quietHours-same-day-without-timeZone-and-largest-cap",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {f"k{i}": {"in": list(range(100))} for i in range(16)}),
        id="where-16-keys-of-100-values",
    ),
    pytest.param("send-triggers", TRIGGER_CONDITIONS, id="trigger-conditions-every-leaf"),
    pytest.param("send-triggers", TRIGGER_HOLDOUT_SPLITS, id="trigger-holdout-and-splits"),
    pytest.param("send-triggers", TRIGGER_TCPA, id=TRIGGER_TCPA_ID),
    pytest.param(
        "send-triggers",
        {
            **TRIGGER_COMPLIANCE,
            "quietHours": {**TRIGGER_COMPLIANCE["quietHours"], "policy": "us-tcpa"},
        },
        id="trigger-quietHours-window-and-policy",
    ),
    pytest.param(
        "send-triggers",
        {
            **TRIGGER_ONE_FILTER,
            "conditions": {"any": [_nested_nots(7), *[{"inCampaign": i} for i in range(1, 63)]]},
            "holdout": {"percent": 50},
            "splits": [{"name": "only", "percent": 100}],
        },
        id="conditions-8-operators-deep-64-leaves-with-the-filter",
    ),
    pytest.param(
        "send-triggers",
        _conditions({"event": "a", "count": {"max": 0}}),
        id="conditions-a-lone-leaf-count-max-0",
    ),
    pytest.param("send-recipients", CHUNK, id="chunk"),
    pytest.param("send-recipients", SUMMARY, id="summary"),
    pytest.param("send-recipients", CHUNK_WITH_VARIANTS, id="chunk-with-variants"),
    pytest.param("send-recipients", SUMMARY_WITH_VARIANTS, id="summary-with-variants"),
    pytest.param("rejects", REJECT, id="reject"),
    pytest.param("audience-members", AUDIENCE_MEMBER, id="audience-member"),
    pytest.param(
        "audience-members",
        {
            "organizationId": 42,
            "campaignId": "mastery",
            "members": [{"phoneE164": "+15551234567", "externalId": "x1"}, {"phoneE164": "7"}],
        },
        id="audience-batch",
    ),
    pytest.param(
        "audience-members",
        {**AUDIENCE_MEMBER, "externalId": "crm-981", "op": "remove"},
        id="audience-member-remove",
    ),
    pytest.param("audience-filters", AUDIENCE_FILTER, id="audience-filter"),
]


def _with(base: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _without(base: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != key}


INVALID = [
    pytest.param(
        "send-triggers",
        {**TRIGGER_ONE_FILTER, "eventFilters": TRIGGER_FILTER_LIST["eventFilters"]},
        id="trigger-with-eventFilter-and-eventFilters",
    ),
    pytest.param("lead-events", {**SINGLE_EVENT, "organizationId": 0}, id="organizationId-0"),
    pytest.param(
        "lead-events", {**SINGLE_EVENT, "organizationId": -5}, id="organizationId-negative"
    ),
    pytest.param("lead-events", {**SINGLE_EVENT, "organizationId": True}, id="organizationId-bool"),
    pytest.param(
        "lead-events", {**SINGLE_EVENT, "organizationId": "acme corp"}, id="organizationId-space"
    ),
    pytest.param(
        "lead-events", {**SINGLE_EVENT, "organizationId": "x" * 65}, id="organizationId-65-chars"
    ),
    pytest.param("lead-events", {**SINGLE_EVENT, "eventType": "e" * 101}, id="eventType-101-chars"),
    pytest.param("lead-events", {**SINGLE_EVENT, "eventType": ""}, id="eventType-empty"),
    pytest.param(
        "lead-events",
        {**SINGLE_EVENT, "occurredAt": "2026-05-12T18:34:00"},
        id="occurredAt-no-offset",
    ),
    pytest.param("lead-events", _without(SINGLE_EVENT, "phoneE164"), id="single-without-phone"),
    pytest.param("lead-events", {**SINGLE_EVENT, "metadata": [1, 2]}, id="metadata-not-object"),
    pytest.param(
        "lead-events", {**SINGLE_EVENT, "events": "x"}, id="single-with-events-key-is-a-bad-batch"
    ),
    pytest.param(
        "lead-events",
        _without(BATCH_WITH_OVERRIDE, "eventType"),
        id="batch-row-without-any-eventType",
    ),
    pytest.param(
        "lead-events",
        _with(BATCH_WITH_OVERRIDE, ("events", 0, "eventType"), None),
        id="batch-row-eventType-null",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_FILTER_LIST, ("eventFilters", 0, "within", "minutes"), 0),
        id="within-minutes-0",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_ONE_FILTER, ("eventFilter", "minCount"), 0),
        id="minCount-0",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_ONE_FILTER, ("eventFilter", "mode"), "only"),
        id="eventFilter-bad-mode",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_FILTER_LIST, ("audienceFilter", "enabled"), "yes"),
        id="audienceFilter-enabled-not-bool",
    ),
    pytest.param("send-recipients", {**CHUNK, "organizationId": 42}, id="chunk-int-id"),
    pytest.param(
        "send-recipients",
        {**CHUNK, "scheduledFor": "2026-05-12T22:00:00Z"},
        id="chunk-timestamp-without-millis",
    ),
    pytest.param(
        "send-recipients",
        _with(CHUNK, ("recipients", 0, "phoneE164"), "(555) 123-4567"),
        id="chunk-phone-not-e164",
    ),
    pytest.param("send-recipients", {**SUMMARY, "extra": 1}, id="summary-extra-key"),
    pytest.param("send-recipients", {**SUMMARY, "type": "other"}, id="unknown-type"),
    pytest.param(
        "send-recipients", _with(SUMMARY, ("counts",), {"audience": 5}), id="summary-missing-counts"
    ),
    pytest.param(
        "send-recipients",
        {**SUMMARY, "counts": _without(SUMMARY["counts"], "droppedByQuietHours")},
        id="summary-counts-without-droppedByQuietHours",
    ),
    pytest.param(
        "send-recipients",
        {**SUMMARY, "counts": _without(SUMMARY["counts"], "droppedByFrequencyCap")},
        id="summary-counts-without-droppedByFrequencyCap",
    ),
    pytest.param(
        "send-recipients",
        _with(SUMMARY, ("counts", "droppedByQuietHours"), -1),
        id="summary-droppedByQuietHours-negative",
    ),
    pytest.param(
        "send-recipients",
        {**SUMMARY, "counts": _without(SUMMARY["counts"], "heldOut")},
        id="summary-counts-without-heldOut",
    ),
    pytest.param(
        "send-recipients",
        {**SUMMARY_WITH_VARIANTS, "variants": {"A": -1}},
        id="summary-variant-count-negative",
    ),
    pytest.param(
        "send-recipients",
        _with(CHUNK_WITH_VARIANTS, ("recipients", 0, "variant"), ""),
        id="chunk-variant-empty",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("frequencyCap", "maxSends"), 0),
        id="frequencyCap-maxSends-0",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("frequencyCap", "maxSends"), 1001),
        id="frequencyCap-maxSends-1001",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("frequencyCap", "withinHours"), 721),
        id="frequencyCap-withinHours-721",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("frequencyCap",), {"maxSends": 2}),
        id="frequencyCap-without-withinHours",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("frequencyCap",), None),
        id="frequencyCap-null",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("quietHours", "start"), "24:00"),
        id="quietHours-start-24:00",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("quietHours", "end"), "8:00"),
        id="quietHours-end-not-HH:MM",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("quietHours",), {"start": "21:00"}),
        id="quietHours-without-end",
    ),
    pytest.param(
        "send-triggers",
        _with(TRIGGER_COMPLIANCE, ("quietHours", "timeZone"), None),
        id="quietHours-timeZone-null",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {}),
        id="where-empty",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {f"k{i}": 1 for i in range(17)}),
        id="where-17-keys",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"k" * 129: 1}),
        id="where-key-129-chars",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"plan": {"in": []}}),
        id="where-in-empty",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"plan": {"in": list(range(101))}}),
        id="where-in-101-values",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"plan": {"in": ["gold", {"x": 1}]}}),
        id="where-in-holds-an-object",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"plan": {"eq": "gold"}}),
        id="where-unknown-operator",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"plan": {"in": ["gold"], "not": ["x"]}}),
        id="where-in-with-another-key",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, {"plan": ["gold", "silver"]}),
        id="where-value-an-array",
    ),
    pytest.param(
        "send-triggers",
        _with_where(TRIGGER_ONE_FILTER, None),
        id="where-null",
    ),
    pytest.param(
        "send-triggers", {**TRIGGER_ONE_FILTER, "eventFilterz": []}, id="trigger-unknown-field"
    ),
    pytest.param(
        "send-triggers",
        _conditions({"all": [{"event": "a"}, {"segment": "vip"}]}),
        id="conditions-unknown-leaf-kind",
    ),
    pytest.param(
        "send-triggers",
        _conditions({"not": {"event": "a"}, "event": "b"}),
        id="conditions-two-kinds-in-one-object",
    ),
    pytest.param("send-triggers", _conditions({"any": []}), id="conditions-any-empty"),
    pytest.param(
        "send-triggers",
        _conditions({"event": "a", "minCount": 2}),
        id="conditions-leaf-unknown-field",
    ),
    pytest.param("send-triggers", _leaf_where({"eq": "gold"}), id="predicate-unknown-operator"),
    pytest.param("send-triggers", _leaf_where({"gt": 1, "lt": 5}), id="predicate-two-operators"),
    pytest.param("send-triggers", _leaf_where({}), id="predicate-empty-object"),
    pytest.param("send-triggers", _leaf_where({"gt": "10"}), id="predicate-gt-a-string"),
    pytest.param("send-triggers", _leaf_where({"lte": True}), id="predicate-lte-a-boolean"),
    pytest.param("send-triggers", _leaf_where({"exists": "yes"}), id="predicate-exists-a-string"),
    pytest.param("send-triggers", _leaf_where({"in": []}), id="predicate-in-empty"),
    pytest.param("send-triggers", _leaf_where({"contains": 5}), id="predicate-contains-a-number"),
    pytest.param("send-triggers", _leaf_where(["gold"]), id="predicate-an-array"),
    pytest.param(
        "send-triggers", _leaf_where({"regex": "a" * 257}), id="predicate-regex-257-chars"
    ),
    pytest.param(
        "send-triggers",
        _conditions({"event": "a", "where": {}}),
        id="conditions-where-empty",
    ),
    pytest.param(
        "send-triggers",
        _conditions({"event": "a", "between": {"fromMinutes": 60}}),
        id="between-without-toMinutes",
    ),
    pytest.param(
        "send-triggers",
        _conditions(
            {"event": "a", "within": {"minutes": 5}, "between": {"fromMinutes": 9, "toMinutes": 1}}
        ),
        id="conditions-within-and-between",
    ),
    pytest.param(
        "send-triggers", _conditions({"event": "a", "count": {"min": -1}}), id="count-min-negative"
    ),
    pytest.param(
        "send-triggers",
        _conditions({"sequence": {"first": {"event": "a"}, "then": {"event": "b"}}}),
        id="sequence-without-withinMinutes",
    ),
    pytest.param(
        "send-triggers",
        _conditions(
            {
                "sequence": {
                    "first": {"event": "a"},
                    "then": {"event": "b"},
                    "withinMinutes": 5,
                    "thenAbsent": "yes",
                }
            }
        ),
        id="sequence-thenAbsent-not-bool",
    ),
    pytest.param(
        "send-triggers", _conditions({"inCampaign": "vip list"}), id="inCampaign-not-an-id"
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_HOLDOUT_SPLITS, "holdout": {"percent": 51}},
        id="holdout-percent-51",
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_HOLDOUT_SPLITS, "holdout": {"percent": 10, "seed": "x"}},
        id="holdout-unknown-field",
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_HOLDOUT_SPLITS, "holdout": {"salt": "x"}},
        id="holdout-without-percent",
    ),
    pytest.param(
        "send-triggers",
        {
            **TRIGGER_HOLDOUT_SPLITS,
            "splits": [{"name": f"s{i}", "percent": 10 if i == 0 else 9} for i in range(11)],
        },
        id="splits-11",
    ),
    pytest.param("send-triggers", {**TRIGGER_HOLDOUT_SPLITS, "splits": []}, id="splits-empty"),
    pytest.param(
        "send-triggers",
        {**TRIGGER_HOLDOUT_SPLITS, "splits": [{"name": "A", "percent": 100, "weight": 1}]},
        id="split-unknown-field",
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_HOLDOUT_SPLITS, "splits": [{"name": "", "percent": 100}]},
        id="split-name-empty",
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_HOLDOUT_SPLITS, "splits": [{"name": "A", "percent": 101}]},
        id="split-percent-101",
    ),
    pytest.param(
        "send-triggers", _with(TRIGGER_COMPLIANCE, ("quietHours",), {}), id="quietHours-empty"
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_ONE_FILTER, "eventFilter": {"mode": "exclude", "eventType": "a", "minCnt": 2}},
        id="trigger-event-filter-unknown-field",
    ),
    pytest.param(
        "send-triggers",
        {**TRIGGER_COMPLIANCE, "frequencyCap": {"maxSends": 2, "withinHours": 24, "x": 1}},
        id="trigger-frequency-cap-unknown-field",
    ),
    pytest.param("rejects", {**REJECT, "reason": "too_ugly"}, id="reject-unknown-reason"),
    pytest.param("rejects", {**REJECT, "raw": "x" * 4097}, id="reject-raw-over-4KiB"),
    pytest.param("audience-members", {**AUDIENCE_MEMBER, "op": "delete"}, id="audience-bad-op"),
    pytest.param(
        "audience-filters", {**AUDIENCE_FILTER, "leads": [{"name": "x"}]}, id="audience-filter-lead"
    ),
]


@pytest.mark.parametrize(("topic", "value"), VALID)
def test_contract_examples_validate(topic: str, value: dict[str, Any]) -> None:
    errors = [e.message for e in _validator(topic).iter_errors(value)]
    assert errors == []
    assert _model_accepts(topic, value)


@pytest.mark.parametrize(("topic", "value"), INVALID)
def test_invalid_values_do_not_validate(topic: str, value: dict[str, Any]) -> None:
    assert not _validator(topic).is_valid(value)
    # The models say the same as the schemas rendered from them.
    assert not _model_accepts(topic, value)


def test_model_enforces_one_filter_form() -> None:
    both = {**TRIGGER_ONE_FILTER, "eventFilters": []}
    with pytest.raises(pydantic.ValidationError, match="never both"):
        SendTrigger.model_validate(both)


@pytest.mark.parametrize(
    "event_type",
    ["bad\ttype", " padded", "padded ", "nl\n"],
    ids=["control-char", "leading-space", "trailing-space", "newline"],
)
def test_model_rejects_event_types_the_domain_rejects(event_type: str) -> None:
    # JSON Schema cannot say this cleanly; the schema documents it, the model checks it.
    assert not _model_accepts("lead-events", {**SINGLE_EVENT, "eventType": event_type})


def test_model_rejects_metadata_over_4_kib() -> None:
    assert not _model_accepts("lead-events", {**SINGLE_EVENT, "metadata": {"k": "x" * 4096}})
    assert _model_accepts("lead-events", {**SINGLE_EVENT, "metadata": {"k": "x" * 4000}})


@pytest.mark.parametrize(
    ("quiet_hours", "why"),
    [
        ({"start": "21:00", "end": "21:00"}, "must differ"),
        ({"start": "21:00", "end": "08:00", "timeZone": "Mars/Olympus_Mons"}, "time zone"),
    ],
    ids=["start-equals-end", "unknown-time-zone"],
)
def test_model_rejects_quiet_hours_the_domain_rejects(
    quiet_hours: dict[str, str], why: str
) -> None:
    # Valid by the schema (it cannot say either rule); its description states them and the
    # model checks them with the domain's own parser.
    trigger = {**TRIGGER_ONE_FILTER, "quietHours": quiet_hours}
    assert _validator("send-triggers").is_valid(trigger)
    with pytest.raises(pydantic.ValidationError, match=why):
        SendTrigger.model_validate(trigger)


_DOMAIN_VALID_TRIGGERS = [param for param in VALID if param.values[0] == "send-triggers"]


@pytest.mark.parametrize(("topic", "value"), _DOMAIN_VALID_TRIGGERS)
def test_domain_accepts_the_trigger_examples(topic: str, value: dict[str, Any]) -> None:
    parse_trigger(value)


def test_domain_reads_the_trigger_examples() -> None:
    trigger = parse_trigger(TRIGGER_COMPLIANCE)
    assert trigger.frequency_cap is not None
    assert (trigger.frequency_cap.max_sends, trigger.frequency_cap.within_hours) == (2, 24)
    assert trigger.quiet_hours is not None
    assert all(f.where for f in trigger.event_filters)
    tree = parse_trigger(TRIGGER_CONDITIONS).tree()
    assert tree is not None and len(tree.paths) == 4
    split = parse_trigger(TRIGGER_HOLDOUT_SPLITS)
    assert split.holdout is not None and split.holdout.percent == 10
    assert [s.name for s in split.splits] == ["A", "B", "control-copy"]


# Valid by the schema, which cannot say these rules (its descriptions state them); the
# model checks them with the domain's own parsers, and the domain rejects them.
BEYOND_THE_SCHEMA = [
    pytest.param(_conditions(_nested_nots(9)), "nest at most 8", id="conditions-9-operators-deep"),
    pytest.param(
        _conditions({"all": [{"inCampaign": i} for i in range(1, 65)]}),
        "at most 64",
        id="conditions-64-leaves-and-a-filter",
    ),
    pytest.param(
        _conditions({"all": [{"event": "a"}] * 30 + [{"any": [{"event": "b"}] * 35}]}),
        "at most 64",
        id="conditions-65-leaves",
    ),
    pytest.param(
        _conditions({"event": "a", "count": {"min": 3, "max": 2}}),
        "min is greater than max",
        id="count-min-above-max",
    ),
    pytest.param(
        _conditions({"event": "a", "between": {"fromMinutes": 60, "toMinutes": 60}}),
        "greater than toMinutes",
        id="between-from-not-above-to",
    ),
    pytest.param(_leaf_where({"regex": "a(b"}), "not an RE2 pattern", id="regex-not-re2"),
    pytest.param(_leaf_where(2**64), "integers must lie within", id="integer-beyond-64-bits"),
    pytest.param(
        {**TRIGGER_HOLDOUT_SPLITS, "splits": [{"name": "A", "percent": 50}] * 2},
        "names two splits",
        id="splits-duplicate-name",
    ),
    pytest.param(
        {**TRIGGER_HOLDOUT_SPLITS, "splits": [{"name": "A", "percent": 99}]},
        "add up to 99",
        id="splits-sum-99",
    ),
    pytest.param(
        {**TRIGGER_HOLDOUT_SPLITS, "holdout": {"percent": 5, "salt": "a\tb"}},
        "control characters",
        id="holdout-salt-control-char",
    ),
]


@pytest.mark.parametrize(("trigger", "why"), BEYOND_THE_SCHEMA)
def test_model_and_domain_reject_what_the_schema_cannot_express(
    trigger: dict[str, Any], why: str
) -> None:
    assert _validator("send-triggers").is_valid(trigger)
    with pytest.raises(pydantic.ValidationError, match=why):
        SendTrigger.model_validate(trigger)
    with pytest.raises(RowError, match=why):
        parse_trigger(trigger)


@pytest.mark.parametrize(
    "quiet_hours",
    [
        {"policy": "eu-gdpr"},
        {"start": "21:00", "end": "08:00", "policy": "us"},
        {"policy": "us-tcpa", "timeZone": "America/New_York"},
        {"policy": "us-tcpa", "start": "21:00"},
        {"policy": None},
    ],
    ids=[
        "unknown-policy",
        "window-and-unknown-policy",
        "policy-and-timeZone",
        "policy-and-start",
        "policy-null",
    ],
)
def test_schema_and_model_take_only_the_quiet_hours_shapes(quiet_hours: dict[str, Any]) -> None:
    # Not held against the domain: its policy parse lands separately.
    trigger = {**TRIGGER_ONE_FILTER, "quietHours": quiet_hours}
    assert not _validator("send-triggers").is_valid(trigger)
    assert not _model_accepts("send-triggers", trigger)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_and_model_accept_every_generated_trigger(data: st.DataObject) -> None:
    filters = data.draw(st.lists(cst.event_filters(), max_size=3))
    trigger: dict[str, Any] = {
        **TRIGGER_FILTER_LIST,
        "eventFilters": filters,
        "conditions": data.draw(cst.trees(max_leaves=64 - len(filters))),
    }
    if data.draw(st.booleans()):
        trigger["holdout"] = data.draw(cst.holdouts())
    if data.draw(st.booleans()):
        trigger["splits"] = data.draw(cst.splits())
    parse_trigger(trigger)  # the domain's
    assert [e.message for e in _validator("send-triggers").iter_errors(trigger)] == []
    assert _model_accepts("send-triggers", trigger)


# null is absent to the domain, and left out by the schemas: not a reject of the domain.
_DOMAIN_INVALID_TRIGGERS = [
    param
    for param in INVALID
    if param.values[0] == "send-triggers" and not param.id.endswith("-null")
]


@pytest.mark.parametrize(("topic", "value"), _DOMAIN_INVALID_TRIGGERS)
def test_domain_rejects_the_triggers_the_schema_rejects(topic: str, value: dict[str, Any]) -> None:
    with pytest.raises(RowError):
        parse_trigger(value)


def test_model_rejects_impossible_dates() -> None:
    assert not _model_accepts("lead-events", {**SINGLE_EVENT, "occurredAt": "2026-02-30T00:00:00Z"})


def test_domain_accepts_the_event_examples() -> None:
    # The schema examples are not only schema-valid: ingest keeps every row of them.
    rules = IngestRules()
    for doc in (SINGLE_EVENT, BATCH_WITH_OVERRIDE, BATCH_EVERY_ROW_TYPED):
        parsed = parse_lead_events(doc, now_ms=NOW_MS, rules=rules)
        assert parsed.rejects == []
        assert len(parsed.events) == parsed.received


def test_emitted_rejects_validate() -> None:
    # Records built by the real encoder, from the real row validator.
    batch = {
        "organizationId": 42,
        "eventType": "webinar_attended",
        "events": [
            {"phoneE164": "12", "occurredAt": "2026-05-12T18:00:00Z"},
            {"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:00:00"},
            {"phoneE164": "+15551234567", "occurredAt": "1999-12-31T23:59:59Z"},
            {"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:00:00Z", "eventType": " x"},
            {"occurredAt": "2026-05-12T18:00:00Z"},
            {
                "phoneE164": "+15551234567",
                "occurredAt": "2026-05-12T18:00:00Z",
                "metadata": {"blob": "y" * 5000},
            },
            "not an object",
        ],
    }
    parsed = parse_lead_events(batch, now_ms=NOW_MS, rules=IngestRules())
    whole = parse_lead_events(
        {"organizationId": 0, "events": []}, now_ms=NOW_MS, rules=IngestRules()
    )
    rejected = parsed.rejects + whole.rejects
    assert len(rejected) == 8
    validator = _validator("rejects")
    for item in rejected:
        record = reject_record(item, source="lead-events", partition=1, offset=99)
        assert [e.message for e in validator.iter_errors(record)] == []
        assert _model_accepts("rejects", record)


# --- the records leadstream writes, held against the models -------------------------------


def _wire_names(struct: type[msgspec.Struct]) -> set[str]:
    config = struct.__struct_config__
    names = {f.encode_name for f in msgspec.structs.fields(struct)}
    return names | ({config.tag_field} if config.tag_field else set())


def _model_names(model: type[pydantic.BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_output_record_names_exactly_the_fields_of_its_model() -> None:
    from leadstream.wire import models, records

    pairs = [
        (records.Recipient, models.Recipient),
        (records.SendCounts, models.SendCounts),
        (records.SendSummary, models.SendSummary),
        (records.RejectRecord, models.Reject),
    ]
    for struct, model in pairs:
        names = _wire_names(struct)
        if struct is records.Recipient:
            # A chunk's entry of a send with splits ends with ,"variant":"<name>", appended
            # to the encoded Recipient.
            names |= {"variant"}
        assert names == _model_names(model), struct.__name__
    chunk = _wire_names(records._ChunkHead) | {"recipients"}
    assert chunk == _model_names(models.RecipientsChunk)


def test_written_chunks_and_summaries_validate_against_the_models_and_schemas() -> None:
    from leadstream.domain.sends import Counts, SendTrigger
    from leadstream.wire import records

    trigger = SendTrigger("42", "c", "s", NOW_MS)
    entries = [
        records.encode_recipient(f"+1555000{i:04d}", None if i % 2 else f"x{i}") for i in range(7)
    ]
    chunks = records.encode_chunks(trigger, 3, entries, 5)
    dones = [
        records.done_record(
            trigger,
            partition=p,
            late=False,
            materialized_at=NOW_MS + p,
            recipient_count=len(entries) if p == 3 else 0,
            counts=Counts(9, 1, 1, 0) if p == 3 else Counts(),
            chunk_count=len(chunks) if p == 3 else 0,
            late_audience_filters=0,
            received_at=0,
        )
        for p in range(4)
    ]
    summary = records.encode_json(records.summary_record(dones))
    assert "variants" not in msgspec.json.decode(summary)
    assert msgspec.json.decode(summary)["counts"]["heldOut"] == 0
    split = records.done_record(
        trigger,
        partition=0,
        late=False,
        materialized_at=NOW_MS,
        recipient_count=3,
        counts=Counts(5, 0, 0, 0, 0, 0, 2),
        chunk_count=1,
        late_audience_filters=0,
        received_at=0,
        variants={"A": 2, "B": 1},
    )
    with_variants = records.encode_json(records.summary_record([split, dones[1]]))
    assert msgspec.json.decode(with_variants)["variants"] == {"A": 2, "B": 1}
    entries_with_variant = [entry[:-1] + b',"variant":"A"}' for entry in entries]
    chunks_with_variants = records.encode_chunks(trigger, 0, entries_with_variant, 5)
    validator = _validator("send-recipients")
    for value in [*chunks, summary, with_variants, *chunks_with_variants]:
        document = msgspec.json.decode(value)
        assert not list(validator.iter_errors(document)), document
        assert _model_accepts("send-recipients", document)
    # The progress record decodes back to what was written.
    assert records.decode_progress(records.encode_json(dones[3])) == dones[3]
