"""Security headers on every kind of response: API, errors, HTML pages, static files."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "0",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def csp_directives(header: str) -> dict[str, list[str]]:
    """The policy as {directive: sources}.

    django-csp orders directives by a Python set, so the order varies by process.
    """
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_secure_headers(response) -> None:
    for name, value in HEADERS.items():
        assert response[name] == value, name
    policy = csp_directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline' for scripts
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert "camera=()" in response["Permissions-Policy"]


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("staff", "staff@example.com", "pw-12345678")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),  # service info (JSON)
        ("/health", 200),
        ("/metrics", 403),  # no credential (the error shape)
        ("/prometheus", 403),
        ("/api/schema/", 200),  # YAML
        ("/api/docs/", 200),  # Swagger UI
        ("/api/redoc/", 200),
        ("/admin/login/", 200),
        ("/api/stores/", 401),  # API error
        ("/api/stores/nope/", 401),
        ("/nope", 404),  # Django's 404, in the error shape
    ],
)
def test_anonymous_responses(client, path, status):
    response = client.get(path)

    assert response.status_code == status
    assert_secure_headers(response)


@pytest.mark.parametrize(
    ("path", "accept", "status"),
    [
        ("/", "text/html", 200),  # the landing page
        ("/api/stores/", "text/html", 200),  # the browsable API
        ("/api/stores/", "application/json", 200),
        ("/api/stores/nope/", "application/json", 404),
        ("/admin/", "text/html", 200),
        ("/admin/stores/store/", "text/html", 200),
    ],
)
def test_staff_responses(staff, path, accept, status):
    response = staff.get(path, HTTP_ACCEPT=accept)

    assert response.status_code == status
    assert_secure_headers(response)


def test_a_static_file(client):
    html = client.get("/api/docs/").content.decode()
    asset = re.search(r'src="(/static/[^"]+\.js)"', html).group(1)

    response = client.get(asset)

    assert response.status_code == 200
    assert_secure_headers(response)


def test_method_not_allowed_and_rate_limited(settings, read_client, store):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "search": "1/h"}
    read_client.get("/api/search", {"q": "x"})

    assert_secure_headers(read_client.delete("/api/search"))
    limited = read_client.get("/api/search", {"q": "x"})
    assert limited.status_code == 429
    assert_secure_headers(limited)


@pytest.mark.urls("tests.crash_urls")
@pytest.mark.parametrize("path", ["/crash/api", "/crash/plain"])
def test_an_internal_error(path):
    response = Client(raise_request_exception=False).get(path)

    assert response.status_code == 500
    assert_secure_headers(response)


def test_hsts_over_https_when_configured(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    over_https = client.get("/health", secure=True)
    over_http = client.get("/health")

    assert over_https["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains"
    )
    assert "Strict-Transport-Security" not in over_http
