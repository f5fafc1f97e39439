"""The Prometheus config, the alert rules and the Grafana dashboard, checked with the real tools."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from asyncio.subprocess import PIPE
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from finally_indexer.core.metrics import REGISTRY

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")

_SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_count", "_sum"],
    "gauge": [""],
    "summary": ["_count", "_sum"],
}


def exported_series() -> set[str]:
    """Every sample name the service can export, derived from the registry."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, [""]))
    return names


@needs_promtool
def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (
        ["check", "config", str(OPS / "prometheus" / "prometheus.yml")],
        ["check", "rules", str(OPS / "prometheus" / "alerts.yml")],
    ):
        run = subprocess.run(
            [PROMTOOL or "promtool", *args], capture_output=True, text=True, check=False, timeout=60
        )
        assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_runbook_entry_and_known_metrics() -> None:
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    runbook = (OPS.parent / "docs" / "operations.md").read_text()
    exported = exported_series()
    for rule in rules:
        assert f"### {rule['alert']}" in runbook, rule["alert"]
        assert rule["annotations"]["runbook"].endswith("#" + rule["alert"].lower())
        for name in re.findall(r"finally_indexer_\w+", rule["expr"]):
            assert name in exported, (rule["alert"], name)


def test_grafana_dashboard_panels_query_exported_metrics() -> None:
    dashboard = json.loads((OPS / "grafana" / "dashboards" / "finally-indexer.json").read_text())
    exported = exported_series()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert dashboard["uid"] == "finally-indexer"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            names = re.findall(r"finally_indexer_\w+", target["expr"])
            assert names or target["expr"].startswith("up{"), panel["title"]
            for name in names:
                assert name in exported, (panel["title"], name)
            used.update(names)
    for must in (
        "finally_indexer_consumer_group_lag",
        "finally_indexer_embedding_cost_usd_total",
        "finally_indexer_index_coverage_ratio",
        "finally_indexer_embedding_budget_used_total",
        "finally_indexer_embedding_budget_limit_per_minute",
        "finally_indexer_embedding_requests_in_flight",
        "finally_indexer_embedding_concurrency_limit",
    ):
        assert must in used
    assert "Embedding budget" in {p["title"] for p in panels}


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    ds = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    providers = yaml.safe_load(
        (OPS / "grafana" / "provisioning" / "dashboards" / "finally-indexer.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


@needs_promtool
async def test_scraped_metrics_pass_promtool(live_url: str) -> None:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{live_url}/metrics")).text
    assert "finally_indexer_consumer_group_lag" in text
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL or "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await proc.communicate(text.encode())
    assert proc.returncode == 0, (out + err).decode()  # lint problems fail the check too
