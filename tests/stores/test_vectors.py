"""The in-process vector index: its shortcuts give what the brute force gives."""

import numpy as np
import pytest

from stores.backends import vectors
from stores.models import Chunk, Document, Embedding, Store

pytestmark = pytest.mark.django_db

DIMENSIONS = 8
MODEL = "test-model"


@pytest.fixture(autouse=True)
def _fresh_cache():
    vectors.clear()
    yield
    vectors.clear()


def add_document(
    store: Store, rng, n: int, *, windows: list[int], spread: float | None = None
) -> Document:
    """A ready document whose chunks have the given numbers of windows, with
    random unit vectors saved as the embedding stage saves them. With
    ``spread``, a chunk's windows scatter around one direction, as the windows
    of one passage do; without, they are unrelated."""
    document = Document.objects.create(
        store=store,
        filename=f"doc-{n}.txt",
        file=f"documents/{n}.txt",
        size_bytes=10,
        mime_type="text/plain",
        sha256=f"{n:064x}",
        status=Document.Status.READY,
        chunk_count=len(windows),
    )
    chunk_ids = []
    for ordinal, count in enumerate(windows):
        chunk = Chunk.objects.create(
            document=document,
            store=store,
            ordinal=ordinal,
            text=f"chunk {ordinal}",
            start_char=0,
            end_char=7,
        )
        chunk_ids += [chunk.pk] * count
    rows = rng.normal(size=(len(chunk_ids), DIMENSIONS)).astype(np.float32)
    if spread is not None:
        bases = rng.normal(size=(len(windows), DIMENSIONS))
        rows = (np.repeat(bases, windows, axis=0) + spread * rows).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    Embedding.objects.create(
        document=document,
        store=store,
        model=MODEL,
        dimensions=DIMENSIONS,
        chunk_ids=np.asarray(chunk_ids, dtype="<i8").tobytes(),
        vectors=rows.astype("<f2").tobytes(),
    )
    return document


def brute_force(index, query):
    """Each chunk's best window, the slow way."""
    per_chunk = np.maximum.reduceat(index.vectors @ query, index.starts)
    return {int(c): float(s) for c, s in zip(index.chunk_ids, per_chunk, strict=True)}


def unit(rng) -> np.ndarray:
    query = rng.normal(size=DIMENSIONS).astype(np.float32)
    return query / np.linalg.norm(query)


def test_the_nearest_chunks_are_those_of_the_brute_force():
    rng = np.random.default_rng(7)
    store = Store.objects.create(name="s")
    for n in range(30):
        add_document(store, rng, n, windows=list(rng.integers(1, 5, size=4)))
    store.refresh_from_db()
    index = vectors.store_vectors(store, MODEL)
    assert index.centroids is None  # a small store: every window is scored
    query = unit(rng)
    expected = brute_force(index, query)

    positions, cosines = index.nearest(query, 10)

    ranked = sorted(expected, key=lambda c: -expected[c])[:10]
    assert index.chunk_ids[positions].tolist() == ranked
    assert cosines.tolist() == pytest.approx([expected[c] for c in ranked])
    some = index.positions(ranked[3:6] + [10**9])
    assert some[-1] == -1
    assert index.cosines(query, some[:-1]).tolist() == pytest.approx(
        [expected[c] for c in ranked[3:6]]
    )


def test_a_big_store_prefilters_by_each_chunks_mean_window(monkeypatch):
    monkeypatch.setattr(vectors, "PREFILTER_WINDOWS", 0)
    rng = np.random.default_rng(5)
    store = Store.objects.create(name="s")
    for n in range(40):
        add_document(store, rng, n, windows=[1, 1, 2, 3], spread=0.3)
    store.refresh_from_db()
    index = vectors.store_vectors(store, MODEL)
    assert index.centroids.shape == (len(index.chunk_ids), DIMENSIONS)
    query = unit(rng)
    expected = brute_force(index, query)

    positions, cosines = index.nearest(query, 5)

    # Passages' windows lie close together, so their means find the same best
    # chunks, with their exact cosines.
    found = index.chunk_ids[positions].tolist()
    ranked = sorted(expected, key=lambda c: -expected[c])
    assert found == ranked[:5]
    assert cosines.tolist() == pytest.approx([expected[c] for c in found])


def test_a_new_revision_reads_only_what_changed_and_matches_a_full_load(
    django_assert_max_num_queries,
):
    rng = np.random.default_rng(11)
    store = Store.objects.create(name="s")
    documents = [add_document(store, rng, n, windows=[2, 1, 3]) for n in range(6)]
    store.refresh_from_db()
    first = vectors.store_vectors(store, MODEL)

    # One document re-embedded, one deleted, one added; the revision moves on.
    Embedding.objects.filter(document=documents[1]).delete()
    add_document(store, rng, 99, windows=[1, 1])
    documents[4].delete()
    Store.objects.filter(pk=store.pk).bump_revision()
    store.refresh_from_db()
    updated = vectors.store_vectors(store, MODEL)
    vectors.clear()
    full = vectors.store_vectors(store, MODEL)

    assert updated.revision == full.revision > first.revision
    assert updated.documents.keys() == full.documents.keys()
    assert np.array_equal(updated.window_chunks, full.window_chunks)
    assert np.array_equal(updated.vectors, full.vectors)
    assert np.array_equal(updated.chunk_ids, full.chunk_ids)
    # Unchanged revision: the same object, no query.
    with django_assert_max_num_queries(0):
        assert vectors.store_vectors(store, MODEL) is full


def test_a_store_without_vectors_has_an_empty_index():
    store = Store.objects.create(name="s")

    index = vectors.store_vectors(store, MODEL)

    assert len(index.chunk_ids) == 0
    assert index.nearest(np.ones(1, np.float32), 5)[0].size == 0
