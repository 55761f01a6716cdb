"""Hybrid (dense + lexical) search at scale: the figures of issue 12.

Per database (SQLite and/or PostgreSQL, each fresh), with EMBEDDINGS=builtin:

1. ingest the first 2,000 generated 5 KB documents through the service layer with
   the embedding stage deferred (the immediate backend's embedding tasks are
   queued but not run), and report docs/s;
2. embed them for real with the built-in model (``embedding.embed``, what the
   background thread runs), and report the time, windows/s and chunks/s;
3. in a fresh search process: resident memory (model, then the store's matrix),
   the matrix load time, the first search after a change, and search p50/p95,
   lexical (EMBEDDINGS=off) and hybrid, through the service (search cache cleared,
   distinct queries) and the local backend alone; a per-stage breakdown of the
   hybrid search and, with ``--profile``, a cProfile of it;
4. ingest documents up to 20,000 (embedding deferred again), give them
   SYNTHETIC vectors (the real vectors of the first documents' chunks plus a
   little noise, renormalised, saved as float16 exactly as stores.embedding saves
   them, under ``embedding.model_name()``), and search as in 3.

    .venv/bin/python bench/vectors_scale.py --database both          # ~25 min
    .venv/bin/python bench/vectors_scale.py --database sqlite --profile
    .venv/bin/python bench/vectors_scale.py --sizes 500,2000 --real-docs 200   # quick

Each step runs in a child process of this script (settings load once per process;
a search process's memory must be its own). EMBEDDINGS_CACHE_DIR defaults to
/tmp/flamehaven-bench-models, so the int8 graph is built once and reused.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_search import (  # noqa: E402
    CHILD_ENV,
    ROOT,
    Corpus,
    percentiles,
    scratch_database,
)

WARMUP = 10
CHANGES = 3  # first searches after a change (revision bump), median reported
BREAKDOWN = 100  # searches timed stage by stage (wrapped functions)
NOISE = 0.02  # per-component std of the synthetic vectors' noise (cosine ~0.93)
MODEL_CACHE = "/tmp/flamehaven-bench-models"
# Targets (issue 12).
INGEST_MIN = 200.0  # docs/s, 5 KB documents, SQLite
EMBED_MAX_S = 180.0  # full embedding of a 2,000-document store
P50_MAX = {2000: 15.0, 20000: 40.0}  # hybrid search, ms
RSS_MAX = {2000: 400.0}  # MB, search process, model and vectors loaded


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup_django():
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Child: build (ingest, then vectors) -------------------------------------------


def run_build(args: argparse.Namespace) -> dict:
    setup_django()
    import numpy as np
    from django.core.files.base import ContentFile
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from stores import embedding, ownership
    from stores.models import Chunk, Document, Embedding, Store
    from stores.services import document_add, store_create

    call_command("migrate", verbosity=0)
    # The embedding stage deferred: ingestion queues each document's vectors
    # (queue_for, on commit) and this keeps the queue instead of starting the
    # immediate backend's thread, which would compete with ingestion for the CPU.
    deferred: list[int] = []
    embedding._thread_submit = deferred.extend

    corpus = Corpus(args.seed, args.total)
    planted_file = Path(os.environ["DATA_DIR"]) / "planted.json"
    planted: list[list[str]] = []
    docs: list[bytes] = []
    for i in range(args.stop):
        data, words = corpus.document(i)
        planted.append(words)
        if i >= args.start:
            docs.append(data)
    planted_file.write_text(json.dumps(planted))

    store = (
        store_create(name="bench")
        if args.start == 0
        else Store.objects.get(name="bench")
    )
    log(f"ingesting documents {args.start:,}-{args.stop - 1:,}")
    start = time.perf_counter()
    for i, data in enumerate(docs, start=args.start):
        document_add(store=store, file=ContentFile(data), name=f"doc-{i}.txt")
    ingest_s = time.perf_counter() - start
    mine = Document.objects.filter(store=store)
    statuses = dict(mine.values_list("status").annotate(Count("id")))
    result: dict = {
        "vendor": connection.vendor,
        "start": args.start,
        "stop": args.stop,
        "ingest_s": ingest_s,
        "docs_per_s": len(docs) / ingest_s,
        "statuses": statuses,
        "chunks": Chunk.objects.filter(store_id=store.pk).count(),
        "deferred": len(deferred),
        # Vectors of this step's documents saved during the ingestion (none:
        # the embedding stage is deferred).
        "vectors_before": Embedding.objects.filter(document_id__in=deferred).count(),
        "embeddings": os.environ.get("EMBEDDINGS", ""),
    }
    if args.analyze:
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
            )

    if not embedding.enabled():
        return result
    # Which document is which: doc-<index>.txt.
    index_of = {
        pk: int(name.removeprefix("doc-").removesuffix(".txt"))
        for pk, name in mine.values_list("pk", "filename")
    }
    start = time.perf_counter()
    found = embedding.embedder()
    result["model_load_s"] = time.perf_counter() - start
    result["model"] = found.name
    real = sorted(
        (pk for pk in deferred if index_of[pk] < args.real_docs), key=index_of.get
    )
    if real:
        owner = ownership.register()
        done_docs = [0]
        step = max(1, len(real) // 10)

        def progress(count: int) -> None:
            before = done_docs[0]
            done_docs[0] += count
            if done_docs[0] // step != before // step:
                log(f"embedded {done_docs[0]:,}/{len(real):,} documents")

        log(f"embedding {len(real):,} documents with {found.name}")
        start = time.perf_counter()
        saved = embedding.embed(real, owner=owner, progress=progress)
        embed_s = time.perf_counter() - start
        windows = chunks = chars = 0
        for chunk_bytes in Embedding.objects.filter(document_id__in=real).values_list(
            "chunk_ids", flat=True
        ):
            ids = np.frombuffer(bytes(chunk_bytes), dtype="<i8")
            windows += len(ids)
            chunks += len(np.unique(ids))
        sample = list(
            Chunk.objects.filter(document_id__in=real[:50]).values_list(
                "document__filename", "section", "text"
            )
        )
        texts = [embedding.passage_text(*row) for row in sample]
        tokens = sum(found.token_count(t) for t in texts)
        chars = sum(len(t) for t in texts)
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        result["embed"] = {
            "docs": len(real),
            "saved": saved,
            "seconds": embed_s,
            "windows": windows,
            "chunks": chunks,
            "tokens_per_chunk": tokens / len(texts),
            "chars_per_token": chars / tokens,
            "readme_chars_per_token": len(readme) / found.token_count(readme),
            "window_tokens": found.window_tokens,
            "threads": getattr(found, "threads", None),
        }

    synthetic = [pk for pk in deferred if index_of[pk] >= args.real_docs]
    if synthetic:
        log(f"synthetic vectors for {len(synthetic):,} documents")
        result["synthetic"] = synthesize(
            store, synthetic, index_of, args, found, np, Chunk, Document, Embedding
        )
        Store.objects.filter(pk=store.pk).bump_revision()
    result["vectors_after"] = Embedding.objects.filter(
        store_id=store.pk, model=found.name
    ).count()
    return result


def synthesize(store, targets, index_of, args, found, np, Chunk, Document, Embedding):
    """Vectors for ``targets`` made from the real ones of documents < real_docs:
    chunk k of document j takes the windows of chunk k (mod its count) of source
    document j mod real_docs, plus Gaussian noise, renormalised, stored as
    float16 little-endian like stores.embedding._save."""
    from stores import embedding

    name = embedding.model_name()
    rng = np.random.default_rng(args.seed)
    sources: dict[int, list[np.ndarray]] = {}
    for row in Embedding.objects.filter(store_id=store.pk, model=name).exclude(
        document_id__in=targets
    ):
        if index_of[row.document_id] >= args.real_docs:
            continue
        chunk_ids, vectors = embedding.load(row)
        starts = np.flatnonzero(np.r_[True, chunk_ids[1:] != chunk_ids[:-1]])
        sources[index_of[row.document_id]] = np.split(vectors, starts[1:])
    if not sources:
        raise SystemExit("no real vectors to make synthetic ones from")
    source_list = [sources[i] for i in sorted(sources)]
    chunks_of: dict[int, list[int]] = defaultdict(list)
    for document_id, pk in (
        Chunk.objects.filter(store_id=store.pk, document_id__in=targets)
        .order_by("document_id", "ordinal")
        .values_list("document_id", "pk")
    ):
        chunks_of[document_id].append(pk)
    start = time.perf_counter()
    windows = 0
    ordered = sorted(targets, key=index_of.get)
    for first in range(0, len(ordered), 500):
        batch = ordered[first : first + 500]
        rows = []
        for pk in batch:
            source = source_list[index_of[pk] % len(source_list)]
            blocks, ids = [], []
            for k, chunk_id in enumerate(chunks_of[pk]):
                block = source[k % len(source)]
                blocks.append(block)
                ids.extend([chunk_id] * len(block))
            vectors = np.concatenate(blocks)
            vectors = vectors + rng.normal(0, NOISE, vectors.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            windows += len(vectors)
            rows.append(
                Embedding(
                    document_id=pk,
                    store_id=store.pk,
                    model=name,
                    dimensions=found.dimensions,
                    chunk_ids=np.asarray(ids, dtype="<i8").tobytes(),
                    vectors=vectors.astype("<f2").tobytes(),
                )
            )
        Embedding.objects.bulk_create(rows)
        Document.objects.filter(pk__in=batch).update(vector_owner="")
    return {
        "docs": len(targets),
        "windows": windows,
        "seconds": time.perf_counter() - start,
        "noise": NOISE,
    }


# --- Child: search ------------------------------------------------------------------


class Stages:
    """Wraps functions of stores.backends.local (and the embedder) with timers."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.undo: list = []

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        totals = self.totals

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                totals[label] += time.perf_counter() - start

        setattr(owner, attribute, timed)
        self.undo.append((owner, attribute, original))

    def end_search(self) -> None:
        for label in list(self.totals):
            self.samples[label].append(self.totals[label] * 1000)
        self.totals.clear()

    def restore(self) -> None:
        for owner, attribute, original in reversed(self.undo):
            setattr(owner, attribute, original)


