"""/prometheus: who may scrape, what a scrape holds, and sums over gunicorn workers."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.servers import (
    ServerProcess,
    create_api_key,
    prepare_database,
    server_env,
)

pytestmark = pytest.mark.django_db(transaction=True)

SCRAPE_NAMES = (
    "http_requests_total",
    "system_cpu_usage_percent",
    "system_memory_usage_percent",
    "system_disk_usage_percent",
    "stores_total",
    "cache_size",
    "login_failures_total",
    "login_lockouts_total",
)


def test_no_address_may_scrape_by_default(client, settings):
    """Behind a reverse proxy on the same host every client is loopback."""
    settings.METRICS_TOKEN = ""

    for path in ("/prometheus", "/metrics"):
        response = client.get(path)  # the test client is 127.0.0.1
        assert response.status_code == 403
        assert response.json()["error"] == "PERMISSION_DENIED"


def test_an_allowed_address_may_scrape_and_sees_every_kind_of_metric(
    client, store, settings
):
    settings.METRICS_ALLOWED_CIDRS = ["127.0.0.1/32", "::1/128"]
    client.get("/health")  # a request counted before the scrape
    response = client.get("/prometheus")  # the test client is 127.0.0.1

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in SCRAPE_NAMES:
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
    assert re.search(r"^stores_total 1\.0$", text, re.M)


def _sample(text: str, name: str, **labels) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(
            f'{key}="{value}"' in line for key, value in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_database_and_cache_metrics_come_from_django_prometheus(
    scraper, client, read_client
):
    from django.db import connection

    vendor = connection.vendor
    before = scraper.get("/prometheus").content.decode()
    read_client.get("/api/stores/")  # an authenticated request: SQL
    client.get("/health")  # a get from the default cache
    after = scraper.get("/prometheus").content.decode()

    queries = "django_db_execute_total"
    assert _sample(after, queries, vendor=vendor) > _sample(
        before, queries, vendor=vendor
    )
    gets = "django_cache_get_total"
    assert _sample(after, gets) > _sample(before, gets)


@pytest.fixture
def outsider(settings):
    settings.METRICS_ALLOWED_CIDRS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "scrape-token-" + "x" * 20
    return settings.METRICS_TOKEN


def test_anyone_else_gets_403_in_the_error_shape(client, outsider):
    response = client.get("/prometheus")

    assert response.status_code == 403
    assert response.json()["error"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token", "Bearer ", "Basic dXNlcjpwYXNz", "Api-Key nope.nope"],
)
def test_wrong_credentials_get_403(client, outsider, header):
    assert client.get("/prometheus", HTTP_AUTHORIZATION=header).status_code == 403


def test_the_metrics_token_may_scrape(client, outsider):
    response = client.get("/prometheus", HTTP_AUTHORIZATION=f"Bearer {outsider}")

    assert response.status_code == 200


def test_an_admin_key_may_scrape_and_a_read_key_may_not(
    client, outsider, api_client_for
):
    from accounts.services import api_key_create

    _, admin = api_key_create(name="ops", scope="admin")
    _, reader = api_key_create(name="dash", scope="read")

    ok = client.get("/prometheus", HTTP_AUTHORIZATION=f"Api-Key {admin}")
    refused = client.get("/prometheus", HTTP_AUTHORIZATION=f"Api-Key {reader}")

    assert (ok.status_code, refused.status_code) == (200, 403)


def _requests_total(text: str) -> float:
    return sum(
        float(value)
        for value in re.findall(r"^http_requests_total\{[^}]*\} (\S+)$", text, re.M)
    )


@pytest.mark.slow
def test_two_gunicorn_workers_are_summed(tmp_path):
    token = "metrics-token-" + "x" * 20
    env = server_env(tmp_path, WORKERS="2", THREADS="4", METRICS_TOKEN=token)
    prepare_database(env)
    create_api_key(env, "read")
    scrape = {"Authorization": f"Bearer {token}"}

    with ServerProcess(env) as server:
        url = server.base_url
        before = _requests_total(
            requests.get(f"{url}/prometheus", headers=scrape, timeout=10).text
        )
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda _: requests.get(f"{url}/health", timeout=10), range(100)
                )
            )
        time.sleep(0.2)
        after_text = requests.get(f"{url}/prometheus", headers=scrape, timeout=10).text
        pids = set(re.findall(r"Booting worker with pid: (\d+)", server.log_text()))

    assert all(r.status_code == 200 for r in statuses)
    # The 100 requests, plus the first scrape (counted when it finished).
    assert _requests_total(after_text) - before == 101
    assert len(pids) == 2
