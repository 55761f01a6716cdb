"""manage.py fsck: each check meets the real mismatch, reports it, repairs it with
--fix, and a second run finds nothing."""

import io
import json
import os
import shutil
import time
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from stores.fsck import MISSING_FILE_ERROR
from stores.models import Chunk, Document, Store
from stores.services import store_create
from tests.conftest import stored_files, upload
from tests.factories import corrupt_pdf, make_docx, make_pdf
from tests.stores.test_uploads import leave_temp_file

pytestmark = pytest.mark.django_db(transaction=True)

sqlite_only = pytest.mark.skipif(
    "connection.vendor != 'sqlite'", reason="the FTS5 index is SQLite's"
)
# Long enough for several chunks (CHUNK_SIZE is 1000 characters).
LONG_TEXT = " ".join(
    f"Paragraph {n} tells of lanterns, ledgers and the harbour tide." for n in range(90)
).encode()


def fsck(*args: str) -> tuple[int, str]:
    """Run the command; its exit status and what it printed."""
    out = io.StringIO()
    try:
        call_command("fsck", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def fsck_json(*args: str) -> tuple[int, dict]:
    code, out = fsck("--json", *args)
    return code, json.loads(out)


def kinds(report: dict) -> list[str]:
    return sorted(problem["kind"] for problem in report["problems"])


def assert_clean(*args: str) -> None:
    code, out = fsck(*args)
    assert (code, out.splitlines()[-1]) == (0, "No problems found."), out


def add(client, name: str, content: bytes) -> Document:
    response = upload(client, "default", {name: content})
    assert response.status_code == 201, response.json()
    return Document.objects.get(pk=response.json()["id"])


def search(client, query: str) -> list[int]:
    response = client.get("/api/search", {"q": query, "store": "default"})
    assert response.status_code == 200, response.json()
    return [source["document_id"] for source in response.json()["sources"]]


def make_old(path, seconds: float = 2 * 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# --- A clean system ----------------------------------------------------------------


def test_a_clean_store_after_real_uploads_reports_nothing(write_client, store):
    add(write_client, "report.pdf", make_pdf(["The harvest of quinces doubled."]))
    add(write_client, "memo.docx", make_docx(["Parking permits renew in January."]))
    add(write_client, "long.txt", LONG_TEXT)
    add(write_client, "broken.pdf", corrupt_pdf())  # failed, no chunks: consistent

    code, out = fsck()
    json_code, report = fsck_json()

    assert code == 0, out
    assert out.splitlines()[-1] == "No problems found."
    assert "remote documents: not checked: GEMINI_API_KEY is not set" in out
    assert json_code == 0
    assert (report["found"], report["left"], report["problems"]) == (0, 0, [])


def test_an_unknown_store_is_exit_status_2(db):
    code, _ = fsck("--store", "nope")

    assert code == 2


# --- a. Documents whose stored file is missing -------------------------------------


def test_a_missing_file_fails_its_document_and_drops_its_chunks(
    write_client, store, media_root
):
    kept = add(write_client, "kept.txt", b"Kept words about lighthouses.")
    lost = add(write_client, "lost.txt", LONG_TEXT)
    assert search(write_client, "harbour tide") == [lost.pk]
    revision = Store.objects.get().revision
    (media_root / lost.file.name).unlink()

    code, out = fsck()

    assert code == 1
    assert (
        f"missing_file: document {lost.pk} 'lost.txt' in store 'default': its "
        f"stored file {lost.file.name} is missing (--fix: mark it failed and "
        "remove its chunks)"
    ) in out
    assert out.splitlines()[-1] == "1 problem(s) found, 0 fixed, 1 left."
    assert Document.objects.get(pk=lost.pk).status == Document.Status.READY

    code, out = fsck("--fix")

    assert code == 0, out
    assert "(fixed: mark it failed and remove its chunks)" in out
    lost.refresh_from_db()
    assert (lost.status, lost.error) == (Document.Status.FAILED, MISSING_FILE_ERROR)
    assert lost.error == "The stored file is missing; upload it again."
    assert (lost.chunk_count, Chunk.objects.filter(document=lost).count()) == (0, 0)
    assert Store.objects.get().revision > revision
    assert search(write_client, "harbour tide") == []
    kept.refresh_from_db()
    assert kept.status == Document.Status.READY
    assert_clean()


def test_every_file_missing_is_reported_as_the_storage_and_changes_nothing(
    write_client, store, media_root
):
    add(write_client, "one.txt", b"First words about lighthouses.")
    add(write_client, "two.txt", b"Second words about harbours.")
    shutil.rmtree(media_root)  # as when the volume is not mounted

    code, report = fsck_json("--fix")

    assert code == 1
    assert kinds(report) == ["storage_unavailable"]
    [problem] = report["problems"]
    assert "none of the 2 documents' stored files exist" in problem["message"]
    assert (problem["fix"], problem["fixed"]) == (None, False)
    assert set(Document.objects.values_list("status", flat=True)) == {"ready"}


# --- b. Files no document refers to, and empty folders ------------------------------


def test_stray_files_and_empty_folders_are_deleted(write_client, store, media_root):
    document = add(write_client, "kept.txt", b"Kept words about lighthouses.")
    folder = media_root / "documents" / store.uid.hex
    stray = folder / f"{uuid.uuid4().hex}.pdf"
    stray.write_bytes(b"%PDF-1.7 left by a crashed upload")
    gone_store = media_root / "documents" / uuid.uuid4().hex  # a deleted store's
    gone_store.mkdir()
    leftover = gone_store / f"{uuid.uuid4().hex}.txt"
    leftover.write_bytes(b"From a store deleted long ago.")
    empty = media_root / "documents" / uuid.uuid4().hex
    empty.mkdir()
    for path in (stray, leftover, gone_store, empty):
        make_old(path)

    code, report = fsck_json()

    assert code == 1
    assert kinds(report) == ["empty_folder", "stray_file", "stray_file"]
    messages = {problem["message"] for problem in report["problems"]}
    stray_name = f"documents/{store.uid.hex}/{stray.name}"
    assert f"{stray_name}: no document refers to this file" in messages
    assert f"documents/{empty.name}/: an empty store folder" in messages

    code, report = fsck_json("--fix")

    assert code == 0, report
    assert report["fixed"] == 3
    assert not stray.exists() and not leftover.exists()
    assert not gone_store.exists() and not empty.exists()
    assert stored_files(media_root) == [media_root / document.file.name]
    assert_clean()


def test_a_fresh_stray_file_may_be_an_upload_committing_and_is_left_alone(
    write_client, store, media_root
):
    add(write_client, "kept.txt", b"Kept words about lighthouses.")
    stray = media_root / "documents" / store.uid.hex / f"{uuid.uuid4().hex}.txt"
    stray.write_bytes(b"Moved into storage a moment ago; its row is coming.")

    assert_clean("--fix")
    assert stray.exists()

    code, out = fsck("--min-age", "0")  # the service is stopped: nothing is young

    assert code == 1
    assert "stray_file: " in out


# --- c. Chunk counts and chunk stores ----------------------------------------------


def test_chunks_deleted_behind_a_ready_documents_back(write_client, store):
    document = add(write_client, "long.txt", LONG_TEXT)
    assert document.chunk_count > 2
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM stores_chunk WHERE document_id = %s AND ordinal < 2",
            [document.pk],
        )

    code, out = fsck()

    assert code == 1
    assert (
        f"chunk_count: document {document.pk} 'long.txt' in store 'default' "
        f"(ready) records {document.chunk_count} chunks and has "
        f"{document.chunk_count - 2} (--fix: record the real count)"
    ) in out

    assert fsck("--fix")[0] == 0
    document.refresh_from_db()
    assert document.chunk_count == Chunk.objects.filter(document=document).count()
    assert_clean()


def test_chunks_of_a_failed_document_are_deleted(write_client, store):
    failed = add(write_client, "broken.pdf", corrupt_pdf())
    assert failed.status == Document.Status.FAILED
    Chunk.objects.create(
        document=failed,
        store=store,
        ordinal=0,
        text="Searchable words of a document that failed.",
        start_char=0,
        end_char=44,
    )
    assert search(write_client, "searchable failed") == [failed.pk]

    code, out = fsck("--fix")

    assert code == 0, out
    assert "(fixed: delete its chunks)" in out
    assert Chunk.objects.filter(document=failed).count() == 0
    assert search(write_client, "searchable failed") == []
    assert_clean()


def test_chunks_filed_under_another_store(write_client, store):
    document = add(write_client, "long.txt", LONG_TEXT)
    other = store_create(name="other")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE stores_chunk SET store_id = %s WHERE document_id = %s",
            [other.pk, document.pk],
        )
    assert search(write_client, "harbour tide") == []

    code, report = fsck_json()

    assert code == 1
    [problem] = report["problems"]
    assert problem["kind"] == "chunk_store"
    assert problem["message"] == (
        f"{document.chunk_count} chunks of document {document.pk} are filed under "
        f"store id {other.pk}, not its store (id {store.pk})"
    )

    assert fsck("--fix")[0] == 0
    assert set(Chunk.objects.values_list("store_id", flat=True)) == {store.pk}
    assert search(write_client, "harbour tide") == [document.pk]
    assert_clean()


