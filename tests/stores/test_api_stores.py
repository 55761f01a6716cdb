"""Stores over HTTP: create, list, get with counts, delete with everything in them."""

import pytest

from stores.models import Chunk, Document, Store
from tests.conftest import stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_and_get_a_store(write_client):
    response = write_client.post(
        "/api/stores/", {"name": "handbook", "description": "HR"}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "handbook"
    assert body["backend"] == "local"
    assert body["revision"] == 0
    assert body["documents"] == {
        "total": 0,
        "pending": 0,
        "processing": 0,
        "ready": 0,
        "failed": 0,
    }
    assert write_client.get("/api/stores/handbook/").json()["uid"] == body["uid"]


def test_duplicate_name_is_a_conflict(write_client, store):
    response = write_client.post("/api/stores/", {"name": "default"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == "STORE_EXISTS"
    assert Store.objects.count() == 1


@pytest.mark.parametrize(
    "name", ["Upper", "has space", "../etc", "-dash", "", "x" * 64]
)
def test_bad_store_names(write_client, name):
    response = write_client.post("/api/stores/", {"name": name}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert "name" in response.json()["details"]
    assert Store.objects.count() == 0


def test_gemini_backend_needs_a_key(write_client):
    response = write_client.post(
        "/api/stores/", {"name": "g", "backend": "gemini"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert "backend" in response.json()["details"]
    assert Store.objects.count() == 0


def test_list_is_paginated(write_client):
    for i in range(3):
        write_client.post("/api/stores/", {"name": f"s{i}"}, format="json")

    page = write_client.get("/api/stores/", {"page_size": 2}).json()

    assert page["count"] == 3
    assert [s["name"] for s in page["results"]] == ["s0", "s1"]
    assert page["next"].endswith("page=2&page_size=2")
    assert page["previous"] is None


def test_page_size_is_capped(write_client, store):
    response = write_client.get("/api/stores/", {"page_size": 100000})

    assert response.status_code == 200


def test_store_detail_counts_documents_by_status(write_client, store):
    upload(write_client, "default", {"ok.txt": b"fine text"})
    upload(write_client, "default", {"bad.pdf": b"%PDF-1.7 garbage"})

    counts = write_client.get("/api/stores/default/").json()["documents"]

    assert counts == {
        "total": 2,
        "pending": 0,
        "processing": 0,
        "ready": 1,
        "failed": 1,
    }


def test_delete_store_removes_documents_chunks_and_files(
    write_client, store, media_root
):
    upload(
        write_client, "default", {"a.txt": b"alpha", "b.txt": b"beta"}, field="files"
    )
    assert len(stored_files(media_root)) == 2

    response = write_client.delete("/api/stores/default/")

    assert response.status_code == 204
    assert Store.objects.count() == 0
    assert Document.objects.count() == 0
    assert Chunk.objects.count() == 0
    assert stored_files(media_root) == []
    assert write_client.get("/api/stores/default/").status_code == 404


def test_recreated_store_starts_empty_with_a_new_uid(write_client, store):
    upload(write_client, "default", {"a.txt": b"the old harbour lighthouse"})
    first = write_client.get("/api/search", {"q": "lighthouse"}).json()
    write_client.delete("/api/stores/default/")
    write_client.post("/api/stores/", {"name": "default"}, format="json")

    again = write_client.get("/api/search", {"q": "lighthouse"}).json()

    assert first["sources"]
    assert again["sources"] == []
    assert again["cached"] is False
    assert Store.objects.get().uid != store.uid


def test_unknown_store(read_client):
    response = read_client.get("/api/stores/nope/")

    assert response.status_code == 404
    assert response.json()["error"] == "STORE_NOT_FOUND"
