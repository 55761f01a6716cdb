"""Rate limits: the exact boundary, whose bucket a request is in, and what a 429 says.

Rates are set per test through ``settings.RATE_LIMITS`` with an hour's period, so
a test never straddles two windows (the limiter counts in fixed windows).
"""

import re

import pytest
import requests
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from flamehaven import redis_breaker
from stores.models import Document, Store
from tests.conftest import stored_files, upload
from tests.servers import (
    ServerProcess,
    closed_port,
    create_api_key,
    prepare_database,
    server_env,
)

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"error", "message", "status_code", "details", "request_id", "timestamp"}


@pytest.fixture
def limits(settings):
    """Set some groups' rates; the others stay high enough not to interfere."""

    def set_limits(**rates: str) -> None:
        high = {group: "1000/h" for group in django_settings.RATE_LIMITS}
        chosen = {group.replace("_", "-"): rate for group, rate in rates.items()}
        assert set(chosen) <= set(high), "unknown group"
        settings.RATE_LIMITS = high | chosen

    return set_limits


def _exceeded(scraper, endpoint: str) -> float:
    text = scraper.get("/prometheus").content.decode()
    found = re.search(
        rf'^rate_limit_exceeded_total{{endpoint="{endpoint}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def assert_429(response, limit: str) -> None:
    assert response.status_code == 429
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == "RATE_LIMIT_EXCEEDED"
    assert body["status_code"] == 429
    assert limit in body["message"]
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_n_searches_pass_and_the_next_is_429_counted_once(
    limits, scraper, store, read_client
):
    limits(search="5/h")
    exceeded_before = _exceeded(scraper, "search")
    rejections_before = scraper.get("/metrics").json()["rate_limit_rejections"]

    statuses = [
        read_client.get("/api/search", {"q": f"bread {n}"}).status_code
        for n in range(5)
    ]
    refused = read_client.get("/api/search", {"q": "bread"})

    assert statuses == [200] * 5
    assert_429(refused, "5/h")
    assert _exceeded(scraper, "search") == exceeded_before + 1
    assert scraper.get("/metrics").json()["rate_limit_rejections"] == (
        rejections_before + 1
    )


def test_a_cached_answer_is_refused_too_and_not_counted_as_a_lookup(
    limits, store, read_client, admin_client
):
    """The count and the cache read share one round trip with Redis: over the
    limit the answer is not read, and the lookup is not counted."""
    limits(search="3/h")
    body = {"query": "bread", "store_name": "default"}
    answers = [read_client.post("/api/search", body, format="json") for _ in "abc"]
    stats = admin_client.get("/api/cache/").json()

    refused = read_client.post("/api/search", body, format="json")

    assert [a.json()["cached"] for a in answers] == [False, True, True]
    assert_429(refused, "3/h")
    after = admin_client.get("/api/cache/").json()
    assert (after["hits"], after["misses"]) == (stats["hits"], stats["misses"])


def test_a_search_refused_before_the_cache_still_counts(limits, read_client, db):
    """A search that fails before reaching the cache (here: no such store) is
    counted on the way out, and over the limit it is 429, not 404."""
    limits(search="2/h")
    body = {"query": "bread", "store_name": "nowhere"}

    statuses = [
        read_client.post("/api/search", body, format="json").status_code for _ in "abc"
    ]

    assert statuses == [404, 404, 429]


def test_each_api_key_has_its_own_bucket(limits, store, api_client_for):
    limits(search="2/h")
    first, second = api_client_for("read"), api_client_for("read")

    for _ in range(2):
        assert first.get("/api/search", {"q": "bread"}).status_code == 200
    assert first.get("/api/search", {"q": "bread"}).status_code == 429
    assert second.get("/api/search", {"q": "bread"}).status_code == 200


def test_a_made_up_key_is_401_and_opens_no_bucket(limits, store, read_client):
    limits(search="1/h")
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Api-Key madeup.secret")

    assert stranger.get("/api/search", {"q": "bread"}).status_code == 401
    assert read_client.get("/api/search", {"q": "bread"}).status_code == 200


def test_without_a_key_the_bucket_is_the_client_address(limits, db):
    limits(read="2/h")
    here = APIClient(REMOTE_ADDR="192.0.2.10")
    elsewhere = APIClient(REMOTE_ADDR="192.0.2.11")

    assert [here.get("/api/schema/").status_code for _ in range(2)] == [200, 200]
    assert_429(here.get("/api/schema/"), "2/h")
    assert elsewhere.get("/api/schema/").status_code == 200


def test_x_forwarded_for_from_a_client_changes_nothing(limits, db):
    limits(read="2/h")
    client = APIClient(REMOTE_ADDR="192.0.2.20")

    statuses = [
        client.get("/api/schema/", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(4)
    ]

    assert statuses == [200, 200, 429, 429]


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(limits, db, settings):
    limits(read="1/h")
    settings.TRUSTED_PROXIES = "10.0.0.0/8"
    proxy = APIClient(REMOTE_ADDR="10.0.0.5")
    # The proxy appends the address it saw; what the client wrote comes before.
    alice = {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.1"}
    bob = {"HTTP_X_FORWARDED_FOR": "198.51.100.2"}

    assert proxy.get("/api/schema/", **alice).status_code == 200
    assert proxy.get("/api/schema/", **alice).status_code == 429
    assert proxy.get("/api/schema/", **bob).status_code == 200
    # Alice forging another first hop is still Alice.
    forged = {"HTTP_X_FORWARDED_FOR": "7.7.7.7, 198.51.100.1"}
    assert proxy.get("/api/schema/", **forged).status_code == 429


def test_single_uploads_over_the_limit_store_nothing(
    limits, store, write_client, media_root
):
    limits(upload_single="2/h")
    for n in range(2):
        response = upload(write_client, "default", {f"{n}.txt": b"Bread %d." % n})
        assert response.status_code == 202  # stored; ingestion waits for commit

    refused = upload(write_client, "default", {"late.txt": b"Too late."})

    assert_429(refused, "2/h")
    assert Document.objects.count() == 2
    assert len(stored_files(media_root)) == 2


def test_multiple_uploads_have_their_own_lower_limit(
    limits, store, write_client, media_root
):
    limits(upload_single="100/h", upload_multiple="1/h")
    files = {"a.txt": b"Apples.", "b.txt": b"Bananas."}
    assert upload(write_client, "default", files, field="files").status_code == 202

    refused = upload(write_client, "default", {"c.txt": b"C.", "d.txt": b"D."}, "files")

    assert_429(refused, "1/h")
    assert Document.objects.count() == 2
    assert len(stored_files(media_root)) == 2
    # A single upload is another group: still allowed.
    assert upload(write_client, "default", {"e.txt": b"Eggs."}).status_code == 202


def test_store_changes_over_the_limit_create_nothing(limits, write_client):
    limits(stores="2/h")
    for name in ("one", "two"):
        response = write_client.post("/api/stores/", {"name": name}, format="json")
        assert response.status_code == 201

    refused = write_client.post("/api/stores/", {"name": "three"}, format="json")

    assert_429(refused, "2/h")
    assert sorted(Store.objects.values_list("name", flat=True)) == ["one", "two"]


def test_monitoring_endpoints_answer_429_in_the_error_shape(limits, scraper):
    limits(monitoring="2/h")

    assert [scraper.get("/metrics").status_code for _ in range(2)] == [200, 200]
    assert_429(scraper.get("/prometheus"), "2/h")


def test_health_is_never_limited(limits, client):
    limits(read="1/h", monitoring="1/h", search="1/h", stores="1/h")

    assert {client.get("/health").status_code for _ in range(30)} == {200}


def test_the_limiter_can_be_switched_off(limits, settings, store, read_client):
    limits(search="1/h")
    settings.RATELIMIT_ENABLE = False

    statuses = {read_client.get("/api/search", {"q": "b"}).status_code for _ in "abc"}

    assert statuses == {200}


@pytest.mark.django_db(transaction=True)
def test_with_redis_unreachable_requests_are_served_and_counted(
    limits, settings, store, read_client, scraper
):
    from tests.search.test_cache_outage import _caches_at

    limits(search="1/h")
    settings.REDIS_RETRY_SEC = 60
    with closed_port() as port:
        settings.CACHES = _caches_at(port)
        statuses = [
            read_client.get("/api/search", {"q": "b"}).status_code for _ in "ab"
        ]
        scrape = scraper.get("/prometheus").content.decode()
    redis_breaker.reset()

    assert statuses == [200, 200]
    assert re.search(
        r'^rate_limit_unchecked_total{endpoint="search"} [1-9]', scrape, re.M
    )


@pytest.mark.redis
@pytest.mark.slow
def test_two_server_processes_share_one_limit(tmp_path):
    env = server_env(
        tmp_path,
        REDIS_URL=django_settings.REDIS_URL,
        WORKERS="2",
        THREADS="2",
        RATE_LIMIT_SEARCH="4/h",
        METRICS_ALLOWED_CIDRS="127.0.0.1/32",  # the scrapes below
    )
    prepare_database(env)
    key = create_api_key(env, "read")
    headers = {"Authorization": f"Api-Key {key}"}

    with ServerProcess(env) as one, ServerProcess(env) as two:
        statuses = [
            requests.get(
                f"{server.base_url}/api/search",
                params={"q": "bread"},
                headers=headers,
                timeout=10,
            ).status_code
            for server in (one, two, one, two, one, two)
        ]
        scrapes = [
            requests.get(f"{server.base_url}/prometheus", timeout=10).text
            for server in (one, two)
        ]

    # 404: the store does not exist, and the request still counts.
    assert statuses == [404, 404, 404, 404, 429, 429]
    refused = sum(
        float(value)
        for text in scrapes
        for value in re.findall(
            r'^rate_limit_exceeded_total{endpoint="search"} (\S+)$', text, re.M
        )
    )
    assert refused == 2


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ("", "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # nobody is trusted
        ("1", "10.0.0.1", "203.0.113.9", "203.0.113.9"),  # one proxy in front
        ("1", "10.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # forged hop
        ("2", "10.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        ("2", "10.0.0.1", "", "10.0.0.1"),  # fewer hops than proxies
        ("10.0.0.0/8", "192.0.2.1", "203.0.113.9", "192.0.2.1"),  # not a proxy
        ("10.0.0.0/8", "10.0.0.1", "6.6.6.6, 10.0.0.2", "6.6.6.6"),  # two proxies
        ("10.0.0.0/8", "10.0.0.1", "not-an-ip", "10.0.0.1"),  # garbage
        ("10.0.0.0/8, ::1/128", "::1", "2001:db8::7", "2001:db8::7"),
    ],
)
def test_the_client_address(settings, rf, trusted, remote, forwarded, expected):
    from flamehaven.client_ip import client_ip

    settings.TRUSTED_PROXIES = trusted
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == expected


def test_a_malformed_trusted_proxies_setting_stops_the_start():
    from flamehaven.client_ip import parse_trusted_proxies

    with pytest.raises(ValueError):
        parse_trusted_proxies("10.0.0.0/8, not-a-network")


@pytest.mark.parametrize(
    ("address", "expected"),
    [("10.1.2.3", True), ("::1", True), ("192.0.2.1", False), ("not-an-ip", False)],
)
def test_the_network_check_shared_with_metrics_allowed_cidrs(address, expected):
    from flamehaven.client_ip import in_networks, parse_networks

    networks = parse_networks(("10.0.0.0/8", " ", "::1/128"))  # blank: skipped

    assert in_networks(address, networks) is expected
