"""Structured logs: every record carries the request id, one access line per
request, an unhandled exception logged once, and no secret in any line.

In-process tests read the records through the project's own formatter; the
gunicorn test reads what a production server really writes to stderr.
"""

import io
import json
import logging
import re
import secrets

import pytest
import requests
from django.test import Client

from flamehaven.logging import logging_config
from tests.crash_urls import LEAKY_MESSAGE
from tests.servers import (
    ServerProcess,
    create_api_key,
    manage,
    prepare_database,
    server_env,
)

# Each line of the documents below is unique to it: none may reach a log line.
DOCUMENT = (
    b"Quokkas live on Rottnest Island near Perth.\n\n"
    b"The ferry to Rottnest leaves from Fremantle every morning.\n"
)
DOCUMENT_WORDS = ("Rottnest", "Fremantle", "Perth")
JSON_FIELDS = {
    "timestamp",
    "level",
    "event",
    "logger",
    "service",
    "version",
    "environment",
    "request_id",
}


def _formatter(*, json_logs: bool) -> logging.Formatter:
    spec = dict(logging_config(json_logs=json_logs)["formatters"]["structlog"])
    factory = spec.pop("()")
    return factory(**spec)


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def clear(self) -> None:
        self.stream.seek(0)
        self.stream.truncate()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    def for_request(self, request_id: str) -> list[dict]:
        return [r for r in self.records() if r.get("request_id") == request_id]


