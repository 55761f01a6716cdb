"""Gemini stores end to end over the API: the real SDK against the HTTP fake."""

import logging

import pytest

from search import cache
from stores.backends import gemini as gemini_module
from stores.models import Chunk, Document, Store
from stores.services import store_create
from tests.conftest import GEMINI_TEST_KEY, upload

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = b"Lanterns guide hikers at night. Compasses guide sailors by day."


@pytest.fixture
def gemini_store(gemini, write_client):
    response = write_client.post("/api/stores/", {"name": "gem"}, format="json")
    assert response.status_code == 201, response.content
    return Store.objects.get(name="gem")


def _search(client, **payload):
    return client.post(
        "/api/search", {"query": "what guides sailors?", **payload}, format="json"
    )


def test_a_store_created_with_a_key_is_a_gemini_store(gemini, gemini_store):
    assert gemini_store.backend == "gemini"
    assert gemini_store.remote_name in gemini.store_names()


def test_a_name_taken_at_the_last_moment_leaves_no_remote_store(
    gemini, write_client, monkeypatch
):
    from stores.models import Store as StoreModel

    # Another request creates "gem" between our check and our insert.
    real_save = StoreModel.save

    def save_after_a_rival(self, *args, **kwargs):
        monkeypatch.setattr(StoreModel, "save", real_save)  # once
        StoreModel(name=self.name, backend="local").save()
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(StoreModel, "save", save_after_a_rival)
    response = write_client.post("/api/stores/", {"name": "gem"}, format="json")

    assert response.status_code == 409
    assert gemini.store_names() == []


