"""Every write to stores and documents goes through these functions.

The API, the admin, the tasks and the management commands all call them, so an
upload from the admin and one from the API are the same code path. They take
keyword arguments, run in transactions, start outside work (ingestion, remote
calls, file removal) from ``transaction.on_commit``, and raise the project's own
errors, which the API turns into the error shape.
"""

from __future__ import annotations

import errno
import os
import time
from typing import IO

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files import File
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet

from flamehaven.errors import (
    ApiError,
    DocumentBusy,
    DocumentNotFound,
    InsufficientStorage,
    StoreExists,
    StoreNotFound,
    ValidationFailed,
)
from flamehaven.rowmemo import RowMemo
from monitoring import metrics
from stores import filetypes, ownership, pipeline, tasks
from stores.backends import delete_remote_quietly, get_backend
from stores.models import Document, Store, document_upload_to
from stores.uploads import CheckedUpload, check_uploads

log = structlog.get_logger(__name__)


# --- Stores ---------------------------------------------------------------------


def gemini_configured() -> bool:
    return bool(settings.GEMINI_API_KEY)


def default_backend() -> str:
    return Store.Backend.GEMINI if gemini_configured() else Store.Backend.LOCAL


def stores_with_counts() -> QuerySet[Store]:
    """Stores annotated with their document counts by status (one query)."""
    counts = {
        f"documents_{status}": Count("documents", filter=Q(documents__status=status))
        for status in Document.Status.values
    }
    # Meta.ordering does not apply to GROUP BY queries, so order explicitly.
    return Store.objects.annotate(
        documents_total=Count("documents"), **counts
    ).order_by("name")


def store_get(*, name: str) -> Store:
    store = Store.objects.filter(name=name).first()
    if store is None:
        raise StoreNotFound(f"Store '{name}' not found", details={"store": name})
    return store


# Stores by name for hot read paths (search); see flamehaven.rowmemo.
_store_rows = RowMemo("stores_store")


def store_for_read(*, name: str) -> Store:
    """store_get for hot read paths: the row is shared, never change it."""
    return _store_rows.fetch(name, lambda: store_get(name=name))


def store_create(
    *, name: str, description: str = "", backend: str | None = None
) -> Store:
    backend = backend or default_backend()
    if backend == Store.Backend.GEMINI and not gemini_configured():
        raise ValidationFailed(
            "Gemini is not configured on this server.",
            details={"backend": ["Set GEMINI_API_KEY to create Gemini stores."]},
        )
    if backend not in Store.Backend.values:
        raise ValidationFailed(details={"backend": [f"Unknown backend '{backend}'."]})
    store = Store(name=name, description=description, backend=backend)
    try:
        store.full_clean(validate_unique=False, validate_constraints=False)
    except DjangoValidationError as exc:
        raise ValidationFailed(details=exc.message_dict) from exc
    exists = StoreExists(f"Store '{name}' already exists", details={"store": name})
    if Store.objects.filter(name=name).exists():
        raise exists
    # The remote store first, outside any transaction (no database lock is held
    # while Gemini answers): if Gemini cannot make it, no row is made either.
    backend_impl = get_backend(store)
    backend_impl.create_store(store)
    try:
        with transaction.atomic():
            store.save()
    except IntegrityError as exc:  # created concurrently under the same name
        delete_remote_quietly(
            backend_impl.delete_store, store, remote=store.remote_name
        )
        raise exists from exc
    log.info("store_created", store=name, backend=backend)
    return store


def store_update(*, store: Store, description: str) -> Store:
    """Only the description changes: name and backend are fixed at creation."""
    store.description = description
    store.save(update_fields=["description", "updated_at"])
    log.info("store_updated", store=store.name)
    return store


def store_delete(*, store: Store) -> None:
    """Delete the store with its documents, chunks, stored files and remote copy.

    The store row is locked first: an upload or ingestion committing into this
    store waits for the delete and then finds the store gone, so the delete
    never fails on a row added meanwhile and nothing is left behind.
    """
    backend = get_backend(store)
    with transaction.atomic():
        if not Store.objects.select_for_update().filter(pk=store.pk).exists():
            raise StoreNotFound(
                f"Store '{store.name}' not found", details={"store": store.name}
            )
        file_names = list(
            Document.objects.filter(store=store).values_list("file", flat=True)
        )
        store.delete()

    def cleanup() -> None:
        _delete_files(file_names)
        _remove_store_folder(store)
        delete_remote_quietly(backend.delete_store, store, remote=store.remote_name)

    transaction.on_commit(cleanup)
    log.info("store_deleted", store=store.name, documents=len(file_names))


def store_bump_revision(*, store_id: int) -> None:
    """Mark the store's searchable content as changed (search cache keys follow)."""
    Store.objects.filter(pk=store_id).bump_revision()


