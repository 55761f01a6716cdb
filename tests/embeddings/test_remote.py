"""OpenAICompatibleEmbedder against the HTTP fake in tests/fakes/embeddings.py."""

import logging
import socket
import time

import numpy as np
import pytest

from embeddings import (
    EmbeddingServiceError,
    EmbeddingServiceUnavailable,
    OpenAICompatibleEmbedder,
)
from tests.fakes.embeddings import EmbeddingsFake

API_KEY = "sk-test-key-that-must-never-be-shown-7d2e"


@pytest.fixture(scope="module")
def server():
    with EmbeddingsFake(api_key=API_KEY, dimensions=32) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    server.max_batch = None
    server.reverse_order = False
    return server


def make(fake, **options):
    options = {"retry_delay": 0, **options}
    return OpenAICompatibleEmbedder(fake.url, "fake-embed", API_KEY, **options)


def unit(vector):
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_texts_go_in_batches_and_come_back_as_unit_rows_in_order(fake):
    texts = [f"text number {i}" for i in range(10)]
    vectors = make(fake, batch_size=4).embed_passages(texts)
    assert [r["batch"] for r in fake.requests] == [4, 4, 2]
    assert [t for r in fake.requests for t in r["inputs"]] == texts
    assert vectors.shape == (10, 32)
    assert vectors.dtype == np.float32
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(vector, unit(fake.vector(text)), atol=1e-6)


def test_rows_are_matched_by_index_not_position(fake):
    fake.reverse_order = True
    vectors = make(fake).embed_passages(["first", "second", "third"])
    np.testing.assert_allclose(vectors[0], unit(fake.vector("first")), atol=1e-6)
    np.testing.assert_allclose(vectors[2], unit(fake.vector("third")), atol=1e-6)


def test_request_body_and_prefixes(fake):
    embedder = make(fake, query_prefix="query: ", passage_prefix="passage: ")
    embedder.embed_queries(["where"])
    embedder.embed_passages(["here"])
    assert [r["inputs"] for r in fake.requests] == [["query: where"], ["passage: here"]]
    assert all(r["model"] == "fake-embed" for r in fake.requests)
    assert all(r["path"] == "/v1/embeddings" for r in fake.requests)


def test_a_url_ending_in_v1_is_not_doubled(fake):
    embedder = OpenAICompatibleEmbedder(f"{fake.url}/v1/", "fake-embed", API_KEY)
    embedder.embed_passages(["x"])
    assert fake.requests[-1]["path"] == "/v1/embeddings"


def test_dimensions_are_asked_of_the_server_once(fake):
    embedder = make(fake)
    assert embedder.dimensions == 32
    assert embedder.dimensions == 32
    assert len(fake.requests) == 1
    assert make(fake, dimensions=32).dimensions == 32
    assert len(fake.requests) == 1


def test_an_empty_list_sends_nothing(fake):
    assert make(fake, dimensions=32).embed_passages([]).shape == (0, 32)
    assert fake.requests == []


def test_a_batch_the_server_finds_too_large_is_halved(fake):
    fake.max_batch = 3
    embedder = make(fake, batch_size=8)
    texts = [f"t{i}" for i in range(8)]
    vectors = embedder.embed_passages(texts)
    assert vectors.shape == (8, 32)
    assert [r["batch"] for r in fake.requests] == [8, 4, 2, 2, 4, 2, 2]
    np.testing.assert_allclose(vectors[7], unit(fake.vector("t7")), atol=1e-6)
    fake.reset()
    embedder.embed_passages(texts)  # it remembers the smaller size
    assert [r["batch"] for r in fake.requests] == [2, 2, 2, 2]


def test_the_key_is_sent_as_a_bearer_token(fake):
    make(fake).embed_passages(["x"])
    assert fake.requests[-1]["has_api_key"] is True
    assert "never" not in repr(make(fake))


