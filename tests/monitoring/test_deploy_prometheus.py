"""deploy/prometheus: promtool accepts the files, and every metric they use exists."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.promql import metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
# In CI promtool is installed by .ci/run: there, its absence is a failure.
IN_CI = bool(os.environ.get("CI")) or os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture
def promtool():
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail("promtool is missing in CI (.ci/run installs prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def test_promtool_accepts_the_alert_rules(promtool):
    done = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 5 rules found" in done.stdout


def test_promtool_accepts_the_scrape_config(promtool):
    done = subprocess.run(
        [
            promtool,
            "check",
            "config",
            "--syntax-only",
            str(PROMETHEUS / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_config_reads_our_endpoint_with_the_token():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]

    assert job["metrics_path"] == "/prometheus"
    assert job["authorization"]["type"] == "Bearer"
    assert config["rule_files"] == ["alerts.yml"]


@pytest.mark.django_db(transaction=True)
def test_every_metric_in_the_alerts_exists_in_a_real_scrape(names_in_a_real_scrape):

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    used = set().union(
        *(
            metric_names(rule["expr"])
            for group in rules["groups"]
            for rule in group["rules"]
        )
    )

    assert used, "no metric found in the rules"
    assert used - names_in_a_real_scrape == set()