def test_store_limits_the_checks_to_one_store(write_client, store, media_root):
    lost = add(write_client, "lost.txt", b"Words about lighthouses.")
    add(write_client, "also.txt", b"Words about harbours.")
    store_create(name="other")
    (media_root / lost.file.name).unlink()

    assert fsck("--store", "default")[0] == 1
    assert_clean("--store", "other")


# --- d. The full-text index (SQLite FTS5) -------------------------------------------


@sqlite_only
def test_an_index_row_deleted_and_one_without_a_chunk(write_client, store):
    document = add(write_client, "long.txt", LONG_TEXT)
    chunk = Chunk.objects.filter(document=document).order_by("ordinal").first()
    with connection.cursor() as cursor:
        # External content: removing a row takes the text it was made from.
        cursor.execute(
            "INSERT INTO stores_chunk_fts (stores_chunk_fts, rowid, text, store_id) "
            "VALUES ('delete', %s, %s, %s)",
            [chunk.pk, chunk.text, chunk.store_id],
        )
        cursor.execute(
            "INSERT INTO stores_chunk_fts (rowid, text, store_id) "
            "VALUES (987654, 'ghost words', %s)",
            [store.pk],
        )
    assert search(write_client, "paragraph 0 lanterns") != []

    code, report = fsck_json()

    assert code == 1
    assert kinds(report) == ["fulltext_missing_rows", "fulltext_orphan_rows"]
    messages = sorted(problem["message"] for problem in report["problems"])
    assert messages == [
        "1 full-text index rows belong to no chunk (rowids 987654)",
        f"store 'default': 1 chunks are not in the full-text index (ids {chunk.pk})",
    ]

    code, report = fsck_json("--fix")

    assert code == 0, report
    assert [p["fix"] for p in report["problems"]] == [
        "index them",
        "rebuild the index",
    ]
    assert_clean()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rowid FROM stores_chunk_fts WHERE stores_chunk_fts MATCH 'ghost'"
        )
        assert cursor.fetchall() == []
        cursor.execute(
            "SELECT rowid FROM stores_chunk_fts WHERE stores_chunk_fts MATCH %s",
            [f'"{chunk.text.split()[1]}" AND "paragraph"'],
        )
        assert chunk.pk in [row[0] for row in cursor.fetchall()]


