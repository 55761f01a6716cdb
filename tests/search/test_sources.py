"""Sources point at the passage: its page (PDFs), its section and its chunk."""

import pytest

from stores.models import Chunk
from tests.conftest import upload
from tests.factories import make_pdf

pytestmark = pytest.mark.django_db(transaction=True)


def _search(client, query: str) -> dict:
    response = client.post(
        "/api/search", {"query": query, "store_name": "default"}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_pdf_source_cites_the_page_and_chunk_of_the_passage(
    write_client, read_client, store
):
    pdf = make_pdf(
        [
            "Chapter one is about harbours and their lighthouses.",
            "Chapter two explains how lock keepers raise canal barges.",
            "Chapter three lists ferry timetables for the winter.",
        ]
    )
    assert upload(write_client, "default", {"guide.pdf": pdf}).status_code == 201

    [source] = _search(read_client, "lock keepers barges")["sources"]

    assert source["page"] == 2
    chunk = Chunk.objects.get(pk=source["chunk_id"])
    assert chunk.page == 2
    assert "lock keepers" in chunk.text
    assert source["section"] is None


def test_sources_name_the_markdown_or_restructuredtext_section(
    write_client, read_client, store
):
    markdown = (
        b"# Operations\n\n## Backups\n\nSnapshots of the volume run nightly.\n\n"
        b"## Upgrades\n\nRolling upgrades replace one worker at a time.\n"
    )
    rst = (
        b"Deployment\n==========\n\nIntro.\n\nFirewalls\n---------\n\n"
        b"Open port 8443 for the dashboard only.\n"
    )
    upload(write_client, "default", {"ops.md": markdown})
    upload(write_client, "default", {"deploy.txt": rst})

    upgrades = _search(read_client, "rolling upgrades worker")["sources"][0]
    firewall = _search(read_client, "port dashboard firewall")["sources"][0]

    assert (upgrades["title"], upgrades["section"]) == ("ops.md", "Upgrades")
    assert upgrades["page"] is None
    assert (firewall["title"], firewall["section"]) == ("deploy.txt", "Firewalls")


def test_long_documents_cite_the_section_of_each_chunk(write_client, store):
    sections = [
        f"## Part {n}\n\n" + f"Sentence {n} about topic {n}. " * 60 for n in range(4)
    ]
    upload(write_client, "default", {"long.md": "\n\n".join(sections).encode()})

    chunks = list(Chunk.objects.order_by("ordinal"))

    assert len(chunks) > 4
    for chunk in chunks:
        number = chunk.text.split("topic ")[1].split(".")[0]
        assert chunk.section == f"Part {number}"


def test_docx_headings_become_sections(write_client, read_client, store):
    from io import BytesIO

    import docx

    document = docx.Document()
    document.add_heading("Security", level=1)
    document.add_paragraph("Rotate the signing keys every ninety days.")
    buffer = BytesIO()
    document.save(buffer)
    upload(write_client, "default", {"policy.docx": buffer.getvalue()})

    [source] = _search(read_client, "rotate signing keys")["sources"]

    assert source["section"] == "Security"


def test_an_underlined_title_is_not_glued_to_the_answer_sentence(
    write_client, read_client, store
):
    text = b"Caching\n=======\nAnswers are kept for one hour by default.\n"
    upload(write_client, "default", {"cache.txt": text})

    answer = _search(read_client, "how long are answers kept")["answer"]

    assert answer.startswith("Answers are kept for one hour by default.")
    assert "=" not in answer and "Caching" not in answer
