"""Hostile uploads: each is refused with its status and code, and leaves nothing.

Nothing means no document row, no chunk and no stored file. Files built to
exhaust the extractor are refused before anything is stored; a PDF that is
merely slow to read is kept as a failed document (DESIGN.md), with the time
limit as its error.
"""

import json

import pytest
import requests

from stores.models import Chunk, Document
from tests.conftest import stored_files, upload
from tests.factories import (
    make_cyclic_pdf,
    make_many_pages_pdf,
    make_pdf,
    make_zip_bomb_docx,
    multipart_body,
)
from tests.servers import (
    HIGH_RATE_LIMITS,
    ServerProcess,
    create_api_key,
    prepare_database,
    server_env,
)

pytestmark = pytest.mark.django_db(transaction=True)


def assert_refused(response, status: int, code: str, media_root) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == code
    assert body["status_code"] == status
    assert Document.objects.count() == 0
    assert Chunk.objects.count() == 0
    assert stored_files(media_root) == []
    return body


@pytest.mark.parametrize("form", ["api", "compat"])
def test_a_zip_bomb_docx(write_client, store, media_root, form):
    bomb = make_zip_bomb_docx()  # 300 MB of zeros in about 300 KB
    if form == "api":
        response = upload(write_client, "default", {"report.docx": bomb})
    else:
        from django.core.files.uploadedfile import SimpleUploadedFile

        response = write_client.post(
            "/api/upload/single",
            {"file": SimpleUploadedFile("report.docx", bomb), "store": "default"},
            format="multipart",
        )

    body = assert_refused(response, 422, "UNSAFE_FILE", media_root)
    assert body["details"]["reason"] == "too_large"


def test_a_pdf_with_more_pages_than_allowed(write_client, store, media_root, settings):
    settings.MAX_PDF_PAGES = 2000

    response = upload(write_client, "default", {"long.pdf": make_many_pages_pdf(2001)})

    body = assert_refused(response, 422, "UNSAFE_FILE", media_root)
    assert body["details"] == {"reason": "too_many_pages", "max_pages": 2000}
    assert body["message"] == (
        "The PDF has more than 2,000 pages; at most 2,000 are allowed."
    )


def test_a_pdf_whose_page_tree_loops(write_client, store, media_root):
    response = upload(write_client, "default", {"loop.pdf": make_cyclic_pdf()})

    body = assert_refused(response, 422, "UNSAFE_FILE", media_root)
    assert body["details"]["reason"] == "cyclic_page_tree"


def test_ten_megabytes_of_nul_bytes_named_txt(write_client, store, media_root):
    response = upload(write_client, "default", {"notes.txt": bytes(10 * 1024 * 1024)})

    assert_refused(response, 415, "UNSUPPORTED_FILE_TYPE", media_root)


def test_an_empty_file(write_client, store, media_root):
    response = upload(write_client, "default", {"empty.md": b""})

    assert_refused(response, 400, "EMPTY_FILE", media_root)


def test_twenty_one_files_in_one_request(write_client, store, media_root):
    files = {f"note-{n}.txt": b"Note number %d." % n for n in range(21)}

    response = upload(write_client, "default", files, field="files")

    body = assert_refused(response, 400, "TOO_MANY_FILES", media_root)
    assert body["details"] == {"max_files": 20, "got": 21}


def test_a_request_over_the_total_size_is_refused_unread(
    write_client, store, media_root, settings
):
    settings.MAX_REQUEST_SIZE_MB = 1
    settings.MAX_REQUEST_SIZE_BYTES = 1024 * 1024
    files = {
        f"part-{n}.txt": b"Words in a row. " * 40_000 for n in range(2)
    }  # 2x640 KB

    response = upload(write_client, "default", files, field="files")

    body = assert_refused(response, 413, "REQUEST_TOO_LARGE", media_root)
    assert body["details"] == {"max_bytes": 1024 * 1024}


def test_a_pdf_slower_than_the_time_limit_is_kept_as_failed(
    write_client, store, media_root, settings
):
    # A real PDF and a limit it cannot meet: the child process is killed.
    settings.PDF_EXTRACT_TIMEOUT_SEC = 0.001

    response = upload(write_client, "default", {"slow.pdf": make_pdf(["Slow page."])})

    assert response.status_code == 201
    document = Document.objects.get()
    assert document.status == Document.Status.FAILED
    assert document.error == "Could not read PDF: it took longer than 0.001 s."
    assert Chunk.objects.count() == 0