@sqlite_only
def test_an_index_row_made_from_other_text(write_client, store):
    document = add(write_client, "notes.txt", b"Lanterns guide hikers at night.")
    chunk = Chunk.objects.get(document=document)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO stores_chunk_fts (stores_chunk_fts, rowid, text, store_id) "
            "VALUES ('delete', %s, %s, %s)",
            [chunk.pk, chunk.text, chunk.store_id],
        )
        cursor.execute(
            "INSERT INTO stores_chunk_fts (rowid, text, store_id) "
            "VALUES (%s, 'compasses guide sailors', %s)",
            [chunk.pk, chunk.store_id],
        )
    assert search(write_client, "lanterns") == []

    code, report = fsck_json("--fix")

    assert kinds(report) == ["fulltext_stale"]
    assert code == 0, report
    assert search(write_client, "lanterns") == [document.pk]
    assert_clean()


@sqlite_only
def test_missing_triggers_are_created_again(write_client, store):
    from stores.fsck import FTS_TRIGGERS

    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER stores_chunk_fts_insert")
    try:
        document = add(write_client, "notes.txt", b"Lanterns guide hikers at night.")
        assert search(write_client, "lanterns") == []

        code, out = fsck()

        assert code == 1
        assert (
            "fulltext_triggers: the triggers that keep the index in step are "
            "missing (stores_chunk_fts_insert): a migration rebuilt stores_chunk"
        ) in out

        assert fsck("--fix")[0] == 0
        assert search(write_client, "lanterns") == [document.pk]
        assert_clean()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            present = {name for (name,) in cursor.fetchall()}
        if not set(FTS_TRIGGERS) <= present:  # the fix failed: repair the schema
            from stores.fsck import _restore_fulltext_triggers

            _restore_fulltext_triggers()


@pytest.mark.postgres
def test_postgresql_has_no_index_to_check(write_client, store):
    add(write_client, "notes.txt", b"Lanterns guide hikers at night.")

    code, report = fsck_json()

    assert code == 0
    assert "generated column" in report["skipped"]["full-text index"]