def run_search(args: argparse.Namespace) -> dict:
    base_rss = rss_mb()
    setup_django()
    import numpy as np
    from django.core.cache import caches

    from search.services import SearchParams, search
    from stores import embedding
    from stores.backends import SearchOptions, local, vectors
    from stores.backends.local import LocalBackend
    from stores.models import Embedding, Store

    store = Store.objects.get(name="bench")
    hybrid = embedding.enabled()
    result: dict = {
        "size": args.size,
        "mode": "hybrid" if hybrid else "lexical",
        "rss_start": base_rss,
        "rss_django": rss_mb(),
    }
    planted = json.loads((Path(os.environ["DATA_DIR"]) / "planted.json").read_text())
    corpus = Corpus(args.seed, 0)
    corpus.rng = random.Random(f"{args.seed}-{args.size}")  # same for both modes
    count = WARMUP + 2 * args.searches + CHANGES + BREAKDOWN
    queries = iter(corpus.queries(count, planted[: args.size]))

    def take(n: int) -> list[str]:
        return [next(queries) for _ in range(n)]

    warmup, for_service, for_backend = take(WARMUP), take(args.searches), None
    for_backend, for_changes = take(args.searches), take(CHANGES)
    for_breakdown = take(BREAKDOWN)

    if hybrid:
        start = time.perf_counter()
        found = embedding.embedder()
        result["model_load_s"] = time.perf_counter() - start
        result["rss_model"] = rss_mb()
        start = time.perf_counter()
        index = vectors.store_vectors(store, found.name)
        result["matrix_load_cold_s"] = time.perf_counter() - start
        result["rss_vectors"] = rss_mb()
        result["matrix_bytes"] = index.nbytes
        result["windows"] = len(index.vectors)
        result["vector_chunks"] = len(index.chunk_ids)
        result["embedding_rows"] = Embedding.objects.filter(
            store_id=store.pk, model=found.name
        ).count()
        loads = []
        for _ in range(3):
            vectors.clear()
            start = time.perf_counter()
            index = vectors.store_vectors(store, found.name)
            loads.append(time.perf_counter() - start)
        result["matrix_load_s"] = statistics.median(loads)
        # The matrix product alone, and the per-chunk max, on this matrix.
        query = found.embed_query(warmup[0])
        micro: dict[str, list[float]] = defaultdict(list)
        for _ in range(20):
            t0 = time.perf_counter()
            dots = index.vectors @ query
            t1 = time.perf_counter()
            np.maximum.reduceat(dots, index.starts)  # what nearest() avoids
            t2 = time.perf_counter()
            index.nearest(query, 60)
            t3 = time.perf_counter()
            found.embed_query(warmup[0])
            t4 = time.perf_counter()
            micro["matmul"].append((t1 - t0) * 1000)
            micro["reduceat"].append((t2 - t1) * 1000)
            micro["best"].append((t3 - t2) * 1000)
            micro["embed_query"].append((t4 - t3) * 1000)
        # The same product with BLAS on one thread (threadpoolctl): on 2 busy
        # cores, a second BLAS thread can wait for a core longer than it saves.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            for _ in range(20):
                t0 = time.perf_counter()
                index.vectors @ query
                micro["matmul_1_thread"].append((time.perf_counter() - t0) * 1000)
        result["micro_ms"] = {k: statistics.median(v) for k, v in micro.items()}

    floor = args.min_score

    def service(q):
        params = SearchParams(
            query=q, store_name="bench", mode="local", min_score=floor
        )
        return search(params)["sources"]

    backend = LocalBackend()
    options = SearchOptions(5, "", 0, 0, min_score=floor)
    store.refresh_from_db()
    for query in warmup:
        service(query)
        backend.search(store, query, options)
    caches["search"].clear()
    profiler = cProfile.Profile()
    times, counts = [], []
    for query in for_service:
        if args.profile:
            profiler.enable()
        start = time.perf_counter()
        sources = service(query)
        times.append((time.perf_counter() - start) * 1000)
        profiler.disable()
        counts.append(len(sources))
    result["service"] = percentiles(times)
    result["mean_sources"] = statistics.mean(counts)
    result["zero_sources"] = counts.count(0)
    times = []
    for query in for_backend:
        start = time.perf_counter()
        backend.search(store, query, options)
        times.append((time.perf_counter() - start) * 1000)
    result["backend"] = percentiles(times)
    if args.profile:
        result["profile"] = profile_summary(profiler, args)

    # The first search after a change: a revision bump (what an upload, a delete
    # or a batch of saved vectors does) makes the next search reload the matrix.
    changes = []
    for query in for_changes:
        Store.objects.filter(pk=store.pk).bump_revision()
        start = time.perf_counter()
        service(query)
        changes.append((time.perf_counter() - start) * 1000)
    result["first_after_change_ms"] = statistics.median(changes)

    # Stage by stage (inclusive times, per search).
    store.refresh_from_db()
    stages = Stages()
    for name, label in [
        ("_match_counts", "lexical SQL (_match_counts)"),
        ("_candidates", "lexical SQL (_candidates)"),
        ("_chunks", "dense chunks SQL (_chunks)"),
        ("_fuse", "_fuse (incl. _chunks)"),
        ("store_vectors", "store_vectors (cached)"),
        ("_best_documents", "answer: _best_documents"),
        ("_snippet", "answer: _snippet"),
        ("_section", "answer: _section"),
        ("_compose_answer", "answer: _compose_answer"),
    ]:
        if hasattr(local, name):  # stores/backends/local.py changes under us
            stages.wrap(local, name, label)
    if hybrid:
        stages.wrap(found, "embed_query", "embed_query")
        stages.wrap(vectors.StoreVectors, "nearest", "nearest chunks (products)")
        stages.wrap(vectors.StoreVectors, "cosines", "lexical candidates' cosines")
    totals = []
    for query in for_breakdown:
        start = time.perf_counter()
        backend.search(store, query, options)
        totals.append((time.perf_counter() - start) * 1000)
        stages.end_search()
    stages.restore()
    result["breakdown_ms"] = {
        "backend.search total": statistics.mean(totals),
        **{
            label: sum(values) / len(totals) for label, values in stages.samples.items()
        },
    }
    result["rss_end"] = rss_mb()
    result["rss_peak"] = peak_mb()
    return result


