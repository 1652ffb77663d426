"""``audience-members`` values (docs/contract.md, section 3.1, single and batch shapes).

A bad row is rejected alone with its index and reason (docs/contract.md, section 2.3); the rest are kept.
"""

from __future__ import annotations

from typing import Any

import pytest

from leadstream.domain.audience import MemberOp, parse_audience_members
from leadstream.domain.ingest import MAX_BATCH_EVENTS
from leadstream.domain.rejects import Reason


def parse(doc: Any) -> tuple[list[MemberOp], list[Any], int]:
    return parse_audience_members(doc, region="US")


# --- single shape --------------------------------------------------------------------------


def test_single_add_is_normalized() -> None:
    ops, rejects, received = parse(
        {"organizationId": 42, "campaignId": 7, "phoneE164": "(555) 123-4567", "externalId": "X"}
    )
    assert ops == [MemberOp("42", "7", "+15551234567", "X", False)]
    assert rejects == []
    assert received == 1


@pytest.mark.parametrize("phone", ["+15551234567", "15551234567", "(555) 123-4567", 15551234567])
def test_phone_spellings_are_the_same_lead(phone: Any) -> None:
    ops, _, _ = parse({"organizationId": "42", "campaignId": "c", "phoneE164": phone})
    assert [op.phone for op in ops] == ["+15551234567"]


def test_single_remove_and_defaults() -> None:
    ops, rejects, _ = parse(
        {"organizationId": "o", "campaignId": "c", "phoneE164": "+15551234567", "op": "remove"}
    )
    assert ops == [MemberOp("o", "c", "+15551234567", None, True)]
    ops, _, _ = parse({"organizationId": "o", "campaignId": "c", "phoneE164": "+15551234567"})
    assert ops == [MemberOp("o", "c", "+15551234567", None, False)]
    ops, _, _ = parse(
        {"organizationId": "o", "campaignId": "c", "phoneE164": "+15551234567", "op": "add"}
    )
    assert ops[0].remove is False
    assert not rejects


def test_external_id_kept_exactly() -> None:
    ops, rejects, _ = parse(
        {"organizationId": 1, "campaignId": 1, "phoneE164": "+15551234567", "externalId": " Ext1"}
    )
    assert ops[0].external_id == " Ext1"
    assert not rejects


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"phoneE164": "12"}, Reason.INVALID_PHONE),
        ({"phoneE164": "not a phone"}, Reason.INVALID_PHONE),
        ({"phoneE164": ["+15551234567"]}, Reason.INVALID_PHONE),
        ({}, Reason.MISSING_FIELD),
        ({"phoneE164": "+15551234567", "op": "delete"}, Reason.INVALID_JSON),
        ({"phoneE164": "+15551234567", "op": "Add"}, Reason.INVALID_JSON),
        ({"phoneE164": "+15551234567", "op": None}, Reason.INVALID_JSON),
        ({"phoneE164": "+15551234567", "externalId": 17}, Reason.INVALID_JSON),
        ({"phoneE164": "+15551234567", "externalId": ["a"]}, Reason.INVALID_JSON),
        ({"phoneE164": "+15551234567", "externalId": ""}, Reason.INVALID_JSON),
        ({"phoneE164": "+15551234567", "externalId": "x" * 257}, Reason.INVALID_JSON),
    ],
)
def test_single_bad_row(row: dict[str, Any], reason: Reason) -> None:
    doc = {"organizationId": 5, "campaignId": "c", **row}
    ops, rejects, received = parse(doc)
    assert ops == []
    assert received == 1
    assert [(r.reason, r.index) for r in rejects] == [(reason, None)]
    assert rejects[0].organization_id == "5"


@pytest.mark.parametrize(
    ("org", "reason"),
    [
        (0, Reason.INVALID_ORGANIZATION_ID),
        (-3, Reason.INVALID_ORGANIZATION_ID),
        (True, Reason.INVALID_ORGANIZATION_ID),
        ("a b", Reason.INVALID_ORGANIZATION_ID),
        ("x" * 65, Reason.INVALID_ORGANIZATION_ID),
        (1.5, Reason.INVALID_ORGANIZATION_ID),
        (None, Reason.MISSING_FIELD),
    ],
)
def test_bad_organization_id(org: Any, reason: Reason) -> None:
    single = {"organizationId": org, "campaignId": "c", "phoneE164": "+15551234567"}
    ops, rejects, _ = parse(single)
    assert ops == []
    assert [r.reason for r in rejects] == [reason]
    # In a batch the organization applies to every row: the message is rejected as one.
    batch = {"organizationId": org, "campaignId": "c", "members": [{"phoneE164": "+15551234567"}]}
    ops, rejects, received = parse(batch)
    assert ops == []
    assert [(r.reason, r.index) for r in rejects] == [(reason, None)]
    assert received == 1


