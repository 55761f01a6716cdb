"""Dense retrieval in process: a store's vectors as one float32 matrix.

Each process loads a store's vectors (stores.models.Embedding rows of the
configured model) on the store's first search and keeps them under the store's
revision. Every change of its chunks or vectors bumps the revision, so the
matrix is replaced exactly when the search cache is; a new revision reads only
the documents whose vectors are new or changed (the background stage saves a
batch of documents at a time, each bumping the revision), and copies the rest
from the matrix it replaces.

Stored as float16 (half the rows' size); searched as float32, since numpy has
no fast float16 or int8 matrix product. A chunk has one row per window of its
text and scores its best window.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import ThreadpoolController

from stores.models import Embedding

if TYPE_CHECKING:
    from datetime import datetime

    from stores.models import Store

# A process keeps at most this many stores' matrices (least recently used out).
MAX_STORES = 32
# Above this many windows a search scores each chunk's mean window first (a
# third of the rows), then the best PREFILTER_FACTOR x candidates exactly: the
# full product over a 20,000-document store (468,547 windows) took 49 ms here.
PREFILTER_WINDOWS = 100_000
PREFILTER_FACTOR = 4
# A matrix-vector product is memory-bound: OpenBLAS's second thread gains a
# little on an idle machine and loses a lot on a busy one, which a web server
# is (46,595 x 384 rows: idle 1.9 ms on two threads, 2.6 on one; busy 8.0 and
# 3.7).
_blas = ThreadpoolController()


@dataclass(frozen=True)
class StoreVectors:
    revision: int
    model: str
    vectors: np.ndarray  # (windows, dimensions) float32, unit rows
    window_chunks: np.ndarray  # (windows,) int64: each row's chunk
    chunk_ids: np.ndarray  # (chunks,) int64: the chunks that have vectors
    starts: np.ndarray  # (chunks,) the first window row of each chunk
    by_id: np.ndarray  # (chunks,) positions in chunk_ids, in chunk id order
    max_windows: int  # the most windows a chunk has
    # (chunks, dimensions): each chunk's mean window, as a unit row; big stores
    # only (more than PREFILTER_WINDOWS windows), None below.
    centroids: np.ndarray | None
    # document id -> (when its vectors were saved, first row, end row)
    documents: dict[int, tuple[datetime, int, int]] = field(repr=False)

    @property
    def nbytes(self) -> int:
        arrays = (self.vectors, self.window_chunks, self.chunk_ids, self.starts)
        extra = 0 if self.centroids is None else self.centroids.nbytes
        return sum(a.nbytes for a in arrays) + self.by_id.nbytes + extra

    def positions(self, chunk_ids: list[int]) -> np.ndarray:
        """Where each chunk is in ``chunk_ids``, -1 if absent."""
        if not len(self.chunk_ids) or not chunk_ids:
            return np.full(len(chunk_ids), -1)
        wanted = np.asarray(chunk_ids, dtype=np.int64)
        ordered = self.chunk_ids[self.by_id]
        at = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
        return np.where(ordered[at] == wanted, self.by_id[at], -1)

    def nearest(self, query: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` chunks most similar to the query (a unit vector), best
        first: their positions and cosines (their best window's).

        A big store first scores each chunk's mean window (``centroids``), a
        third of the rows, and then only the best PREFILTER_FACTOR x count
        chunks on their windows.
        """
        if not len(self.chunk_ids) or count <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.centroids is None:
            return self._best(_product(self.vectors, query), count)
        approximate = _product(self.centroids, query)
        taken = min(len(approximate), count * PREFILTER_FACTOR)
        candidates = np.argpartition(-approximate, taken - 1)[:taken]
        exact = self.cosines(query, candidates)
        order = np.argsort(-exact, kind="stable")[:count]
        return candidates[order], exact[order]

    def cosines(self, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The cosines of the chunks at ``positions`` (their best window's)."""
        if not len(positions):
            return np.zeros(0, np.float32)
        ends = np.r_[self.starts[1:], len(self.vectors)]
        lengths = ends[positions] - self.starts[positions]
        offsets = np.r_[0, np.cumsum(lengths)[:-1]]
        rows = np.repeat(self.starts[positions] - offsets, lengths) + np.arange(
            lengths.sum()
        )
        return np.maximum.reduceat(self.vectors[rows] @ query, offsets)

    def _best(self, scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` chunks whose best window scores highest, without a
        maximum per chunk over every window.

        A window that beats the best window of a chunk in the top ``count`` can
        only belong to one of the count - 1 chunks above it, so the best window
        of each top chunk is among the top (count - 1) x max_windows + 1.
        """
        windows = min(len(scores), count * self.max_windows)
        top = np.argpartition(-scores, windows - 1)[:windows]
        top = top[np.argsort(-scores[top], kind="stable")]
        _, first = np.unique(self.window_chunks[top], return_index=True)
        rows = top[np.sort(first)][:count]  # each chunk's best window, best first
        return np.searchsorted(self.starts, rows, side="right") - 1, scores[rows]


def _product(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    with _blas.limit(limits=1, user_api="blas"):
        return matrix @ query


_lock = threading.Lock()
_loading = threading.Lock()
_cache: dict[int, StoreVectors] = {}


def store_vectors(store: Store, model: str) -> StoreVectors:
    """The store's vectors of ``model``, as of ``store.revision`` or later."""
    key = store.pk
    found = _cache.get(key)
    if found is not None and found.revision >= store.revision and found.model == model:
        return found
    with _loading:  # one load at a time; the others then find it
        found = _cache.get(key)
        if found is None or found.revision < store.revision or found.model != model:
            with _lock:  # not kept while its successor loads: copied from
                previous = _cache.pop(key, None)
            if previous is not None and previous.model != model:
                previous = None
            found = _load(store, model, previous)
            with _lock:
                _cache[key] = found
                while len(_cache) > MAX_STORES:
                    _cache.pop(next(iter(_cache)))
    return found


def _load(store: Store, model: str, previous: StoreVectors | None) -> StoreVectors:
    """The store's matrix now: rows of documents whose vectors are unchanged
    since ``previous`` copied from it, the others read from the database."""
    # The revision is read before the rows: rows saved meanwhile only make the
    # matrix newer than its label, and the next revision replaces it anyway.
    revision = (
        type(store)
        .objects.filter(pk=store.pk)
        .values_list("revision", flat=True)
        .first()
        or store.revision
    )
    rows = Embedding.objects.filter(store_id=store.pk, model=model)
    saved = dict(rows.order_by("document_id").values_list("document_id", "created_at"))
    kept = previous.documents if previous is not None else {}
    fresh = {
        document_id: (chunk_ids, vectors, dimensions)
        for document_id, chunk_ids, vectors, dimensions in rows.filter(
            document_id__in=[d for d, at in saved.items() if kept.get(d, (0,))[0] != at]
        ).values_list("document_id", "chunk_ids", "vectors", "dimensions")
    }
    sizes = {
        document_id: (
            len(fresh[document_id][0]) // 8
            if document_id in fresh
            else kept[document_id][2] - kept[document_id][1]
        )
        for document_id in saved
        if document_id in fresh or document_id in kept
    }
    total = sum(sizes.values())
    dimensions = (
        next(iter(fresh.values()))[2]
        if fresh
        else (previous.vectors.shape[1] if previous is not None else 1)
    )
    matrix = np.empty((total, dimensions), np.float32)
    window_chunks = np.empty(total, np.int64)
    documents: dict[int, tuple[datetime, int, int]] = {}
    row = 0
    for document_id, size in sizes.items():
        end = row + size
        if document_id in fresh:
            chunk_ids, vectors, _ = fresh.pop(document_id)  # freed as it goes
            window_chunks[row:end] = np.frombuffer(chunk_ids, dtype="<i8")
            matrix[row:end] = np.frombuffer(vectors, dtype="<f2").reshape(
                size, dimensions
            )
        else:
            _, first, last = kept[document_id]
            window_chunks[row:end] = previous.window_chunks[first:last]
            matrix[row:end] = previous.vectors[first:last]
        documents[document_id] = (saved[document_id], row, end)
        row = end
    # A chunk's windows are consecutive rows: a chunk starts where the id changes.
    starts = np.flatnonzero(np.r_[True, window_chunks[1:] != window_chunks[:-1]])
    starts = starts[starts < total]  # none when there are no rows
    chunk_ids = window_chunks[starts]
    centroids = _centroids(matrix, starts) if total > PREFILTER_WINDOWS else None
    return StoreVectors(
        revision=revision,
        model=model,
        vectors=matrix,
        window_chunks=window_chunks,
        chunk_ids=chunk_ids,
        starts=starts,
        by_id=np.argsort(chunk_ids, kind="stable"),
        max_windows=int(np.diff(np.r_[starts, total]).max()) if total else 0,
        documents=documents,
        centroids=centroids,
    )


def _centroids(matrix: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each chunk's mean window, as a unit row. Summed window by window: a
    chunk has a handful, and np.add.reduceat over the rows took 4.9 s at
    468,547 windows where this takes 0.4 s."""
    lengths = np.diff(np.r_[starts, len(matrix)])
    sums = matrix[starts]
    for k in range(1, int(lengths.max())):
        longer = np.flatnonzero(lengths > k)
        sums[longer] += matrix[starts[longer] + k]
    sums /= np.linalg.norm(sums, axis=1, keepdims=True)
    return sums


def clear() -> None:
    with _lock:
        _cache.clear()