def stores_bump_revisions() -> None:
    """Bump every store's revision: no search-cache entry written before is used."""
    Store.objects.bump_revision()


# --- Uploads --------------------------------------------------------------------


def documents_add(
    *, store: Store, files: list[tuple[IO[bytes], str]]
) -> list[tuple[Document, bool]]:
    """Store new files and queue their ingestion; ``(document, created)`` for each.

    A file whose content is already in the store is not stored again: the existing
    document comes back with ``created=False`` (and, if its ingestion was left
    behind by a process that died, that ingestion starts again).
    """
    started = time.perf_counter()
    try:
        checked = check_uploads(files)
    except ApiError:
        metrics.FILE_UPLOADS.labels(store.name, "rejected").inc(len(files) or 1)
        raise
    results = _store_checked(store, checked)
    for document, created in results:
        metrics.FILE_UPLOADS.labels(
            store.name, "success" if created else "duplicate"
        ).inc()
        if created:
            metrics.FILE_UPLOAD_SIZE.observe(document.size_bytes)
    # With immediate tasks this includes the indexing (on commit, above).
    metrics.FILE_UPLOAD_DURATION.observe(time.perf_counter() - started)
    return results


def document_add(*, store: Store, file: IO[bytes], name: str) -> tuple[Document, bool]:
    [(document, created)] = documents_add(store=store, files=[(file, name)])
    return document, created


def _store_checked(
    store: Store, checked: list[CheckedUpload]
) -> list[tuple[Document, bool]]:
    results: list[tuple[Document, bool]] = []
    written: list[str] = []
    owner = tasks.queue_owner()
    try:
        with transaction.atomic():
            # Content already in the store (or twice in this request) is not
            # stored again.
            seen = {
                document.sha256: document
                for document in Document.objects.filter(
                    store=store, sha256__in={upload.sha256 for upload in checked}
                )
            }
            for upload in checked:
                document = seen.get(upload.sha256)
                if document is not None:
                    results.append((document, False))
                    continue
                document, created = _store_one(store, upload, owner, written)
                seen[upload.sha256] = document
                results.append((document, created))
                if created:
                    tasks.enqueue_ingest(document.pk)
                    log.info(
                        "document_added",
                        store=store.name,
                        document_id=document.pk,
                        size_bytes=document.size_bytes,
                        mime_type=document.mime_type,
                    )
    except (IntegrityError, FileNotFoundError) as exc:
        _delete_files(written)
        if not Store.objects.filter(pk=store.pk).exists():
            # Deleted by another request after this one looked it up: the
            # foreign key fails when the transaction commits, or the store's
            # folder went between storage creating it and writing the file.
            # Our files came after the delete emptied the folder; the last of
            # them takes it.
            _remove_store_folder(store)
            raise StoreNotFound(
                f"Store '{store.name}' not found", details={"store": store.name}
            ) from exc
        raise
    except BaseException:
        _delete_files(written)
        raise
    restarted = _restart_orphans([d for d, created in results if not created])
    return [
        (restarted.get(document.pk, document), created) for document, created in results
    ]


def _store_one(
    store: Store, upload: CheckedUpload, owner: str, written: list[str]
) -> tuple[Document, bool]:
    document = Document(
        store=store,
        filename=upload.filename,
        size_bytes=upload.size,
        mime_type=upload.mime_type,
        sha256=upload.sha256,
        owner=owner,
    )
    name = document_upload_to(
        document, f"upload{filetypes.suffix_for(upload.mime_type)}"
    )
    written.append(name)  # before writing: a partial file is removed too
    content = upload.file if isinstance(upload.file, File) else File(upload.file)
    try:
        # A temporary upload is moved into storage rather than copied.
        document.file.name = default_storage.save(name, content)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("storage_full", store=store.name, error=str(exc))
            raise InsufficientStorage(
                "There is no room left to store the file; nothing was stored.",
                details={"filename": upload.filename},
            ) from exc
        raise
    written[-1] = document.file.name
    try:
        with transaction.atomic():
            document.save()
    except IntegrityError:
        # The same content arrived concurrently from another request.
        existing = Document.objects.filter(store=store, sha256=upload.sha256).first()
        if existing is None:
            raise
        _delete_files([written.pop()])
        return existing, False
    return document, True


def _restart_orphans(documents: list[Document]) -> dict[int, Document]:
    """Start again the ingestion of documents whose owner is gone."""
    active = [d.pk for d in documents if d.status in ownership.ACTIVE]
    restarted = {}
    for orphan in ownership.orphans(active) if active else []:
        if _requeue(orphan):
            document = Document.objects.get(pk=orphan.pk)
            document.restarted = True  # new work, for the upload's answer
            restarted[orphan.pk] = document
    return restarted


