"""The lead-events webhook on a live worker: auth, exact counts, client errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from leadstream.domain.auth import (
    ApiKey,
    AuthConfig,
    SigningKey,
    hash_api_key,
    sign,
    with_body_signatures,
    with_key,
)
from leadstream.web.keys import load_auth, save_auth
from tests.support.signing import credential_headers, send_signed, signed_request
from tests.support.stack import Stack
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

API_KEY = "lsk_test_" + "a" * 40
OTHER_KEY = "lsk_test_" + "b" * 40
SECRET = "c" * 64


@pytest.fixture(scope="module")
def served(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, WorkerProcess]]:
    root = tmp_path_factory.mktemp("webhook")
    auth = root / "auth.json"
    config = with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(API_KEY), "t"))
    config = with_key(config, "42", SigningKey("sk1", SECRET, "t"))
    config = with_key(config, "7", ApiKey("ak7", hash_api_key(OTHER_KEY), "t"))
    save_auth(auth, config)
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=root, auth_file=auth
    )
    worker = stack.worker()
    try:
        yield stack, worker
    finally:
        stack.close()


def post(
    worker: WorkerProcess, body: bytes, content_type: str = "application/json", **headers: str
) -> httpx.Response:
    headers.setdefault("Content-Type", content_type)
    return httpx.post(
        f"{worker.url}/api/v1/webhooks/lead-events", content=body, headers=headers, timeout=60
    )


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


EXAMPLE = {
    "organizationId": 42,
    "eventType": "mastery_purchase",
    "events": [
        {"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"},
        {
            "phoneE164": "(555) 123-4568",
            "occurredAt": "2026-05-12T20:34:00.000+02:00",
            "eventType": "webinar_attended",
            "metadata": {"session": "s1"},
        },
        {"phoneE164": "not a phone", "occurredAt": "2026-05-12T18:34:00Z"},
    ],
}


def test_accepted_with_exact_counts_and_retries_are_duplicates(served) -> None:
    stack, worker = served
    body = msgspec.json.encode(EXAMPLE)
    first = post(worker, body, **bearer())
    assert first.status_code == 200, first.text
    assert first.json() == {
        "status": "accepted",
        "received": 3,
        "inserted": 2,
        "duplicates": 0,
        "rejected": 1,
        "rejects": [
            {
                "index": 2,
                "phoneE164": "not a phone",
                "reason": "invalid_phone",
                "detail": first.json()["rejects"][0]["detail"],
            }
        ],
        "rejectsOmitted": 0,
    }
    again = post(worker, body, **bearer())
    assert again.json()["inserted"] == 0 and again.json()["duplicates"] == 2
    # The answer came after the rows were applied: the lead shows them at once.
    assert [e["eventType"] for e in worker.lead(42, "+15551234568")["events"]] == [
        "webinar_attended"
    ]


def test_hmac_signed_body_is_accepted(served) -> None:
    _, worker = served
    body = msgspec.json.encode(
        {
            "organizationId": "42",
            "eventType": "signed",
            "events": [{"phoneE164": "+15550001111", "occurredAt": "2026-05-12T18:34:00Z"}],
        }
    )
    ok = post(worker, body, **{"X-Leadstream-Signature": sign(SECRET, body)})
    assert ok.status_code == 200 and ok.json()["inserted"] == 1
    tampered = post(
        worker, body.replace(b"signed", b"sIgned"), **{"X-Leadstream-Signature": sign(SECRET, body)}
    )
    assert tampered.status_code == 401
    keyed = {"X-Leadstream-Signature": sign(SECRET, body), "X-Leadstream-Key-Id": "sk1"}
    assert post(worker, body, **keyed).json()["duplicates"] == 1
    url = f"{worker.url}/api/v1/webhooks/lead-events"
    json_type = {"Content-Type": "application/json"}
    v1 = send_signed("POST", url, "sk1", SECRET, content=body, headers=json_type)
    assert v1.status_code == 200 and v1.json()["duplicates"] == 1


def test_an_organization_can_turn_body_only_signatures_off(served) -> None:
    stack, worker = served
    body = msgspec.json.encode(
        {
            "organizationId": "42",
            "eventType": "signed_off",
            "events": [{"phoneE164": "+15550001112", "occurredAt": "2026-05-12T18:34:00Z"}],
        }
    )
    auth = stack.settings.auth_path
    before = load_auth(auth)
    save_auth(auth, with_body_signatures(before, "42", False))
    try:
        for headers in (
            {"X-Leadstream-Signature": sign(SECRET, body)},
            {"X-Setter-Signature": sign(SECRET, body), "X-Leadstream-Key-Id": "sk1"},
        ):
            refused = post(worker, body, **headers)
            assert refused.status_code == 401, refused.text
        url = f"{worker.url}/api/v1/webhooks/lead-events"
        json_type = {"Content-Type": "application/json"}
        v1 = send_signed("POST", url, "sk1", SECRET, content=body, headers=json_type)
        assert v1.status_code == 200 and v1.json()["inserted"] == 1
    finally:
        save_auth(auth, before)
    assert post(worker, body, **{"X-Leadstream-Signature": sign(SECRET, body)}).status_code == 200


def test_client_errors_are_json_a_client_can_act_on(served) -> None:
    _, worker = served
    body = msgspec.json.encode(EXAMPLE)
    cases = [
        (post(worker, body), 401),
        (post(worker, body, **bearer("lsk_wrong")), 401),
        (post(worker, body, **bearer(OTHER_KEY)), 403),
        (post(worker, body, **{**bearer(), "Content-Type": "text/plain"}), 415),
        (post(worker, b'{"organizationId": 42, "events": [', **bearer()), 400),
        (
            post(worker, msgspec.json.encode({"organizationId": 42, "eventType": "x"}), **bearer()),
            422,
        ),
        (post(worker, msgspec.json.encode([1, 2]), **bearer()), 422),
        (
            post(
                worker,
                msgspec.json.encode(
                    {"organizationId": 42, "eventType": "x", "events": [{}] * 50_001}
                ),
                **bearer(),
            ),
            413,
        ),
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
        50_000,
        49_500,
        0,
        500,
    )
    assert [r["index"] for r in answer["rejects"]] == [i for i in range(50_000) if i % 100 == 7]
    again = post(worker, body, **bearer()).json()
    assert (again["inserted"], again["duplicates"]) == (0, 49_500)


def test_an_answer_lists_the_first_1000_rejects_and_counts_the_rest(served) -> None:
    _, worker = served
    events = [{"phoneE164": "bad", "occurredAt": "2026-05-12T18:34:00Z"}] * 2500
    events.append({"phoneE164": "+13339990001", "occurredAt": "2026-05-12T18:34:00Z"})
    body = msgspec.json.encode({"organizationId": 42, "eventType": "many_bad", "events": events})
    answer = post(worker, body, **bearer()).json()
    assert (answer["received"], answer["inserted"], answer["rejected"]) == (2501, 1, 2500)
    assert [r["index"] for r in answer["rejects"]] == list(range(1000))
    assert answer["rejectsOmitted"] == 1500
    csv_body = b"phoneE164,externalId\n" + b"bad,x\n" * 1500 + b"+13339990002,y\n"
    upload = httpx.post(
        f"{worker.url}/api/v1/campaigns/many-bad/audience",
        content=csv_body,
        headers={**bearer(), "Content-Type": "text/csv"},
        timeout=60,
    ).json()
    assert (upload["received"], upload["accepted"], upload["rejected"]) == (1501, 1, 1500)
    assert len(upload["rejects"]) == 1000 and upload["rejectsOmitted"] == 500


def test_two_workers_serving_http_give_exact_counts(kafka_bootstrap: str, tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    save_auth(auth, with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(API_KEY), "t")))
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path, auth_file=auth
    )
    try:
        a = stack.worker(name="a", data_dir=tmp_path / "a")
        b = stack.worker(name="b", data_dir=tmp_path / "b")
        b.wait_ready()
        a.wait_ready()
        # Rows of every partition, whichever worker owns it, counted by whoever serves.
        events = [
            {"phoneE164": f"+1222{i:07d}", "occurredAt": "2026-05-12T18:34:00Z"}
            for i in range(2_000)
        ]
        half = msgspec.json.encode(
            {"organizationId": 42, "eventType": "x", "events": events[:1_000]}
        )
        whole = msgspec.json.encode({"organizationId": 42, "eventType": "x", "events": events})
        first = post(a, half, **bearer()).json()
        assert (first["inserted"], first["duplicates"]) == (1_000, 0)
        second = post(b, whole, **bearer()).json()
        assert (second["inserted"], second["duplicates"]) == (1_000, 1_000)
        third = post(a, whole, **bearer()).json()
        assert (third["inserted"], third["duplicates"]) == (0, 2_000)
    finally:
        stack.close()


def test_kafka_down_answers_503_and_a_retry_converges(tmp_path: Path) -> None:
    """On a broker of its own, stopped in the middle of the test."""
    from leadstream.kafka.local import LocalKafka
    from tests.support.worker import free_broker_port

    port = free_broker_port()
    kafka = LocalKafka(tmp_path / "kafka", f"127.0.0.1:{port}")
    kafka.start(timeout=300)
    auth = tmp_path / "auth.json"
    save_auth(auth, with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(API_KEY), "t")))
    stack = Stack(
        f"127.0.0.1:{port}",
        app_id="ls-down",
        topic_prefix="down-",
        root=tmp_path,
        auth_file=auth,
        http_timeout_seconds=5,
    )
    try:
        worker = stack.worker()
        events = [
            {"phoneE164": f"+1211{i:07d}", "occurredAt": "2026-05-12T18:34:00Z"} for i in range(100)
        ]
        body = msgspec.json.encode({"organizationId": 42, "eventType": "x", "events": events})
        kafka.stop()
        # /readyz answers from state asked again every second (the broker is given 2 s).
        deadline = time.monotonic() + 15
        while httpx.get(f"{worker.url}/readyz", timeout=10).status_code != 503:
            assert time.monotonic() < deadline, "/readyz stayed 200 with the broker gone"
            time.sleep(0.2)
        down = post(worker, body, **bearer())
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "5"
        assert down.json()["error"]["code"] == "unavailable"
        kafka.start(timeout=300)
        deadline = time.monotonic() + 120
        while True:
            retry = post(worker, body, **bearer())
            if retry.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert retry.status_code == 200, retry.text
        answer = retry.json()
        # Whatever the first attempt left in Kafka, the retry accounts for all 100 rows.
        assert answer["inserted"] + answer["duplicates"] == 100
        assert post(worker, body, **bearer()).json()["duplicates"] == 100
        assert len(worker.lead(42, "+12110000000")["events"]) == 1
    finally:
        stack.close()
        kafka.stop()


def test_metrics_count_requests_rows_and_lag(served) -> None:
    _, worker = served
    body = msgspec.json.encode(
        {
            "organizationId": 42,
            "eventType": "metered",
            "events": [
                {"phoneE164": "+15550002222", "occurredAt": "2026-05-12T18:34:00Z"},
                {"phoneE164": "bad", "occurredAt": "2026-05-12T18:34:00Z"},
            ],
        }
    )
    before = httpx.get(f"{worker.url}/metrics", timeout=10).text
    assert post(worker, body, **bearer()).status_code == 200
    assert post(worker, body, content_type="text/plain", **bearer()).status_code == 415
    # Without a credential: refused before anything else (and counted too).
    assert post(worker, body, content_type="text/plain").status_code == 401
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text

    def value(sample: str, page: str) -> float:
        for line in page.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    ok = 'leadstream_http_requests_total{endpoint="/api/v1/webhooks/lead-events",status="200"}'
    bad = 'leadstream_http_requests_total{endpoint="/api/v1/webhooks/lead-events",status="415"}'
    refused = bad.replace('"415"', '"401"')
    assert value(ok, text) == value(ok, before) + 1
    assert value(bad, text) == value(bad, before) + 1
    assert value(refused, text) == value(refused, before) + 1
    for outcome in ("inserted", "rejected"):
        sample = f'leadstream_rows_total{{outcome="{outcome}"}}'
        assert value(sample, text) == value(sample, before) + 1
    assert "leadstream_ingest_apply_seconds_bucket" in text
    assert "leadstream_consumer_lag" in text


def test_audience_upload_csv_and_ndjson_then_a_send_uses_it(served) -> None:
    stack, worker = served
    csv_body = (
        b"phoneE164,externalId\n+15556660001,e1\n(555) 666-0002,e2\nnot-a-phone,e3\n+15556660004,\n"
    )
    url = f"{worker.url}/api/v1/campaigns/upload-1/audience"
    response = httpx.post(
        url, content=csv_body, headers={**bearer(), "Content-Type": "text/csv"}, timeout=60
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["received"], answer["accepted"], answer["rejected"]) == (4, 3, 1)
    assert answer["rejects"][0]["index"] == 2 and answer["rejects"][0]["reason"] == "invalid_phone"
    ndjson = b'{"phoneE164": "+15556660004", "op": "remove"}\n{"phoneE164": "+15556660005", "externalId": "e5"}\n[1]\n'
    ndjson_type = {"Content-Type": "application/x-ndjson"}
    signed = signed_request("POST", url, "sk1", SECRET, content=ndjson, headers=ndjson_type)
    answer = httpx.Client(timeout=60).send(signed).json()
    assert (answer["received"], answer["accepted"], answer["rejected"]) == (3, 2, 1)
    replayed = {**credential_headers(signed), **ndjson_type}
    tampered = httpx.post(url, content=ndjson + b"\n", headers=replayed, timeout=60)
    assert tampered.status_code == 401
    elsewhere = url.replace("upload-1", "upload-2")
    assert httpx.post(elsewhere, content=ndjson, headers=replayed, timeout=60).status_code == 401
    # A body-only signature is for webhooks: an upload is signed v1.
    body_only = {"X-Leadstream-Signature": sign(SECRET, ndjson), **ndjson_type}
    assert httpx.post(url, content=ndjson, headers=body_only, timeout=60).status_code == 401
    assert (
        httpx.post(
            url, content=csv_body, headers={**bearer(), "Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert (
        httpx.post(url, content=csv_body, headers={"Content-Type": "text/csv"}).status_code == 401
    )

    # Applying 1,000,000 members (one changelog record each) takes 150-180 s on a 2-core
    # machine beside the broker: a bound for liveness, not a measurement.
    stack.wait_caught_up(timeout=420)
    stack.trigger(
        organizationId=42,
        campaignId="upload-1",
        sendId="upload-send",
        scheduledFor="2026-01-01T00:00:00Z",
    )
    result = stack.send_list("upload-send", 42)
    assert result.summary is not None
    assert sorted((r["phoneE164"], r["externalId"]) for r in result.recipients) == [
        ("+15556660001", "e1"),
        ("+15556660002", "e2"),
        ("+15556660005", "e5"),
    ]


def test_audience_upload_as_a_json_document(served) -> None:
    _, worker = served
    url = f"{worker.url}/api/v1/campaigns/upload-2/audience"
    body = msgspec.json.encode(
        {"members": [{"phoneE164": "+15556660101", "externalId": "j1"}, {"phoneE164": 5}]}
    )
    answer = httpx.post(
        url, content=body, headers={**bearer(), "Content-Type": "application/json"}, timeout=60
    ).json()
    assert (answer["received"], answer["accepted"], answer["rejected"]) == (2, 1, 1)
    assert answer["rejects"][0]["index"] == 1
    as_array = msgspec.json.encode([{"phoneE164": "+15556660102"}, "x"])
    answer = httpx.post(
        url, content=as_array, headers={**bearer(), "Content-Type": "application/json"}
    ).json()
    assert (answer["received"], answer["accepted"], answer["rejected"]) == (2, 1, 1)
    for bad, status in ((as_array[:-3], 400), (b'{"people": []}', 422)):
        refused = httpx.post(
            url, content=bad, headers={**bearer(), "Content-Type": "application/json"}
        )
        assert refused.status_code == status, refused.text
        assert refused.json()["error"]["code"] in ("invalid_json", "invalid_body")


def test_a_million_member_json_upload_streams_and_every_member_is_sent(served) -> None:
    """The size limit at full size, as one JSON document (the incrementally parsed form);
    every 100,000th row is bad and rejected alone, and a send then reaches every other."""
    stack, worker = served
    size = 1_000_000
    members = [{"phoneE164": f"+1777{i:07d}", "externalId": f"m{i}"} for i in range(size)]
    for i in range(0, size, 100_000):
        members[i] = {"phoneE164": f"bad-{i}"}
    body = msgspec.json.encode({"members": members})
    response = httpx.post(
        f"{worker.url}/api/v1/campaigns/million/audience",
        content=body,
        headers={**bearer(), "Content-Type": "application/json"},
        timeout=600,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["received"], answer["accepted"], answer["rejected"]) == (size, size - 10, 10)
    assert [r["index"] for r in answer["rejects"]] == list(range(0, size, 100_000))

    # Applying 1,000,000 members (one changelog record each) takes 150-180 s on a 2-core
    # machine beside the broker: a bound for liveness, not a measurement.
    stack.wait_caught_up(timeout=420)
    stack.trigger(
        organizationId=42,
        campaignId="million",
        sendId="million-1",
        scheduledFor="2026-01-01T00:00:00Z",
    )
    result = stack.send_list("million-1", 42, timeout=600)
    assert result.summary is not None
    assert result.summary["recipientCount"] == size - 10
    expected = {(m["phoneE164"], m["externalId"]) for m in members if "externalId" in m}
    assert {(r["phoneE164"], r["externalId"]) for r in result.recipients} == expected
    assert len(result.recipients) == size - 10


def filter_post(worker: WorkerProcess, doc: dict, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{worker.url}/api/v1/webhooks/campaigns/audience-filter",
        content=msgspec.json.encode(doc),
        headers={"Content-Type": "application/json", **headers},
        timeout=60,
    )


def test_audience_filter_endpoint_repeat_deadline_and_effect(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    def iso(dt: datetime) -> str:
        return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    auth = tmp_path / "auth.json"
    config = with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(API_KEY), "t"))
    save_auth(auth, with_key(config, "7", ApiKey("ak7", hash_api_key(OTHER_KEY), "t")))
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path,
        auth_file=auth,
        materialize_lead_seconds=2 * 86_400,
    )
    try:
        worker = stack.worker()
        stack.members(
            42, "c1", [{"phoneE164": f"+1555444000{i}", "externalId": f"x{i}"} for i in range(5)]
        )
        include = {
            "campaignId": "c1",
            "sendId": "s1",
            "mode": "include",
            "leads": [{"externalId": "x1"}, {"phoneE164": "(555) 444-0003"}],
        }
        first = filter_post(worker, include, **bearer())
        assert first.status_code == 200 and first.json() == {"status": "accepted", "leadCount": 2}
        assert filter_post(worker, include, **bearer()).json() == {"status": "already_received"}
        assert filter_post(worker, {**include, "organizationId": 7}, **bearer()).status_code == 403
        assert filter_post(worker, {**include, "mode": "maybe"}, **bearer()).status_code == 422
        assert filter_post(worker, include).status_code == 401
        # Organization 7 has its own send s1: the filter of 42 does not touch it.
        assert filter_post(worker, include, **bearer(OTHER_KEY)).json()["status"] == "accepted"

        stack.wait_caught_up()
        stack.trigger(
            organizationId=42,
            campaignId="c1",
            sendId="s1",
            scheduledFor=iso(datetime.now(UTC) + timedelta(hours=1)),
            audienceFilter={"enabled": True},
        )
        result = stack.send_list("s1", 42)
        assert sorted(r["externalId"] for r in result.recipients) == ["x1", "x3"]
        assert result.summary["counts"]["droppedByAudienceFilter"] == 3

        # A send whose trigger is known and whose deadline has passed: 409, counted as late.
        stack.trigger(
            organizationId=42,
            campaignId="c1",
            sendId="s2",
            scheduledFor=iso(datetime.now(UTC) + timedelta(minutes=4)),
        )
        stack.wait_caught_up()
        late = filter_post(worker, {**include, "sendId": "s2"}, **bearer())
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "filter_deadline_passed"
    finally:
        stack.close()


def test_keys_revoked_or_rotated_while_the_worker_runs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from leadstream.domain.auth import revoked

    auth = tmp_path / "auth.json"
    config = with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(API_KEY), "t"))
    save_auth(auth, with_key(config, "42", SigningKey("sk_old", SECRET, "t")))
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path, auth_file=auth
    )
    try:
        worker = stack.worker()
        body = msgspec.json.encode(
            {
                "organizationId": 42,
                "eventType": "k",
                "events": [{"phoneE164": "+15550003333", "occurredAt": "2026-05-12T18:34:00Z"}],
            }
        )
        assert post(worker, body, **bearer()).status_code == 200
        new_secret = "d" * 64
        save_auth(auth, with_key(load_auth(auth), "42", SigningKey("sk_new", new_secret, "t")))
        # Rotation: both signing keys work until the old one is revoked.
        assert (
            post(worker, body, **{"X-Leadstream-Signature": sign(SECRET, body)}).status_code == 200
        )
        assert (
            post(worker, body, **{"X-Leadstream-Signature": sign(new_secret, body)}).status_code
            == 200
        )
        config = revoked(revoked(load_auth(auth), "42", "sk_old", "now"), "42", "ak1", "now")
        save_auth(auth, config)
        assert post(worker, body, **bearer()).status_code == 401
        assert (
            post(worker, body, **{"X-Leadstream-Signature": sign(SECRET, body)}).status_code == 401
        )
        assert (
            post(worker, body, **{"X-Leadstream-Signature": sign(new_secret, body)}).status_code
            == 200
        )
        stale = str(int(time.time()) - 600)
        old = {
            "X-Leadstream-Signature": sign(new_secret, body, stale),
            "X-Leadstream-Timestamp": stale,
        }
        assert post(worker, body, **old).status_code == 401
    finally:
        stack.close()
