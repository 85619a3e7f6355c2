"""deploy/grafana/asyncinfer-dashboard.json imports anywhere: every query goes to the datasource the
importer picks (a variable, no datasource uid of one installation), and it shows what it claims to.
That its metrics exist is checked on a real scrape (tests/integration/test_latency_histograms.py)."""

from __future__ import annotations

import json
from typing import Any

from cli.processes import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "asyncinfer-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def test_every_query_uses_the_datasource_variable() -> None:
    dashboard = load()
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert graphs and all(panel["datasource"] == DATASOURCE for panel in graphs)
    assert all(target["datasource"] == DATASOURCE for panel in graphs for target in panel["targets"])


def test_latency_panels_show_p50_p95_and_p99_of_each_job_histogram() -> None:
    expressions = [target["expr"] for panel in load()["panels"] for target in panel.get("targets", [])]
    for histogram in ("asyncinfer_job_seconds", "asyncinfer_job_queued_seconds", "asyncinfer_worker_inference_seconds"):
        quantiles = {expr.split(",")[0] for expr in expressions if f"{histogram}_bucket" in expr}
        assert quantiles == {f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")}, histogram
