"""Dense retrieval in process: a store's vectors as one float32 matrix.

Each process loads a store's vectors (stores.models.Embedding rows of the
configured model) on the store's first search and keeps them under the store's
revision. Every change of its chunks or vectors bumps the revision, so the
matrix is replaced exactly when the search cache is.

Stored as float16 (half the rows' size); searched as float32, since numpy has
no fast float16 or int8 matrix product. A chunk has one row per window of its
text and scores its best window.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stores import embedding
from stores.models import Embedding

if TYPE_CHECKING:
    from stores.models import Store

# A process keeps at most this many stores' matrices (least recently used out).
MAX_STORES = 32


@dataclass(frozen=True)
class StoreVectors:
    revision: int
    model: str
    vectors: np.ndarray  # (windows, dimensions) float32, unit rows
    chunk_ids: np.ndarray  # (chunks,) int64: the chunks that have vectors
    starts: np.ndarray  # (chunks,) the first window row of each chunk
    by_id: np.ndarray  # (chunks,) positions in chunk_ids, in chunk id order

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes for a in (self.vectors, self.chunk_ids, self.starts, self.by_id)
        )

    def positions(self, chunk_ids: list[int]) -> np.ndarray:
        """Where each chunk is in ``chunk_ids`` (and in ``scores``), -1 if absent."""
        if not len(self.chunk_ids) or not chunk_ids:
            return np.full(len(chunk_ids), -1)
        wanted = np.asarray(chunk_ids, dtype=np.int64)
        ordered = self.chunk_ids[self.by_id]
        at = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
        return np.where(ordered[at] == wanted, self.by_id[at], -1)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Each chunk's cosine similarity to the query (its best window's)."""
        if not len(self.chunk_ids):
            return np.zeros(0, np.float32)
        return np.maximum.reduceat(self.vectors @ query, self.starts)


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
            found = _load(store, model)
            with _lock:
                _cache.pop(key, None)
                _cache[key] = found
                while len(_cache) > MAX_STORES:
                    _cache.pop(next(iter(_cache)))
    return found


def _load(store: Store, model: str) -> StoreVectors:
    # The revision is read before the rows: rows saved meanwhile only make the
    # matrix newer than its label, and the next revision replaces it anyway.
    revision = (
        type(store)
        .objects.filter(pk=store.pk)
        .values_list("revision", flat=True)
        .first()
        or store.revision
    )
    blocks: list[np.ndarray] = []
    window_chunks: list[np.ndarray] = []
    for row in Embedding.objects.filter(store_id=store.pk, model=model).only(
        "document_id", "chunk_ids", "vectors", "dimensions"
    ):
        chunk_ids, vectors = embedding.load(row)
        if len(chunk_ids):
            window_chunks.append(chunk_ids)
            blocks.append(vectors)
    if not blocks:
        empty = np.zeros(0, np.int64)
        return StoreVectors(
            revision, model, np.zeros((0, 1), np.float32), empty, empty, empty
        )
    per_window = np.concatenate(window_chunks)
    # A chunk's windows are consecutive rows: a chunk starts where the id changes.
    starts = np.flatnonzero(np.r_[True, per_window[1:] != per_window[:-1]])
    chunk_ids = per_window[starts]
    return StoreVectors(
        revision,
        model,
        np.ascontiguousarray(np.concatenate(blocks)),
        chunk_ids,
        starts,
        np.argsort(chunk_ids, kind="stable"),
    )


def clear() -> None:
    with _lock:
        _cache.clear()
