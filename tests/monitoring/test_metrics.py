"""Metrics are recorded where events happen: exact deltas after known requests."""

import pytest
from prometheus_client import REGISTRY

from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Samples before and after: ``delta(name, **labels)``."""

    def __init__(self, *series: tuple[str, dict]):
        self.series = series
        self.before = {
            self._key(n, labels): sample(n, **labels) for n, labels in series
        }

    @staticmethod
    def _key(name, labels):
        return name, tuple(sorted(labels.items()))

    def __call__(self, name: str, **labels) -> float:
        return sample(name, **labels) - self.before[self._key(name, labels)]


def test_three_uploads_count_three_successes(store, write_client):
    success = ("file_uploads_total", {"store": "default", "status": "success"})
    duplicate = ("file_uploads_total", {"store": "default", "status": "duplicate"})
    rejected = ("file_uploads_total", {"store": "default", "status": "rejected"})
    delta = Delta(success, duplicate, rejected, ("file_upload_size_bytes_count", {}))

    for index in range(3):
        upload(write_client, "default", {f"{index}.txt": b"Text number %d." % index})
    upload(write_client, "default", {"again.txt": b"Text number 0."})
    upload(write_client, "default", {".env": b"SECRET=1"})

    assert delta(success[0], **success[1]) == 3
    assert delta(duplicate[0], **duplicate[1]) == 1
    assert delta(rejected[0], **rejected[1]) == 1
    assert delta("file_upload_size_bytes_count") == 3


def test_two_identical_searches_are_one_miss_and_one_hit(
    store, write_client, read_client
):
    upload(write_client, "default", {"a.txt": b"Bread needs flour and water."})
    labels = {"store": "default", "backend": "local", "status": "success"}
    delta = Delta(
        ("cache_misses_total", {"cache": "search"}),
        ("cache_hits_total", {"cache": "search"}),
        ("search_requests_total", {**labels, "cached": "false"}),
        ("search_requests_total", {**labels, "cached": "true"}),
        ("search_duration_seconds_count", {"backend": "local", "cached": "true"}),
    )

    for _ in range(2):
        read_client.get("/api/search", {"q": "bread flour"})

    assert delta("cache_misses_total", cache="search") == 1
    assert delta("cache_hits_total", cache="search") == 1
    assert delta("search_requests_total", **labels, cached="false") == 1
    assert delta("search_requests_total", **labels, cached="true") == 1
    assert delta("search_duration_seconds_count", backend="local", cached="true") == 1


def test_requests_are_counted_by_route_name_never_by_path(client, write_client, store):
    series = [
        (
            "http_requests_total",
            {"method": "GET", "endpoint": "health", "status": "200"},
        ),
        (
            "http_requests_total",
            {"method": "GET", "endpoint": "store-detail", "status": "404"},
        ),
        (
            "http_requests_total",
            {"method": "GET", "endpoint": "unmatched", "status": "404"},
        ),
        ("errors_total", {"type": "STORE_NOT_FOUND", "endpoint": "store-detail"}),
        ("errors_total", {"type": "NOT_FOUND", "endpoint": "unmatched"}),
    ]
    delta = Delta(*series)

    for _ in range(3):
        client.get("/health")
    write_client.get("/api/stores/no-such-store/")
    client.get("/no/such/path")

    assert [delta(name, **labels) for name, labels in series] == [3, 1, 1, 1, 1]
    paths = [
        s.labels.get("endpoint", "")
        for metric in REGISTRY.collect()
        for s in metric.samples
    ]
    assert not any("/" in endpoint for endpoint in paths)


def test_an_unknown_method_is_one_label_value(client):
    delta = Delta(
        (
            "http_requests_total",
            {"method": "OTHER", "endpoint": "health", "status": "405"},
        )
    )

    client.generic("BREW", "/health")

    assert (
        delta("http_requests_total", method="OTHER", endpoint="health", status="405")
        == 1
    )
