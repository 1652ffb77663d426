"""``GET /openapi.json``, generated: every route of :data:`leadstream.web.routes.ROUTES`,
each method as its view declares it (``ServedView.operations``, web/spec.py), the schemas
those of the very types the views decode bodies and encode answers with. The route guard
serves only what this document describes (web/http.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from leadstream import __version__
from leadstream.domain.auth import TIMESTAMP_TOLERANCE_S
from leadstream.web.http import ServedView
from leadstream.web.spec import GUARDED, Answer, ErrorBody, Operation, Param

__all__ = ["openapi_document"]

_STATUS_TEXT = {
    400: "Malformed request",
    401: "No valid credential (or a signature of another request)",
    403: "A valid credential of another organization",
    404: "Not found",
    408: "The body stalled (no byte for LEADSTREAM_HTTP_BODY_TIMEOUT_SECONDS), or a body"
    " without its organization's key id did not arrive in LEADSTREAM_HTTP_UNVERIFIED_BODY_SECONDS",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    421: "Another worker holds the partition (owner names it)",
    422: "Invalid body",
    429: "The organization's requests in flight (too_many_requests) or rate (rate_limited)"
    " on this worker are used up",
    503: "Kafka did not confirm (unavailable), this worker serves as many requests as it takes"
    " (overloaded), or it is not ready",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds after which the same request may be sent again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_DESCRIPTION = (
    "Every error is {error: {code, message, field?}}. Below the routes: a request's headers"
    " must be complete within LEADSTREAM_HTTP_HEADER_TIMEOUT_SECONDS of the connection's start"
    " or its previous answer (else 408 header_timeout, or the idle connection closed), and a"
    " connection beyond LEADSTREAM_HTTP_MAX_CONNECTIONS closes the one that waited longest for"
    " a request, or is refused at once with 503 too_many_connections when all are busy. A"
    " credential is checked from the headers before any byte of the body is read."
)


def openapi_document(routes: Mapping[str, type[ServedView]] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``routes`` (default: every route the worker serves)."""
    if routes is None:
        from leadstream.web.routes import ROUTES  # noqa: PLC0415 - routes.py serves this

        routes = ROUTES
    operations = [(path, method, op) for path, view in routes.items() for method, op in _ops(view)]
    return {
        "openapi": "3.1.0",
        "info": {"title": "leadstream worker", "version": __version__, "description": _DESCRIPTION},
        "components": {
            "schemas": _schemas(op for _, _, op in operations),
            "securitySchemes": _security_schemes(),
        },
        "paths": {
            path: {method: _operation(op) for p, method, op in operations if p == path}
            for path in routes
        },
    }


def _ops(view: type[ServedView]) -> Iterable[tuple[str, Operation]]:
    """The view's declared operations; each must be a method the view serves, and each
    method it serves must be declared."""
    served = {
        method
        for method in ("get", "post", "put", "patch", "delete")
        for cls in view.__mro__
        if issubclass(cls, ServedView) and method in vars(cls)
    }
    if served != set(view.operations):
        raise TypeError(
            f"{view.__name__} serves {sorted(served)}, declares {sorted(view.operations)}"
        )
    return view.operations.items()


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{_name(model)}"}


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _schemas(operations: Iterable[Operation]) -> dict[str, Any]:
    """Every type the operations name, request bodies as they validate, answers as they
    are written."""
    inputs: dict[type[BaseModel], None] = {}
    outputs: dict[type[BaseModel], None] = {ErrorBody: None}
    for op in operations:
        if op.body is not None:
            inputs |= {m.model: None for m in op.body.content.values() if m.model is not None}
        outputs |= {a.model: None for a in op.answers.values() if a.model is not None}
    both = [(m, "validation") for m in inputs] + [(m, "serialization") for m in outputs]
    _, schemas = models_json_schema(both, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    defs: dict[str, Any] = schemas.get("$defs", {})
    for model in (*inputs, *outputs):  # every named type under its own name
        if _name(model) not in defs:
            raise TypeError(f"{_name(model)} is named twice with different schemas")
    return defs


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "security": [dict(s) for s in op.security],
    }
    if op.params:
        out["parameters"] = [_param(p) for p in op.params]
    if op.body is not None:
        content = {}
        for media, spec in op.body.content.items():
            schema = _ref(spec.model) if spec.model is not None else {"type": "string"}
            content[media] = {"schema": schema}
            if spec.example is not None:
                content[media]["example"] = spec.example
        out["requestBody"] = {"required": True, "content": content}
    errors = set(op.errors)
    if op.security:
        errors |= set(GUARDED)
    if op.body is not None:
        errors.add(408)  # the body is read within its deadlines
    answers = {status: _answer(a, status) for status, a in op.answers.items()}
    for status in sorted(errors - set(op.answers)):
        answers[status] = _answer(Answer(_STATUS_TEXT[status], ErrorBody), status)
    out["responses"] = {str(status): answers[status] for status in sorted(answers)}
    return out


def _param(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = dict(param.schema or {"type": "string"})
    if param.pattern is not None:
        schema["pattern"] = param.pattern
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.where == "path",
        "example": param.example,
        "schema": schema,
    }
    if param.description is not None:
        out["description"] = param.description
    return out


def _answer(answer: Answer, status: int) -> dict[str, Any]:
    schema = _ref(answer.model) if answer.model is not None else _text(answer.media)
    out: dict[str, Any] = {
        "description": answer.description,
        "content": {answer.media: {"schema": schema}},
    }
    if status in (429, 503) or answer.retry_after:
        out["headers"] = _RETRY_AFTER
    if answer.links:
        out["links"] = {
            name: {
                "operationId": link.operation_id,
                "parameters": dict(link.parameters),
                **({"description": link.description} if link.description else {}),
            }
            for name, link in answer.links.items()
        }
    return out


def _text(media: str) -> dict[str, str]:
    return {"type": "object"} if media == "application/json" else {"type": "string"}


def _security_schemes() -> dict[str, Any]:
    """An API key, the three headers of a v1 signature, and the webhooks' body-only one."""
    v1 = (
        "v1=<hex HMAC-SHA256, under the signing key's secret, of"
        " 'v1:{timestamp}:{METHOD}:{path}:{query}:{hex SHA-256 of the body}'>: the path as"
        " sent (percent-encoded), the raw query string (empty when none), the body as sent"
        " (a request without a body signs the SHA-256 of the empty string). The body's hex"
        " SHA-256 goes in X-Leadstream-Content-SHA256 too (left out: the empty body), so that"
        " the signature is checked before the body is read. It authorizes that request only:"
        " another method, path, query, body or organization is a 401."
    )

    def header(name: str, description: str) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": name, "description": description}

    return {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key."},
        "keyId": header(
            "X-Leadstream-Key-Id",
            "The id of the signing key (leadstream keys create --kind signing).",
        ),
        "timestamp": header(
            "X-Leadstream-Timestamp",
            f"Unix seconds, within {TIMESTAMP_TOLERANCE_S} s of the worker's clock.",
        ),
        "signature": header("X-Leadstream-Signature", v1),
        "bodySignature": header(
            "X-Leadstream-Signature",
            "Webhook POSTs only, unless the organization turned it off: sha256=<hex HMAC-SHA256"
            " of the raw body, or of '{X-Leadstream-Timestamp}.{body}' when that header is"
            " sent> (X-Setter-Signature is the same header). Its organization is"
            " X-Leadstream-Key-Id's when sent, else the body's organizationId.",
        ),
    }