PROFILED = [
    ("search/services.py", "search"),
    ("search/services.py", "store_for_read"),
    ("stores/backends/local.py", "search"),
    ("embeddings/base.py", "embed_query"),
    ("stores/backends/vectors.py", "store_vectors"),
    ("stores/backends/vectors.py", "scores"),
    ("stores/backends/local.py", "_candidates"),
    ("stores/backends/local.py", "_match_counts"),
    ("stores/backends/local.py", "_find_chunks"),
    ("stores/backends/local.py", "_fuse"),
    ("stores/backends/local.py", "_chunks"),
    ("stores/backends/local.py", "_weigh_coverage"),
    ("stores/backends/vectors.py", "positions"),
    ("stores/backends/local.py", "_best_documents"),
    ("stores/backends/local.py", "_snippet"),
    ("stores/backends/local.py", "_section"),
    ("stores/backends/local.py", "_compose_answer"),
]


def profile_summary(profiler: cProfile.Profile, args: argparse.Namespace) -> dict:
    profiler.dump_stats(args.profile_out)
    stats = pstats.Stats(profiler)
    searches = args.searches
    wanted: dict[str, float] = {}
    for (filename, _line, function), row in stats.stats.items():
        _cc, _nc, _tt, cumulative, _callers = row
        for suffix, name in PROFILED:
            if function == name and filename.endswith(suffix):
                label = f"{suffix.rsplit('/', 1)[-1]}:{name}"
                wanted[label] = wanted.get(label, 0) + cumulative * 1000 / searches
    # The heaviest functions by own time, all code.
    own = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:15]
    top = [
        {
            "function": f"{Path(f).name}:{line}:{fn}",
            "calls_per_search": row[1] / searches,
            "own_ms": row[2] * 1000 / searches,
            "cumulative_ms": row[3] * 1000 / searches,
        }
        for (f, line, fn), row in own
    ]
    return {"file": args.profile_out, "cumulative_ms": wanted, "top_own": top}


