"""Every write to stores and documents goes through these functions.

The API, the admin, the tasks and the management commands all call them, so an
upload from the admin and one from the API are the same code path. They take
keyword arguments, run in transactions, start outside work (ingestion, remote
calls, file removal) from ``transaction.on_commit``, and raise the project's own
errors, which the API turns into the error shape.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from flamehaven.errors import (
    ApiError,
    DocumentNotFound,
    EmptyFile,
    FileSizeExceeded,
    StoreExists,
    StoreNotFound,
    TooManyFiles,
    UpstreamError,
    UpstreamUnavailable,
    ValidationFailed,
)
from flamehaven.rowmemo import RowMemo
from monitoring import metrics
from stores import ingestion
from stores.backends import get_backend
from stores.models import Chunk, Document, Store
from stores.uploads import safe_filename

log = structlog.get_logger(__name__)

_HEAD_BYTES = 8192
_HASH_BLOCK = 1024 * 1024


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
        _delete_remote(backend_impl.delete_store, store, remote=store.remote_name)
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
    """Delete the store with its documents, chunks, stored files and remote copy."""
    file_names = list(store.documents.values_list("file", flat=True))
    backend = get_backend(store)
    with transaction.atomic():
        store.delete()

    def cleanup() -> None:
        _delete_files(file_names)
        _delete_remote(backend.delete_store, store, remote=store.remote_name)

    transaction.on_commit(cleanup)
    log.info("store_deleted", store=store.name, documents=len(file_names))


def _delete_remote(delete, target, *, remote: str) -> None:
    """Delete a remote copy after ours is gone; if the backend cannot, log it.

    Ours is already deleted: a backend outage must not bring it back or fail the
    request, but what was left behind must be findable.
    """
    try:
        delete(target)
    except ApiError as exc:
        log.error("remote_copy_left_behind", remote=remote, error=exc.message)


def store_bump_revision(*, store_id: int) -> None:
    """Mark the store's searchable content as changed (search cache keys follow).

    One UPDATE with F(): concurrent bumps never lose one, and django-cachalot
    drops its cached store rows on commit, in every worker sharing the cache.
    """
    Store.objects.filter(pk=store_id).update(revision=F("revision") + 1)


def stores_bump_revisions() -> None:
    """Bump every store's revision: no search-cache entry written before is used."""
    Store.objects.update(revision=F("revision") + 1)


# --- Uploads --------------------------------------------------------------------


@dataclass
class _CheckedUpload:
    file: IO[bytes]
    filename: str
    size: int
    mime_type: str
    sha256: str


def _check_upload(file: IO[bytes], name: str) -> _CheckedUpload:
    """Validate one file without storing anything; raise the matching ApiError."""
    filename = safe_filename(name)
    size = getattr(file, "size", None)
    if size is None:
        file.seek(0, 2)
        size = file.tell()
    if size == 0:
        raise EmptyFile(f"'{filename}' is empty.", details={"filename": filename})
    if size > settings.MAX_FILE_SIZE_BYTES:
        raise FileSizeExceeded(
            f"'{filename}' is larger than the limit of {settings.MAX_FILE_SIZE_MB} MB.",
            details={"filename": filename, "max_bytes": settings.MAX_FILE_SIZE_BYTES},
        )
    file.seek(0)
    head = file.read(_HEAD_BYTES)
    mime_type = ingestion.detect_mime_type(filename=filename, head=head)
    file.seek(0)
    ingestion.inspect_upload(path=file, mime_type=mime_type)
    file.seek(0)
    digest = hashlib.sha256()
    while block := file.read(_HASH_BLOCK):
        digest.update(block)
    file.seek(0)
    return _CheckedUpload(file, filename, size, mime_type, digest.hexdigest())