def test_a_pdf_over_the_memory_limit_is_kept_as_failed(
    write_client, store, media_root, settings
):
    settings.PDF_EXTRACT_MEMORY_MB = 16  # less than pypdf needs to load

    response = upload(write_client, "default", {"big.pdf": make_pdf(["Big page."])})

    assert response.status_code == 201
    document = Document.objects.get()
    assert document.status == Document.Status.FAILED
    assert document.error == "Could not read PDF: it needs more than 16 MB."


def test_the_same_name_with_other_content_keeps_both_under_generated_names(
    write_client, store, media_root
):
    first = upload(write_client, "default", {"notes.txt": b"First version."})
    second = upload(write_client, "default", {"notes.txt": b"Second version."})

    assert (first.status_code, second.status_code) == (201, 201)
    names = sorted(p.name for p in stored_files(media_root))
    assert len(names) == 2
    assert "notes.txt" not in names  # storage names are generated
    assert sorted(Document.objects.values_list("filename", flat=True)) == [
        "notes.txt",
        "notes.txt",
    ]


def test_an_upload_into_a_store_deleted_meanwhile_is_404_and_leaves_nothing(
    store, media_root
):
    """The race the fuzzer found: the view looked the store up, then another
    request deleted it before the upload committed (was a 500)."""
    from django.core.files.base import ContentFile

    from flamehaven.errors import StoreNotFound
    from stores.models import Store
    from stores.services import documents_add

    Store.objects.filter(pk=store.pk).delete()  # behind this request's back

    with pytest.raises(StoreNotFound):
        documents_add(store=store, files=[(ContentFile(b"Late words."), "late.txt")])

    assert Document.objects.count() == 0
    assert stored_files(media_root) == []


def in_chunks(data: bytes, size: int = 64 * 1024):
    """A generator body: requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.slow
def test_chunked_bodies_are_read_and_held_to_the_request_size(tmp_path):
    """Over real HTTP: Django reads a body only up to its Content-Length, which a
    chunked request has none of (flamehaven/chunked.py gives it one)."""
    env = server_env(tmp_path, MAX_REQUEST_SIZE_MB="1", **HIGH_RATE_LIMITS)
    prepare_database(env)
    headers = {"Authorization": f"Api-Key {create_api_key(env, 'write')}"}
    small, content_type = multipart_body("chunked.txt", b"Words sent in chunks.")
    big, _ = multipart_body("big.txt", b"Too many words. " * 80_000)  # 1.2 MB

    with ServerProcess(env) as server:
        api = f"{server.base_url}/api"
        assert (
            requests.post(
                f"{api}/stores/", json={"name": "live"}, headers=headers, timeout=10
            ).status_code
            == 201
        )
        upload_url = f"{api}/stores/live/documents/"

        def chunked_upload(body: bytes) -> requests.Response:
            return requests.post(
                upload_url,
                data=in_chunks(body),
                headers={**headers, "Content-Type": content_type},
                timeout=10,
            )

        refused = chunked_upload(big)
        stored_after_refusal = stored_files(tmp_path / "data")
        listed_after_refusal = requests.get(upload_url, headers=headers, timeout=10)
        accepted = chunked_upload(small)
        search = requests.post(
            f"{api}/search",
            data=in_chunks(b'{"query": "words in chunks", "store_name": "live"}', 8),
            headers={**headers, "Content-Type": "application/json"},
            timeout=10,
        )

    assert refused.request.headers["Transfer-Encoding"] == "chunked"
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"] == "REQUEST_TOO_LARGE"
    assert stored_after_refusal == []
    assert listed_after_refusal.json()["count"] == 0
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["filename"] == "chunked.txt"
    assert accepted.json()["size_bytes"] == len(b"Words sent in chunks.")
    assert search.status_code == 200, search.text
    assert search.json()["sources"][0]["document_id"] == accepted.json()["id"]


def test_a_chunked_body_nothing_could_read_is_411(rf):
    """Where the server cannot say where a chunked body ends (runserver)."""
    from flamehaven.middleware import RequestChecksMiddleware

    request = rf.post("/api/search", b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    request.META["HTTP_TRANSFER_ENCODING"] = "chunked"

    response = RequestChecksMiddleware(lambda request: None)(request)

    assert response.status_code == 411
    assert json.loads(response.content)["error"] == "LENGTH_REQUIRED"