# --- Parent -----------------------------------------------------------------------


def child(kind: str, env: dict, args: argparse.Namespace, *extra: str) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--seed", str(args.seed)]
    command += [*extra]
    out = subprocess.run(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.stderr.write(out.stdout)
        raise SystemExit(f"{kind} child failed (exit {out.returncode})")
    return json.loads(lines[-1].removeprefix("RESULT "))


def run_vendor(vendor: str, args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"fh-vectors-{vendor}-"))
    env = {**os.environ, **CHILD_ENV, "DATA_DIR": str(tmp)}
    env["MEDIA_ROOT"] = str(tmp / "media")
    env.setdefault("EMBEDDINGS_CACHE_DIR", MODEL_CACHE)
    env["EMBEDDINGS"] = "builtin"
    postgres = vendor == "postgres"
    builds, searches, baseline = [], [], None
    with ExitStack() as databases:
        # Last out: the folder, after the databases are dropped.
        databases.callback(shutil.rmtree, tmp, ignore_errors=True)
        env["DATABASE_URL"] = databases.enter_context(
            scratch_database(postgres, tmp / "bench.sqlite3")
        )
        if args.baseline:
            # Lexical ingestion (EMBEDDINGS=off) in a database of its own, as a
            # reference taken in the same conditions as the deferred one.
            print(f"{vendor}: baseline, EMBEDDINGS=off ...", flush=True)
            off_env = {**env, "EMBEDDINGS": "off", "DATA_DIR": str(tmp / "off")}
            off_env["MEDIA_ROOT"] = str(tmp / "off" / "media")
            off_env["DATABASE_URL"] = databases.enter_context(
                scratch_database(postgres, tmp / "off.sqlite3")
            )
            (tmp / "off").mkdir()
            extra = ["--start", "0", "--stop", str(args.sizes[0])]
            extra += ["--total", str(max(args.sizes)), "--real-docs", "0"]
            baseline = child("build", off_env, args, *extra)
        previous = 0
        for size in args.sizes:
            print(f"{vendor}: documents {previous:,} to {size:,} ...", flush=True)
            extra = ["--start", str(previous), "--stop", str(size)]
            extra += [
                "--total",
                str(max(args.sizes)),
                "--real-docs",
                str(args.real_docs),
            ]
            extra += ["--analyze"] if args.analyze else []
            builds.append(child("build", env, args, *extra))
            for mode in ("lexical", "hybrid"):
                print(f"{vendor}: {mode} searches at {size:,} ...", flush=True)
                mode_env = {
                    **env,
                    "EMBEDDINGS": "builtin" if mode == "hybrid" else "off",
                }
                extra = ["--size", str(size), "--searches", str(args.searches)]
                extra += ["--min-score", str(args.min_score)]
                if args.profile and mode == "hybrid" and size == args.sizes[0]:
                    extra += [
                        "--profile",
                        "--profile-out",
                        f"{args.profile_out}.{vendor}",
                    ]
                searches.append(child("search", mode_env, args, *extra))
            previous = size
    return {
        "vendor": vendor,
        "builds": builds,
        "searches": searches,
        "baseline": baseline,
    }


