"""Reading deploy/grafana/leadstream-dashboard.json: its queries, and the metric names and
grouping labels each query reads (a small PromQL reading, enough for the dashboard's own)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "leadstream-dashboard.json"

# PromQL words that are neither functions (followed by "(") nor metric names.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def queried_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows excluded), nested ones included."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from (p for p in panel.get("panels", []) if p["type"] != "row")
        else:
            yield panel


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target, and of every query variable."""
    exprs = [t["expr"] for p in queried_panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            # label_values(metric, label) reads ``metric``.
            exprs.append(re.sub(r"^label_values\(\s*([^,)]+).*$", r"\1", text))
    return exprs


def _without_literals(expr: str) -> str:
    text = re.sub(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'", '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+-?\w+", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    return re.sub(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", "", text)  # numbers


def metric_names(expr: str) -> set[str]:
    """The metric (sample) names a PromQL expression reads: every identifier that is not
    a function, a keyword, a label or a literal."""
    text = re.sub(_GROUPING, "", _without_literals(expr))
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def grouping_labels(expr: str) -> set[str]:
    """Labels a query groups by that its metrics must carry: those of ``by (...)``,
    except the ones ``label_replace`` makes."""
    text = re.sub(r"\{[^}]*\}", "", expr)
    made = set(re.findall(r'label_replace\(.*?,\s*"(\w+)"', text))
    labels = {
        label.strip()
        for group in re.findall(_GROUPING, text)
        for label in group.split(",")
        if label.strip()
    }
    return labels - made
