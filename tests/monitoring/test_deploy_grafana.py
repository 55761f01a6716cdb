"""deploy/grafana: the provisioning and the dashboard agree, and read real metrics."""

import json
from itertools import combinations
from pathlib import Path

import pytest
import yaml

from tests.monitoring.promql import metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARD = GRAFANA / "dashboards" / "flamehaven.json"
# Where the README says to mount deploy/grafana/dashboards.
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"
GRID_COLUMNS = 24


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _datasource() -> dict:
    config = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yml").read_text()
    )
    [datasource] = config["datasources"]
    assert config["apiVersion"] == 1
    return datasource


def _exprs(dashboard: dict) -> list[str]:
    return [
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    ]


def test_the_datasource_is_the_default_prometheus():
    datasource = _datasource()

    assert datasource["name"] == "Prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True


def test_every_panel_and_target_reads_the_provisioned_datasource():
    expected = {"type": "prometheus", "uid": _datasource()["uid"]}
    dashboard = _dashboard()

    for panel in dashboard["panels"]:
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]


def test_the_provider_loads_the_mounted_dashboards_into_their_folder():
    config = yaml.safe_load(
        (PROVISIONING / "dashboards" / "flamehaven.yml").read_text()
    )
    [provider] = config["providers"]

    assert config["apiVersion"] == 1
    assert provider["type"] == "file"
    assert provider["folder"] == "Flamehaven"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT
    readme = (ROOT / "README.md").read_text()
    assert f"deploy/grafana/dashboards` at `{DASHBOARDS_MOUNT}`" in readme
    assert "deploy/grafana/provisioning` at `/etc/grafana/provisioning`" in readme


def test_the_dashboard_identifies_itself():
    dashboard = _dashboard()

    assert dashboard["uid"] == "flamehaven-filesearch"
    assert dashboard["title"] == "Flamehaven FileSearch"
    assert dashboard["schemaVersion"] >= 39


def test_panels_have_unique_ids_a_unit_and_a_query():
    panels = _dashboard()["panels"]

    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"])
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_panels_fit_the_grid_without_overlapping():
    panels = _dashboard()["panels"]

    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["y"] >= 0, panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
    for one, other in combinations(panels, 2):
        a, b = one["gridPos"], other["gridPos"]
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, (one["title"], other["title"])


@pytest.mark.django_db(transaction=True)
def test_every_metric_in_the_dashboard_exists_in_a_real_scrape(names_in_a_real_scrape):

    used = set().union(*(metric_names(expr) for expr in _exprs(_dashboard())))

    assert "http_request_duration_seconds_bucket" in used
    assert used - names_in_a_real_scrape == set()
