"""One error shape everywhere, request ids, and the security headers."""

import pytest
from django.test import Client

from tests.crash_urls import LEAKY_MESSAGE

ERROR_KEYS = {"error", "message", "status_code", "details", "request_id", "timestamp"}


def assert_error(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == code
    assert body["status_code"] == status
    assert body["request_id"] == response["X-Request-ID"]
    assert body["timestamp"].endswith("Z")
    return body


@pytest.mark.django_db
class TestErrorShape:
    def test_no_credentials(self, client):
        response = client.get("/api/stores/")
        assert_error(response, 401, "AUTHENTICATION_REQUIRED")
        assert response["WWW-Authenticate"] == "Api-Key"

    def test_invalid_key_is_not_echoed(self, client):
        response = client.get(
            "/api/stores/", HTTP_AUTHORIZATION="Api-Key abc.def-secret"
        )
        body = assert_error(response, 401, "AUTHENTICATION_REQUIRED")
        assert "def-secret" not in response.content.decode()
        assert body["message"] == "Invalid API key."

    def test_method_not_allowed(self, write_client):
        assert_error(write_client.put("/api/stores/"), 405, "METHOD_NOT_ALLOWED")

    def test_not_acceptable(self, read_client):
        response = read_client.get("/api/stores/", HTTP_ACCEPT="application/xml")
        assert_error(response, 406, "NOT_ACCEPTABLE")

    def test_unparseable_body(self, write_client):
        response = write_client.post("/api/stores/", "name=x", content_type="text/csv")
        assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")

    def test_malformed_json(self, write_client):
        response = write_client.post(
            "/api/stores/", "{not json", content_type="application/json"
        )
        assert_error(response, 400, "MALFORMED_REQUEST")

    def test_unknown_path_outside_the_api(self, client):
        assert_error(client.get("/no/such/page"), 404, "NOT_FOUND")

    def test_validation_error_has_details_per_field(self, write_client):
        response = write_client.post(
            "/api/stores/", {"name": "Bad Name!"}, format="json"
        )
        body = assert_error(response, 400, "VALIDATION_ERROR")
        assert "name" in body["details"]

    @pytest.mark.urls("tests.crash_urls")
    @pytest.mark.parametrize("url", ["/crash/api", "/crash/plain"])
    def test_unhandled_exception_is_an_internal_error_without_details(self, url):
        client = Client(raise_request_exception=False)
        response = client.get(url)
        body = assert_error(response, 500, "INTERNAL_ERROR")
        assert LEAKY_MESSAGE not in response.content.decode()
        assert "Traceback" not in response.content.decode()
        assert body["details"] == {}


@pytest.mark.django_db
class TestRequestId:
    def test_a_sane_id_is_kept(self, client):
        response = client.get("/health", HTTP_X_REQUEST_ID="abc-123.def:4")
        assert response["X-Request-ID"] == "abc-123.def:4"

    @pytest.mark.parametrize("bad", ["", "x" * 200, "bad id", "<script>", "a\nb"])
    def test_an_odd_id_is_replaced(self, client, bad):
        response = client.get("/health", HTTP_X_REQUEST_ID=bad)
        assert response["X-Request-ID"] != bad
        assert len(response["X-Request-ID"]) == 36

    def test_error_body_carries_the_request_id(self, client):
        response = client.get("/api/stores/", HTTP_X_REQUEST_ID="trace-42")
        assert response.json()["request_id"] == "trace-42"


@pytest.mark.django_db
class TestCsrfFailure:
    """Unsafe verbs on the views that check CSRF (the admin, the API login)."""

    @pytest.fixture
    def csrf_client(self):
        return Client(enforce_csrf_checks=True)

    @pytest.mark.parametrize(
        "path", ["/admin/login/", "/admin/stores/store/", "/api-auth/login/"]
    )
    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
    @pytest.mark.parametrize("accept", ["application/json", "*/*", None])
    def test_api_clients_get_the_error_shape(self, csrf_client, method, path, accept):
        headers = {"HTTP_ACCEPT": accept} if accept else {}
        response = csrf_client.generic(method, path, **headers)
        body = assert_error(response, 403, "CSRF_FAILED")
        assert body["message"] == "CSRF verification failed: CSRF cookie not set."

    def test_browsers_keep_djangos_page(self, csrf_client):
        response = csrf_client.post(
            "/admin/login/",
            {"username": "staff", "password": "x"},
            HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8",
        )
        assert response.status_code == 403
        assert response["Content-Type"].startswith("text/html")
        assert b"CSRF verification failed" in response.content

    def test_a_failure_is_counted_as_an_error(self, csrf_client):
        from prometheus_client import REGISTRY

        labels = {"type": "CSRF_FAILED", "endpoint": "login"}
        before = REGISTRY.get_sample_value("errors_total", labels) or 0.0
        csrf_client.post("/admin/login/", HTTP_ACCEPT="application/json")
        assert REGISTRY.get_sample_value("errors_total", labels) == before + 1
