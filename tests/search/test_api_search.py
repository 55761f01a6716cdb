"""Search over HTTP on the local backend: the response contract and bad input."""

import pytest

from stores.services import document_add
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)

RESPONSE_KEYS = {
    "status",
    "answer",
    "sources",
    "citations",
    "grounded",
    "model",
    "query",
    "store",
    "backend",
    "cached",
    "fallback",
    "took_ms",
    "request_id",
}
SOURCE_KEYS = {
    "title",
    "uri",
    "document_id",
    "snippet",
    "score",
    "page",
    "section",
    "chunk_id",
}


@pytest.fixture
def corpus(store, write_client):
    docs = {
        "uploads.md": b"# Uploads\n\nTo make uploads faster, send several files in "
        b"one request. Uploads stream to temporary files on disk.",
        "cooking.txt": b"Bake the bread for forty minutes. Let the dough rest.",
        "gardening.txt": b"Water tomatoes in the morning. Prune roses in early spring.",
    }
    for name, content in docs.items():
        assert upload(write_client, store.name, {name: content}).status_code == 201
    return docs


def test_post_search_answers_with_attributed_sources(read_client, corpus):
    response = read_client.post(
        "/api/search",
        {"query": "How do I make uploads faster?", "store_name": "default"},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == RESPONSE_KEYS
    assert body["status"] == "success"
    assert body["backend"] == "local"
    assert body["fallback"] is False
    assert body["cached"] is False
    assert body["request_id"] == response["X-Request-ID"]
    assert body["sources"][0]["title"] == "uploads.md"
    assert set(body["sources"][0]) == SOURCE_KEYS
    assert "several files" in body["answer"]
    assert "[1]" in body["answer"]


def test_get_search_simple_form(read_client, corpus):
    response = read_client.get("/api/search", {"q": "tomatoes", "store": "default"})

    assert response.status_code == 200
    assert response.json()["sources"][0]["title"] == "gardening.txt"


def test_repeated_search_is_served_from_cache_until_the_store_changes(
    read_client, write_client, corpus
):
    first = read_client.get("/api/search", {"q": "bread dough"}).json()
    second = read_client.get("/api/search", {"q": "  BREAD   dough "}).json()
    upload(write_client, "default", {"more.txt": b"Sourdough bread needs a starter."})
    third = read_client.get("/api/search", {"q": "bread dough"}).json()

    assert (first["cached"], second["cached"], third["cached"]) == (False, True, False)
    assert second["answer"] == first["answer"]
    assert second["sources"] == first["sources"]
    assert len(third["sources"]) == 2


@pytest.mark.parametrize("top_k", [1, 2])
def test_top_k_bounds_sources(read_client, corpus, top_k):
    response = read_client.post(
        "/api/search",
        # Each document holds one word of three: below the relevance floor.
        {"query": "uploads bread tomatoes", "top_k": top_k, "min_score": 0},
        format="json",
    )

    assert len(response.json()["sources"]) == top_k


def test_top_k_is_capped_by_max_sources(read_client, corpus, settings):
    settings.MAX_SOURCES = 2

    response = read_client.post(
        "/api/search",
        {"query": "uploads bread tomatoes", "top_k": 50, "min_score": 0},
        format="json",
    )

    assert len(response.json()["sources"]) == 2


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"query": ""}, "EMPTY_QUERY"),
        ({"query": "   \t\n "}, "EMPTY_QUERY"),
        ({"query": "\x00\x01"}, "EMPTY_QUERY"),
        ({"query": "x" * 1001}, "VALIDATION_ERROR"),
        ({}, "VALIDATION_ERROR"),
        ({"query": "ok", "mode": "gemini"}, "VALIDATION_ERROR"),
        ({"query": "ok", "mode": "psychic"}, "VALIDATION_ERROR"),
        ({"query": "ok", "top_k": 0}, "VALIDATION_ERROR"),
        ({"query": "ok", "temperature": 9}, "VALIDATION_ERROR"),
    ],
)
def test_bad_search_input(read_client, store, payload, code):
    response = read_client.post("/api/search", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == code


def test_thousand_character_query_is_accepted(read_client, corpus):
    response = read_client.post(
        "/api/search", {"query": "bread " * 166 + "rest"}, format="json"
    )

    assert response.status_code == 200


def test_unknown_store(read_client, db):
    response = read_client.get("/api/search", {"q": "anything", "store": "nope"})

    assert response.status_code == 404
    assert response.json()["error"] == "STORE_NOT_FOUND"


HOSTILE = [
    '"unbalanced',
    '""',
    "bread AND OR NOT NEAR(dough)",
    "NEAR(bread dough, 2)",
    "dough*",
    "*",
    "-bread",
    "text:bread",
    "(bread",
    "bread)",
    "^bread",
    "bread 🍞🔥",
    "🍞",
    "'; DROP TABLE stores_chunk; --",
    "bread' OR '1'='1",
    "bread & | ! <-> :*",
    "\\",
    "%_%",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_fail(read_client, corpus, query):
    response = read_client.get("/api/search", {"q": query})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "success"


def test_control_characters_are_stripped_from_the_query(read_client, corpus):
    response = read_client.post(
        "/api/search", {"query": "bread\x00\x1b dough"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["query"] == "bread dough"


def test_service_layer_upload_then_search(store):
    from django.core.files.base import ContentFile

    from search.services import SearchParams, search

    document_add(
        store=store, file=ContentFile(b"Lanterns guide night hikers."), name="l.txt"
    )

    result = search(SearchParams(query="what guides hikers at night?"))

    assert result["sources"][0]["title"] == "l.txt"


def test_the_injection_corpus_over_the_api_leaves_everything_intact(
    read_client, corpus, settings
):
    """Every hostile string, by GET and POST: answered (or refused) in the error
    shape, never a 5xx, and the tables the strings aim at are untouched."""
    from django.db import connection

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "search": "1000/m"}

    from accounts.models import ApiKey
    from stores.models import Chunk, Document, Store
    from tests.stores.test_local_backend import HOSTILE_QUERIES

    counts = (Store.objects.count(), Document.objects.count(), Chunk.objects.count())
    keys = ApiKey.objects.count()
    statuses = set()
    for query in {*HOSTILE, *HOSTILE_QUERIES}:
        query = query.replace("\ud800", "")  # not encodable as UTF-8 JSON
        for response in (
            read_client.get("/api/search", {"q": query.replace("\x00", "")}),
            read_client.post("/api/search", {"query": query}, format="json"),
        ):
            statuses.add(response.status_code)
            if response.status_code != 200:
                expected = "VALIDATION_ERROR" if len(query) > 1000 else "EMPTY_QUERY"
                assert response.json()["error"] == expected, query

    assert statuses <= {200, 400}
    assert (
        Store.objects.count(),
        Document.objects.count(),
        Chunk.objects.count(),
    ) == counts
    assert ApiKey.objects.count() == keys
    assert connection.introspection.table_names().count("stores_chunk") == 1
    answer = read_client.get("/api/search", {"q": "bread"}).json()
    assert answer["sources"]