def check_uploads(files: list[tuple[IO[bytes], str]]) -> list[_CheckedUpload]:
    """Validate the whole request first: one bad file rejects all, with details."""
    if not files:
        raise ValidationFailed(
            "No file was submitted.", details={"file": ["No file was submitted."]}
        )
    if len(files) > settings.MAX_FILES_PER_REQUEST:
        raise TooManyFiles(
            f"At most {settings.MAX_FILES_PER_REQUEST} files per request; "
            f"got {len(files)}.",
            details={"max_files": settings.MAX_FILES_PER_REQUEST, "got": len(files)},
        )
    checked, failures = [], []
    for index, (file, name) in enumerate(files):
        try:
            checked.append(_check_upload(file, name))
        except ApiError as exc:
            failures.append((index, name, exc))
    if not failures:
        return checked
    first = failures[0][2]
    if len(files) == 1:
        raise first
    per_file = {
        f"{index}:{name}": {"error": exc.code, "message": exc.message}
        for index, name, exc in failures
    }
    raise type(first)(
        f"{len(failures)} of {len(files)} files were rejected; nothing was stored. "
        f"First: {first.message}",
        details={"files": per_file},
    )


def documents_add(
    *, store: Store, files: list[tuple[IO[bytes], str]]
) -> list[tuple[Document, bool]]:
    """Store new files and queue their ingestion; ``(document, created)`` for each.

    A file whose content is already in the store is not stored again: the existing
    document comes back with ``created=False``.
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


def _store_checked(
    store: Store, checked: list[_CheckedUpload]
) -> list[tuple[Document, bool]]:
    results: list[tuple[Document, bool]] = []
    written: list[str] = []
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
                document, created = _store_one(store, upload, written)
                seen[upload.sha256] = document
                results.append((document, created))
                if created:
                    log.info(
                        "document_added",
                        store=store.name,
                        document_id=document.pk,
                        size_bytes=document.size_bytes,
                        mime_type=document.mime_type,
                    )
                    transaction.on_commit(lambda pk=document.pk: _enqueue_ingest(pk))
    except IntegrityError as exc:
        _delete_files(written)
        if not Store.objects.filter(pk=store.pk).exists():
            # Deleted by another request after this one looked it up: the
            # foreign key fails when the transaction commits.
            raise StoreNotFound(
                f"Store '{store.name}' not found", details={"store": store.name}
            ) from exc
        raise
    except BaseException:
        _delete_files(written)
        raise
    return results


def document_add(*, store: Store, file: IO[bytes], name: str) -> tuple[Document, bool]:
    [(document, created)] = documents_add(store=store, files=[(file, name)])
    return document, created


def _existing(store: Store, sha256: str) -> Document | None:
    return Document.objects.filter(store=store, sha256=sha256).first()


def _store_one(
    store: Store, upload: _CheckedUpload, written: list[str]
) -> tuple[Document, bool]:
    document = Document(
        store=store,
        filename=upload.filename,
        size_bytes=upload.size,
        mime_type=upload.mime_type,
        sha256=upload.sha256,
    )
    suffix = next(
        ext
        for ext, mime in ingestion.SUPPORTED_TYPES.items()
        if mime == upload.mime_type
    )
    content = upload.file if isinstance(upload.file, File) else File(upload.file)
    # A temporary upload is moved into storage rather than copied.
    document.file.save(f"upload{suffix}", content, save=False)
    written.append(document.file.name)
    try:
        with transaction.atomic():
            document.save()
    except IntegrityError:
        # The same content arrived concurrently from another request.
        existing = _existing(store, upload.sha256)
        if existing is None:
            raise
        return existing, False
    return document, True


# --- Ingestion ------------------------------------------------------------------


def _enqueue_ingest(document_id: int) -> None:
    from stores.tasks import ingest_document

    ingest_document.enqueue(document_id)


def document_ingest(*, document_id: int) -> Document | None:
    """Extract, chunk and index one document; a failure leaves it failed, chunkless."""
    document = Document.objects.select_related("store").filter(pk=document_id).first()
    if document is None:
        return None
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING)
    try:
        extracted = ingestion.extract_text(
            path=document.file.path, mime_type=document.mime_type
        )
        spans = ingestion.chunk_text(extracted)
    except ingestion.ExtractionError as exc:
        return _fail(document, str(exc))
    except Exception:
        log.exception("ingest_crashed", document_id=document.pk)
        return _fail(document, "An unexpected error stopped text extraction.")

    # The remote index first (Gemini stores): the new chunks and "ready" are
    # committed only when it has the document, so a re-indexed document stays
    # searchable through the old ones meanwhile.
    try:
        get_backend(document.store).add_document(document)
    except (UpstreamError, UpstreamUnavailable) as exc:
        return _fail(document, exc.message)

    with transaction.atomic():
        if document.chunk_count:  # a re-index replaces the previous chunks
            Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document=document,
                    store_id=document.store_id,
                    ordinal=ordinal,
                    text=span.text,
                    start_char=span.start_char,
                    end_char=span.end_char,
                    page=span.page,
                )
                for ordinal, span in enumerate(spans)
            ],
            batch_size=500,
        )
        document.status = Document.Status.READY
        document.error = ""
        document.chunk_count = len(spans)
        document.char_count = len(extracted.text)
        document.page_count = extracted.page_count
        document.save(
            update_fields=[
                "status",
                "error",
                "chunk_count",
                "char_count",
                "page_count",
                "updated_at",
            ]
        )
        store_bump_revision(store_id=document.store_id)
    log.info("document_ingested", document_id=document.pk, chunks=len(spans))
    return document


def _fail(document: Document, error: str) -> Document:
    if document.remote_name:  # a failed document is searchable nowhere
        _delete_remote(
            get_backend(document.store).delete_document,
            document,
            remote=document.remote_name,
        )
        document.remote_name = ""
    with transaction.atomic():
        Chunk.objects.filter(document=document).delete()
        document.status = Document.Status.FAILED
        document.error = error
        document.chunk_count = 0
        document.char_count = 0
        document.save(
            update_fields=[
                "status",
                "error",
                "chunk_count",
                "char_count",
                "remote_name",
                "updated_at",
            ]
        )
        store_bump_revision(store_id=document.store_id)
    log.warning("document_failed", document_id=document.pk, error=error)
    return document


def documents_requeue_stuck(*, older_than: timedelta) -> list[int]:
    """Queue again the documents a crashed worker left pending or processing.

    Only those untouched for ``older_than``, so a document being ingested right
    now is left alone. Returns their ids.
    """
    cutoff = timezone.now() - older_than
    stuck = list(
        Document.objects.filter(
            status__in=[Document.Status.PENDING, Document.Status.PROCESSING],
            updated_at__lt=cutoff,
        ).values_list("pk", flat=True)
    )
    for document_id in stuck:
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.PENDING, updated_at=timezone.now()
        )
        transaction.on_commit(lambda pk=document_id: _enqueue_ingest(pk))
    if stuck:
        log.warning("documents_requeued", count=len(stuck), document_ids=stuck[:50])
    return stuck


def document_get(*, store: Store, pk: int) -> Document:
    document = Document.objects.filter(store=store, pk=pk).first()
    if document is None:
        raise DocumentNotFound(
            f"Document {pk} not found in store '{store.name}'",
            details={"store": store.name, "document_id": pk},
        )
    return document


def document_reindex(*, document: Document) -> Document:
    """Run ingestion again (e.g. after a failure or a better extractor)."""
    with transaction.atomic():
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.PENDING, error=""
        )
        transaction.on_commit(lambda: _enqueue_ingest(document.pk))
    document.refresh_from_db()
    return document


def document_delete(*, document: Document) -> None:
    """Delete the document with its chunks, stored file and remote copy."""
    document_id, file_name = document.pk, document.file.name
    backend = get_backend(document.store)
    with transaction.atomic():
        document.delete()
        store_bump_revision(store_id=document.store_id)

    def cleanup() -> None:
        _delete_files([file_name])
        _delete_remote(backend.delete_document, document, remote=document.remote_name)

    transaction.on_commit(cleanup)
    log.info("document_deleted", document_id=document_id, store=document.store.name)


def _delete_files(names: list[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            log.warning("file_delete_failed", file=name)
