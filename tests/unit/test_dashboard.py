"""deploy/grafana/leadstream-dashboard.json: valid, every panel queries something, and
the metric names its queries read (tests/integration/test_dashboard.py holds them against
a running worker's /metrics)."""

from __future__ import annotations

import pytest

from tests.support.dashboard import (
    dashboard_queries,
    grouping_labels,
    load_dashboard,
    metric_names,
    queried_panels,
)


@pytest.mark.parametrize(
    ("expr", "names", "labels"),
    [
        (
            'sum by (outcome) (rate(a_total{job=~"$job"}[$__rate_interval]))',
            {"a_total"},
            {"outcome"},
        ),
        (
            "histogram_quantile(0.99, sum by (le, endpoint) (rate(h_bucket[5m])))",
            {"h_bucket"},
            {"le", "endpoint"},
        ),
        (
            'sum(rate(x_total{s=~"5.."}[1m])) / sum(rate(y_total[1m])) > 1e3',
            {"x_total", "y_total"},
            set(),
        ),
        (
            'sum by (c) (label_replace(rate(r_total[1m]), "c", "${1}xx", "status", "([0-9]).*"))',
            {"r_total"},
            set(),
        ),
        (
            "max by (topic, partition) (lag) offset 5m and on (topic) up",
            {"lag", "up"},
            {"topic", "partition"},
        ),
        ("leadstream_rows_total", {"leadstream_rows_total"}, set()),
    ],
)
def test_metric_names_and_grouping_labels_of_an_expression(
    expr: str, names: set[str], labels: set[str]
) -> None:
    assert metric_names(expr) == names
    assert grouping_labels(expr) == labels


def test_the_dashboard_is_grafana_10_json_on_a_prometheus_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 37  # Grafana 10.0
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_every_panel_queries_prometheus_through_the_variable() -> None:
    panels = list(queried_panels(load_dashboard()))
    assert len(panels) >= 6
    for panel in panels:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no target"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in targets:
            assert target["expr"].strip(), f"panel {panel['title']!r}: a target without expr"
            assert target["datasource"]["uid"] == "${datasource}"
            assert metric_names(target["expr"]), target["expr"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_panels_the_operators_asked_for_are_there() -> None:
    queried = set().union(*map(metric_names, dashboard_queries(load_dashboard())))
    assert {
        "leadstream_rows_total",
        "leadstream_rejects_total",
        "leadstream_consumer_lag",
        "leadstream_send_summary_seconds_bucket",
        "leadstream_http_requests_total",
        "leadstream_http_request_seconds_bucket",
        "leadstream_dead_letters_total",
    } <= queried
