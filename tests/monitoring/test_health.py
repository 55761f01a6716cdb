"""/health: what it reports, and its answer when the database goes away.

A degraded cache is covered with Redis outages in tests/search/test_cache_outage.py
and an unreachable Gemini in test_health_gemini.py.
"""

import time

import pytest
import requests
from django.conf import settings as django_settings

from tests.servers import (
    ServerProcess,
    TcpProxy,
    poll_health,
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


@pytest.mark.django_db(transaction=True)
def test_health_answers_from_its_last_reading_without_a_query(
    client, settings, django_assert_num_queries
):
    settings.HEALTH_PROBE_SEC = 60
    client.get("/health")  # the first reading is taken at once

    with django_assert_num_queries(0):
        bodies = [client.get("/health").json() for _ in range(20)]

    assert {body["status"] for body in bodies} == {"ok"}
    assert {body["database"]["ok"] for body in bodies} == {True}


@pytest.mark.django_db(transaction=True)
def test_an_old_reading_is_taken_again_in_the_background(client, settings):
    settings.HEALTH_PROBE_SEC = 0.2
    assert client.get("/health").json()["status"] == "ok"
    settings.DISK_FREE_MIN_PERCENT = 100  # what the next reading will say
    time.sleep(0.3)

    answered_at_once = client.get("/health").json()  # and starts the next reading
    deadline = time.monotonic() + 5
    while (later := client.get("/health").json())["status"] == "ok":
        assert time.monotonic() < deadline, "no new reading within 5 s"
        time.sleep(0.05)

    assert answered_at_once["status"] == "ok"
    assert later["status"] == "degraded"
    assert later["disk"]["ok"] is False


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
            down, noticed_after = poll_health(
                service.base_url, lambda r: r.status_code == 503
            )
            proxy.start()
            back, _ = poll_health(service.base_url, lambda r: r.status_code == 200)
    finally:
        proxy.stop()

    assert (up.status_code, up.json()["status"]) == (200, "ok")
    # HEALTH_PROBE_SEC is 2: the next reading after the cut notices it.
    assert noticed_after < 5
    assert (down.status_code, down.json()["status"]) == (503, "unhealthy")
    assert down.json()["database"] == {"ok": False, "error": "OperationalError"}
    assert down.json()["cache"]["ok"] is True  # the rest is still reported
    assert (back.status_code, back.json()["status"]) == (200, "ok")
