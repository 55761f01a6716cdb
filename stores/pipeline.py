"""The ingestion of one document: claim, extract, chunk, index, then finish or fail.

Tasks call :func:`ingest`; nothing here queues work or answers requests. Each
step reads in one direction, and only the owner that claimed the document may
write its outcome: :func:`_finish` and :func:`fail` lock the store row, then the
document row, and match on the owner, the same order in which deleting a store
or a document takes its locks, so a delete racing an ingestion waits for it or
wins outright, never half of each.
"""

from __future__ import annotations

import structlog
from cachalot.api import cachalot_disabled
from django.db import transaction

from flamehaven.errors import UpstreamError, UpstreamUnavailable
from stores import embedding, ownership
from stores.backends import delete_remote_quietly, get_backend
from stores.extraction import (
    ChunkSpan,
    ExtractedText,
    ExtractionError,
    chunk_text,
    extract_text,
)
from stores.models import Chunk, Document, Embedding, Store

log = structlog.get_logger(__name__)

UNEXPECTED = "An unexpected error stopped the ingestion; re-index to try again."


# django-cachalot caches none of the rows ingestion reads (documents, chunks,
# locked stores), yet keys every read by compiling and hashing its SQL before it
# finds that out: 13% of an ingestion on PostgreSQL (cProfile). Its reads are
# off here; its writes still invalidate (the store's revision bump).
@cachalot_disabled()
def ingest(*, document_id: int) -> Document | None:
    """Ingest a pending document; None when it is gone or another owner has it."""
    owner = ownership.register()
    ownership.hold(document_id)
    try:
        if not ownership.claim(document_id, owner=owner):
            log.info("ingest_skipped", document_id=document_id)
            return None
        document = (
            Document.objects.select_related("store").filter(pk=document_id).first()
        )
        if document is None:  # deleted between the claim and here
            return None
        try:
            return _ingest(document, owner)
        except Exception:
            log.exception("ingest_crashed", document_id=document_id)
            return fail(document, UNEXPECTED, owner=owner)
    finally:
        # Also when the database went away mid-way: the document, still ours
        # but no longer held, is then an orphan for the next sweep.
        ownership.release(document_id)


def _ingest(document: Document, owner: str) -> Document | None:
    try:
        extracted = extract_text(path=document.file.path, mime_type=document.mime_type)
        spans = chunk_text(extracted)
    except ExtractionError as exc:
        return fail(document, str(exc), owner=owner)
    except OSError as exc:  # the stored file is missing or unreadable
        log.warning("stored_file_unreadable", document_id=document.pk, error=str(exc))
        return fail(
            document, "The stored file could not be read; upload it again.", owner=owner
        )

    # The remote index first (Gemini stores): the new chunks and "ready" are
    # committed only when it has the document, so a re-indexed document stays
    # searchable through the old ones meanwhile.
    backend = get_backend(document.store)
    previous_remote = document.remote_name
    try:
        backend.add_document(document)
    except (UpstreamError, UpstreamUnavailable) as exc:
        return fail(document, exc.message, owner=owner)

    if _finish(document, extracted, spans, owner):
        log.info("document_ingested", document_id=document.pk, chunks=len(spans))
        return document
    # Deleted (or taken over) while we worked: what we made remotely must go.
    if document.remote_name and document.remote_name != previous_remote:
        delete_remote_quietly(
            backend.delete_document, document, remote=document.remote_name
        )
    log.info("ingest_abandoned", document_id=document.pk)
    return None


def _locked(document: Document, owner: str) -> Document | None:
    """Lock the store row, then the document row if ``owner`` still holds it."""
    if not Store.objects.select_for_update(no_key=True).filter(pk=document.store_id):
        return None
    return (
        Document.objects.select_for_update()
        .filter(pk=document.pk, owner=owner, status__in=ownership.ACTIVE)
        .first()
    )


def _finish(
    document: Document, extracted: ExtractedText, spans: list[ChunkSpan], owner: str
) -> bool:
    with transaction.atomic():
        if _locked(document, owner) is None:
            return False
        # A re-index replaces the chunks, and with them their vectors.
        Embedding.objects.filter(document=document).delete()
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
                    section=span.section,
                )
                for ordinal, span in enumerate(spans)
            ],
            batch_size=500,
        )
        document.status = Document.Status.READY
        document.error = ""
        document.owner = ""
        document.chunk_count = len(spans)
        document.char_count = len(extracted.text)
        document.page_count = extracted.page_count
        wants_vectors = document.store.backend == Store.Backend.LOCAL
        document.vector_owner = embedding.queue_owner() if wants_vectors else ""
        document.save(
            update_fields=[
                "status",
                "error",
                "owner",
                "chunk_count",
                "char_count",
                "page_count",
                "remote_name",
                "vector_owner",
                "updated_at",
            ]
        )
        Store.objects.filter(pk=document.store_id).bump_revision()
        if wants_vectors:
            embedding.queue_for([document.pk])
    return True


def fail(document: Document, error: str, *, owner: str) -> Document | None:
    """Keep the document as failed with ``error``, chunkless and searchable nowhere.

    Only while ``owner`` still holds it; None otherwise.
    """
    with transaction.atomic():
        locked = _locked(document, owner)
        if locked is None:
            return None
        remote_name = locked.remote_name
        Embedding.objects.filter(document=locked).delete()
        Chunk.objects.filter(document=locked).delete()
        locked.status = Document.Status.FAILED
        locked.error = error
        locked.owner = ""
        locked.chunk_count = 0
        locked.char_count = 0
        locked.remote_name = ""
        locked.save(
            update_fields=[
                "status",
                "error",
                "owner",
                "chunk_count",
                "char_count",
                "remote_name",
                "updated_at",
            ]
        )
        Store.objects.filter(pk=locked.store_id).bump_revision()
    if remote_name:
        locked.remote_name = remote_name
        delete_remote_quietly(
            get_backend(document.store).delete_document, locked, remote=remote_name
        )
        locked.remote_name = ""
    log.warning("document_failed", document_id=document.pk, error=error)
    return locked