# --- e. Remote copies (Gemini) --------------------------------------------------------


@pytest.fixture
def gemini_store(gemini, write_client):
    store = store_create(name="default")
    assert store.backend == Store.Backend.GEMINI
    return store


def test_remote_orphans_are_deleted_and_a_lost_copy_is_indexed_again(
    gemini, gemini_store, write_client
):
    kept = add(write_client, "kept.txt", b"Lanterns guide hikers at night.")
    lost = add(write_client, "lost.txt", b"Compasses guide sailors by day.")
    assert kept.remote_name and lost.remote_name
    orphan = gemini.add_document(
        gemini_store.remote_name,
        "Left behind by a crash.",
        display_name="crash.txt",
        custom_metadata=[{"key": "document_id", "string_value": "999999"}],
    )
    client = gemini.client()  # kept: a dropped client closes its connections
    client.file_search_stores.documents.delete(
        name=lost.remote_name, config={"force": True}
    )
    orphan_store = gemini.add_store("flamehaven-deleted-long-ago")
    foreign_store = gemini.add_store("someone-elses-store")

    # Young remote stores may be a store being created: --min-age 0 here.
    code, report = fsck_json("--min-age", "0")

    assert code == 1
    by_kind = {problem["kind"]: problem for problem in report["problems"]}
    assert sorted(by_kind) == [
        "remote_copy_missing",
        "remote_orphan_document",
        "remote_orphan_store",
    ]
    assert by_kind["remote_orphan_document"]["subject"] == orphan
    assert by_kind["remote_orphan_document"]["message"].endswith(
        "('crash.txt') is left over: document 999999 does not exist"
    )
    assert by_kind["remote_copy_missing"]["subject"] == f"document {lost.pk}"
    assert by_kind["remote_orphan_store"]["subject"] == orphan_store

    code, report = fsck_json("--min-age", "0", "--fix")

    assert code == 0, report
    assert orphan not in {d["name"] for d in gemini.documents()}
    assert sorted(gemini.store_names()) == sorted(
        [gemini_store.remote_name, foreign_store]
    )
    lost.refresh_from_db()
    assert lost.status == Document.Status.READY
    assert lost.remote_name in {d["name"] for d in gemini.documents()}
    remote_ids = sorted(
        d["custom_metadata"][0]["stringValue"]
        for d in gemini.documents(gemini_store.remote_name)
    )
    assert remote_ids == sorted([str(kept.pk), str(lost.pk)])
    assert_clean("--min-age", "0")


def test_a_document_failed_for_its_missing_file_loses_its_remote_copy(
    gemini, gemini_store, write_client, media_root
):
    add(write_client, "kept.txt", b"Lanterns guide hikers at night.")
    lost = add(write_client, "lost.txt", b"Compasses guide sailors by day.")
    (media_root / lost.file.name).unlink()

    code, report = fsck_json("--fix")

    # The repairs run in order: the document fails, then its copy goes.
    assert code == 0, report
    assert [p["kind"] for p in report["problems"]] == [
        "missing_file",
        "remote_copy_of_failed",
    ]
    assert report["problems"][1]["message"] == (
        f"store 'default': document {lost.pk} failed, but its remote copy "
        f"{lost.remote_name} is still searchable"
    )
    assert lost.remote_name not in {d["name"] for d in gemini.documents()}
    lost.refresh_from_db()
    assert (lost.status, lost.remote_name) == (Document.Status.FAILED, "")
    assert_clean()


def test_a_young_orphan_store_may_be_a_store_being_created(gemini, gemini_store):
    gemini.add_store("flamehaven-being-created")

    assert_clean()


def test_gemini_unreachable_is_reported_not_guessed(gemini, gemini_store, write_client):
    add(write_client, "notes.txt", b"Lanterns guide hikers at night.")
    gemini.fail("documents.list", 500, times=None)

    code, report = fsck_json("--fix")

    assert code == 1
    [problem] = report["problems"]
    assert problem["kind"] == "remote_unreachable"
    assert "Gemini could not list the store's documents" in problem["message"]
    assert gemini.calls(route="documents.delete") == []


# --- Temporary upload files ----------------------------------------------------------


def test_a_temporary_upload_file_of_a_dead_process_is_deleted(upload_temp_dir, store):
    left = leave_temp_file(upload_temp_dir)

    scoped_code, scoped = fsck("--store", "default")
    code, out = fsck()

    assert scoped_code == 0
    assert "uploads: not checked: they belong to no store; run without --store" in (
        scoped
    )
    assert code == 1
    assert (
        f"abandoned_upload: {left.name}: a temporary upload file whose process "
        "is gone (--fix: delete it)"
    ) in out
    assert fsck("--fix")[0] == 0
    assert not left.exists()
    assert_clean()


