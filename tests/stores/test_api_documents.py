"""Uploads over HTTP: real files, real storage, and nothing half-stored on errors."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from stores.models import Chunk, Document
from tests.conftest import stored_files, upload
from tests.factories import corrupt_docx, corrupt_pdf, make_docx, make_pdf, make_png

# Ingestion starts from transaction.on_commit, so these tests need real commits.
pytestmark = pytest.mark.django_db(transaction=True)

TEXT = b"Uploads stream to temporary files. Large files are refused early.\n"


def assert_nothing_stored(media_root):
    assert Document.objects.count() == 0
    assert Chunk.objects.count() == 0
    assert stored_files(media_root) == []


def test_text_upload_is_stored_under_a_generated_name_and_indexed(
    write_client, store, media_root
):
    response = upload(write_client, "default", {"notes.txt": TEXT})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["filename"] == "notes.txt"
    assert body["status"] == "ready"
    assert body["chunk_count"] == 1
    assert body["size_bytes"] == len(TEXT)
    assert body["mime_type"] == "text/plain"
    assert body["uri"] == f"/api/stores/default/documents/{body['id']}/"
    document = Document.objects.get(pk=body["id"])
    assert document.file.name.startswith(f"documents/{store.uid.hex}/")
    assert "notes" not in document.file.name
    [path] = stored_files(media_root)
    assert path.read_bytes() == TEXT


def test_pdf_upload_is_searchable_with_page_numbers(write_client, store):
    cover = "The cover page lists the orchard's staff and history. " * 30
    pdf = make_pdf([cover, "The quarterly harvest of quinces doubled."])

    response = upload(write_client, "default", {"report.pdf": pdf})

    assert response.status_code == 201, response.json()
    assert response.json()["page_count"] == 2
    chunk = Chunk.objects.get(text__contains="quinces")
    assert chunk.page == 2
    answer = write_client.get("/api/search", {"q": "quince harvest"}).json()
    assert answer["sources"][0]["title"] == "report.pdf"
    assert "quinces" in answer["sources"][0]["snippet"]


def test_docx_upload_is_searchable(write_client, store):
    docx = make_docx(["Intro.", "Marmalade requires bitter oranges and patience."])

    response = upload(write_client, "default", {"recipe.docx": docx})

    assert response.status_code == 201, response.json()
    answer = write_client.get("/api/search", {"q": "what does marmalade need?"})
    assert answer.json()["sources"][0]["title"] == "recipe.docx"


def test_several_files_in_one_request(write_client, store):
    response = upload(
        write_client,
        "default",
        {"a.txt": b"alpha text here", "b.md": b"# Beta\n\nbeta text"},
        field="files",
    )

    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["a.txt", "b.md"]
    assert {r["status"] for r in results} == {"ready"}
    assert Document.objects.count() == 2


def test_same_content_twice_returns_the_existing_document(
    write_client, store, media_root
):
    first = upload(write_client, "default", {"one.txt": TEXT})
    second = upload(write_client, "default", {"renamed.txt": TEXT})

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["filename"] == "one.txt"
    assert Document.objects.count() == 1
    assert len(stored_files(media_root)) == 1


def test_same_name_different_content_keeps_both(write_client, store, media_root):
    upload(write_client, "default", {"same.txt": b"first version"})
    upload(write_client, "default", {"same.txt": b"second version"})

    assert Document.objects.filter(filename="same.txt").count() == 2
    assert len(stored_files(media_root)) == 2


def test_path_parts_are_reduced_to_a_base_name(write_client, store):
    response = upload(write_client, "default", {"../../secret/notes.txt": TEXT})

    assert response.status_code == 201
    assert response.json()["filename"] == "notes.txt"
    assert Document.objects.get().file.name.startswith("documents/")


@pytest.mark.parametrize(
    ("name", "content", "status", "code"),
    [
        (".env", b"SECRET_KEY=x", 400, "INVALID_FILENAME"),
        ("CON.txt", b"device name", 400, "INVALID_FILENAME"),
        ("empty.txt", b"", 400, "EMPTY_FILE"),
        ("tool.exe", b"MZ\x90\x00" + b"\x00" * 100, 415, "UNSUPPORTED_FILE_TYPE"),
        ("picture.pdf", make_png(), 415, "UNSUPPORTED_FILE_TYPE"),
        ("picture.docx", make_png(), 415, "UNSUPPORTED_FILE_TYPE"),
        ("zeros.txt", b"\x00" * 100_000, 415, "UNSUPPORTED_FILE_TYPE"),
        (
            "../../etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\n",
            415,
            "UNSUPPORTED_FILE_TYPE",
        ),
        ("..\\..\\boot.ini", b"[boot loader]\n", 415, "UNSUPPORTED_FILE_TYPE"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    write_client, store, media_root, name, content, status, code
):
    response = upload(write_client, "default", {name: content})

    assert response.status_code == status, response.json()
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    assert body["status_code"] == status
    assert_nothing_stored(media_root)


def test_file_over_the_size_limit_is_refused_while_streaming(
    write_client, store, media_root, settings
):
    settings.MAX_FILE_SIZE_BYTES = 1024

    response = upload(write_client, "default", {"big.txt": b"a" * 5000})

    assert response.status_code == 413
    assert response.json()["error"] == "FILE_SIZE_EXCEEDED"
    assert_nothing_stored(media_root)


def test_one_bad_file_rejects_the_whole_request(write_client, store, media_root):
    response = upload(
        write_client,
        "default",
        {"good.txt": TEXT, "bad.pdf": make_png(), "fine.md": b"# fine"},
        field="files",
    )

    assert response.status_code == 415
    body = response.json()
    assert body["error"] == "UNSUPPORTED_FILE_TYPE"
    assert list(body["details"]["files"]) == ["1:bad.pdf"]
    assert_nothing_stored(media_root)


@pytest.mark.parametrize("count", [21, 30])
def test_too_many_files(write_client, store, media_root, count):
    files = {f"f{i}.txt": f"file number {i}".encode() for i in range(count)}

    response = upload(write_client, "default", files, field="files")

    assert response.status_code == 400
    assert response.json()["error"] == "TOO_MANY_FILES"
    assert_nothing_stored(media_root)


def test_no_file_is_a_validation_error(write_client, store):
    response = write_client.post(
        "/api/stores/default/documents/", {"other": "x"}, format="multipart"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "VALIDATION_ERROR"


def test_upload_to_unknown_store(write_client, media_root):
    response = upload(write_client, "nope", {"a.txt": TEXT})

    assert response.status_code == 404
    assert response.json()["error"] == "STORE_NOT_FOUND"
    assert_nothing_stored(media_root)


@pytest.mark.parametrize(
    ("name", "content"),
    [("broken.pdf", corrupt_pdf()), ("broken.docx", corrupt_docx())],
)
def test_corrupt_document_is_kept_as_failed_without_chunks(
    write_client, store, media_root, name, content
):
    response = upload(write_client, "default", {name: content})

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]
    assert "Traceback" not in body["error"]
    assert body["chunk_count"] == 0
    assert Chunk.objects.count() == 0
    assert len(stored_files(media_root)) == 1

    reindexed = write_client.post(f"{body['uri']}reindex/")
    assert reindexed.status_code == 200
    assert reindexed.json()["status"] == "failed"

    deleted = write_client.delete(body["uri"])
    assert deleted.status_code == 204
    assert_nothing_stored(media_root)


def test_document_detail_list_and_pagination(write_client, store):
    ids = [
        upload(write_client, "default", {f"d{i}.txt": f"doc {i}".encode()}).json()["id"]
        for i in range(3)
    ]

    detail = write_client.get(f"/api/stores/default/documents/{ids[0]}/")
    page = write_client.get("/api/stores/default/documents/", {"page_size": 2})
    last = write_client.get(page.json()["next"])

    assert detail.json()["id"] == ids[0]
    assert page.json()["count"] == 3
    assert len(page.json()["results"]) == 2
    assert len(last.json()["results"]) == 1
    assert last.json()["next"] is None


def test_unknown_document(write_client, store):
    response = write_client.get("/api/stores/default/documents/999/")

    assert response.status_code == 404
    assert response.json()["error"] == "DOCUMENT_NOT_FOUND"


def test_delete_removes_file_chunks_and_search_hits(write_client, store, media_root):
    body = upload(
        write_client, "default", {"gone.txt": b"Zanzibar ferries leave daily."}
    )
    before = write_client.get("/api/search", {"q": "zanzibar ferries"}).json()

    response = write_client.delete(body.json()["uri"])

    after = write_client.get("/api/search", {"q": "zanzibar ferries"}).json()
    assert response.status_code == 204
    assert before["sources"] and not after["sources"]
    assert not after["cached"]
    assert_nothing_stored(media_root)


def test_reindex_runs_ingestion_again(write_client, store):
    body = upload(write_client, "default", {"r.txt": TEXT}).json()
    Chunk.objects.filter(document_id=body["id"]).delete()

    response = write_client.post(f"{body['uri']}reindex/")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert Chunk.objects.filter(document_id=body["id"]).count() == 1


def test_compatible_upload_forms(write_client, store):
    single = write_client.post(
        "/api/upload/single",
        {"store": "default", "file": SimpleUploadedFile("s.txt", b"single form")},
        format="multipart",
    )
    multiple = write_client.post(
        "/api/upload/multiple",
        {
            "store": "default",
            "files": [
                SimpleUploadedFile("m1.txt", b"multiple one"),
                SimpleUploadedFile("m2.txt", b"multiple two"),
            ],
        },
        format="multipart",
    )
    missing = write_client.post(
        "/api/upload/single",
        {"store": "nope", "file": SimpleUploadedFile("s.txt", b"x")},
        format="multipart",
    )

    assert single.status_code == 201
    assert single.json()["filename"] == "s.txt"
    assert multiple.status_code == 201
    assert len(multiple.json()["results"]) == 2
    assert missing.status_code == 404
    assert missing.json()["error"] == "STORE_NOT_FOUND"


def test_upload_reports_pending_when_ingestion_is_queued(write_client, store, settings):
    # A queueing backend that never runs the task (django-tasks resets its
    # handler when the TASKS setting changes).
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}
    }

    response = upload(write_client, "default", {"q.txt": TEXT})

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert Chunk.objects.count() == 0