def verdict(ok: bool | None) -> str:
    return "" if ok is None else (" PASS" if ok else " MISS")


def report(results: list[dict], args: argparse.Namespace) -> None:
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (at the end), "
        f"Python {sys.version.split()[0]}"
    )
    print(
        f"search floor (min_score) {args.min_score}: every search composes an "
        f"answer; {args.searches} timed searches per set, distinct queries, "
        "search cache cleared (cache misses)"
    )
    for r in results:
        print(f"\n=== {r['vendor']} ===")
        model = r["builds"][0].get("model")
        print(f"model: {model}")
        print(
            "ingestion (EMBEDDINGS=builtin, embedding stage deferred: queued, not run)"
        )
        for b in r["builds"]:
            n = b["stop"] - b["start"]
            ok = b["docs_per_s"] >= INGEST_MIN if b["vendor"] == "sqlite" else None
            print(
                f"  docs {b['start']:>6,}-{b['stop']:<6,} {n:>6,} docs in "
                f"{b['ingest_s']:7.1f} s = {b['docs_per_s']:6.1f} docs/s{verdict(ok)}"
                f"   (store now {b['chunks']:,} chunks; {b['deferred']:,} embedding "
                f"tasks queued, {b['vectors_before']} vectors saved meanwhile)"
            )
            if b["statuses"] != {"ready": b["stop"]}:
                print(f"  WARNING: document statuses {b['statuses']}")
        b = r["baseline"]
        if b:
            print(
                f"  baseline, EMBEDDINGS=off (own database): {b['stop']:,} docs in "
                f"{b['ingest_s']:.1f} s = {b['docs_per_s']:.1f} docs/s"
            )
        for b in r["builds"]:
            e = b.get("embed")
            if e:
                ok = e["seconds"] <= EMBED_MAX_S if e["docs"] >= 2000 else None
                print(
                    f"embedding, real ({e['docs']:,} docs, embedding.embed in one "
                    f"thread, {e['threads']} onnxruntime threads, windows of "
                    f"{e['window_tokens']} tokens):\n"
                    f"  {e['seconds']:.1f} s = {e['seconds'] / 60:.1f} min{verdict(ok)}"
                    f"; {e['windows']:,} windows = {e['windows'] / e['seconds']:.1f} "
                    f"windows/s; {e['chunks']:,} chunks = "
                    f"{e['chunks'] / e['seconds']:.1f} chunks/s; "
                    f"{e['docs'] / e['seconds']:.1f} docs/s\n"
                    f"  {e['windows'] / e['chunks']:.2f} windows/chunk, "
                    f"{e['tokens_per_chunk']:.0f} tokens/chunk, "
                    f"{e['chars_per_token']:.2f} chars/token (generated pseudo-words; "
                    f"the project's README: {e['readme_chars_per_token']:.2f})"
                )
            s = b.get("synthetic")
            if s:
                print(
                    f"embedding, SYNTHETIC: {s['docs']:,} docs / {s['windows']:,} "
                    f"windows from the real vectors of the first {args.real_docs:,} "
                    f"documents + N(0, {s['noise']}) noise, renormalised, float16 "
                    f"({s['seconds']:.1f} s to write)"
                )
        print(
            f"{'docs':>6} {'mode':<8}{'svc p50':>8}{'p95':>7}{'p99':>7}"
            f"{'be p50':>8}{'be p95':>7}{'srcs':>6}{'zero':>5}"
            f"{'1st after chg':>14}{'load':>7}{'matrix':>8}{'windows':>9}"
            f"{'RSS base/model/vec/end/peak MB':>32}"
        )
        for s in r["searches"]:
            hybrid = s["mode"] == "hybrid"
            limit = P50_MAX.get(s["size"]) if hybrid else None
            p50 = s["service"]["p50"]
            line = (
                f"{s['size']:>6} {s['mode']:<8}{p50:8.1f}"
                f"{s['service']['p95']:7.1f}{s['service']['p99']:7.1f}"
                f"{s['backend']['p50']:8.1f}{s['backend']['p95']:7.1f}"
                f"{s['mean_sources']:6.1f}{s['zero_sources']:5d}"
                f"{s['first_after_change_ms']:11.0f} ms"
            )
            if hybrid:
                line += (
                    f"{s['matrix_load_s']:6.2f}s{s['matrix_bytes'] / 2**20:5.0f} MB"
                    f"{s['windows']:>9,}"
                    f"{s['rss_django']:8.0f}/{s['rss_model']:.0f}/"
                    f"{s['rss_vectors']:.0f}/{s['rss_end']:.0f}/{s['rss_peak']:.0f}"
                )
            else:
                line += f"{'':31}{s['rss_django']:8.0f}/-/-/{s['rss_end']:.0f}/" + (
                    f"{s['rss_peak']:.0f}"
                )
            marks = []
            if limit:
                marks.append(f"p50 <= {limit:.0f} ms{verdict(p50 <= limit)}")
            rss_limit = RSS_MAX.get(s["size"]) if hybrid else None
            if rss_limit:
                ok = s["rss_end"] <= rss_limit
                marks.append(f"RSS <= {rss_limit:.0f} MB{verdict(ok)}")
            print(line + ("   " + "; ".join(marks) if marks else ""))
        for s in r["searches"]:
            if s["mode"] != "hybrid":
                continue
            m = s["micro_ms"]
            print(
                f"hybrid at {s['size']:,}: model load {s['model_load_s']:.1f} s; "
                f"matrix load {s['matrix_load_cold_s']:.2f} s cold, "
                f"{s['matrix_load_s']:.2f} s again; {s['embedding_rows']:,} Embedding "
                f"rows, {s['vector_chunks']:,} chunks, {s['windows']:,} windows; "
                f"median ms: embed_query {m['embed_query']:.1f}, matmul "
                f"{m['matmul']:.1f} (1 BLAS thread {m['matmul_1_thread']:.1f}), "
                f"reduceat {m['reduceat']:.1f}, nearest() {m['best']:.1f}"
            )
            parts = ", ".join(f"{k} {v:.2f}" for k, v in s["breakdown_ms"].items())
            print(f"  stages, mean ms per backend search ({BREAKDOWN}): {parts}")
            if "profile" in s:
                p = s["profile"]
                print(
                    f"  cProfile ({args.searches} service searches, per search, "
                    f"inflated), cumulative ms: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in p["cumulative_ms"].items())
                )
                print("  heaviest own time (ms per search / calls per search):")
                for t in p["top_own"][:10]:
                    print(
                        f"    {t['own_ms']:7.2f} {t['calls_per_search']:8.1f}  "
                        f"{t['function']} (cum {t['cumulative_ms']:.2f})"
                    )
                print(f"  stats file: {p['file']}")
    print(
        "\nsvc = search service (cache miss), be = LocalBackend.search alone; srcs = "
        "mean sources, zero = searches without one; 1st after chg = median service "
        "search right after a revision bump (matrix reload included); load = matrix "
        "load (median of 3, warm); matrix = StoreVectors.nbytes.\ntargets: ingest "
        ">= 200 docs/s (SQLite); embedding 2,000 docs <= 3 min; hybrid p50 <= 15 ms "
        "at 2,000 and <= 40 ms at 20,000; RSS <= 400 MB at 2,000."
    )
    if any(b.get("synthetic") for r in results for b in r["builds"]):
        print(
            f"NOTE: documents from {args.real_docs:,} on carry SYNTHETIC vectors "
            "(see above): their search timings and memory are real, their ranking "
            "is not."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--sizes", default="2000,20000", help="store sizes, ascending")
    add("--real-docs", type=int, default=2000, help="documents embedded for real")
    add("--searches", type=int, default=200)
    add("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    add("--seed", type=int, default=1)
    add("--analyze", action="store_true", help="(VACUUM) ANALYZE after ingestion")
    add(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the EMBEDDINGS=off ingestion reference",
    )
    add("--min-score", type=float, default=0.0, help="search floor")
    add(
        "--profile", action="store_true", help="cProfile the hybrid searches (1st size)"
    )
    add("--profile-out", default="vectors.prof", help="stats file prefix")
    add("--child", choices=["build", "search"], help=argparse.SUPPRESS)
    for hidden in ("--start", "--stop", "--total", "--size"):
        add(hidden, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "build":
        print("RESULT " + json.dumps(run_build(args)), flush=True)
        return
    if args.child == "search":
        print("RESULT " + json.dumps(run_search(args)), flush=True)
        return
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    vendors = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = [run_vendor(vendor, args) for vendor in vendors]
    report(results, args)


if __name__ == "__main__":
    main()
