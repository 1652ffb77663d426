"""The lead-events webhook on a live worker: auth, exact counts, client errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from leadstream.auth_file import save_auth
from leadstream.domain.auth import ApiKey, AuthConfig, SigningKey, hash_api_key, sign, with_key
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

API_KEY = "lsk_test_" + "a" * 40
OTHER_KEY = "lsk_test_" + "b" * 40
SECRET = "c" * 64


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, WorkerProcess]]:
    root = tmp_path_factory.mktemp("webhook")
    auth = root / "auth.json"
    config = with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(API_KEY), "t"))
    config = with_key(config, "42", SigningKey("sk1", SECRET, "t"))
    config = with_key(config, "7", ApiKey("ak7", hash_api_key(OTHER_KEY), "t"))
    save_auth(auth, config)
    run = uuid.uuid4().hex[:10]
    stack = Stack(kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=root,
                  auth_file=auth)
    worker = stack.worker()
    try:
        yield stack, worker
    finally:
        stack.close()


def post(worker: WorkerProcess, body: bytes, **headers: str) -> httpx.Response:
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(f"{worker.url}/api/v1/webhooks/lead-events", content=body,
                      headers=headers, timeout=60)


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


EXAMPLE = {
    "organizationId": 42,
    "eventType": "mastery_purchase",
    "events": [
        {"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"},
        {"phoneE164": "(555) 123-4568", "occurredAt": "2026-05-12T20:34:00.000+02:00",
         "eventType": "webinar_attended", "metadata": {"session": "s1"}},
        {"phoneE164": "not a phone", "occurredAt": "2026-05-12T18:34:00Z"},
    ],
}


def test_accepted_with_exact_counts_and_retries_are_duplicates(served) -> None:
    stack, worker = served
    body = msgspec.json.encode(EXAMPLE)
    first = post(worker, body, **bearer())
    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "accepted", "received": 3, "inserted": 2, "duplicates": 0, "rejected": 1,
        "rejects": [{"index": 2, "phoneE164": "not a phone", "reason": "invalid_phone",
                     "detail": first.json()["rejects"][0]["detail"]}],
    }
    again = post(worker, body, **bearer())
    assert again.json()["inserted"] == 0 and again.json()["duplicates"] == 2
    # The answer came after the rows were applied: the lead shows them at once.
    assert [e["eventType"] for e in worker.lead(42, "+15551234568")["events"]] == ["webinar_attended"]


def test_hmac_signed_body_is_accepted(served) -> None:
    _, worker = served
    body = msgspec.json.encode({"organizationId": "42", "eventType": "signed",
                                "events": [{"phoneE164": "+15550001111", "occurredAt": "2026-05-12T18:34:00Z"}]})
    ok = post(worker, body, **{"X-Leadstream-Signature": sign(SECRET, body)})
    assert ok.status_code == 200 and ok.json()["inserted"] == 1
    tampered = post(worker, body.replace(b"signed", b"sIgned"), **{"X-Leadstream-Signature": sign(SECRET, body)})
    assert tampered.status_code == 401


def test_client_errors_are_json_a_client_can_act_on(served) -> None:
    _, worker = served
    body = msgspec.json.encode(EXAMPLE)
    cases = [
        (post(worker, body), 401),
        (post(worker, body, **bearer("lsk_wrong")), 401),
        (post(worker, body, **bearer(OTHER_KEY)), 403),
        (post(worker, body, **{**bearer(), "Content-Type": "text/plain"}), 415),
        (post(worker, b'{"organizationId": 42, "events": [', **bearer()), 400),
        (post(worker, msgspec.json.encode({"organizationId": 42, "eventType": "x"}), **bearer()), 422),
        (post(worker, msgspec.json.encode([1, 2]), **bearer()), 422),
        (post(worker, msgspec.json.encode({"organizationId": 42, "eventType": "x",
                                           "events": [{}] * 50_001}), **bearer()), 413),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.text)
        error = response.json()["error"]
        assert set(error) == {"code", "message"} and error["message"]


def test_a_50000_event_batch_with_1_percent_bad_rows(served) -> None:
    _, worker = served
    events = []
    for i in range(50_000):
        phone = "bad" if i % 100 == 7 else f"+1333{i:07d}"
        events.append({"phoneE164": phone, "occurredAt": "2026-05-12T18:34:00Z"})
    body = msgspec.json.encode({"organizationId": 42, "eventType": "bulk", "events": events})
    response = post(worker, body, **bearer())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["received"], answer["inserted"], answer["duplicates"], answer["rejected"]) == (
        50_000, 49_500, 0, 500)
    assert [r["index"] for r in answer["rejects"]] == [i for i in range(50_000) if i % 100 == 7]
    again = post(worker, body, **bearer()).json()
    assert (again["inserted"], again["duplicates"]) == (0, 49_500)
