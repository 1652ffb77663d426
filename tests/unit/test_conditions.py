"""Audience conditions: what a trigger may say (and the JSON path named when it may not),
and the metadata predicates on stored metadata."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from leadstream.domain.conditions import (
    MAX_DEPTH,
    MAX_LEAVES,
    MetadataTest,
    parse_conditions,
    parse_where,
)
from leadstream.domain.rejects import Reason, RowError
from leadstream.domain.sends import parse_trigger


def trigger(**fields: Any) -> dict[str, Any]:
    return {
        "organizationId": "org",
        "campaignId": "c",
        "sendId": "s",
        "scheduledFor": "2026-06-15T12:00:00Z",
        **fields,
    }


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"event": "a"}
    for _ in range(depth):
        node = {"not": node}
    return node


def refused(conditions: Any, **fields: Any) -> RowError:
    with pytest.raises(RowError) as info:
        parse_trigger(trigger(conditions=conditions, **fields))
    assert info.value.reason is Reason.INVALID_CONDITIONS
    return info.value


@pytest.mark.parametrize(
    ("conditions", "field"),
    [
        (nested(MAX_DEPTH + 1), "conditions" + ".not" * MAX_DEPTH),
        ({"all": [{"event": "a"}] * (MAX_LEAVES + 1)}, f"conditions.all[{MAX_LEAVES}]"),
        ({"any": []}, "conditions.any"),
        ({"all": {"event": "a"}}, "conditions.all"),
        ({"all": [{"event": "a"}], "any": [{"event": "b"}]}, "conditions"),
        ({"evnt": "a"}, "conditions"),
        ({"any": [{"event": "a"}, {"segment": "x"}]}, "conditions.any[1]"),
        ({"any": [{"event": "a"}, 7]}, "conditions.any[1]"),
        ({"event": ""}, "conditions.event"),
        ({"event": "a", "count": {"min": -1}}, "conditions.count.min"),
        ({"event": "a", "count": {"min": 3, "max": 2}}, "conditions.count"),
        ({"event": "a", "count": {"at_least": 2}}, "conditions.count.at_least"),
        ({"event": "a", "within": {"minutes": 0}}, "conditions.within.minutes"),
        ({"event": "a", "within": {"hours": 1}}, "conditions.within.hours"),
        (
            {"event": "a", "within": {"minutes": 5}, "between": {"fromMinutes": 9, "toMinutes": 1}},
            "conditions",
        ),
        ({"event": "a", "between": {"fromMinutes": 60, "toMinutes": 60}}, "conditions.between"),
        ({"event": "a", "between": {"fromMinutes": 30, "toMinutes": 60}}, "conditions.between"),
        ({"event": "a", "between": {"fromMinutes": 60}}, "conditions.between.toMinutes"),
        ({"event": "a", "where": {}}, "conditions.where"),
        ({"event": "a", "where": {"k": {"regex": "(?=x)"}}}, "conditions.where.k.regex"),
        ({"event": "a", "where": {"k": {"regex": "(a)\\1"}}}, "conditions.where.k.regex"),
        ({"event": "a", "where": {"k": {"regex": "a" * 257}}}, "conditions.where.k.regex"),
        ({"event": "a", "where": {"k": {"gt": "5"}}}, "conditions.where.k.gt"),
        ({"event": "a", "where": {"k": {"gt": True}}}, "conditions.where.k.gt"),
        ({"event": "a", "where": {"k": {"exists": 1}}}, "conditions.where.k.exists"),
        ({"event": "a", "where": {"k": {"contains": 5}}}, "conditions.where.k.contains"),
        ({"event": "a", "where": {"k": {"in": []}}}, "conditions.where.k.in"),
        ({"event": "a", "where": {"k": {"in": [[1]]}}}, "conditions.where.k.in[0]"),
        ({"event": "a", "where": {"k": {"ne": 1, "gt": 0}}}, "conditions.where.k"),
        ({"event": "a", "where": {"k": {"like": "x"}}}, "conditions.where.k"),
        ({"event": "a", "where": {"k": [1]}}, "conditions.where.k"),
        ({"event": "a", "where": {"k": 2**64}}, "conditions.where.k"),
        (
            {"sequence": {"first": {"event": "a"}, "then": {"event": "b"}}},
            "conditions.sequence.withinMinutes",
        ),
        (
            {
                "sequence": {
                    "first": {"event": "a"},
                    "then": {"event": "b"},
                    "withinMinutes": 5,
                    "then_absent": True,
                }
            },
            "conditions.sequence.then_absent",
        ),
        (
            {
                "sequence": {
                    "first": {"event": "a"},
                    "then": {"event": "b"},
                    "withinMinutes": 5,
                    "thenAbsent": "yes",
                }
            },
            "conditions.sequence.thenAbsent",
        ),
        (
            {
                "sequence": {
                    "first": {"event": "a", "when": 1},
                    "then": {"event": "b"},
                    "withinMinutes": 5,
                }
            },
            "conditions.sequence.first.when",
        ),
        (
            {
                "sequence": {
                    "first": {"event": "a"},
                    "then": {"event": "b"},
                    "withinMinutes": 5,
                    "sameKey": "",
                }
            },
            "conditions.sequence.sameKey",
        ),
        (
            {
                "sequence": {"first": {"event": "a"}, "then": {"event": "b"}, "withinMinutes": 5},
                "x": 1,
            },
            "conditions.x",
        ),
        ({"inCampaign": ""}, "conditions.inCampaign"),
        ({"inCampaign": "c2", "event": "a"}, "conditions.inCampaign"),
    ],
)
def test_invalid_conditions_name_their_path(conditions: Any, field: str) -> None:
    err = refused(conditions)
    assert err.field == field, err.detail
    assert len(err.detail) < 400


def test_the_leaves_count_with_the_event_filters() -> None:
    filters = [{"mode": "include", "eventType": "a"}] * 60
    parse_trigger(trigger(eventFilters=filters, conditions={"all": [{"event": "b"}] * 4}))
    err = refused({"all": [{"event": "b"}] * 5}, eventFilters=filters)
    assert err.field == "conditions.all[4]"


def test_a_huge_or_deep_document_is_refused_without_being_walked() -> None:
    wide = {"any": [{"event": "a"}] * 1_000_000}
    assert refused(wide).field == f"conditions.any[{MAX_LEAVES}]"
    deep: Any = {"event": "a"}
    for _ in range(5000):
        deep = {"all": [deep]}
    assert refused(deep).field == "conditions" + ".all[0]" * MAX_DEPTH


def test_the_deepest_and_widest_valid_trees() -> None:
    assert parse_trigger(trigger(conditions=nested(MAX_DEPTH))).conditions is not None
    tree = parse_trigger(trigger(conditions={"any": [{"event": "a"}] * MAX_LEAVES})).tree()
    assert tree is not None and len(tree.paths) == MAX_LEAVES


def test_conditions_travel_as_compact_json_and_parse_again() -> None:
    doc = {
        "all": [
            {"any": [{"event": "registered"}, {"event": "ad_click", "within": {"minutes": 60}}]},
            {"not": {"event": "purchase"}},
            {"inCampaign": 42},
            {
                "sequence": {
                    "first": {"event": "registered", "where": {"webinarId": {"exists": True}}},
                    "then": {"event": "attended"},
                    "withinMinutes": 120,
                    "thenAbsent": True,
                    "sameKey": "webinarId",
                    "within": {"minutes": 10080},
                }
            },
        ]
    }
    parsed = parse_trigger(trigger(conditions=doc))
    assert parsed.conditions is not None and msgspec.json.decode(parsed.conditions) == doc
    tree = parsed.tree()
    assert tree is not None
    assert [path for _, path, _ in tree.paths] == [
        "conditions.all[0].any[0]",
        "conditions.all[0].any[1]",
        "conditions.all[1].not",
        "conditions.all[2]",
        "conditions.all[3]",
    ]
    # A trigger travels through msgpack (held sends, records): it comes back equal.
    from leadstream.domain.send_state import PendingRecord

    record = PendingRecord.on_receipt(parsed, 0)
    encoded = msgspec.msgpack.encode(record)
    assert msgspec.msgpack.decode(encoded, type=PendingRecord) == record


def meta(doc: Any) -> bytes:
    return msgspec.json.encode(doc)


@pytest.mark.parametrize(
    ("where", "metadata", "want"),
    [
        ({"k": 1}, {"k": 1.0}, True),
        ({"k": 1}, {"k": True}, False),
        ({"k": True}, {"k": 1}, False),
        ({"k": None}, {"k": None}, True),
        ({"k": None}, {}, False),
        ({"k": "5"}, {"k": 5}, False),
        ({"k": {"ne": 5}}, {"k": "5"}, True),
        ({"k": {"ne": 5}}, {"k": 5.0}, False),
        ({"k": {"ne": 5}}, {}, False),
        ({"k": {"ne": 5}}, {"k": None}, True),
        ({"k": {"ne": None}}, {"k": None}, False),
        ({"k": {"ne": 5}}, {"k": {"a": 5}}, True),
        ({"k": {"ne": 5}}, {"k": [5]}, True),
        ({"k": {"in": [1, "x", None]}}, {"k": None}, True),
        ({"k": {"in": [1, "x"]}}, {"k": True}, False),
        ({"k": {"gt": 100}}, {"k": 100.5}, True),
        ({"k": {"gt": 100}}, {"k": 100}, False),
        ({"k": {"gte": 100}}, {"k": 100}, True),
        ({"k": {"lt": 0}}, {"k": -0.5}, True),
        ({"k": {"lte": 0}}, {"k": -0.0}, True),
        ({"k": {"gt": 0}}, {"k": True}, False),
        ({"k": {"gt": 0}}, {"k": "1"}, False),
        ({"k": {"lt": 2**63}}, {"k": 2**70}, False),
        ({"k": {"exists": True}}, {"k": None}, True),
        ({"k": {"exists": True}}, {}, False),
        ({"k": {"exists": False}}, {}, True),
        ({"k": {"exists": False}}, {"k": 0}, False),
        ({"k": {"contains": "fb"}}, {"k": "utm_fb_1"}, True),
        ({"k": {"contains": "fb"}}, {"k": ["fb"]}, False),
        ({"k": {"contains": ""}}, {"k": ""}, True),
        ({"k": {"regex": "fb_.*"}}, {"k": "fb_spring"}, True),
        ({"k": {"regex": "fb_"}}, {"k": "fb_spring"}, False),  # the whole value
        ({"k": {"regex": "^fb_.*$"}}, {"k": "fb_x"}, True),
        ({"k": {"regex": "[0-9]+"}}, {"k": 123}, False),
        ({"k": {"regex": "é+"}}, {"k": "éé"}, True),
        ({"plan": {"ne": "free"}, "spend": {"gt": 100}}, {"plan": "pro", "spend": 101}, True),
        ({"plan": {"ne": "free"}, "spend": {"gt": 100}}, {"plan": "pro"}, False),
    ],
)
def test_predicates(where: dict[str, Any], metadata: Any, want: bool) -> None:
    assert MetadataTest(parse_where(where, "where"))(meta(metadata)) is want


def test_predicates_on_events_without_or_with_broken_metadata() -> None:
    absent = MetadataTest(parse_where({"k": {"exists": False}}, "where"))
    present = MetadataTest(parse_where({"k": 1}, "where"))
    for metadata in (None, b"", b"not json", b"[1]", b"1"):
        assert absent(metadata) is True
        assert present(metadata) is False


def test_a_regex_runs_in_time_linear_in_the_value() -> None:
    """The pattern that makes a backtracking engine take exponential time."""
    test = MetadataTest(parse_where({"k": {"regex": "(a+)+b"}}, "where"))
    assert test(meta({"k": "a" * 100_000})) is False


def test_parse_conditions_alone() -> None:
    parsed = parse_conditions({"event": "a"})
    assert [path for _, path, _ in parsed.paths] == ["conditions"]


def test_cli_flags_write_conditions_holdout_splits_and_the_policy(tmp_path: Any) -> None:
    from leadstream.client.publish import build_trigger

    tree = {"any": [{"event": "registered"}, {"inCampaign": "vip"}]}
    saved = tmp_path / "tree.json"
    saved.write_text(msgspec.json.encode(tree).decode())
    common = {
        "organization_id": "org",
        "campaign_id": "c",
        "send_id": "s",
        "scheduled_for": "2026-06-15T12:00:00Z",
        "filters": [],
        "audience_filter": False,
    }
    for given in (str(saved), msgspec.json.encode(tree).decode()):
        doc = build_trigger(
            **common,
            conditions=given,
            holdout="10:spring",
            splits=["copy-a=50", "copy=b=50"],
            quiet_hours="21:00-08:00@America/New_York+us-tcpa",
        )
        assert doc["conditions"] == tree
        assert doc["holdout"] == {"percent": 10, "salt": "spring"}
        assert doc["splits"] == [
            {"name": "copy-a", "percent": 50},
            {"name": "copy=b", "percent": 50},
        ]
        assert doc["quietHours"] == {
            "start": "21:00",
            "end": "08:00",
            "timeZone": "America/New_York",
            "policy": "us-tcpa",
        }
        trigger = parse_trigger(doc)
        assert trigger.holdout is not None and trigger.holdout.salt == "spring"
        assert trigger.quiet_hours is not None and trigger.quiet_hours.policy == "us-tcpa"
    assert build_trigger(**common, quiet_hours="us-tcpa")["quietHours"] == {"policy": "us-tcpa"}
    assert build_trigger(**common, holdout="5")["holdout"] == {"percent": 5}
    for bad in (
        {"conditions": str(tmp_path / "missing.json")},
        {"conditions": "{not json"},
        {"holdout": "ten"},
        {"splits": ["a"]},
        {"splits": ["a=x"]},
        {"quiet_hours": "us-tcpa+later"},
    ):
        with pytest.raises(ValueError):
            build_trigger(**common, **bad)


@pytest.mark.parametrize(
    ("quiet", "field"),
    [
        ({"policy": "eu-gdpr"}, "quietHours.policy"),
        ({"policy": "us-tcpa", "start": "21:00"}, None),  # start without end: invalid_json
    ],
)
def test_bad_quiet_hours_policies(quiet: dict[str, Any], field: str | None) -> None:
    with pytest.raises(RowError) as info:
        parse_trigger(trigger(quietHours=quiet))
    assert info.value.field == field
