"""Each scope against each endpoint, over the real URLconf."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)

# (method, path, body) -> the lowest scope that may call it.
ENDPOINTS = [
    ("get", "/api/stores/", None, "read"),
    ("get", "/api/stores/default/", None, "read"),
    ("get", "/api/stores/default/documents/", None, "read"),
    ("get", "/api/stores/default/documents/{doc}/", None, "read"),
    ("get", "/api/search?q=harbour", None, "read"),
    ("post", "/api/search", {"query": "harbour"}, "read"),
    ("post", "/api/stores/", {"name": "fresh"}, "write"),
    ("post", "/api/stores/default/documents/{doc}/reindex/", None, "write"),
    ("delete", "/api/stores/default/documents/{doc}/", None, "write"),
    ("delete", "/api/stores/default/", None, "write"),
]
SCOPES = ["none", "read", "write", "admin"]
RANK = {"none": -1, "read": 0, "write": 1, "admin": 2}


@pytest.fixture
def doc_id(write_client, store):
    return upload(write_client, "default", {"h.txt": b"the harbour"}).json()["id"]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("method", "path", "body", "needed"), ENDPOINTS)
def test_scope_matrix(api_client_for, doc_id, scope, method, path, body, needed):
    client = APIClient() if scope == "none" else api_client_for(scope)

    response = getattr(client, method)(path.format(doc=doc_id), body, format="json")

    if scope == "none":
        assert response.status_code == 401
    elif RANK[scope] < RANK[needed]:
        assert response.status_code == 403
        assert response.json()["error"] == "PERMISSION_DENIED"
    else:
        assert response.status_code in (200, 201, 204), response.content


@pytest.mark.parametrize("scope", SCOPES)
def test_upload_needs_write(api_client_for, store, scope):
    client = APIClient() if scope == "none" else api_client_for(scope)

    response = upload(client, "default", {"u.txt": b"upload me"})

    expected = {"none": 401, "read": 403, "write": 201, "admin": 201}[scope]
    assert response.status_code == expected


def test_staff_session_counts_as_admin(admin_client, store):
    response = admin_client.post(
        "/api/stores/", {"name": "bystaff"}, content_type="application/json"
    )

    assert response.status_code == 201


def test_browsable_api_renders_for_staff(admin_client, store):
    response = admin_client.get("/api/stores/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert b"default" in response.content
