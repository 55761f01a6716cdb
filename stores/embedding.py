"""The embedding stage: vectors for ready documents, computed after ingestion.

A document is searchable lexically as soon as ingestion saves its chunks; its
vectors come after, in batches, from a background task: a db_worker runs it
(database backend), or a thread of the process that ingested the document
(immediate backend). Search uses them as soon as they are saved.

Ownership follows the rules of ingestion (stores.ownership): a ready document
without vectors names who will compute them in ``Document.vector_owner`` (a
Worker id, or "" while a database task waits), only that owner may save them,
and the maintenance round re-queues the documents whose owner is gone.

Vectors of another model than the configured one are stale: search ignores them,
and ``manage.py embed`` replaces them (new documents get the new model at once).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import structlog
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from embeddings import Embedder, EmbeddingError, embedder_from_settings
from stores import ownership
from stores.models import Chunk, Document, Embedding, Store

log = structlog.get_logger(__name__)

_lock = threading.Lock()
_loaded: dict[tuple, Embedder | None] = {}
# Documents whose vectors this process has queued in its thread (immediate
# backend) or is computing (any backend): one this process owns but does not
# hold was dropped.
_held: set[int] = set()


# --- The embedder -----------------------------------------------------------------


def _config() -> tuple:
    return (
        settings.EMBEDDINGS,
        settings.EMBEDDINGS_MODEL_DIR,
        settings.EMBEDDINGS_MODEL_SHA256,
        settings.EMBEDDINGS_URL,
        settings.EMBEDDINGS_MODEL,
        settings.EMBEDDINGS_API_KEY,
        str(settings.EMBEDDINGS_CACHE_DIR),
    )


def enabled() -> bool:
    return settings.EMBEDDINGS.strip().lower() != "off"


def embedder() -> Embedder | None:
    """This process's embedder, loaded on first use; None with EMBEDDINGS=off."""
    key = _config()
    if key in _loaded:
        return _loaded[key]
    with _lock:
        if key not in _loaded:
            mode, model_dir, sha256, url, model, api_key, cache_dir = key
            _loaded[key] = embedder_from_settings(
                mode,
                model_dir=model_dir or None,
                model_sha256=sha256 or None,
                url=url or None,
                model=model or None,
                api_key=api_key or None,
                cache_dir=cache_dir,
            )
            log.info("embedder_loaded", model=getattr(_loaded[key], "name", None))
    return _loaded[key]


def model_name() -> str | None:
    found = embedder()
    return found.name if found else None


def passage_text(title: str, section: str, text: str) -> str:
    """What a chunk is embedded as: its document's title and section first,
    which tells the model what the passage is about (the chunk's text often
    does not say)."""
    heading = " > ".join(part for part in (title, section) if part)
    return f"{heading}\n{text}" if heading else text


# --- State --------------------------------------------------------------------------


def vector_state(document: Document) -> str | None:
    """ "ready", "pending" (being computed), "stale" (another model's), or None
    when the document gets no vectors (EMBEDDINGS=off, a Gemini store, or not
    ready). Reads ``vector_model`` when the queryset has it (with_vector_model),
    else the document's Embedding row."""
    if (
        not enabled()
        or document.store.backend != Store.Backend.LOCAL
        or document.status != Document.Status.READY
    ):
        return None
    if hasattr(document, "vector_model"):
        saved = document.vector_model
    else:
        saved = (
            Embedding.objects.filter(document_id=document.pk)
            .values_list("model", flat=True)
            .first()
        )
    if saved is None:
        return "pending"
    return "ready" if saved == model_name() else "stale"


def with_vector_model(queryset):
    """Documents annotated with their vectors' model (None without vectors), so
    vector_state needs no query per document."""
    return queryset.annotate(vector_model=F("embedding__model"))


def wanted(queryset=None, *, model: str | None = None):
    """Ready documents of local stores without vectors: none at all, or, given
    ``model``, none of that model."""
    queryset = Document.objects.all() if queryset is None else queryset
    queryset = queryset.filter(
        status=Document.Status.READY, store__backend=Store.Backend.LOCAL
    )
    if model is None:
        return queryset.filter(embedding__isnull=True)
    return queryset.exclude(embedding__model=model)


# --- Queueing -----------------------------------------------------------------------


