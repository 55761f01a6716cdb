"""GET /metrics: the figures as JSON, behind the same access rule as /prometheus."""

import pytest

from monitoring.report import quantile
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_report_adds_up_what_happened(scraper, store, write_client, read_client):
    before = scraper.get("/metrics").json()
    upload(write_client, "default", {"a.txt": b"Bread needs flour and water."})
    upload(write_client, "default", {".hidden": b"x"})
    for _ in range(2):
        read_client.get("/api/search", {"q": "bread flour"})
    read_client.get("/api/search", {"q": "bread", "store": "missing"})

    after = scraper.get("/metrics").json()

    assert after["uploads"]["count"] - before["uploads"]["count"] == 1
    assert after["uploads"]["failures"] - before["uploads"]["failures"] == 1
    assert after["uploads"]["bytes"] - before["uploads"]["bytes"] == 28
    assert after["searches"]["count"] - before["searches"]["count"] == 2
    assert after["searches"]["by_backend"]["local"] >= 2
    assert after["searches"]["p50_ms"] is not None
    assert after["cache"]["hits"] == 1 and after["cache"]["misses"] == 1
    errors_before = before["errors_by_type"].get("STORE_NOT_FOUND", 0)
    assert after["errors_by_type"]["STORE_NOT_FOUND"] - errors_before == 1
    # the 5 requests above and the first /metrics itself
    assert after["requests"]["total"] - before["requests"]["total"] == 5 + 1
    assert after["stores"] == 1
    assert after["documents_by_status"] == {"ready": 1}
    assert set(after["system"]) == {
        "cpu_percent",
        "memory_percent",
        "disk_percent",
        "cpu_count",
    }
    assert after["uptime_seconds"] >= 0


def test_metrics_json_needs_the_same_access_as_prometheus(client, settings):
    settings.METRICS_ALLOWED_CIDRS = ["10.0.0.0/8"]

    response = client.get("/metrics")

    assert response.status_code == 403
    assert response.json()["error"] == "PERMISSION_DENIED"


def _histogram(counts: dict[float, float]):
    return {
        "latency_bucket": [({"le": str(le)}, n) for le, n in counts.items()],
    }


def test_quantile_interpolates_inside_the_bucket():
    samples = _histogram({0.1: 50, 0.2: 100, float("inf"): 100})

    assert quantile(samples, "latency", 0.5) == pytest.approx(0.1)
    assert quantile(samples, "latency", 0.75) == pytest.approx(0.15)
    assert quantile({}, "latency", 0.5) is None
