"""Answer checks: banned terms and a too-short answer are refused; a long one is cut."""

import pytest

from search import cache
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = b"The classified plans are kept in the vault. Bread is baked daily."


@pytest.fixture
def corpus(store, write_client):
    assert upload(write_client, "default", {"plans.txt": TEXT}).status_code == 201


def _search(client, query="where are the plans kept?"):
    return client.post("/api/search", {"query": query}, format="json")


def test_a_banned_term_rejects_the_answer_and_nothing_is_cached(
    settings, read_client, corpus
):
    settings.BANNED_TERMS = ["Vault"]

    response = _search(read_client)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ANSWER_REJECTED"
    assert body["details"] == {"reason": "banned_term"}
    assert "vault" not in body["message"].lower()
    assert cache.stats()["entries"] == 0


def test_banned_terms_match_whole_words_only(settings, read_client, corpus):
    settings.BANNED_TERMS = ["ass", " ", ""]

    response = _search(read_client)  # "classified" contains "ass"

    assert response.status_code == 200


def test_a_too_short_answer_is_rejected(settings, read_client, corpus):
    settings.ANSWER_MIN_LENGTH = 10_000

    response = _search(read_client)

    assert response.status_code == 422
    assert response.json()["details"]["reason"] == "too_short"


def test_a_too_long_answer_is_cut_at_a_word_and_logged(
    settings, gemini, write_client, read_client, caplog
):
    # The local engine keeps its answers within the bound itself; Gemini does not.
    write_client.post("/api/stores/", {"name": "gem"}, format="json")
    upload(write_client, "gem", {"plans.txt": TEXT * 5})
    settings.ANSWER_MAX_LENGTH = 40

    response = read_client.post(
        "/api/search",
        {"query": "plans vault bread", "store_name": "gem"},
        format="json",
    )

    answer = response.json()["answer"]
    assert response.json()["backend"] == "gemini"
    assert len(answer) <= 40
    assert answer.endswith("…")
    assert not answer[:-1].endswith(" ")
    events = [r.msg.get("event") for r in caplog.records if isinstance(r.msg, dict)]
    assert "answer_truncated" in events
