"""Who finishes an ingestion: claims, busy re-indexes, and the sweep for orphans.

These run in one process against rows set up the way a crash leaves them; the
crashes themselves (real processes killed with real signals) are in
tests/stores/test_crashes.py.
"""

import io
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone

from stores import ownership, services
from stores.models import Chunk, Document, Worker
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = b"Lighthouses keep their lamps lit through the winter storms."


def _worker(worker_id: str, *, hostname: str = "elsewhere", age_sec: float = 0, pid=1):
    now = timezone.now()
    return Worker.objects.create(
        id=worker_id,
        kind="worker",
        hostname=hostname,
        pid=pid,
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=age_sec),
    )


def _stuck(store, *, status="processing", owner="", attempts=1, name="s.txt"):
    """A stored document left the way a crash leaves it: no chunks, not ready."""
    document, _ = services.document_add(
        store=store, file=ContentFile(TEXT + name.encode()), name=name
    )
    Chunk.objects.filter(document=document).delete()
    Document.objects.filter(pk=document.pk).update(
        status=status, owner=owner, attempts=attempts, chunk_count=0
    )
    return document


def _maintenance() -> str:
    out = io.StringIO()
    call_command("maintenance", stdout=out)
    return out.getvalue()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_document_whose_owner_stopped_its_heartbeat_is_ingested_again(store):
    _worker("gone", age_sec=3600)
    _worker("alive")
    orphan = _stuck(store, owner="gone", name="a.txt")
    busy = _stuck(store, owner="alive", name="b.txt")

    out = _maintenance()

    assert "Requeued 1 document(s)" in out
    orphan.refresh_from_db()
    assert (orphan.status, orphan.owner, orphan.chunk_count) == ("ready", "", 1)
    assert Document.objects.get(pk=busy.pk).status == "processing"


def test_an_owner_on_this_host_is_gone_as_soon_as_its_process_is(store):
    import socket

    _worker("killed", hostname=socket.gethostname(), pid=_dead_pid())
    orphan = _stuck(store, owner="killed")

    assert [o.pk for o in ownership.orphans()] == [orphan.pk]
    _maintenance()
    assert Document.objects.get(pk=orphan.pk).status == "ready"


def test_a_document_owned_by_no_worker_row_is_an_orphan(store):
    orphan = _stuck(store, status="pending", owner="never-registered")

    _maintenance()

    assert Document.objects.get(pk=orphan.pk).status == "ready"


def test_this_process_releases_what_it_no_longer_holds(store):
    me = ownership.register()
    dropped = _stuck(store, owner=me, name="dropped.txt")
    held = _stuck(store, owner=me, name="held.txt")
    ownership.hold(held.pk)

    assert [o.pk for o in ownership.orphans()] == [dropped.pk]


def test_an_ingestion_that_keeps_killing_its_process_ends_failed(store, settings):
    settings.INGEST_MAX_ATTEMPTS = 3
    orphan = _stuck(store, owner="gone", attempts=3)

    _maintenance()

    orphan.refresh_from_db()
    assert orphan.status == "failed"
    assert "interrupted 3 times" in orphan.error
    assert orphan.owner == ""
    assert not Chunk.objects.filter(document=orphan).exists()


def test_reindex_of_a_busy_document_is_refused(write_client, store):
    _worker("alive")
    busy = _stuck(store, owner="alive")

    response = write_client.post(f"/api/stores/default/documents/{busy.pk}/reindex/")

    assert response.status_code == 409
    assert response.json()["error"] == "DOCUMENT_BUSY"
    assert response.json()["details"]["status"] == "processing"
    assert Document.objects.get(pk=busy.pk).owner == "alive"


def test_reindex_of_an_orphaned_document_starts_it_again(write_client, store):
    orphan = _stuck(store, owner="gone")

    response = write_client.post(f"/api/stores/default/documents/{orphan.pk}/reindex/")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert Chunk.objects.filter(document=orphan).count() == 1


def test_a_second_reindex_while_one_is_queued_is_refused(write_client, store, settings):
    document = _stuck(store, status="ready")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    url = f"/api/stores/default/documents/{document.pk}/reindex/"

    first = write_client.post(url)
    second = write_client.post(url)

    assert first.status_code == 202
    assert (second.status_code, second.json()["error"]) == (409, "DOCUMENT_BUSY")
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)
    document.refresh_from_db()
    assert (document.status, document.chunk_count) == ("ready", 1)


def test_uploading_a_stuck_document_again_restarts_its_ingestion(write_client, store):
    orphan = _stuck(store, status="pending", owner="gone", name="again.txt")

    response = upload(write_client, "default", {"again.txt": TEXT + b"again.txt"})

    assert response.status_code == 201
    assert response.json()["id"] == orphan.pk
    assert response.json()["status"] == "ready"
    assert Document.objects.count() == 1


def test_uploading_a_stuck_document_again_queues_it(write_client, store, settings):
    orphan = _stuck(store, status="processing", owner="gone", name="q.txt")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

    response = upload(write_client, "default", {"q.txt": TEXT + b"q.txt"})

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert Document.objects.get(pk=orphan.pk).owner == ""  # the queue holds it
    assert ownership.orphans() == []


def test_a_task_run_twice_ingests_once(store, settings):
    from stores.pipeline import ingest

    document = _stuck(store, status="pending", owner="", attempts=0)

    first = ingest(document_id=document.pk)
    second = ingest(document_id=document.pk)

    assert first is not None and second is None
    document.refresh_from_db()
    assert (document.status, document.chunk_count, document.attempts) == (
        "ready",
        1,
        1,
    )


def test_a_queued_task_whose_worker_died_is_marked_failed(store, settings):
    from django_tasks_db.models import DBTaskResult

    document = _stuck(store, status="ready")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    services.document_reindex(document=document)
    task = DBTaskResult.objects.get()
    task.claim("gone")  # a worker took it, then died before the document
    assert ownership.orphans() == [ownership.Orphan(document.pk, "pending", "", 0)]

    assert ownership.fail_lost_tasks() == 1
    task.refresh_from_db()
    assert task.status == "FAILED"
    assert task.exception_class_path == "stores.ownership.WorkerLost"


def test_deleting_a_document_whose_store_was_just_deleted_is_404(write_client, store):
    document = _stuck(store, status="ready", name="late.txt")
    stale = Document.objects.get(pk=document.pk)  # as a racing request read it
    services.store_delete(store=store)

    from flamehaven.errors import DocumentNotFound

    with pytest.raises(DocumentNotFound):
        services.document_delete(document=stale)


def test_a_task_dropped_by_a_live_worker_is_failed_and_its_document_requeued(
    store, settings
):
    from django_tasks_db.models import DBTaskResult

    document = _stuck(store, status="ready", name="dropped.txt")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    services.document_reindex(document=document)
    _worker("alive")
    task = DBTaskResult.objects.get()
    task.claim("alive")  # then the database went away before the document
    assert ownership.orphans() == []  # a live worker's running task holds it

    assert ownership.fail_lost_tasks(dropped_by="alive") == 1

    assert [o.pk for o in ownership.orphans()] == [document.pk]
    task.refresh_from_db()
    assert task.status == "FAILED"


def test_a_reindex_answer_never_loads_a_store_deleted_meanwhile(store, settings):
    document = _stuck(store, status="ready", name="gone.txt")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

    queued = services.document_reindex(document=document)
    services.store_delete(store=store)

    assert queued.store.name == "default"  # loaded with the document, not later
