"""The ``leadstream`` command as a user runs it, against a real broker and worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def leadstream(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "leadstream.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def test_publish_jsonl_and_csv_then_inspect_a_lead(stack: Stack, tmp_path: Path) -> None:
    worker = stack.worker()
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "organizationId": 42,
                        "eventType": "mastery_purchase",
                        "phoneE164": "+15551234567",
                        "occurredAt": "2026-05-12T18:34:00Z",
                    }
                ),
                "{this is not json",
                json.dumps(
                    {
                        "organizationId": 42,
                        "eventType": "mastery_purchase",
                        "phoneE164": "(555) 123-4567",
                        "occurredAt": "2026-05-12T20:34:00.000+02:00",
                    }
                ),
                json.dumps(
                    {
                        "organizationId": 0,
                        "eventType": "x",
                        "phoneE164": "+15551234567",
                        "occurredAt": "2026-05-12T18:34:00Z",
                    }
                ),
            ]
        )
        + "\n"
    )
    csv = tmp_path / "events.csv"
    csv.write_text(
        "organizationId,eventType,phoneE164,occurredAt,metadata\n"
        '42,opted_out,15551234567,2026-05-13T09:00:00Z,"{""source"": ""sms""}"\n'
    )
    env = stack.env()
    out = leadstream("publish", "events", str(jsonl), env=env)
    assert out.stdout.strip().splitlines()[-1] == (
        f"published 2 events in 1 messages to {stack.topics.lead_events}; "
        "2 lines skipped; 0 messages failed"
    )
    assert "line 2: invalid JSON" in out.stderr
    assert "line 4: organizationId must be a positive integer" in out.stderr
    out = leadstream("publish", "events", str(csv), env=env)
    assert out.stdout.strip().endswith(
        "published 1 events in 1 messages to "
        f"{stack.topics.lead_events}; 0 lines skipped; 0 messages failed"
    )

    # Reading a lead takes a key of its organization (here from the environment).
    env = {**env, "LEADSTREAM_API_KEY": stack.api_key(42)}
    deadline = time.monotonic() + 60
    while True:
        shown = leadstream("lead", "42", "(555) 123-4567", "--url", worker.url, env=env)
        lead = json.loads(shown.stdout)
        if len(lead["events"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert lead["phoneE164"] == "+15551234567"
    assert lead["optedOut"] is True
    assert lead["events"] == [
        {"eventType": "mastery_purchase", "occurredAt": "2026-05-12T18:34:00.000Z"},
        {"eventType": "opted_out", "occurredAt": "2026-05-13T09:00:00.000Z"},
    ]
    bad = leadstream("lead", "42", "not-a-phone", "--url", worker.url, env=env, check=False)
    assert bad.returncode == 1
    assert "invalid_phone" in bad.stderr
    other = stack.api_key(7)
    args = ("lead", "42", "+15551234567", "--url", worker.url)
    foreign = leadstream(*args, "--api-key", other, env=env, check=False)
    assert foreign.returncode == 1 and '"forbidden"' in foreign.stderr
    assert other not in foreign.stderr + foreign.stdout
    keyless = {k: v for k, v in env.items() if k != "LEADSTREAM_API_KEY"}
    missing = leadstream(*args, env=keyless, check=False)
    assert missing.returncode == 2 and "--api-key" in missing.stderr


def test_checked_in_schemas_match_the_models() -> None:
    leadstream("schemas", "--check", "--out", str(REPO / "schemas"))


def test_kafka_start_status_stop_lifecycle(tmp_path: Path) -> None:
    from leadstream.kafka.local import KAFKA_VERSION
    from tests.support.worker import free_broker_port

    port = free_broker_port()
    args = ["--bootstrap", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)]
    stopped = leadstream("kafka", "status", *args, check=False)
    assert stopped.returncode == 1
    assert f"Kafka {KAFKA_VERSION} at 127.0.0.1:{port}: stopped" in stopped.stdout
    try:
        first = leadstream("kafka", "start", *args)
        assert f"Kafka {KAFKA_VERSION} running at 127.0.0.1:{port}" in first.stdout
        again = leadstream("kafka", "start", *args)  # idempotent: same broker
        assert (
            again.stdout.split("(pid ")[1].split(")")[0]
            == first.stdout.split("(pid ")[1].split(")")[0]
        )
        running = leadstream("kafka", "status", *args)
        assert "running (pid" in running.stdout
        assert (tmp_path / "kafka" / "logs" / "server.log").exists()
    finally:
        leadstream("kafka", "stop", *args)
    assert leadstream("kafka", "status", *args, check=False).returncode == 1


def test_publish_audience_trigger_and_recipients(tmp_path: Path, kafka_bootstrap: str) -> None:
    import uuid

    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path,
        materialize_lead_seconds=3600,
    )
    try:
        stack.worker()
        env = stack.env()
        audience = tmp_path / "audience.csv"
        audience.write_text(
            "phoneE164,externalId\n+15557770001,a1\n(555) 777-0002,a2\nnot-a-phone,a3\n+15557770004,\n"
        )
        out = leadstream(
            "publish", "audience", str(audience), "--org", "7", "--campaign", "spring", env=env
        )
        assert out.stdout.strip().splitlines()[-1] == (
            f"published 4 members in 1 messages to {stack.topics.audience_members}; "
            "0 lines skipped; 0 messages failed"
        )
        events = tmp_path / "events.jsonl"
        events.write_text(
            json.dumps(
                {
                    "organizationId": 7,
                    "eventType": "purchase",
                    "phoneE164": "+15557770001",
                    "occurredAt": "2026-05-12T18:34:00Z",
                }
            )
            + "\n"
        )
        leadstream("publish", "events", str(events), env=env)
        stack.wait_caught_up()
        scheduled = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
        bad = leadstream(
            "trigger",
            "--org",
            "7",
            "--campaign",
            "spring",
            "--send",
            "s1",
            "--scheduled-for",
            scheduled,
            "--filter",
            "exclude:purchase:within=0",
            env=env,
            check=False,
        )
        assert bad.returncode == 2 and "within.minutes" in bad.stderr
        leadstream(
            "trigger",
            "--org",
            "7",
            "--campaign",
            "spring",
            "--send",
            "s1",
            "--scheduled-for",
            scheduled,
            "--filter",
            "exclude:purchase",
            env=env,
        )
        listed = leadstream(
            "recipients", "s1", "--org", "7", "--format", "csv", "--timeout", "120", env=env
        )
        rows = listed.stdout.strip().splitlines()
        assert rows[0] == "phoneE164,externalId"
        assert sorted(rows[1:]) == ["+15557770002,a2", "+15557770004,"]
        summary = json.loads(listed.stderr.strip().splitlines()[-1])
        assert summary["type"] == "summary" and summary["recipientCount"] == 2
        assert summary["counts"]["droppedByEventFilter"] == 1
        missing = leadstream(
            "recipients", "nope", "--org", "7", "--timeout", "3", env=env, check=False
        )
        assert missing.returncode == 2
        assert "no summary for send nope" in missing.stderr
    finally:
        stack.close()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    import hashlib

    from leadstream.domain.auth import (
        AuthError,
        AuthIndex,
        Granted,
        RequestLine,
        read_credential,
        sign,
    )
    from leadstream.domain.auth import signed_headers as v1_headers
    from leadstream.domain.auth import verify_body_signature as body_org
    from leadstream.web.keys import load_auth

    auth = tmp_path / "auth.json"
    env = {"LEADSTREAM_AUTH_FILE": str(auth)}
    api_id, api_key = leadstream("keys", "create", "--org", "42", env=env).stdout.split()
    sk_id, secret = leadstream(
        "keys", "create", "--org", "42", "--kind", "signing", env=env
    ).stdout.split()
    listed = leadstream("keys", "list", "--org", "42", env=env).stdout
    assert api_id in listed and sk_id in listed and api_key not in listed and secret not in listed
    line = RequestLine("POST", "/api/v1/webhooks/lead-events", "")

    def check(headers: dict[str, str], body: bytes = b'{"organizationId": 42}') -> str | None:
        index = AuthIndex.of(load_auth(auth))
        try:
            found = read_credential(
                index, headers, line, now_s=1e9, body_signatures=True, cluster=False
            )
            if isinstance(found, Granted):
                return found.org
            if hasattr(found, "check_body"):
                found.check_body(hashlib.sha256(body).hexdigest())
                return found.org
            return body_org(index, found, body, "42")
        except AuthError:
            return None

    body = b'{"organizationId": 42}'
    assert check({"Authorization": f"Bearer {api_key}"}) == "42"
    assert check(v1_headers(sk_id, secret, line, body, now_s=1e9)) == "42"
    assert check({"X-Leadstream-Signature": sign(secret, body)}) == "42"
    leadstream("keys", "require-timestamp", "on", "--org", "42", env=env)
    assert check({"X-Leadstream-Signature": sign(secret, body)}) is None
    stamped = {"X-Leadstream-Signature": sign(secret, body, "1000000000")}
    assert check({**stamped, "X-Leadstream-Timestamp": "1000000000"}) == "42"
    off = leadstream("keys", "body-signatures", "off", "--org", "42", env=env)
    assert "refused" in off.stdout
    assert check({**stamped, "X-Leadstream-Timestamp": "1000000000"}) is None
    assert check(v1_headers(sk_id, secret, line, body, now_s=1e9)) == "42"
    leadstream("keys", "body-signatures", "on", "--org", "42", env=env)
    assert check({**stamped, "X-Leadstream-Timestamp": "1000000000"}) == "42"
    leadstream("keys", "revoke", api_id, "--org", "42", env=env)
    assert "revoked" in leadstream("keys", "list", "--org", "42", env=env).stdout
    assert check({"Authorization": f"Bearer {api_key}"}) is None
    bad = leadstream("keys", "revoke", "ak_nope", "--org", "42", env=env, check=False)
    assert bad.returncode == 2 and "has no key" in bad.stderr


def test_preview_then_explain_a_send(tmp_path: Path, kafka_bootstrap: str) -> None:
    import uuid

    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap,
        app_id=f"ls-{run}",
        topic_prefix=f"t{run}-",
        root=tmp_path,
        materialize_lead_seconds=3600,
    )
    try:
        worker = stack.worker()
        env = {**stack.env(), "LEADSTREAM_API_KEY": stack.api_key(7)}
        stack.members(
            7,
            "spring",
            [
                {"phoneE164": "+15557770001", "externalId": "a1"},
                {"phoneE164": "+15557770002", "externalId": "a2"},
                {"phoneE164": "+15557770003"},
            ],
        )
        stack.send_events(
            [
                {
                    "organizationId": 7,
                    "eventType": "purchase",
                    "phoneE164": "+15557770001",
                    "occurredAt": "2026-05-12T18:34:00Z",
                }
            ]
        )
        stack.wait_caught_up()
        scheduled = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
        audience_filter = tmp_path / "filter.json"
        audience_filter.write_text(json.dumps({"mode": "exclude", "leads": [{"externalId": "a2"}]}))
        args = ("preview", "--org", "7", "--campaign", "spring", "--url", worker.url)
        shown = leadstream(
            *args,
            "--scheduled-for",
            scheduled,
            "--filter",
            "exclude:purchase",
            "--audience-filter",
            str(audience_filter),
            "--sample",
            "5",
            env=env,
        )
        preview = json.loads(shown.stdout)
        assert preview["recipientCount"] == 1
        assert preview["sample"] == [{"phoneE164": "+15557770003", "externalId": None}]
        assert preview["counts"] == {
            "audience": 3,
            "optedOut": 0,
            "droppedByAudienceFilter": 1,
            "droppedByEventFilter": 1,
            "lateAudienceFilters": 0,
            "droppedByFrequencyCap": 0,
            "droppedByQuietHours": 0,
            "heldOut": 0,
        }
        everyone = json.loads(leadstream(*args, env=env).stdout)  # now, no filter, no sample
        assert (everyone["recipientCount"], everyone["sample"]) == (3, [])
        bad_filter = leadstream(*args, "--filter", "exclude:purchase:when=1", env=env, check=False)
        assert bad_filter.returncode == 2 and "--filter" in bad_filter.stderr
        refused = leadstream(*args, "--filter", "maybe:purchase", env=env, check=False)
        assert refused.returncode == 1 and '"invalid_json"' in refused.stderr
        # With a signing key instead of an API key, the command signs its request v1.
        key_id, secret = stack.signing_key(7)
        signing = {k: v for k, v in env.items() if k != "LEADSTREAM_API_KEY"}
        signing |= {"LEADSTREAM_SIGNING_KEY_ID": key_id, "LEADSTREAM_SIGNING_SECRET": secret}
        signed = json.loads(leadstream(*args, env=signing).stdout)
        assert signed["recipientCount"] == 3
        wrong = {**signing, "LEADSTREAM_SIGNING_SECRET": "0" * 64}
        unsigned = leadstream(*args, env=wrong, check=False)
        assert unsigned.returncode == 1 and '"unauthorized"' in unsigned.stderr
        shown = leadstream("lead", "7", "(555) 777-0001", "--url", worker.url, env=signing)
        assert json.loads(shown.stdout)["events"][0]["eventType"] == "purchase"

        stack.trigger(
            organizationId=7,
            campaignId="spring",
            sendId="s1",
            scheduledFor=scheduled,
            eventFilter={"mode": "exclude", "eventType": "purchase"},
        )
        assert stack.send_list("s1", 7).summary is not None
        explained = leadstream("explain", "7", "s1", "(555) 777-0001", "--url", worker.url, env=env)
        answer = json.loads(explained.stdout)
        assert (answer["phoneE164"], answer["sent"], answer["step"]) == (
            "+15557770001",
            False,
            "eventFilter",
        )
        assert answer["detail"]["occurredAt"] == ["2026-05-12T18:34:00.000Z"]
        unknown = leadstream(
            "explain", "7", "nope", "+15557770001", "--url", worker.url, env=env, check=False
        )
        assert unknown.returncode == 1 and '"unknown_send"' in unknown.stderr
        nobody = leadstream(
            "explain",
            "7",
            "s1",
            "+15557770001",
            "--url",
            "http://127.0.0.1:9",
            env=env,
            check=False,
        )
        assert nobody.returncode == 1 and "no answer from http://127.0.0.1:9" in nobody.stderr
    finally:
        stack.close()
