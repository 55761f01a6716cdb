"""Citations: spans of the answer as returned, and the sources (from 1) behind them."""

import pytest
import yaml
from django.core.management import call_command

from search.answer_checks import check_answer
from search.citations import answer_citations, citations_from_markers, clip_citations
from stores.backends import Answer, Citation, Source
from tests.conftest import upload
from tests.factories import make_pdf

HTTP = pytest.mark.django_db(transaction=True)

HARBOUR = (
    b"Lighthouses guide ships into the harbour at night. "
    b"The harbour master keeps the tide tables."
)
CANAL = b"Lock keepers raise barges on the canal. Ships are too wide for the locks."


def _source(title: str) -> Source:
    return Source(title=title, uri="", document_id=None, snippet="", score=1.0)


def _spans(text: str, citations: list[Citation]) -> list[tuple[str, list[int]]]:
    return [(text[c.start : c.end], c.sources) for c in citations]


# --- From the [n] markers ---------------------------------------------------------


def test_each_marked_sentence_is_cited_without_its_markers():
    text = "Ships sail at dawn. [1] Barges wait. [1][2] Locks close at six! [2, 3]"

    assert _spans(text, citations_from_markers(text)) == [
        ("Ships sail at dawn.", [1]),
        ("Barges wait.", [1, 2]),
        ("Locks close at six!", [2, 3]),
    ]


def test_text_without_markers_cites_nothing():
    assert citations_from_markers("No matching passages found.") == []
    assert citations_from_markers("") == []


def test_brackets_that_name_no_source_belong_to_the_sentence():
    text = "See note [7] and items[1] for this. [1] Second one. [2] [2]"

    citations = citations_from_markers(text, source_count=2)

    assert _spans(text, citations) == [
        ("See note [7] and items[1] for this.", [1]),
        ("Second one.", [2]),
    ]


def test_a_cut_answer_cites_its_whole_sentences_only(settings):
    settings.ANSWER_MAX_LENGTH = 60
    original = "Ships sail at dawn. [1] Barges wait for the lock keepers at noon. [2]"
    sources = [_source("a"), _source("b")]

    answer = check_answer(original)
    citations = answer_citations(Answer(text=original, sources=sources), answer)

    assert answer == "Ships sail at dawn. [1] Barges wait for the lock keepers…"
    assert _spans(answer, citations) == [("Ships sail at dawn.", [1])]


# --- Clipping a backend's own spans -----------------------------------------------


def test_clipping_moves_spans_past_the_stripped_space_and_cuts_them():
    original = "  Ships sail at dawn. Barges wait for the lock keepers at noon."
    answer = "Ships sail at dawn. Barges wait for the…"
    given = [
        Citation(start=2, end=21, sources=[1]),
        Citation(start=22, end=len(original), sources=[2, 9]),
        Citation(start=len(original) - 5, end=len(original), sources=[1]),
    ]

    clipped = clip_citations(given, original, answer, source_count=2)

    assert _spans(answer, clipped) == [
        ("Ships sail at dawn.", [1]),
        ("Barges wait for the", [2]),
    ]


def test_a_backend_span_with_no_valid_source_or_no_text_is_dropped():
    original = "Ships sail at dawn."
    given = [Citation(0, 5, [3]), Citation(5, 5, [1]), Citation(40, 50, [1])]

    assert clip_citations(given, original, original, source_count=2) == []


# --- Over HTTP ----------------------------------------------------------------------


@pytest.fixture
def harbour_and_canal(store, write_client):
    for name, content in (("harbour.txt", HARBOUR), ("canal.txt", CANAL)):
        assert upload(write_client, "default", {name: content}).status_code == 201