def _requeue(orphan: ownership.Orphan) -> bool:
    owner = tasks.queue_owner()  # registers this process, outside the transaction
    with transaction.atomic():
        if not ownership.take(orphan, owner=owner):
            return False
        tasks.enqueue_ingest(orphan.pk)
    log.warning("ingestion_restarted", document_id=orphan.pk, owner=orphan.owner)
    return True


def documents_requeue_orphans() -> list[int]:
    """Queue again every document whose ingestion nobody alive will finish."""
    return [orphan.pk for orphan in ownership.orphans() if document_recover(orphan)]


def document_recover(orphan: ownership.Orphan) -> bool:
    """Queue an orphan's ingestion again; True if it was queued.

    A document whose ingestion has already taken its process down
    INGEST_MAX_ATTEMPTS times (a file that kills the extractor, say) is kept as
    failed instead, so one bad file cannot crash workers forever.
    """
    if orphan.attempts < settings.INGEST_MAX_ATTEMPTS:
        return _requeue(orphan)
    document = Document.objects.select_related("store").filter(pk=orphan.pk).first()
    if document is not None:
        pipeline.fail(
            document,
            f"The ingestion was interrupted {orphan.attempts} times (the process "
            "running it stopped); re-index to try again.",
            owner=orphan.owner,
        )
    return False


# --- Documents ------------------------------------------------------------------


def document_get(*, store: Store, pk: int) -> Document:
    document = (
        Document.objects.select_related("store").filter(store=store, pk=pk).first()
    )
    if document is None:
        raise DocumentNotFound(
            f"Document {pk} not found in store '{store.name}'",
            details={"store": store.name, "document_id": pk},
        )
    return document


def document_reindex(*, document: Document) -> Document:
    """Run ingestion again (e.g. after a failure or a better extractor).

    One ingestion at a time: a document already pending or processing is
    refused with DOCUMENT_BUSY, unless its owner is gone, when it starts again.
    """
    owner = tasks.queue_owner()  # registers this process, outside the transaction
    with transaction.atomic():
        queued = ownership.queue_again(document.pk, owner=owner)
        if queued:
            tasks.enqueue_ingest(document.pk)
    if not queued:
        current = Document.objects.filter(pk=document.pk).first()
        if current is None:
            raise DocumentNotFound(
                f"Document {document.pk} not found",
                details={"document_id": document.pk},
            )
        if not _restart_orphans([current]):
            raise DocumentBusy(
                f"Document {document.pk} is being ingested; re-index it once it "
                "is ready or failed.",
                details={"document_id": document.pk, "status": current.status},
            )
    # Ingestion may have run already (immediate tasks), and a delete after it.
    # The store comes in the same query: one deleted from here on must not be
    # loaded lazily by the serializer (Store.DoesNotExist, found by bench/soak).
    current = Document.objects.select_related("store").filter(pk=document.pk).first()
    if current is None:
        raise DocumentNotFound(
            f"Document {document.pk} was deleted while it was re-indexed",
            details={"document_id": document.pk},
        )
    return current


def document_delete(*, document: Document) -> None:
    """Delete the document with its chunks, stored file and remote copy.

    Locks the store row and then the document row, as an ingestion finishing
    does, so a delete during a re-index waits for it and then removes it all;
    a delete that lost a race with its store's delete is 404.
    """
    with transaction.atomic():
        store = (
            Store.objects.select_for_update(no_key=True)
            .filter(pk=document.store_id)
            .first()
        )
        current = (
            Document.objects.select_for_update().filter(pk=document.pk).first()
            if store is not None
            else None
        )
        if current is None:
            raise DocumentNotFound(
                f"Document {document.pk} not found",
                details={"document_id": document.pk},
            )
        current.delete()
        store_bump_revision(store_id=store.pk)
    backend = get_backend(store)

    def cleanup() -> None:
        _delete_files([current.file.name])
        delete_remote_quietly(
            backend.delete_document, current, remote=current.remote_name
        )

    transaction.on_commit(cleanup)
    log.info("document_deleted", document_id=document.pk, store=store.name)


def _delete_files(names: list[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            log.warning("file_delete_failed", file=name)


def _remove_store_folder(store: Store) -> None:
    """Remove the store's (now empty) folder of stored files, on a local disk."""
    if not isinstance(default_storage, FileSystemStorage):
        return
    folder = default_storage.path(f"documents/{store.uid.hex}")
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        # Not empty: an upload racing the delete still has its file there, and
        # removes the folder after it (manage.py fsck reports what remains).
        log.info("store_folder_left", store=store.name, error=exc.strerror)
