"""/health: what it reports, and its answer when the database goes away.

A degraded cache is covered with Redis outages in tests/search/test_cache_outage.py
and an unreachable Gemini in test_health_gemini.py.
"""

import pytest
import requests
from django.conf import settings as django_settings

from tests.servers import (
    ServerProcess,
    TcpProxy,
    prepare_database,
    scratch_postgres,
    server_env,
)


@pytest.mark.django_db
def test_health_reports_every_check(client):
    response = client.get("/health")

    body = response.json()
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert body["status"] == "ok"
    assert body["version"] == django_settings.VERSION
    assert body["environment"] == "development"
    assert body["search_backend"] == "local"
    assert body["uptime_seconds"] >= 0
    assert body["uptime"].endswith("s")  # "0h 3m 12s"
    assert body["database"]["ok"] is True
    assert body["cache"]["ok"] is True
    assert set(body["system"]) == {
        "cpu_percent",
        "memory_percent",
        "disk_percent",
        "cpu_count",
    }


@pytest.mark.django_db
def test_health_is_never_rate_limited_nor_authenticated(client):
    statuses = {client.get("/health").status_code for _ in range(150)}

    assert statuses == {200}


@pytest.mark.postgres
@pytest.mark.slow
def test_health_is_503_unhealthy_while_the_database_is_gone(tmp_path):
    with scratch_postgres("fh_health") as (address, name):
        _cut_the_database_off_a_server(tmp_path, address, name)


def _cut_the_database_off_a_server(tmp_path, address, name):
    proxy = TcpProxy(address["host"], address["port"]).start()
    env = server_env(
        tmp_path,
        DATABASE_URL=f"postgres://{address['user']}@127.0.0.1:{proxy.port}/{name}",
    )
    try:
        prepare_database(env)
        with ServerProcess(env) as service:
            up = requests.get(f"{service.base_url}/health", timeout=10)
            proxy.stop()
            down = requests.get(f"{service.base_url}/health", timeout=10)
            proxy.start()
            back = requests.get(f"{service.base_url}/health", timeout=10)
    finally:
        proxy.stop()

    assert (up.status_code, up.json()["status"]) == (200, "ok")
    assert (down.status_code, down.json()["status"]) == (503, "unhealthy")
    assert down.json()["database"] == {"ok": False, "error": "OperationalError"}
    assert down.json()["cache"]["ok"] is True  # the rest is still reported
    assert (back.status_code, back.json()["status"]) == (200, "ok")