# --- Vectors -----------------------------------------------------------------------


@pytest.fixture
def embedder(settings):
    """An OpenAI-compatible embedding server (the HTTP fake) as the model."""
    from tests.fakes.embeddings import EmbeddingsFake

    with EmbeddingsFake() as fake:
        settings.EMBEDDINGS = "openai"
        settings.EMBEDDINGS_URL = fake.url
        settings.EMBEDDINGS_MODEL = "fake-embed"
        yield fake


def wait_for_embedding_thread() -> None:
    from stores import embedding

    deadline = time.monotonic() + 30
    while embedding.held():
        assert time.monotonic() < deadline, "the embedding thread never finished"
        time.sleep(0.05)


def test_vectors_are_not_checked_with_embeddings_off(write_client, store):
    add(write_client, "notes.txt", b"Lanterns are lit at dusk along the quay.")

    code, report = fsck_json()

    assert code == 0
    assert report["skipped"]["vectors"] == "EMBEDDINGS=off"


def test_missing_stale_and_orphaned_vectors_are_repaired(
    embedder, settings, write_client, store
):
    from stores import embedding
    from stores.models import Embedding

    ready = add(write_client, "ready.txt", b"Lanterns are lit at dusk on the quay.")
    wait_for_embedding_thread()
    stale = add(write_client, "stale.txt", b"Ledgers are balanced every Friday.")
    wait_for_embedding_thread()
    missing = add(write_client, "missing.txt", b"The harbour tide turns at noon.")
    wait_for_embedding_thread()
    assert Embedding.objects.count() == 3
    assert_clean()
    # Vectors of another model; none at all, and no task will make them; vectors
    # of chunks the document no longer has.
    Embedding.objects.filter(document=stale).update(model="old-model")
    Embedding.objects.filter(document=missing).delete()
    Embedding.objects.filter(document=ready).update(
        chunk_ids=(10**9).to_bytes(8, "little")
    )

    code, report = fsck_json()

    assert code == 1
    assert kinds(report) == ["vectors_missing", "vectors_orphaned", "vectors_stale"]
    subjects = {problem["kind"]: problem["subject"] for problem in report["problems"]}
    assert subjects == {
        "vectors_missing": f"document {missing.pk}",
        "vectors_orphaned": f"document {ready.pk}",
        "vectors_stale": f"document {stale.pk}",
    }

    fsck("--fix")
    wait_for_embedding_thread()

    model = embedding.model_name()
    assert sorted(Embedding.objects.values_list("document_id", "model")) == [
        (ready.pk, model),
        (stale.pk, model),
        (missing.pk, model),
    ]
    assert_clean()


def test_vectors_of_a_failed_document_are_deleted(embedder, write_client, store):
    from stores.models import Embedding

    document = add(write_client, "notes.txt", b"Lanterns are lit at dusk on the quay.")
    wait_for_embedding_thread()
    Document.objects.filter(pk=document.pk).update(status=Document.Status.FAILED)

    code, report = fsck_json()

    assert kinds(report) == ["chunk_count", "vectors_orphaned"] or kinds(report) == [
        "vectors_orphaned"
    ]
    fsck("--fix")
    assert not Embedding.objects.filter(document=document).exists()


def test_documents_being_embedded_by_this_process_are_not_orphans(
    embedder, settings, write_client, store
):
    """A db_worker's maintenance thread runs beside its tasks: while a task
    embeds, its documents are this process's and held, not abandoned."""
    import threading

    from stores import embedding, ownership
    from stores.models import Embedding

    settings.EMBEDDINGS = "off"  # ingested without queueing its vectors
    document = add(write_client, "notes.txt", b"Lanterns are lit at dusk on the quay.")
    settings.EMBEDDINGS = "openai"
    assert [pk for pk, _ in embedding.orphans()] == [document.pk]
    embedder.delay(2)
    worker = threading.Thread(
        target=embedding.embed,
        args=([document.pk],),
        kwargs={"owner": ownership.register()},
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not embedder.requests:
            assert time.monotonic() < deadline, "the embedding server was never asked"
            time.sleep(0.02)
        assert Document.objects.get(pk=document.pk).vector_owner == ownership.current()
        assert embedding.orphans() == []
    finally:
        worker.join()
    assert Embedding.objects.filter(document=document).exists()
    assert embedding.orphans() == []