def test_a_wrong_key_is_a_clear_error_that_does_not_show_it(fake):
    wrong = "sk-wrong-key-also-secret-1234"
    embedder = OpenAICompatibleEmbedder(fake.url, "fake-embed", wrong, retry_delay=0)
    with pytest.raises(EmbeddingServiceError) as caught:
        embedder.embed_passages(["x"])
    assert caught.value.status == 401
    assert "answered 401: Incorrect API key provided" in str(caught.value)
    assert wrong not in str(caught.value)
    assert len(fake.requests) == 1  # not retried


def test_no_key_at_all(fake):
    embedder = OpenAICompatibleEmbedder(fake.url, "fake-embed")
    with pytest.raises(EmbeddingServiceError, match="didn't provide an API key"):
        embedder.embed_passages(["x"])
    assert fake.requests[-1]["has_api_key"] is False


def test_a_key_echoed_by_the_server_is_cut_from_the_error(fake, caplog):
    fake.fail(400, message="Bad request", echo_authorization=True)
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingServiceError) as caught:
        make(fake).embed_passages(["x"])
    message = str(caught.value)
    assert "Bad request" in message and "[redacted]" in message
    assert API_KEY not in message
    assert API_KEY not in caplog.text


def test_an_unknown_model_is_a_clear_error(fake):
    fake.models = ("nomic-embed-text",)
    try:
        with pytest.raises(EmbeddingServiceError) as caught:
            make(fake).embed_passages(["x"])
    finally:
        fake.models = None
    assert caught.value.status == 404
    assert 'model "fake-embed" not found' in str(caught.value)
    assert "fake-embed" in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_passing_failure_is_retried(fake, status, caplog):
    fake.fail(status, times=2)
    with caplog.at_level(logging.WARNING):
        vectors = make(fake, retries=2).embed_passages(["x"])
    assert vectors.shape == (1, 32)
    assert len(fake.requests) == 3
    assert API_KEY not in caplog.text


def test_a_lasting_failure_is_unavailable_after_the_retries(fake):
    fake.fail(503, times=None, message="The model is loading")
    with pytest.raises(EmbeddingServiceUnavailable) as caught:
        make(fake, retries=2).embed_passages(["x"])
    assert caught.value.status == 503
    assert "answered 503: The model is loading (after 3 attempts)" in str(caught.value)
    assert len(fake.requests) == 3


def test_retry_after_is_honoured(fake):
    fake.fail(429, times=1, retry_after=0.3)
    started = time.monotonic()
    make(fake, retries=1).embed_passages(["x"])
    assert time.monotonic() - started >= 0.3
    fake.reset()
    fake.fail(429, times=1, retry_after=3600)
    started = time.monotonic()
    make(fake, retries=1, max_retry_delay=0.1).embed_passages(["x"])
    assert time.monotonic() - started < 5


def test_a_server_that_does_not_answer_in_time(fake):
    fake.delay(2.0)
    embedder = make(fake, timeout=0.3, retries=0)
    with pytest.raises(
        EmbeddingServiceUnavailable, match="did not answer within 0.3 s"
    ):
        embedder.embed_passages(["x"])


def test_a_server_that_is_not_there():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request
    embedder = OpenAICompatibleEmbedder(
        f"http://127.0.0.1:{port}", "m", API_KEY, retries=1, retry_delay=0
    )
    with pytest.raises(
        EmbeddingServiceUnavailable, match="could not be reached"
    ) as caught:
        embedder.embed_passages(["x"])
    assert API_KEY not in str(caught.value)


def test_only_http_urls(fake):
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleEmbedder("file:///etc/passwd", "m")


def test_windows_cut_by_characters_at_spaces(fake):
    embedder = make(fake, max_tokens=50)
    text = " ".join(f"word{i}" for i in range(200))
    pieces = embedder.windows(text)
    assert all(len(p) <= 48 * 3 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert embedder.windows("short") == ["short"]
    assert embedder.windows("  ") == []