@pytest.fixture
def captured():
    """The root logger's records, rendered as production renders them (JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(json_logs=True))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)


@pytest.mark.django_db(transaction=True)
def test_every_record_of_a_request_carries_its_id_backends_included(
    captured, gemini, write_client, read_client
):
    from stores.services import store_create

    store_create(name="gem", description="")  # outside any request
    [created] = [r for r in captured.records() if r["event"] == "store_created"]
    assert created["request_id"] is None  # no id left over from another request
    captured.clear()
    upload_response = write_client.post(
        "/api/stores/gem/documents/",
        {"file": _file("island.txt", DOCUMENT)},
        format="multipart",
        HTTP_X_REQUEST_ID="req-upload-1",
    )
    search_response = read_client.post(
        "/api/search",
        {"query": "quokkas", "store_name": "gem"},
        format="json",
        HTTP_X_REQUEST_ID="req-search-1",
    )

    assert (upload_response.status_code, search_response.status_code) == (201, 200)
    records = captured.records()
    assert {r["request_id"] for r in records} == {"req-upload-1", "req-search-1"}
    upload_loggers = {r["logger"] for r in captured.for_request("req-upload-1")}
    search_loggers = {r["logger"] for r in captured.for_request("req-search-1")}
    assert {"stores.services", "stores.backends.gemini"} <= upload_loggers
    assert "search.services" in search_loggers
    for record in records:
        assert set(record) >= JSON_FIELDS, record


@pytest.mark.django_db
def test_one_access_line_per_request_with_the_key_prefix_never_the_key(
    captured, api_client_for, store
):
    from rest_framework.test import APIClient

    from accounts.services import api_key_create

    api_key, key = api_key_create(name="reader", scope="read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    client.get("/api/stores/", HTTP_X_REQUEST_ID="req-list-1")
    client.get("/api/stores/nope/", HTTP_X_REQUEST_ID="req-missing-1")

    [listed] = [
        r for r in captured.for_request("req-list-1") if r["event"] == "request"
    ]
    [missing] = [
        r for r in captured.for_request("req-missing-1") if r["event"] == "request"
    ]
    assert listed["method"] == "GET"
    assert listed["route"] == "store-list"
    assert listed["status"] == 200
    assert listed["client"] == "127.0.0.1"
    assert listed["key_prefix"] == api_key.prefix
    assert isinstance(listed["duration_ms"], float)
    assert listed["error"] is None
    assert (missing["status"], missing["error"]) == (404, "STORE_NOT_FOUND")
    assert key not in captured.text
    assert key.partition(".")[2] not in captured.text  # the secret half


@pytest.mark.django_db
@pytest.mark.urls("tests.crash_urls")
@pytest.mark.parametrize("url", ["/crash/api", "/crash/plain"])
def test_an_unhandled_exception_is_logged_once_with_its_traceback(captured, url):
    response = Client(raise_request_exception=False).get(
        url, HTTP_X_REQUEST_ID="req-crash-1"
    )

    assert response.status_code == 500
    assert "Traceback" not in response.content.decode()
    records = captured.records()
    [logged] = [r for r in records if "exception" in r]
    assert logged["request_id"] == "req-crash-1"
    assert logged["level"] == "error"
    assert "Traceback (most recent call last)" in logged["exception"]
    assert f"RuntimeError: {LEAKY_MESSAGE}" in logged["exception"]
    # Beside it, only the access line: Django's own "Internal Server Error"
    # line would log the same failure twice.
    others = [r for r in records if r is not logged]
    assert [(r["event"], r["request_id"]) for r in others] == [
        ("request", "req-crash-1")
    ]
    assert others[0]["error"] == "INTERNAL_ERROR"


@pytest.mark.django_db
def test_development_lines_are_readable_console_lines(store, read_client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(json_logs=False))
    logging.getLogger().addHandler(handler)
    try:
        read_client.get("/api/stores/", HTTP_X_REQUEST_ID="req-dev-1")
    finally:
        logging.getLogger().removeHandler(handler)

    [line] = [line for line in stream.getvalue().splitlines() if "req-dev-1" in line]
    assert not line.startswith("{")
    assert re.search(r"\[info\s*\] request\s+\[flamehaven\.access\]", line), line
    assert "request_id=req-dev-1" in line
    assert "route=store-list" in line


@pytest.mark.slow
def test_a_production_server_writes_only_json_lines_and_no_secret(tmp_path):
    password = "correct-horse-" + secrets.token_urlsafe(12)
    env = server_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="tests.crash_settings",
        ENVIRONMENT="production",
        SECURE_SSL_REDIRECT="false",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    prepare_database(env)
    manage(env, "collectstatic", "--noinput", "-v0")  # the admin's login page
    key = create_api_key(env, "admin")
    manage(env, "shell", "-c", _create_staff_user(password))
    headers = {"Authorization": f"Api-Key {key}"}

    with ServerProcess(env) as server:
        url = server.base_url
        requests.post(
            f"{url}/api/stores/",
            json={"name": "island"},
            headers={**headers, "X-Request-ID": "req-store-1"},
            timeout=10,
        ).raise_for_status()
        requests.post(
            f"{url}/api/stores/island/documents/",
            files={"file": ("island.txt", DOCUMENT)},
            headers={**headers, "X-Request-ID": "req-upload-1"},
            timeout=30,
        ).raise_for_status()
        answer = requests.post(
            f"{url}/api/search",
            json={"query": "quokkas", "store_name": "island"},
            headers={**headers, "X-Request-ID": "req-search-1"},
            timeout=10,
        )
        crash = requests.get(
            f"{url}/crash/api", headers={"X-Request-ID": "req-crash-1"}, timeout=10
        )
        # Production cookies are Secure: over plain HTTP the client would not
        # send them back by itself.
        csrf = requests.get(f"{url}/admin/login/", timeout=10).cookies["csrftoken"]
        logged_in = requests.post(
            f"{url}/admin/login/",
            data={
                "username": "staff",
                "password": password,
                "csrfmiddlewaretoken": csrf,
            },
            headers={
                "X-Request-ID": "req-login-1",
                "Referer": f"{url}/admin/",
                "Cookie": f"csrftoken={csrf}",
            },
            allow_redirects=False,
            timeout=10,
        )
    log = server.log_text()

    assert "Rottnest" in answer.json()["answer"]  # the text was there to leak
    assert logged_in.status_code == 302  # the password was right, and was sent
    assert crash.status_code == 500 and LEAKY_MESSAGE not in crash.text
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(r["logger"] == "gunicorn.error" for r in records)
    for record in records:
        assert set(record) >= JSON_FIELDS, record
        assert record["environment"] == "production"
    for request_id in ("req-store-1", "req-upload-1", "req-search-1", "req-login-1"):
        access = [
            r
            for r in records
            if r["request_id"] == request_id and r["event"] == "request"
        ]
        assert len(access) == 1, request_id
    [search_line] = [
        r
        for r in records
        if r["request_id"] == "req-search-1" and r["logger"] == "search.services"
    ]
    assert search_line["cached"] is False
    [crashed] = [r for r in records if "exception" in r]
    assert crashed["request_id"] == "req-crash-1"
    for secret in (key, key.partition(".")[2], password, *DOCUMENT_WORDS):
        assert secret not in log, secret
    assert "Api-Key" not in log


def _file(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content)


def _create_staff_user(password: str) -> str:
    return (
        "from django.contrib.auth.models import User; "
        f"User.objects.create_superuser('staff', 'staff@example.com', {password!r})"
    )
