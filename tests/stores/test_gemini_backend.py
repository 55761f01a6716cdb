"""GeminiBackend with the real google-genai SDK against the HTTP fake.

The backend is not yet chosen by get_backend (that wiring, the modes and the
fallback come next); these tests call it directly on real rows and files.
"""

import logging

import pytest
from django.core.files.base import ContentFile

from flamehaven.errors import UpstreamError, UpstreamUnavailable
from stores.backends import SearchOptions
from stores.backends.gemini import GeminiBackend
from stores.models import Document
from stores.services import document_add, store_create
from tests.conftest import GEMINI_TEST_KEY as API_KEY

pytestmark = pytest.mark.django_db(transaction=True)

OPTIONS = SearchOptions(
    top_k=5, model="gemini-2.5-flash", max_tokens=256, temperature=0.2
)


@pytest.fixture
def fake(gemini):
    return gemini


@pytest.fixture
def backend():
    return GeminiBackend()


@pytest.fixture
def remote_store(fake, backend):
    store = store_create(name="gem", backend="local")
    backend.create_store(store)
    store.save(update_fields=["remote_name"])
    return store


def add(store, name: str, text: bytes) -> Document:
    document, _ = document_add(store=store, file=ContentFile(text), name=name)
    document.refresh_from_db()
    return document


def test_create_store_sends_a_display_name_and_keeps_the_remote_name(
    fake, backend, remote_store
):
    [create] = fake.calls(route="stores.create")

    assert create["json"]["displayName"] == "flamehaven-gem"
    assert create["has_api_key"] is True
    assert remote_store.remote_name.startswith("fileSearchStores/")
    assert remote_store.remote_name in fake.store_names()


def test_upload_waits_for_the_operation_and_tags_the_document_id(
    fake, backend, remote_store
):
    fake.operation_polls_until_done = 2
    document = add(remote_store, "guide.txt", b"Lanterns guide hikers at night.")

    backend.add_document(document)

    routes = [entry["route"] for entry in fake.requests]
    assert routes[routes.index("upload.start") :] == [
        "upload.start",
        "upload.chunk",
        "operations.get",
        "operations.get",
    ]
    document.refresh_from_db()
    remote = fake.document(document.remote_name)
    assert (remote["display_name"], remote["mime_type"]) == ("guide.txt", "text/plain")
    assert remote["state"] == "STATE_ACTIVE"
    assert remote["custom_metadata"] == [
        {"key": "document_id", "stringValue": str(document.pk)}
    ]


def test_search_maps_sources_back_by_document_id_not_title(fake, backend, remote_store):
    first = add(remote_store, "notes.txt", b"Lanterns guide hikers at night.")
    second = add(remote_store, "notes.txt", b"Compasses guide sailors by day.")
    for document in (first, second):
        backend.add_document(document)

    answer = backend.search(remote_store, "what guides sailors by day?", OPTIONS)

    assert answer.text
    assert answer.model == "gemini-2.5-flash"
    top = answer.sources[0]
    assert (top.title, top.document_id) == ("notes.txt", second.pk)
    assert "sailors" in top.snippet
    assert top.uri.endswith(f"/documents/{second.pk}/")
    assert len({s.document_id for s in answer.sources}) == len(answer.sources)
    [call] = fake.searches
    assert call["stores"] == [remote_store.remote_name]
    assert (call["max_output_tokens"], call["temperature"]) == (256, 0.2)


def test_sources_are_capped_at_top_k(fake, backend, remote_store):
    for index in range(4):
        document = add(
            remote_store, f"d{index}.txt", b"Guides and lanterns %d." % index
        )
        backend.add_document(document)

    answer = backend.search(
        remote_store, "guides lanterns", SearchOptions(2, "gemini-2.5-flash", 64, 0.5)
    )

    assert len(answer.sources) == 2


def test_delete_document_and_store_force_delete_remotely(fake, backend, remote_store):
    document = add(remote_store, "gone.txt", b"Soon gone.")
    backend.add_document(document)
    document.refresh_from_db()

    backend.delete_document(document)
    backend.delete_store(remote_store)

    deletes = [e for e in fake.requests if e["method"] == "DELETE"]
    assert [(e["route"], e["query"].get("force")) for e in deletes] == [
        ("documents.delete", "True"),
        ("stores.delete", "True"),
    ]
    assert fake.store_names() == []


def test_deleting_what_gemini_no_longer_has_is_not_an_error(
    fake, backend, remote_store
):
    fake.fail("stores.delete", 404)

    backend.delete_store(remote_store)


def test_503_twice_then_success_is_retried_by_the_sdk(fake, backend, remote_store):
    fake.fail("generateContent", 503, times=2)
    add_and_index = add(remote_store, "r.txt", b"Retries make it through.")
    backend.add_document(add_and_index)

    answer = backend.search(remote_store, "retries", OPTIONS)

    assert answer.sources
    assert len(fake.calls(route="generateContent")) == 3


def test_429_then_success(fake, backend, remote_store):
    fake.fail("generateContent", 429, times=1, retry_after=0.01)

    backend.search(remote_store, "anything", OPTIONS)

    assert len(fake.calls(route="generateContent")) == 2


def test_503_always_is_upstream_unavailable(fake, backend, remote_store):
    fake.fail("generateContent", 503, times=None)

    with pytest.raises(UpstreamUnavailable) as raised:
        backend.search(remote_store, "anything", OPTIONS)

    assert raised.value.status_code == 503
    assert len(fake.calls(route="generateContent")) == 3  # GEMINI_RETRY_ATTEMPTS


def test_a_client_error_is_upstream_error_with_geminis_message(
    fake, backend, remote_store
):
    fake.fail("generateContent", 400, message="Model not found: nope")

    with pytest.raises(UpstreamError) as raised:
        backend.search(remote_store, "anything", OPTIONS)

    assert raised.value.status_code == 502
    assert "Model not found: nope" in raised.value.message
    assert len(fake.calls(route="generateContent")) == 1  # not retried


def test_an_operation_that_never_finishes_times_out_and_leaves_no_orphan(
    fake, backend, remote_store
):
    fake.operation_polls_until_done = None
    document = add(remote_store, "slow.txt", b"Never indexed.")

    with pytest.raises(UpstreamUnavailable) as raised:
        backend.add_document(document)

    assert "UPLOAD_TIMEOUT_SEC" in raised.value.message
    assert fake.documents(remote_store.remote_name) == []
    assert fake.calls(route="documents.delete")
    document.refresh_from_db()
    assert document.remote_name == ""


def test_an_operation_that_fails_carries_geminis_message(fake, backend, remote_store):
    fake.operation_error = {"code": 400, "message": "Unsupported file content"}
    document = add(remote_store, "bad.txt", b"Gemini will refuse this.")

    with pytest.raises(UpstreamError) as raised:
        backend.add_document(document)

    assert "Unsupported file content" in raised.value.message
    assert fake.documents(remote_store.remote_name) == []


def test_the_api_key_appears_in_no_log_record_or_error(
    fake, backend, remote_store, caplog
):
    caplog.set_level(logging.DEBUG)
    fake.fail("generateContent", 400, times=None)
    with pytest.raises(UpstreamError) as raised:
        backend.search(remote_store, "anything", OPTIONS)

    text = "\n".join(
        [str(record.msg) for record in caplog.records]
        + [raised.value.message, str(raised.value.details)]
        + [str(entry) for entry in fake.requests]
    )
    assert API_KEY not in text
