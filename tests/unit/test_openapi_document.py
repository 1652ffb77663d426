"""/openapi.json is generated from the routes' declarations and the types the views decode
bodies and encode answers with (web/spec.py, web/openapi.py): what the generator
guarantees, and what the document says of the compliance controls, the erase, credentials
and limits."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

from leadstream.web.audience import BodyError, UploadJson, json_members_prefix
from leadstream.web.http import ServedView
from leadstream.web.openapi import openapi_document
from leadstream.web.routes import ROUTES
from leadstream.web.spec import ErrorBody

LEAD_PATH = "/api/v1/leads/{organizationId}/{phone}"
EXPLAIN_PATH = "/api/v1/sends/{organizationId}/{sendId}/leads/{phone}"
WEB = Path(__file__).resolve().parents[2] / "src" / "leadstream" / "web"


def _schema(model: type[BaseModel], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    schema.pop("$defs", None)
    return schema


def test_every_route_and_method_is_documented_and_nothing_else() -> None:
    document = openapi_document()
    assert list(document["paths"]) == list(ROUTES)
    for path, view in ROUTES.items():
        assert set(document["paths"][path]) == set(view.operations), path
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_a_view_that_serves_an_undeclared_method_is_refused() -> None:
    class Sloppy(ServedView):
        async def get(self, request: Any) -> Any:
            raise NotImplementedError

    with pytest.raises(TypeError, match="declares"):
        openapi_document({"/sloppy": Sloppy})


def test_bodies_and_answers_are_the_schemas_of_the_declared_types() -> None:
    document = openapi_document()
    components = document["components"]["schemas"]
    for path, view in ROUTES.items():
        for method, op in view.operations.items():
            described = document["paths"][path][method]
            if op.body is not None:
                content = described["requestBody"]["content"]
                assert list(content) == list(op.body.content)
                for media, spec in op.body.content.items():
                    if spec.model is None:
                        assert content[media]["schema"] == {"type": "string"}
                        continue
                    name = spec.model.__name__
                    assert content[media]["schema"] == {"$ref": f"#/components/schemas/{name}"}
                    assert components[name] == _schema(spec.model, "validation")
                    if spec.example is not None:  # the example is a body the type takes
                        spec.model.model_validate(spec.example)
            for status, answer in op.answers.items():
                media = described["responses"][str(status)]["content"][answer.media]
                if answer.model is not None:
                    name = answer.model.__name__
                    assert media["schema"] == {"$ref": f"#/components/schemas/{name}"}
                    assert components[name] == _schema(answer.model, "serialization")
            for status, answer in described["responses"].items():
                if int(status) not in op.answers:  # the errors: one body for all
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert components["ErrorBody"] == _schema(ErrorBody, "serialization")


def _validated_in(module: Path) -> set[str]:
    """The types a module's views validate bodies with: ``validated(Type, ...)``."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "validated":
            first = node.args[0]
            assert isinstance(first, ast.Name), ast.dump(first)
            names.add(first.id)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "partial":
            args = node.args
            if args and getattr(args[0], "id", None) == "validated":
                names.add(args[1].id)  # type: ignore[attr-defined]
    return names


def test_every_json_body_is_validated_with_its_documented_type() -> None:
    declared: dict[str, set[str]] = {}
    for view in ROUTES.values():
        module = view.__module__.rsplit(".", 1)[-1]
        for op in view.operations.values():
            if op.body is None:
                continue
            for spec in op.body.content.values():
                if spec.model is not None and spec.model is not UploadJson:
                    declared.setdefault(module, set()).add(spec.model.__name__)
    assert declared  # the webhooks and the preview at least
    for module, models in declared.items():
        assert _validated_in(WEB / f"{module}.py") == models, module


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'[{"phoneE164": "+15551234567"}, 1, "x"]',
        b'{"members": []}',
        b'{"members": [{}], "campaign": "c"}',
        b"{}",
        b'{"members": {}}',
        b'{"rows": []}',
        b'"members"',
        b"42",
        b"null",
    ],
)
def test_a_json_upload_streams_through_the_check_its_type_documents(body: bytes) -> None:
    import msgspec

    try:
        json_members_prefix(io.BytesIO(body))
        streamed = True
    except BodyError:
        streamed = False
    try:
        UploadJson.model_validate(msgspec.json.decode(body))
        typed = True
    except ValidationError:
        typed = False
    assert streamed == typed


def test_links_name_operations_and_their_parameters() -> None:
    document = openapi_document()
    by_id = {op["operationId"]: op for ops in document["paths"].values() for op in ops.values()}
    links = 0
    for ops in document["paths"].values():
        for op in ops.values():
            for answer in op["responses"].values():
                for link in answer.get("links", {}).values():
                    target = by_id[link["operationId"]]
                    names = {p["name"] for p in target.get("parameters", [])}
                    assert set(link["parameters"]) <= names, link
                    for expression in link["parameters"].values():
                        assert re.fullmatch(
                            r"\$(request|response)\.(body#/.+|path\.\w+)", expression
                        )
                    links += 1
    assert links >= 5


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
    preview = _component(document, "PreviewAnswer")
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
