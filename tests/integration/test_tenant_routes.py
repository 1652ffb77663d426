"""No tenant data without a key of that tenant, walked over every route /openapi.json
describes (the worker serves nothing else, so a new route cannot forget)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.conftest import new_stack
from tests.support.routes import operations, request_for
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

OWNER, OTHER = "42", "7"
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    # The send console: static files, no tenant data (it reads the routes above with a key).
    "/console",
    "/console/console.js",
    "/console/console.css",
}


@pytest.fixture(scope="module")
def served(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess, dict[str, Any]]]:
    stack = new_stack(kafka_bootstrap, tmp_path_factory.mktemp("tenants"))
    try:
        worker = stack.worker()
        document = httpx.get(f"{worker.url}/openapi.json", timeout=10).json()
        yield stack, worker, document
    finally:
        stack.close()


def call(worker: WorkerProcess, method: str, path: str, key: str | None, **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.request(method, worker.url + path, headers=headers, timeout=60, **kwargs)


def test_every_documented_route_is_public_or_needs_a_key_of_its_organization(served) -> None:
    stack, worker, document = served
    owner_key, other_key = stack.api_key(OWNER), stack.api_key(OTHER)
    walked = []
    for template, method, op in operations(document):
        if template in PUBLIC:
            assert op["security"] == [], template
            answer = call(worker, method, template, None)
            assert answer.status_code in (200, 503), (template, answer.text)
            walked.append(template)
            continue
        assert op["security"], f"{template} is neither public nor secured"
        path, kwargs = request_for(template, op, OWNER)
        anonymous = call(worker, method, path, None, **kwargs)
        assert anonymous.status_code == 401, (template, anonymous.text)
        assert anonymous.json()["error"]["code"] == "unauthorized"
        wrong = call(worker, method, path, "lsk_not_a_key", **kwargs)
        assert wrong.status_code == 401, (template, wrong.text)
        foreign = call(worker, method, path, other_key, **kwargs)
        assert foreign.status_code == 403, (template, foreign.text)
        assert foreign.json()["error"]["code"] == "forbidden"
        owned = call(worker, method, path, owner_key, **kwargs)
        assert owned.status_code not in (401, 403), (template, owned.text)
        walked.append(template)
    assert set(walked) == set(document["paths"]) and len(walked) >= 8


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/table/",
        "/table/leads/",
        "/table/leads/x/",
        "/router/",
        "/router/topics",
        "/graph/",
        "/stats/",
        "/performance/",
        "/api/v1/leads/42",
        "/nope",
    ],
)
def test_nothing_undocumented_is_served(served, path: str) -> None:
    """faust's own pages read tables and routing without any credential."""
    _, worker, _ = served
    answer = httpx.get(worker.url + path, timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_a_method_a_route_does_not_take_is_a_json_405(served) -> None:
    _, worker, _ = served
    answer = httpx.delete(f"{worker.url}/healthz", timeout=10)
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "method_not_allowed"


def test_a_lead_is_read_only_with_a_key_of_its_organization(served) -> None:
    stack, worker, _ = served
    stack.send_events(
        [
            {
                "organizationId": OWNER,
                "eventType": "mastery_purchase",
                "phoneE164": "+15551230001",
                "occurredAt": "2026-05-12T18:34:00Z",
            }
        ]
    )
    stack.wait_caught_up()
    url = f"{worker.url}/api/v1/leads/{OWNER}/+15551230001"
    assert httpx.get(url, timeout=10).status_code == 401
    foreign = httpx.get(url, headers={"Authorization": f"Bearer {stack.api_key(OTHER)}"})
    assert foreign.status_code == 403 and "mastery_purchase" not in foreign.text
    own = worker.lead(OWNER, "+15551230001")
    assert [e["eventType"] for e in own["events"]] == ["mastery_purchase"]


def test_metrics_carry_no_phone_number(served) -> None:
    stack, worker, _ = served
    phones = ["+15551239999", "15551239998"]
    key = stack.api_key(OWNER)
    for phone in phones:
        httpx.get(
            f"{worker.url}/api/v1/leads/{OWNER}/{phone}", headers={"Authorization": f"Bearer {key}"}
        )
        httpx.post(
            f"{worker.url}/api/v1/webhooks/lead-events",
            content=msgspec.json.encode(
                {"organizationId": OWNER, "eventType": "x", "events": [{"phoneE164": phone}]}
            ),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=60,
        )
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    assert "leadstream_http_requests" in text
    for phone in phones:
        assert phone.lstrip("+") not in text
    # Label values besides topic names (which come from configuration, and a test's
    # random prefix can be all digits) hold no long run of digits, as a phone would.
    labels = re.sub(r'topic="[^"]*"', "", " ".join(re.findall(r"\{[^}]*\}", text)))
    assert not re.search(r"\d{8,}", labels), labels
