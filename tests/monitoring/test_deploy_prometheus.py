"""deploy/prometheus: promtool accepts the files, and every metric they use exists."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
# In CI promtool is installed by .ci/run: there, its absence is a failure.
IN_CI = bool(os.environ.get("CI")) or os.environ.get("REQUIRE_SERVICES") == "1"

# PromQL words that look like metric names but are not.
PROMQL_WORDS = {
    "sum",
    "rate",
    "by",
    "le",
    "and",
    "or",
    "histogram_quantile",
    "cache",
    "status",
}


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


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"|\[[^\]]*\]', "", expr)  # label values, ranges
    names = set(re.findall(r"[a-z_][a-z0-9_]*", expr))
    return {name for name in names if name not in PROMQL_WORDS}


@pytest.mark.django_db(transaction=True)
def test_every_metric_in_the_alerts_exists_in_a_real_scrape(
    client, store, write_client, read_client
):
    from tests.conftest import upload

    upload(write_client, "default", {"a.txt": b"Bread needs flour."})
    read_client.get("/api/search", {"q": "bread"})
    read_client.get("/api/search", {"q": "bread"})
    scraped = client.get("/prometheus").content.decode()
    present = set(re.findall(r"^([a-z_][a-z0-9_]*)[{ ]", scraped, re.M))

    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    used = set().union(
        *(
            _metric_names(rule["expr"])
            for group in rules["groups"]
            for rule in group["rules"]
        )
    )

    assert used, "no metric found in the rules"
    assert used - present == set()
