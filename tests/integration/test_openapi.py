"""schemathesis against a live worker on the real broker, with a real API key of an
organization: every operation of /openapi.json alone (its documented example, then
generated requests, valid and not), then sequences that follow the document's links
(lead events -> the lead -> its erase -> the lead again; a preview -> a sampled recipient's
explanation -> the lead). Every answer must be documented, of its documented type and media
type, and never a 5xx; a secured operation without a credential answers 401; a lead read
after its events were accepted shows them."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import hypothesis
import pytest
import schemathesis
from confluent_kafka import KafkaException
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from leadstream.domain.normalize import format_ms, normalize_phone, parse_rfc3339_ms
from leadstream.web.openapi import openapi_document
from tests.support.routes import operations, request_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ORG = "42"
CAMPAIGN = "mastery"
SEND = "day2"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Phones of the organization's audience (the documented example's among them): leads the
# stateful sequences write events for, read and erase.
PHONES = ["+15551234567", *(f"+1212555{n:04d}" for n in range(1, 16))]
# Generated requests per operation alone (valid, then not), and stateful sequences.
VALID, INVALID, SEQUENCES = 12, 6, 25
_SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "phases": [Phase.generate],
    "suppress_health_check": list(HealthCheck),
}


def _ours(case: Any, auth: dict[str, str] | None) -> None:
    """The request acts for the key's organization wherever it names one (a random id is a
    403 before anything else is looked at), and carries the test's credential only."""
    if "organizationId" in (case.path_parameters or {}):
        case.path_parameters["organizationId"] = ORG
    if case.query and "organizationId" in case.query:
        case.query["organizationId"] = ORG
    if case.query and "to" in case.query:  # the share request between workers is not ours
        del case.query["to"]
    if isinstance(case.body, dict) and "organizationId" in case.body:
        case.body["organizationId"] = int(ORG)
    headers = {k: v for k, v in (case.headers or {}).items() if not k.lower().startswith("x-")}
    headers.pop("Authorization", None)
    case.headers = {**headers, **(auth or {})}


class Ledger:
    """The reference: which events each phone was sent in accepted lead-events bodies,
    since its last erase."""

    def __init__(self) -> None:
        self.events: dict[str, set[tuple[str, str]]] = {}
        self.reads_checked = 0

    def posted(self, phone: str, event: tuple[str, str]) -> None:
        self.events.setdefault(phone, set()).add(event)

    def erased(self, phone: str) -> None:
        self.events.pop(phone, None)

    def check_read(self, lead: dict[str, Any]) -> None:
        expected = self.events.get(lead["phoneE164"], set())
        stored = {(e["eventType"], e["occurredAt"]) for e in lead["events"]}
        assert expected <= stored, (lead["phoneE164"], expected - stored)
        if expected:
            self.reads_checked += 1