def queue_for(document_ids: Sequence[int]) -> None:
    """Queue the vectors of freshly ingested documents, as part of the current
    transaction (whose rows must already name ``queue_owner()`` as their
    vector_owner)."""
    if not enabled() or not document_ids:
        return
    from stores import tasks

    ids = list(document_ids)
    if tasks.runs_in_process():
        with _lock:
            _held.update(ids)
        transaction.on_commit(lambda: _thread_submit(ids))
    else:
        tasks.embed_documents.enqueue(ids)


def queue_owner() -> str:
    from stores import tasks

    return tasks.queue_owner() if enabled() else ""


# --- Computing and saving -----------------------------------------------------------


@dataclass
class _Pending:
    document_id: int
    store_id: int
    chunk_ids: list[int]
    texts: list[str]


def embed(document_ids: Iterable[int], *, owner: str, progress=None) -> int:
    """Compute and save the vectors of these documents, those still ``owner``'s
    to compute (or waiting in the queue); how many got vectors.

    Claiming first means a document re-indexed or re-queued meanwhile is left
    to its new owner: the save checks the owner again, under the row lock.
    """
    found = embedder()
    ids = list(document_ids)
    if found is None or not ids:
        return 0
    # Held while this runs, so that this process's own maintenance round (a
    # db_worker runs one in a thread) does not take them for abandoned.
    with _lock:
        _held.update(ids)
    try:
        queued = Document.objects.filter(pk__in=ids, vector_owner__in=["", owner])
        claimed = list(wanted(queued, model=found.name).values_list("pk", flat=True))
        if not claimed:
            return 0
        Document.objects.filter(pk__in=claimed).update(vector_owner=owner)
        done = 0
        size = max(1, settings.EMBEDDINGS_BATCH_DOCUMENTS)
        for start in range(0, len(claimed), size):
            batch = _read(claimed[start : start + size])
            vectors = found.embed_windows([t for item in batch for t in item.texts])
            done += _save(batch, vectors, found, owner)
            if progress is not None:
                progress(len(batch))
        return done
    finally:
        with _lock:
            _held.difference_update(ids)


def embed_everything(*, store: Store | None = None, progress=None) -> int:
    """Embed, in this thread, every ready document whose vectors are missing or
    of another model (``manage.py embed``); how many got vectors."""
    found = embedder()
    if found is None:
        return 0
    queryset = wanted(
        Document.objects.filter(store=store) if store else None, model=found.name
    )
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    owner = ownership.register()
    # Taken from whoever was to do them: a live owner's save then finds the
    # document no longer its own and drops its copy.
    Document.objects.filter(pk__in=ids).update(vector_owner=owner)
    return embed(ids, owner=owner, progress=progress)


def _read(document_ids: list[int]) -> list[_Pending]:
    documents = {
        pk: (filename, store_id)
        for pk, filename, store_id in Document.objects.filter(
            pk__in=document_ids
        ).values_list("pk", "filename", "store_id")
    }
    pending = {
        pk: _Pending(pk, documents[pk][1], [], [])
        for pk in document_ids
        if pk in documents  # a document deleted since the claim has nothing to do
    }
    chunks = Chunk.objects.filter(document_id__in=pending).order_by(
        "document_id", "ordinal"
    )
    for pk, document_id, section, text in chunks.values_list(
        "pk", "document_id", "section", "text"
    ):
        item = pending[document_id]
        item.chunk_ids.append(pk)
        item.texts.append(passage_text(documents[document_id][0], section, text))
    return list(pending.values())


def _save(batch: list[_Pending], windowed, found: Embedder, owner: str) -> int:
    """Save a batch's vectors, each document only while ``owner`` still holds it
    and its chunks are the ones embedded."""
    owners = windowed.owners  # row -> index of the chunk in the batch's texts
    chunk_of_text = [pk for item in batch for pk in item.chunk_ids]
    first = 0
    rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for item in batch:
        last = first + len(item.chunk_ids)
        mask = (owners >= first) & (owners < last)
        chunk_ids = np.asarray(chunk_of_text, dtype="<i8")[owners[mask]]
        rows[item.document_id] = (chunk_ids, windowed.vectors[mask])
        first = last
    store_ids = sorted({item.store_id for item in batch})
    with transaction.atomic():
        # Stores first, then documents: the order ingestion and deletes lock in.
        list(Store.objects.select_for_update(no_key=True).filter(pk__in=store_ids))
        locked = dict(
            Document.objects.select_for_update()
            .filter(
                pk__in=rows,
                status=Document.Status.READY,
                vector_owner=owner,
            )
            .values_list("pk", "store_id")
        )
        current: dict[int, list[int]] = {pk: [] for pk in locked}
        for document_id, chunk_id in (
            Chunk.objects.filter(document_id__in=locked)
            .order_by("document_id", "ordinal")
            .values_list("document_id", "pk")
        ):
            current[document_id].append(chunk_id)
        embedded = {item.document_id: item.chunk_ids for item in batch}
        saved = [pk for pk in locked if current[pk] == embedded[pk]]
        Embedding.objects.filter(document_id__in=saved).delete()
        Embedding.objects.bulk_create(
            [
                Embedding(
                    document_id=pk,
                    store_id=locked[pk],
                    model=found.name,
                    dimensions=found.dimensions,
                    chunk_ids=rows[pk][0].astype("<i8").tobytes(),
                    vectors=rows[pk][1].astype("<f2").tobytes(),
                )
                for pk in saved
            ]
        )
        Document.objects.filter(pk__in=saved).update(vector_owner="")
        Store.objects.filter(pk__in={locked[pk] for pk in saved}).bump_revision()
    if saved:
        log.info("vectors_saved", documents=len(saved), model=found.name)
    return len(saved)