@pytest.mark.parametrize(
    ("campaign", "reason"),
    [(None, Reason.MISSING_FIELD), ("a/b", Reason.INVALID_JSON), (0, Reason.INVALID_JSON)],
)
def test_bad_campaign_id(campaign: Any, reason: Reason) -> None:
    ops, rejects, _ = parse(
        {"organizationId": 1, "campaignId": campaign, "phoneE164": "+15551234567"}
    )
    assert ops == []
    assert [r.reason for r in rejects] == [reason]


@pytest.mark.parametrize("doc", [[], "x", 5, None])
def test_not_an_object(doc: Any) -> None:
    ops, rejects, received = parse(doc)
    assert ops == []
    assert [r.reason for r in rejects] == [Reason.INVALID_JSON]
    assert received == 1


# --- batch shape ---------------------------------------------------------------------------


def test_batch_bad_rows_are_rejected_alone_with_their_index() -> None:
    rows: list[Any] = [
        {"phoneE164": "+15551230001", "externalId": "a"},
        {"phoneE164": "12"},  # 1 invalid_phone
        {"phoneE164": "+15551230002", "op": "remove"},
        {"phoneE164": "+15551230003", "op": "drop"},  # 3 op
        {"phoneE164": "+15551230004", "externalId": 99},  # 4 externalId not a string
        "+15551230005",  # 5 not an object
        {},  # 6 missing phone
        {"phoneE164": "5551230006", "externalId": "f"},
    ]
    ops, rejects, received = parse({"organizationId": 42, "campaignId": 7, "members": rows})
    assert received == len(rows)
    assert ops == [
        MemberOp("42", "7", "+15551230001", "a", False),
        MemberOp("42", "7", "+15551230002", None, True),
        MemberOp("42", "7", "+15551230006", "f", False),
    ]
    assert [(r.index, r.reason) for r in rejects] == [
        (1, Reason.INVALID_PHONE),
        (3, Reason.INVALID_JSON),
        (4, Reason.INVALID_JSON),
        (5, Reason.INVALID_JSON),
        (6, Reason.MISSING_FIELD),
    ]
    assert rejects[0].phone == "12"
    assert rejects[1].phone == "+15551230003"
    assert rejects[0].raw == {"phoneE164": "12"}
    assert all(r.organization_id in ("42", None) for r in rejects)
    assert len(ops) + len(rejects) == received


def test_batch_empty() -> None:
    assert parse({"organizationId": 1, "campaignId": 1, "members": []}) == ([], [], 0)


def test_batch_members_not_a_list() -> None:
    ops, rejects, _ = parse({"organizationId": 1, "campaignId": 1, "members": {"phoneE164": "1"}})
    assert ops == []
    assert [(r.reason, r.index) for r in rejects] == [(Reason.INVALID_JSON, None)]


def test_batch_at_the_limit_is_not_too_large() -> None:
    # Rows that fail fast keep this cheap; what matters is that no batch_too_large appears.
    rows = [0] * MAX_BATCH_EVENTS
    ops, rejects, received = parse({"organizationId": 1, "campaignId": 1, "members": rows})
    assert MAX_BATCH_EVENTS == 50_000
    assert received == 50_000
    assert len(rejects) == 50_000
    assert {r.reason for r in rejects} == {Reason.INVALID_JSON}
    assert rejects[-1].index == 49_999


def test_batch_over_the_limit_is_batch_too_large() -> None:
    rows = [{"phoneE164": "+15551234567"}] * (MAX_BATCH_EVENTS + 1)
    ops, rejects, received = parse({"organizationId": 1, "campaignId": 1, "members": rows})
    assert ops == []
    assert [(r.reason, r.index) for r in rejects] == [(Reason.BATCH_TOO_LARGE, None)]
    assert received == 50_001
