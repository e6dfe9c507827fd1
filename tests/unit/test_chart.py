"""The Helm chart's values match its schema, and the dashboard queries metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "configctl"


def test_values_match_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


def test_dashboard_uses_defined_metrics() -> None:
    from prometheus_client import CollectorRegistry

    from configctl_reconciler.metrics import ReconcilerMetrics

    registry = CollectorRegistry()
    ReconcilerMetrics(registry=registry, process_metrics=False)
    exposed = {s.name for family in registry.collect() for s in family.samples}
    dashboard = json.loads((CHART / "dashboards" / "configctl.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"configctl_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard queries nothing"
    missing = {u for u in used if u not in exposed and not any(e.startswith(u) for e in exposed)}
    assert not missing, f"dashboard queries metrics the reconciler does not export: {missing}"