def test_schemathesis_every_route_alone_and_in_linked_sequences(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    stack = Stack(kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path)
    try:
        auth = {"Authorization": f"Bearer {stack.api_key(ORG)}"}
        worker = stack.worker()
        _materialize_a_send(stack)
        schema = schemathesis.openapi.from_url(f"{worker.url}/openapi.json")
        labels = _every_operation_alone(schema, auth, worker.url)
        # The document itself is the one generated from the routes (schemathesis leaves
        # out the operation that serves the schema it reads).
        document = httpx.get(f"{worker.url}/openapi.json", timeout=10).json()
        assert document == openapi_document()
        every = {f"{method.upper()} {path}" for path, method, _ in operations(document)}
        assert labels == every - {"GET /openapi.json"}
        ledger = _linked_sequences(schema, auth)
        assert ledger.reads_checked > 0, "no sequence read back a lead it wrote"
    finally:
        stack.close()


def _materialize_a_send(stack: Stack) -> None:
    """The organization's audience, and a send of it materialized: the documented
    explanation example (day2, the example phone) has something to explain."""
    stack.members(
        ORG, CAMPAIGN, [{"phoneE164": p, "externalId": f"crm-{i}"} for i, p in enumerate(PHONES)]
    )
    for _ in range(10):  # a topic the worker just made may not have its leaders yet
        try:
            stack.wait_caught_up()
            break
        except KafkaException:
            time.sleep(1)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.trigger(organizationId=int(ORG), campaignId=CAMPAIGN, sendId=SEND, scheduledFor=now)
    summary = stack.send_list(SEND, ORG).summary
    assert summary is not None and summary["recipientCount"] == len(PHONES)


def _every_operation_alone(schema: Any, auth: dict[str, str], url: str) -> set[str]:
    """Each operation: its documented example (it must succeed: 2xx), then generated valid
    and invalid requests; each secured one also without a credential (401)."""
    labels: set[str] = set()
    document = schema.raw_schema
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.add(operation.label)
        described = document["paths"][operation.path][operation.method.lower()]
        _example(operation, described, auth)
        modes = [(GenerationMode.POSITIVE, VALID)]
        if described.get("parameters") or "requestBody" in described:  # something to get wrong
            modes.append((GenerationMode.NEGATIVE, INVALID))
        for mode, count in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            secured = bool(described["security"])
            seen_unauthenticated = [False]

            @hypothesis.settings(max_examples=count, **_SETTINGS)
            @hypothesis.given(case=strategy)
            def alone(case: Any) -> None:
                _ours(case, auth)
                response = case.call(timeout=30)
                case.validate_response(response, checks=CHECKS)
                if secured and not seen_unauthenticated[0]:
                    _ours(case, None)
                    refused = case.call(timeout=30)
                    assert refused.status_code == 401, (operation.label, refused.text)
                    seen_unauthenticated[0] = True

            alone()
            if secured and mode is GenerationMode.POSITIVE:
                assert seen_unauthenticated[0], operation.label
    return labels


def _example(operation: Any, described: dict[str, Any], auth: dict[str, str]) -> None:
    """The documented example as a request; it must succeed (or, for an audience filter
    of the send already materialized, be refused as late)."""
    path, kwargs = (
        request_for(operation.path, described, ORG)
        if described["security"]
        else (operation.path, {"params": {}})
    )
    params = {
        p["name"]: ORG if p["name"] == "organizationId" else str(p["example"])
        for p in described.get("parameters", [])
        if p["in"] == "path"
    }
    case_kwargs: dict[str, Any] = {"path_parameters": params, "query": kwargs["params"] or None}
    if "content" in kwargs:
        media = kwargs["headers"]["Content-Type"]
        content = described["requestBody"]["content"][media]["example"]
        if isinstance(content, dict) and "organizationId" in content:
            content = {**content, "organizationId": int(ORG)}
        case_kwargs |= {"body": content, "media_type": media}
    case = operation.Case(**case_kwargs)
    case.headers = dict(auth) if described["security"] else {}
    response = case.call(timeout=30)
    case.validate_response(response, checks=CHECKS)
    # The example's send (day2) is the one materialized here: past its filters' deadline.
    late = operation.label == "POST /api/v1/webhooks/campaigns/audience-filter"
    expected = 409 if late else 200
    assert response.status_code == expected, (operation.label, path, response.text)


def _linked_sequences(schema: Any, auth: dict[str, str]) -> Ledger:
    """Sequences along the document's links; lead-events bodies carry one row of a real
    phone of the audience (generated rows are mostly refused), so that the lead read next
    exists; every read of a lead is held against what was accepted for it."""
    ledger = Ledger()
    pick = random.Random(7)
    base = schema.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            _ours(case, auth)
            if case.operation.label == "POST /api/v1/webhooks/lead-events" and isinstance(
                case.body, dict
            ):
                row = _real_row(pick.choice(PHONES))
                case.body["events"] = [row, *(case.body.get("events") or [])][:50]
                case.body["eventType"] = None

        def after_call(self, response: Any, case: Any) -> None:
            label = case.operation.label
            if label == "POST /api/v1/webhooks/lead-events" and response.status_code == 200:
                row = case.body["events"][0]
                ledger.posted(row["phoneE164"], (row["eventType"], row["occurredAt"]))
            elif label.startswith("DELETE /api/v1/leads/") and response.status_code == 200:
                # The path's phone as the link filled it in (percent-encoded, "%2B1..."),
                # or generated in any form the worker accepts: the lead erased is the one
                # it normalizes to.
                ledger.erased(normalize_phone(unquote(case.path_parameters["phone"]), "US"))
            elif label.startswith("GET /api/v1/leads/") and response.status_code == 200:
                ledger.check_read(response.json())

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=hypothesis.settings(max_examples=SEQUENCES, stateful_step_count=6, **_SETTINGS)
    )
    return ledger


def _real_row(phone: str) -> dict[str, Any]:
    """A valid row of ``phone``, its occurredAt already in the stored form."""
    at = datetime.now(UTC) - timedelta(minutes=1, microseconds=time.monotonic_ns() % 10**6)
    stored = format_ms(parse_rfc3339_ms(at.isoformat(timespec="milliseconds")))
    return {"phoneE164": phone, "occurredAt": stored, "eventType": "schemathesis_step"}