def _search(client, query: str, **payload) -> dict:
    response = client.post("/api/search", {"query": query, **payload}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@HTTP
def test_local_answers_cite_each_sentence_with_its_source(
    read_client, harbour_and_canal
):
    body = _search(read_client, "which ships use the harbour and the canal?")
    answer, sources = body["answer"], body["sources"]

    assert body["grounded"] is True
    assert len(body["citations"]) >= 2
    documents = {"harbour.txt": HARBOUR.decode(), "canal.txt": CANAL.decode()}
    for citation in body["citations"]:
        cited = answer[citation["start"] : citation["end"]]
        [number] = citation["sources"]
        assert cited.endswith(".") and cited == cited.strip()
        assert cited in documents[sources[number - 1]["title"]]
        assert answer[citation["end"] :].startswith(f" [{number}]")
    assert {n for c in body["citations"] for n in c["sources"]} == {1, 2}

    again = _search(read_client, "which ships use the harbour and the canal?")
    assert again["cached"] is True
    assert (again["citations"], again["grounded"]) == (body["citations"], True)


@HTTP
def test_nothing_relevant_is_not_grounded_and_cites_nothing(
    read_client, harbour_and_canal
):
    body = _search(read_client, "zebra quantum")

    assert (body["grounded"], body["sources"], body["citations"]) == (False, [], [])


@HTTP
def test_gemini_citations_turn_byte_offsets_into_characters(
    gemini, write_client, read_client
):
    write_client.post("/api/stores/", {"name": "gem"}, format="json")
    texts = {
        "café.txt": "Le café du port ouvre à l'aube.\n\nLe café sert les marins.",
        "écluse.txt": "L'écluse du canal ouvre à midi pour les péniches du port.",
    }
    for name, text in texts.items():
        assert upload(write_client, "gem", {name: text.encode()}).status_code == 201

    body = _search(read_client, "port café écluse ouvre", store_name="gem")
    answer, sources = body["answer"], body["sources"]

    assert body["backend"] == "gemini"
    # Two chunks of café.txt are one source: their citations both name it.
    assert sorted(s["title"] for s in sources) == ["café.txt", "écluse.txt"]
    assert len(body["citations"]) == 3
    cited = [
        (answer[c["start"] : c["end"]], sources[n - 1]["title"])
        for c in body["citations"]
        for n in c["sources"]
    ]
    for span, title in cited:
        assert span.startswith(f"From {title}: ")
        assert span.removeprefix(f"From {title}: ") in texts[title].replace("\n", " ")
    assert " ".join(span for span, _ in cited) == answer
    last = body["citations"][-1]["start"]
    assert len(answer[:last].encode()) != last  # byte offsets would be wrong


@HTTP
def test_gemini_citations_are_clipped_to_a_cut_answer(
    gemini, write_client, read_client, settings
):
    write_client.post("/api/stores/", {"name": "gem"}, format="json")
    upload(
        write_client, "gem", {"port.txt": "Le café du port ouvre à l'aube.".encode()}
    )
    upload(write_client, "gem", {"quai.txt": b"Le quai du port ferme le soir."})
    settings.ANSWER_MAX_LENGTH = 60

    body = _search(read_client, "port café quai", store_name="gem")
    answer = body["answer"]

    assert answer.endswith("…") and len(answer) <= 60
    [first, second] = body["citations"]
    assert answer[first["start"] : first["end"]] == (
        "From port.txt: Le café du port ouvre à l'aube."
    )
    assert second["end"] <= len(answer) - 1  # the ellipsis is not cited
    assert answer[second["start"] : second["end"]] == answer[second["start"] : -1]
    assert "From quai.txt: Le quai du port ferme le soir.".startswith(
        answer[second["start"] : second["end"]]
    )


@HTTP
def test_gemini_pdf_sources_name_their_page(gemini, write_client, read_client):
    write_client.post("/api/stores/", {"name": "gem"}, format="json")
    pdf = make_pdf(["Harbours and lighthouses.", "Lock keepers raise canal barges."])
    assert upload(write_client, "gem", {"guide.pdf": pdf}).status_code == 201

    body = _search(read_client, "lock keepers canal barges", store_name="gem")

    [source] = body["sources"]
    assert (source["title"], source["page"]) == ("guide.pdf", 2)
    [citation] = body["citations"]
    assert citation["sources"] == [1]


def test_the_schema_documents_citations_and_grounded(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schemas = yaml.safe_load(out.read_text())["components"]["schemas"]
    response = schemas["SearchResponse"]["properties"]
    assert response["citations"]["items"] == {"$ref": "#/components/schemas/Citation"}
    assert response["grounded"]["type"] == "boolean"
    assert "nothing in the store was relevant" in response["grounded"]["description"]
    assert {"citations", "grounded"} <= set(schemas["SearchResponse"]["required"])
    citation = schemas["Citation"]
    assert set(citation["required"]) == {"start", "end", "sources"}
    assert citation["properties"]["sources"]["items"]["minimum"] == 1
    assert "answer[start:end]" in citation["properties"]["end"]["description"]
