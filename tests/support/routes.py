"""Walking the routes /openapi.json describes: one request per operation, built from the
document's own examples."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def request_for(path: str, op: dict[str, Any], org: str) -> tuple[str, dict[str, Any]]:
    """The operation's documented example, naming ``org`` wherever the organization goes
    (path, query or body). Fails when a tenant route names it nowhere."""
    named = False
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        value = org if param["name"] == "organizationId" else str(param["example"])
        if param["name"] == "organizationId":
            named = True
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", value)
        elif param["in"] == "query" and param["name"] == "organizationId":
            query[param["name"]] = value
    kwargs: dict[str, Any] = {"params": query}
    if "requestBody" in op:
        media, spec = next(iter(op["requestBody"]["content"].items()))
        example = spec["example"]
        if isinstance(example, dict) and "organizationId" in example:
            example = {**example, "organizationId": org}
            named = True
        content = example.encode() if isinstance(example, str) else msgspec.json.encode(example)
        kwargs |= {"content": content, "headers": {"Content-Type": media}}
    assert named, f"{path}: a tenant route must say which organization it acts for"
    return path, kwargs
