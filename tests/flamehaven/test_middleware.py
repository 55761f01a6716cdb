"""Paths with control characters are refused; Django's bare 405 gets the error
shape; and under gunicorn, inputs that used to reach a 500 are client errors."""

import pytest
import requests
from django.test import Client
from prometheus_client import REGISTRY

from tests.flamehaven.test_errors import ERROR_KEYS, assert_error
from tests.servers import ServerProcess, create_api_key, prepare_database, server_env

CONTROL_PATHS = [
    "/api/stores/trav%00/",
    "/api/stores/default/documents/1%00/",
    "/api/stores/trav%00/documents/",
    "/api/stores/default%00/documents/1/reindex/",
    "/api/stores/tr%01av/",
    "/api/stores/tab%09/",
    "/api/stores/del%7F/",
    "/api/stores/c1%C2%85/",  # U+0085, a C1 control character
    "/admin/stores/store/%00/change/",
    "/static/%00.css",
    "/no/such%00page",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", CONTROL_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_control_character_in_the_path_is_a_bad_request(
    admin_key_client, store, method, path
):
    """On PostgreSQL a NUL reaching a query is a DataError: it never gets there."""
    response = admin_key_client.generic(method, path)
    body = assert_error(response, 400, "BAD_REQUEST")
    assert body["message"] == "The path contains a control character."


def _bad_requests() -> float:
    labels = {"type": "BAD_REQUEST", "endpoint": "unmatched"}
    return REGISTRY.get_sample_value("errors_total", labels) or 0.0


@pytest.mark.django_db
def test_the_refusal_is_counted(admin_key_client, store):
    before = _bad_requests()
    admin_key_client.get("/api/stores/trav%00/")
    assert _bad_requests() == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/stores/default/", "/api/stores/%C3%A9t%C3%A9/", "/health"]
)
def test_printable_paths_pass(admin_key_client, store, path):
    response = admin_key_client.get(path)
    assert response.status_code in (200, 404)
    assert response.json().get("error") != "BAD_REQUEST"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/health", "/metrics", "/prometheus", "/"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_unsafe_verbs_on_read_only_views_are_405_in_the_error_shape(method, path):
    """Not Django's empty 405, and not a CSRF failure: these views never write."""
    client = Client(enforce_csrf_checks=True)
    response = client.generic(method, path, HTTP_ACCEPT="application/json")
    body = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET, HEAD"
    assert method in body["message"]


@pytest.mark.django_db
def test_drf_405_is_left_as_it_is(write_client):
    response = write_client.put("/api/stores/")
    body = assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert body["message"] == 'Method "PUT" not allowed.'


@pytest.mark.slow
def test_under_gunicorn_these_are_client_errors_in_the_error_shape(tmp_path):
    env = server_env(tmp_path)
    prepare_database(env)
    key = create_api_key(env, "admin")
    auth = {"Authorization": f"Api-Key {key}"}
    deep = '{"query": ' + "[" * 5000 + "]" * 5000 + "}"

    with ServerProcess(env) as server:
        url = server.base_url
        answers = {
            "nul-store": requests.get(
                f"{url}/api/stores/trav%00/", headers=auth, timeout=10
            ),
            "nul-document": requests.get(
                f"{url}/api/stores/default/documents/1%00/", headers=auth, timeout=10
            ),
            "deep-json": requests.post(
                f"{url}/api/search",
                data=deep,
                headers={**auth, "Content-Type": "application/json"},
                timeout=10,
            ),
            "post-health": requests.post(f"{url}/health", timeout=10),
            "csrf": requests.post(
                f"{url}/admin/login/", data={"username": "x"}, timeout=10
            ),
        }

    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "nul-store": 400,
        "nul-document": 400,
        "deep-json": 400,
        "post-health": 405,
        "csrf": 403,
    }
    for response in answers.values():
        assert set(response.json()) == ERROR_KEYS
