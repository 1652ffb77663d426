"""The routes the worker registers are those /openapi.json describes, method for method,
and the HTTP layer does not reach into the stream layer."""

from __future__ import annotations

import ast
from pathlib import Path

from leadstream.web.openapi import openapi_document
from leadstream.web.routes import ROUTES

WEB = Path(__file__).resolve().parents[2] / "src" / "leadstream" / "web"


def test_registered_routes_are_the_documented_ones() -> None:
    paths = openapi_document()["paths"]
    assert set(ROUTES) == set(paths)
    for path, view in ROUTES.items():
        served = {m for m in ("get", "post", "put", "patch", "delete") if m in vars(view)}
        assert served == set(paths[path]), path


def test_web_imports_nothing_of_the_stream_layer() -> None:
    for module in WEB.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(
                    ("leadstream.streams", "leadstream.materialize", "leadstream.ingress")
                ), f"{module.name} imports {node.module}"
