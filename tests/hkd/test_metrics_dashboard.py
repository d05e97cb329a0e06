"""docs/grafana-dashboard.json is a real dashboard: valid JSON, a panel for each metric
family of the node (HKD + L7R) and of the API, and every metric an expression names is
one the registries of a node and of the API (over a real database) export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from qvd.api.shell.metrics import Metrics as ApiMetrics
from qvd.hkd.metrics import HkdMetrics
from qvd.l7r.metrics import L7rMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported(registry: CollectorRegistry) -> dict[str, str]:
    """Every series name a scrape of ``registry`` can hold → the family it belongs to."""
    names: dict[str, str] = {}
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
    return names


def expressions(node: Any) -> list[str]:
    """Every PromQL text of the dashboard: the targets' ``expr`` and the variables'
    queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                found.append(value)
            else:
                found += expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += expressions(item)
    return found


def test_every_metric_of_the_dashboard_is_exported(engine: Engine) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    node = CollectorRegistry()
    HkdMetrics(node)
    L7rMetrics(node)
    api = ApiMetrics(engine).registry
    known = exported(node) | exported(api)

    named = {m for expr in expressions(dashboard) for m in re.findall(r"\bqvd_[a-z0-9_]+", expr)}
    assert named, "the dashboard names no metric"
    unknown = sorted(named - known.keys())
    assert not unknown, f"the dashboard graphs metrics nobody exports: {unknown}"

    # and every family of the node and the API has a panel
    graphed = {known[m] for m in named}
    assert set(known.values()) - graphed == set()


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "qvd-fleet"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert all(t["expr"] and t["refId"] for t in panel["targets"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "node", "api"} <= variables
