"""The floors of src/leadstream run one way (docs/architecture.md): the store at the
bottom, the index on it, the rules on both; none of them reaches up to what travels on
Kafka, the worker's parts or the HTTP API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "leadstream"

# A package, and the packages of leadstream it may import besides itself.
FLOORS = {
    "state": set[str](),
    "index": {"state"},
    "domain": {"index", "state"},
}


def _imported(package: str) -> set[tuple[str, str]]:
    found = set()
    for module in (SRC / package).rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "leadstream" and len(parts) > 1:
                    found.add((module.name, parts[1]))
    return found


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_a_lower_floor_never_imports_an_upper_one(package: str) -> None:
    allowed = FLOORS[package] | {package}
    wrong = sorted(f"{module} imports leadstream.{top}" for module, top in _imported(package))
    wrong = [w for w in wrong if w.rsplit(".", 1)[1] not in allowed]
    assert not wrong


def test_the_check_sees_imports() -> None:
    # domain imports the index (what the check would flag, were the floors the other way).
    assert ("evaluate.py", "index") in _imported("domain")