def load_chunk_ids(embedding: Embedding) -> np.ndarray:
    """An Embedding row's chunk ids, one per vector."""
    return np.frombuffer(bytes(embedding.chunk_ids), dtype="<i8")


def load(embedding: Embedding) -> tuple[np.ndarray, np.ndarray]:
    """An Embedding row's (chunk ids, float32 vectors)."""
    chunk_ids = load_chunk_ids(embedding)
    vectors = np.frombuffer(bytes(embedding.vectors), dtype="<f2").astype(np.float32)
    return chunk_ids, vectors.reshape(len(chunk_ids), embedding.dimensions)


# --- Crash recovery -----------------------------------------------------------------


def orphans() -> list[tuple[int, str]]:
    """Ready documents without vectors that nobody alive will compute: (pk,
    vector_owner) as read. Read before the owners, like ingestion's orphans."""
    if not enabled():
        return []
    found = list(wanted().values_list("pk", "vector_owner"))
    if not found:
        return []
    from stores import tasks

    queued = (
        ownership.queued_document_ids(tasks.embed_documents)
        if any(not owner for _, owner in found)
        else set()
    )
    with _lock:
        held = set(_held)
    gone = ownership.abandoned(found, queued=queued, held=held)
    return [(pk, owner) for pk, owner in found if pk in gone]


def requeue_orphans() -> list[int]:
    """Queue again the vectors nobody alive will compute; the ids queued."""
    return [pk for pk, owner in orphans() if requeue(pk, owner=owner)]


def requeue(document_id: int, *, owner: str | None = None) -> bool:
    """Queue the document's vectors again (missing, or another model's) if it
    still wants them and, given ``owner``, still names that owner."""
    model = model_name()
    if model is None:
        return False
    documents = Document.objects.filter(pk=document_id)
    if owner is not None:
        documents = documents.filter(vector_owner=owner)
    with transaction.atomic():
        if not wanted(documents, model=model).update(vector_owner=queue_owner()):
            return False
        queue_for([document_id])
    return True


# --- The thread of the immediate backend --------------------------------------------

_queue: queue.Queue[list[int]] = queue.Queue()
_thread_pid: int | None = None


def _thread_submit(document_ids: list[int]) -> None:
    import os

    global _thread_pid
    with _lock:
        if _thread_pid != os.getpid():
            _thread_pid = os.getpid()
            threading.Thread(
                target=_thread_loop, name="flamehaven-embedding", daemon=True
            ).start()
    _queue.put(document_ids)


def _thread_loop() -> None:
    while True:
        ids = _queue.get()
        try:  # everything queued meanwhile goes into the same batches
            while True:
                ids.extend(_queue.get_nowait())
        except queue.Empty:
            pass
        try:
            run_now(ids)
        except Exception:
            log.exception("embedding_crashed", documents=len(ids))
        finally:
            connection.close()


def run_now(document_ids: list[int]) -> int:
    """Embed in this thread the documents this process holds; releases them."""
    try:
        return embed(document_ids, owner=ownership.register())
    except (EmbeddingError, DatabaseError) as exc:
        # Left to the maintenance round, which queues them again.
        log.warning("embedding_failed", documents=len(document_ids), error=str(exc))
        return 0
    finally:
        with _lock:
            _held.difference_update(document_ids)


def held() -> set[int]:
    """The documents this process's embedding thread has yet to finish."""
    with _lock:
        return set(_held)


def reset() -> None:
    """Forget held documents (tests)."""
    with _lock:
        _held.clear()
