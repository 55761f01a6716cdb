"""Hybrid search with the real built-in model: what the dense half finds that the
words cannot, the relevance floor, and search while vectors are still coming.

These tests load all-MiniLM-L6-v2 (int8, onnxruntime) once per test session; its
graph is built once per machine into tests.servers.MODEL_CACHE.
"""

import time

import pytest
from django.core.management import call_command

from stores import embedding
from stores.backends.local import NOT_RELEVANT_TEXT, _matched_keys, _term_keys
from stores.backends.query import query_terms
from stores.models import Document, Embedding
from tests.conftest import upload
from tests.fakes.embeddings import EmbeddingsFake
from tests.servers import MODEL_CACHE

pytestmark = pytest.mark.django_db(transaction=True)

DOCUMENTS = {
    "backups.md": (
        "# Backups\n\nCopies of the database are written every night to the "
        "archive volume. Restoring one replaces the current data with the saved "
        "copy, so nothing written since that night survives it.\n"
    ),
    "credentials.md": (
        "# Credentials\n\nA credential that leaks must be rotated at once: "
        "generate a new secret, revoke the old one, and update every client that "
        "used it.\n"
    ),
    "performance.md": (
        "# Performance\n\nResponses slow down while the cache is cold. Warm it "
        "after a deploy by requesting the busiest pages first.\n"
    ),
    "pets.md": (
        "# Pets\n\nCats sleep up to sixteen hours a day and groom themselves "
        "often; a scratching post spares the furniture.\n"
    ),
}
FILES = {name: text.encode() for name, text in DOCUMENTS.items()}
# Shares no content word with backups.md (checked below): only meaning links them.
PARAPHRASE = "Where are the snapshots kept, and how do I revert to them?"
OFF_TOPIC = "What is the capital of France?"


@pytest.fixture
def builtin(settings):
    settings.EMBEDDINGS = "builtin"
    settings.EMBEDDINGS_CACHE_DIR = MODEL_CACHE
    return embedding.embedder()


def search(client, query: str, **extra) -> dict:
    response = client.post(
        "/api/search",
        {"query": query, "store_name": "default", **extra},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def upload_and_embed(client) -> None:
    """Upload the documents one by one, each time waiting until the background
    thread of the immediate backend has embedded it. (One at a time because the
    tests' in-memory SQLite has shared-cache table locks without a busy timeout:
    the thread writing while a request writes would fail there, where the file
    database the service runs on waits.)"""
    for count, (name, content) in enumerate(FILES.items(), start=1):
        assert upload(client, "default", {name: content}).status_code == 201
        deadline = time.monotonic() + 60
        while embedding.held():
            assert time.monotonic() < deadline, "the embedding thread never finished"
            time.sleep(0.05)
        model = embedding.model_name()
        assert Embedding.objects.filter(model=model).count() == count


def filenames(payload: dict) -> list[str]:
    return [source["title"] for source in payload["sources"]]


def test_the_paraphrase_shares_no_content_word_with_its_document():
    keys = _term_keys(query_terms(PARAPHRASE))
    assert keys and not _matched_keys(DOCUMENTS["backups.md"].lower(), keys)


def test_a_paraphrase_finds_the_document_by_meaning(
    builtin, store, write_client, read_client
):
    upload_and_embed(write_client)

    found = search(read_client, PARAPHRASE)

    assert found["grounded"] is True
    assert filenames(found)[0] == "backups.md"
    assert found["sources"][0]["score"] >= 0.3  # the documented floor's scale
    # The answer quotes the passage it found, and its citations point into it.
    assert "archive volume" in found["answer"]
    assert found["citations"]
    for citation in found["citations"]:
        cited = found["answer"][citation["start"] : citation["end"]]
        assert cited.strip() == cited and cited
        assert "[" not in cited
        for number in citation["sources"]:
            assert 1 <= number <= len(found["sources"])
    assert found["citations"][0]["sources"] == [1]


def test_an_off_topic_question_is_not_grounded_and_has_no_sources(
    builtin, store, write_client, read_client
):
    upload_and_embed(write_client)

    off_topic = search(read_client, OFF_TOPIC)

    assert off_topic["grounded"] is False
    assert off_topic["sources"] == []
    assert off_topic["citations"] == []
    assert off_topic["answer"] == NOT_RELEVANT_TEXT
    # min_score=0 turns the floor off: the same question then gets sources.
    assert search(read_client, OFF_TOPIC, min_score=0)["sources"]


def test_documents_are_searchable_by_their_words_before_their_vectors(
    settings, store, write_client, read_client
):
    # Ingested with the embedding stage off: ready, but without vectors.
    assert upload(write_client, "default", FILES, field="files").status_code == 201
    settings.EMBEDDINGS = "builtin"
    settings.EMBEDDINGS_CACHE_DIR = MODEL_CACHE
    backups = Document.objects.get(filename="backups.md")
    assert embedding.vector_state(backups) == "pending"
    detail = read_client.get(f"/api/stores/default/documents/{backups.pk}/").json()
    assert detail["vectors"] == "pending"

    # No vectors at all: lexical search, which cannot see the paraphrase.
    assert search(read_client, "rotated secret")["sources"][0]["title"] == (
        "credentials.md"
    )
    assert search(read_client, PARAPHRASE)["sources"] == []

    # One document embedded: hybrid over it, words for the others.
    embedding.embed([backups.pk], owner="test")
    assert embedding.vector_state(backups) == "ready"
    assert filenames(search(read_client, PARAPHRASE))[0] == "backups.md"
    assert filenames(search(read_client, "rotated secret"))[0] == "credentials.md"


def test_changing_the_model_marks_vectors_stale_and_embed_replaces_them(
    builtin, settings, store, write_client, read_client
):
    upload_and_embed(write_client)
    first_model = embedding.model_name()

    with EmbeddingsFake() as fake:
        # Another model: an OpenAI-compatible server (the HTTP fake).
        settings.EMBEDDINGS = "openai"
        settings.EMBEDDINGS_URL = fake.url
        settings.EMBEDDINGS_MODEL = "fake-embed"
        second_model = embedding.model_name()
        assert second_model != first_model
        listed = read_client.get("/api/stores/default/documents/").json()["results"]
        assert {doc["vectors"] for doc in listed} == {"stale"}
        # Stale vectors are not used: the paraphrase is lexical again, and lost.
        assert search(read_client, PARAPHRASE)["sources"] == []

        call_command("embed", verbosity=0)

        assert set(Embedding.objects.values_list("model", flat=True)) == {second_model}
        assert fake.requests, "the server was never asked"
        listed = read_client.get("/api/stores/default/documents/").json()["results"]
        assert {doc["vectors"] for doc in listed} == {"ready"}
        # The fake's vectors are hashed words: the words of a passage find it.
        found = search(read_client, "scratching post furniture", min_score=0)
        assert filenames(found)[0] == "pets.md"
