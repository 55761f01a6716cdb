"""JSON bodies: nested too deeply for Python is the client's malformed body (400)."""

import pytest

from tests.flamehaven.test_errors import assert_error

# Python's json module gives up at about a thousand levels (the recursion limit).
DEEP = 5000


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"query": ' + _nested(DEEP) + "}", id="deep-value"),
        pytest.param('{"query": ' + _nested(990) + "}", id="990-deep"),
        pytest.param("[" * DEEP, id="unclosed-brackets"),
        pytest.param('{"a":' * DEEP, id="unclosed-objects"),
    ],
)
@pytest.mark.parametrize("path", ["/api/search", "/api/stores/"])
def test_a_body_nested_too_deeply_is_malformed(admin_key_client, store, path, body):
    response = admin_key_client.post(path, body, content_type="application/json")
    body = assert_error(response, 400, "MALFORMED_REQUEST")
    assert "nested too deeply" in body["message"]


@pytest.mark.django_db
def test_a_body_nested_a_little_still_reaches_validation(admin_key_client, store):
    response = admin_key_client.post(
        "/api/search", '{"query": ' + _nested(50) + "}", content_type="application/json"
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert "query" in body["details"]


@pytest.mark.django_db
def test_ordinary_json_is_parsed(admin_key_client, store):
    response = admin_key_client.post(
        "/api/search", {"query": "anything at all"}, format="json"
    )
    assert response.status_code == 200