def test_gemini_down_at_store_creation_stores_nothing(gemini, write_client):
    gemini.fail("stores.create", 503, times=None)

    response = write_client.post("/api/stores/", {"name": "gem"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"] == "UPSTREAM_UNAVAILABLE"
    assert not Store.objects.filter(name="gem").exists()


def test_upload_is_ready_when_gemini_has_indexed_it(gemini, gemini_store, write_client):
    response = upload(write_client, "gem", {"guide.txt": TEXT})

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "ready"
    document = Document.objects.get(pk=body["id"])
    assert document.remote_name
    assert gemini.document(document.remote_name)["display_name"] == "guide.txt"
    assert document.chunks.exists()  # indexed locally too, for the fallback


def test_a_permanent_gemini_failure_fails_the_document_with_its_message(
    gemini, gemini_store, write_client
):
    gemini.operation_error = {"code": 400, "message": "Unsupported file content"}

    response = upload(write_client, "gem", {"guide.txt": TEXT})

    body = response.json()
    assert body["status"] == "failed"
    assert "Unsupported file content" in body["error"]
    document = Document.objects.get(pk=body["id"])
    assert not Chunk.objects.filter(document=document).exists()
    assert document.remote_name == ""
    assert gemini.documents(gemini_store.remote_name) == []

    gemini.operation_error = None
    again = write_client.post(f"/api/stores/gem/documents/{document.pk}/reindex/")

    assert again.status_code in (200, 202)
    document.refresh_from_db()
    assert (document.status, document.error) == ("ready", "")
    assert len(gemini.documents(gemini_store.remote_name)) == 1


def test_a_reindex_replaces_the_remote_copy(gemini, gemini_store, write_client):
    document_id = upload(write_client, "gem", {"guide.txt": TEXT}).json()["id"]
    first = Document.objects.get(pk=document_id).remote_name

    write_client.post(f"/api/stores/gem/documents/{document_id}/reindex/")

    [remote] = gemini.documents(gemini_store.remote_name)
    assert remote["name"] != first
    assert Document.objects.get(pk=document_id).remote_name == remote["name"]


def test_search_in_auto_mode_asks_gemini(
    gemini, gemini_store, write_client, read_client
):
    document_id = upload(write_client, "gem", {"guide.txt": TEXT}).json()["id"]

    response = _search(read_client, store_name="gem")

    assert response.status_code == 200
    body = response.json()
    assert (body["backend"], body["fallback"], body["cached"]) == (
        "gemini",
        False,
        False,
    )
    assert body["sources"][0]["document_id"] == document_id
    assert len(gemini.calls(route="generateContent")) == 1
    assert _search(read_client, store_name="gem").json()["cached"] is True
    assert len(gemini.calls(route="generateContent")) == 1


def test_gemini_unavailable_in_auto_mode_falls_back_to_the_local_index(
    gemini, gemini_store, scraper, write_client, read_client, settings
):
    upload(write_client, "gem", {"guide.txt": TEXT})
    gemini.fail("generateContent", 503, times=None)
    fallbacks_before = scraper.get("/metrics").json()["searches"]["fallbacks"]

    body = _search(read_client, store_name="gem").json()

    assert (body["backend"], body["fallback"]) == ("local", True)
    # Counted as search_requests_total{status="fallback"}, which /metrics sums.
    assert scraper.get("/metrics").json()["searches"]["fallbacks"] == (
        fallbacks_before + 1
    )
    assert "sailors" in body["answer"]
    assert len(gemini.calls(route="generateContent")) == settings.GEMINI_RETRY_ATTEMPTS
    [key] = _entry_keys()
    assert _seconds_left(key) <= 60


def test_gemini_unavailable_in_gemini_mode_is_503_and_not_cached(
    gemini, gemini_store, write_client, read_client
):
    upload(write_client, "gem", {"guide.txt": TEXT})
    gemini.fail("generateContent", 429, times=None)

    response = _search(read_client, store_name="gem", mode="gemini")

    assert response.status_code == 503
    assert response.json()["error"] == "UPSTREAM_UNAVAILABLE"
    assert cache.stats()["entries"] == 0


def test_a_gemini_client_error_is_502_without_fallback(
    gemini, gemini_store, write_client, read_client
):
    upload(write_client, "gem", {"guide.txt": TEXT})
    gemini.fail("generateContent", 400, message="Model not found", times=None)

    response = _search(read_client, store_name="gem")

    assert response.status_code == 502
    assert response.json()["error"] == "UPSTREAM_ERROR"
    assert "Model not found" in response.json()["message"]


def test_mode_gemini_on_a_local_store_is_a_validation_error(gemini, read_client):
    store_create(name="plain", backend="local")

    response = _search(read_client, store_name="plain", mode="gemini")

    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"
    assert gemini.calls(route="generateContent") == []


def test_mode_local_on_a_gemini_store_never_asks_gemini(
    gemini, gemini_store, write_client, read_client
):
    upload(write_client, "gem", {"guide.txt": TEXT})

    body = _search(read_client, store_name="gem", mode="local").json()

    assert body["backend"] == "local"
    assert gemini.calls(route="generateContent") == []


def test_deleting_documents_and_stores_deletes_the_remote_copies(
    gemini, gemini_store, write_client, admin_key_client
):
    document_id = upload(write_client, "gem", {"guide.txt": TEXT}).json()["id"]
    upload(write_client, "gem", {"other.txt": b"Maps guide drivers on roads."})

    write_client.delete(f"/api/stores/gem/documents/{document_id}/")
    assert len(gemini.documents(gemini_store.remote_name)) == 1
    admin_key_client.delete("/api/stores/gem/")

    assert gemini.store_names() == []


def test_a_store_gemini_cannot_delete_is_still_deleted_here_and_logged(
    gemini, gemini_store, admin_key_client, caplog
):
    gemini.fail("stores.delete", 503, times=None)

    response = admin_key_client.delete("/api/stores/gem/")

    assert response.status_code == 204
    assert not Store.objects.filter(name="gem").exists()
    left = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "remote_copy_left_behind"
    ]
    assert [entry["remote"] for entry in left] == [gemini_store.remote_name]


def test_no_api_key_in_logs_responses_or_errors(
    gemini, gemini_store, write_client, read_client, caplog
):
    caplog.set_level(logging.DEBUG)
    upload(write_client, "gem", {"guide.txt": TEXT})
    ok = _search(read_client, store_name="gem")
    gemini.fail("generateContent", 400, times=None)
    failed = _search(read_client, store_name="gem", query="another question")

    seen = "\n".join(
        [ok.content.decode(), failed.content.decode()]
        + [record.getMessage() for record in caplog.records]
        + [str(record.msg) for record in caplog.records]
    )
    assert GEMINI_TEST_KEY not in seen


def _entry_keys() -> list[str]:
    from django.core.cache import caches

    backend = caches["search"]
    if hasattr(backend, "iter_keys"):
        return list(backend.iter_keys("search:*"))
    made = backend.make_key("search:")
    return [k.split(":", 2)[2] for k in backend._cache if k.startswith(made)]


def _seconds_left(key: str) -> float:
    import time

    from django.core.cache import caches

    backend = caches["search"]
    if hasattr(backend, "ttl"):
        return backend.ttl(key)
    return backend._expire_info[backend.make_key(key)] - time.time()


def test_a_gemini_timeout_is_retried_then_falls_back(
    gemini, gemini_store, write_client, read_client, settings
):
    upload(write_client, "gem", {"guide.txt": TEXT})
    settings.GEMINI_TIMEOUT_SEC = 0.2
    gemini_module._clients.clear()  # the timeout is the client's
    gemini.delay("generateContent", 1.0)

    body = _search(read_client, store_name="gem").json()

    assert (body["backend"], body["fallback"]) == ("local", True)
    assert len(gemini.calls(route="generateContent")) == settings.GEMINI_RETRY_ATTEMPTS
