"""schemathesis against a live worker: no 5xx, every answer as /openapi.json says; and the
document itself describes the compliance controls and the erase (no broker needed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from leadstream.domain.auth import ApiKey, AuthConfig, hash_api_key, with_key
from leadstream.web.keys import save_auth
from leadstream.web.openapi import openapi_document
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

KEY = "lsk_schemathesis_" + "k" * 40
LEAD_PATH = "/api/v1/leads/{organizationId}/{phone}"
EXPLAIN_PATH = "/api/v1/sends/{organizationId}/{sendId}/leads/{phone}"


def test_schemathesis_finds_no_server_error_and_no_schema_break(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.json"
    save_auth(auth, with_key(AuthConfig(), "42", ApiKey("ak1", hash_api_key(KEY), "t")))
    run = uuid.uuid4().hex[:10]
    stack = Stack(
        kafka_bootstrap, app_id=f"ls-{run}", topic_prefix=f"t{run}-", root=tmp_path, auth_file=auth
    )
    try:
        worker = stack.worker()
        document = httpx.get(f"{worker.url}/openapi.json", timeout=10).json()
        assert "/api/v1/webhooks/lead-events" in document["paths"]
        assert set(document["paths"][LEAD_PATH]) == {"get", "delete"}
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
        assert cli is not None, "schemathesis is a test dependency"
        result = subprocess.run(
            [
                cli,
                "run",
                f"{worker.url}/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--max-examples",
                "60",
                "--generation-deterministic",
                "--header",
                f"Authorization: Bearer {KEY}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "passed" in result.stdout
    finally:
        stack.close()


# --- the document, without a worker ----------------------------------------------------------


def _component(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of one component schema, its $refs resolved within the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(root)


def test_erase_is_described_like_the_other_tenant_routes() -> None:
    document = openapi_document()
    erase = document["paths"][LEAD_PATH]["delete"]
    read = document["paths"][LEAD_PATH]["get"]
    assert erase["security"] == read["security"] != []
    assert [(p["name"], p["in"]) for p in erase["parameters"]] == [
        ("organizationId", "path"),
        ("phone", "path"),
    ]
    assert all("example" in p for p in erase["parameters"])
    assert "requestBody" not in erase
    # Routed through Kafka from any worker: never 421 not_here.
    assert set(erase["responses"]) == {"200", "400", "401", "403", "429", "503"}
    erased = _component(document, "LeadErased")
    answer = {"erased": True, "events": 12, "memberships": 2, "suppressionKept": True}
    assert erased.is_valid(answer)
    assert erased.is_valid({**answer, "requestId": "5f0c7a"})
    assert erased.is_valid({**answer, "events": 0, "memberships": 0, "suppressionKept": False})
    assert not erased.is_valid({k: v for k, v in answer.items() if k != "suppressionKept"})
    assert not erased.is_valid({**answer, "phoneE164": "+15551234567"})


def test_preview_takes_the_compliance_controls() -> None:
    document = openapi_document()
    media = document["paths"]["/api/v1/sends/preview"]["post"]["requestBody"]["content"]
    example = media["application/json"]["example"]
    assert {"frequencyCap", "quietHours"} <= set(example)
    assert "where" in example["eventFilter"]
    body = _component(document, "PreviewBody")
    assert not list(body.iter_errors(example))
    wraps = {**example, "quietHours": {"start": "22:30", "end": "07:00", "timeZone": "UTC"}}
    assert body.is_valid(wraps)
    in_list = {
        **example,
        "eventFilter": {
            "mode": "include",
            "eventType": "webinar_attended",
            "where": {"plan": {"in": ["gold", 2, True, None]}, "seats": 1.5},
        },
    }
    assert body.is_valid(in_list)
    section_11 = {
        **example,
        "quietHours": {"policy": "us-tcpa"},
        "conditions": {"any": [{"event": "webinar_attended"}, {"inCampaign": "vip"}]},
        "holdout": {"percent": 10},
        "splits": [{"name": "A", "percent": 50}, {"name": "B", "percent": 50}],
    }
    assert not list(body.iter_errors(section_11))
    for bad in (
        {**section_11, "holdout": {"percent": 51}},
        {**section_11, "splits": [{"name": "A", "percent": 100, "x": 1}]},
        {**section_11, "conditions": {"segment": "vip"}},
        {**section_11, "quietHours": {"policy": "eu"}},
        {**example, "frequencyCap": {"maxSends": 0, "withinHours": 24}},
        {**example, "frequencyCap": {"maxSends": 2, "withinHours": 721}},
        {**example, "quietHours": {"start": "21:00", "end": "8"}},
        {**in_list, "eventFilter": {**in_list["eventFilter"], "where": {"plan": {"in": []}}}},
    ):
        assert not body.is_valid(bad), bad


def test_preview_counts_and_explain_steps_include_the_controls() -> None:
    document = openapi_document()
    preview = _component(document, "SendPreview")
    counts = {
        "audience": 1500,
        "optedOut": 20,
        "droppedByAudienceFilter": 100,
        "droppedByEventFilter": 200,
        "droppedByFrequencyCap": 50,
        "droppedByQuietHours": 30,
        "lateAudienceFilters": 0,
        "heldOut": 0,
    }
    answer = {
        "organizationId": "42",
        "campaignId": "mastery",
        "scheduledFor": "2026-05-13T18:00:00.000Z",
        "recipientCount": 1100,
        "counts": counts,
        "sample": [],
    }
    assert not list(preview.iter_errors(answer))
    for name in ("droppedByQuietHours", "heldOut"):
        missing = {k: v for k, v in counts.items() if k != name}
        assert not preview.is_valid({**answer, "counts": missing})
    split = {
        **answer,
        "counts": {**counts, "heldOut": 110},
        "recipientCount": 990,
        "sample": [{"phoneE164": "+15551234567", "externalId": None, "variant": "A"}],
        "variants": {"A": 495, "B": 495},
    }
    assert not list(preview.iter_errors(split))
    assert not preview.is_valid({**split, "variants": {"A": -1}})
    explanation = document["components"]["schemas"]["SendLeadExplanation"]
    assert explanation["properties"]["step"]["enum"] == [
        "notInAudience",
        "optedOut",
        "audienceFilter",
        "eventFilter",
        "frequencyCap",
        "quietHours",
        "heldOut",
        "recipient",
    ]
    assert "frequencyCap" in document["paths"][EXPLAIN_PATH]["get"]["summary"]
    explained = _component(document, "SendLeadExplanation")
    lead: dict[str, Any] = {
        "organizationId": "42",
        "sendId": "day2",
        "campaignId": "mastery",
        "phoneE164": "+15551234567",
        "sent": False,
        "step": "heldOut",
        "detail": {
            "message": "bucket 42 is held out",
            "bucket": 42,
            "variant": None,
            "conditions": [
                {
                    "path": "conditions.all[0]",
                    "condition": {"event": "purchase"},
                    "holds": True,
                    "matchingEvents": 2,
                },
                {"path": "conditions.all[1]", "condition": {"inCampaign": "7"}, "holds": True},
            ],
            "quietHours": {"rule": "federal", "timeZone": "America/New_York"},
        },
        "consistent": True,
        "scheduledFor": "2026-05-13T18:00:00.000Z",
        "materializedAt": "2026-05-13T17:59:00.000Z",
    }
    assert not list(explained.iter_errors(lead))
    assert not explained.is_valid({**lead, "detail": {**lead["detail"], "bucket": 10_000}})
    verdict = {"path": "conditions", "condition": {}, "holds": "yes"}
    assert not explained.is_valid({**lead, "detail": {"conditions": [verdict]}})


def test_credentials_limits_and_bounds_are_described() -> None:
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["keyId"]["name"] == "X-Leadstream-Key-Id"
    assert schemes["timestamp"]["name"] == "X-Leadstream-Timestamp"
    assert "v1:{timestamp}:{METHOD}:{path}:{query}:" in schemes["signature"]["description"]
    v1 = {"keyId": [], "timestamp": [], "signature": []}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not operation["security"]:
                continue
            webhook = path.startswith("/api/v1/webhooks/")
            # The body-only form is described on the webhooks only.
            assert ({"bodySignature": []} in operation["security"]) == webhook, path
            assert {"bearer": []} in operation["security"] and v1 in operation["security"]
            responses = operation["responses"]
            assert {"401", "403", "429", "503"} <= set(responses), (path, method)
            assert "Retry-After" in responses["429"]["headers"]
            assert "Retry-After" in responses["503"]["headers"]
            assert ("408" in responses) == ("requestBody" in operation), (path, method)
    for answer in ("WebhookAccepted", "AudienceAccepted"):
        schema = _component(document, answer)
        ok = {
            "status": "accepted",
            "received": 3000,
            "rejected": 2000,
            "rejects": [],
            "rejectsOmitted": 2000,
            ("inserted" if answer == "WebhookAccepted" else "accepted"): 1000,
        }
        if answer == "WebhookAccepted":
            ok["duplicates"] = 0
        assert schema.is_valid(ok), list(schema.iter_errors(ok))
        reject = {"index": 0, "phoneE164": None, "reason": "invalid_phone", "detail": "x"}
        assert not schema.is_valid({**ok, "rejects": [reject] * 1001})
        assert not schema.is_valid({k: v for k, v in ok.items() if k != "rejectsOmitted"})
    preview = _component(document, "PreviewBody")
    base = {"organizationId": 42, "campaignId": "c"}
    one = {"mode": "exclude", "eventType": "x"}
    assert preview.is_valid({**base, "eventFilters": [one] * 64})
    assert not preview.is_valid({**base, "eventFilters": [one] * 65})
    many = {"mode": "exclude", "leads": [{"externalId": "x"}] * 50_001}
    assert not preview.is_valid({**base, "audienceFilter": many})
