"""Ingest generated text documents through the service layer, then time searches.

Prints figures, not pass/fail: ingestion docs/s and search p50/p95/p99 (the search
service and the local backend alone), on SQLite and/or PostgreSQL, each run in a
fresh database with its own temporary MEDIA_ROOT and DATA_DIR.

    .venv/bin/python bench/ingest_search.py --database both
    .venv/bin/python bench/ingest_search.py --docs 20000 --database sqlite
    .venv/bin/python bench/ingest_search.py --database postgres --analyze
    .venv/bin/python bench/ingest_search.py --embeddings builtin

Lexical only by default (EMBEDDINGS=off in the child). ``--embeddings builtin``
runs as a single process would in production: each ingested document's vectors
are computed by the immediate backend's background thread, which then shares
the CPU with ingestion and searches (vectors the thread has saved take part in
the searches). The embedding stage and hybrid search at scale are measured by
bench/vectors_scale.py.

Settings load once per process, so each database runs in a child process of this
script (``--child``); the parent creates and drops the databases and prints the table.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/"
WARMUP = 10
# (ingest docs/s, service p50 ms, service p99 ms) at 2,000 and 20,000 documents
TARGETS_2K = (200.0, 5.0, 25.0)
TARGETS_20K = (200.0, 15.0, None)
STOP = ["how do I", "what is the", "where can I find", "why does the", "explain"]
# Set before django.setup() in the child; no Redis, no Gemini, tasks run in-process.
CHILD_ENV = {
    "DJANGO_SETTINGS_MODULE": "flamehaven.settings",
    **dict(ENVIRONMENT="development", LOG_LEVEL="WARNING", DEBUG="false"),
    **dict(
        TASKS_BACKEND="immediate", REDIS_URL="", GEMINI_API_KEY="", GOOGLE_API_KEY=""
    ),
    # Overridden by --embeddings; always set, so the dense stage is never implicit.
    "EMBEDDINGS": "off",
}
# With --embeddings builtin: the int8 ONNX graph is built once and reused.
MODEL_CACHE = "/tmp/flamehaven-bench-models"
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["th", "sh", "qu"]


# --- Generated corpus -----------------------------------------------------------


def make_words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choices(SYLLABLES, k=rng.randint(2, 4)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


class Corpus:
    def __init__(self, seed: int, docs: int) -> None:
        self.rng = random.Random(seed)
        taken: set[str] = set()
        self.vocab = make_words(self.rng, 5000, taken)
        self.topics = make_words(self.rng, max(500, docs // 4), taken)
        # Zipf-like: the word of rank r is drawn with weight 1 / r.
        self.cum = list(accumulate(1 / rank for rank in range(1, 5001)))

    def sentence(self, planted: list[str]) -> str:
        words = self.rng.choices(
            self.vocab, cum_weights=self.cum, k=self.rng.randint(8, 20)
        )
        if planted and self.rng.random() < 0.3:
            words.insert(self.rng.randrange(len(words)), self.rng.choice(planted))
        return " ".join(words).capitalize() + "."

    def document(self, index: int) -> tuple[bytes, list[str]]:
        planted = self.rng.sample(self.topics, 3)
        paragraphs, size = [f"Document {index}."], 0
        while size < 5000:
            para = " ".join(
                self.sentence(planted) for _ in range(self.rng.randint(3, 6))
            )
            paragraphs.append(para)
            size += len(para) + 2
        return "\n\n".join(paragraphs).encode(), planted

    def queries(self, count: int, planted: list[list[str]]) -> list[str]:
        seen: set[str] = set()
        mid = self.vocab[50:2000]  # neither the commonest words nor hapaxes
        while len(seen) < count:
            words = self.rng.sample(mid, self.rng.randint(1, 3))
            words += self.rng.sample(self.rng.choice(planted), self.rng.randint(1, 2))
            self.rng.shuffle(words)
            seen.add(f"{self.rng.choice(STOP)} {' '.join(words)}?")
        return sorted(seen, key=lambda _: self.rng.random())


# --- Child: one database, settings from the environment -------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": max(samples)}


def timed(fn, queries: list[str]) -> tuple[dict[str, float], list[int]]:
    times, counts = [], []
    for query in queries:
        start = time.perf_counter()
        result = fn(query)
        times.append((time.perf_counter() - start) * 1000)
        counts.append(len(result))
    return percentiles(times), counts


@contextmanager
def profiling(profiler: cProfile.Profile, active: bool):
    if active:
        profiler.enable()
    try:
        yield
    finally:
        profiler.disable()


def run_child(args: argparse.Namespace) -> dict:
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.core.cache import caches
    from django.core.files.base import ContentFile
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from search.services import SearchParams, search
    from stores.backends import SearchOptions
    from stores.backends.local import LocalBackend
    from stores.models import Chunk, Document
    from stores.services import document_add, store_create

    call_command("migrate", verbosity=0)
    corpus = Corpus(args.seed, args.docs)
    docs = [corpus.document(i) for i in range(args.docs)]
    # Distinct queries everywhere: the service's and the backend's timed sets differ
    # too, so neither runs on pages the other has just warmed for the same terms.
    queries = corpus.queries(2 * args.searches + WARMUP, [p for _, p in docs])
    warmup, for_service = queries[:WARMUP], queries[WARMUP : WARMUP + args.searches]
    for_backend = queries[WARMUP + args.searches :]
    profiler = cProfile.Profile()

    store = store_create(name="bench")
    start = time.perf_counter()
    with profiling(profiler, args.profile == "ingest"):
        for i, (data, _) in enumerate(docs):
            document_add(store=store, file=ContentFile(data), name=f"doc-{i}.txt")
    ingest_s = time.perf_counter() - start
    rows = Document.objects.filter(store=store).values_list("status")
    statuses = dict(rows.annotate(Count("id")))
    chunks = Chunk.objects.filter(document__store=store).count()
    if args.analyze:
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
            )

    def service(q):
        return search(SearchParams(query=q, store_name="bench", mode="local"))[
            "sources"
        ]

    backend, options = LocalBackend(), SearchOptions(5, "", 0, 0)
    store.refresh_from_db()
    for query in warmup:
        service(query)
        backend.search(store, query, options)
    caches["search"].clear()
    with profiling(profiler, args.profile == "search"):
        service_ms, counts = timed(service, for_service)
    backend_ms, _ = timed(
        lambda q: backend.search(store, q, options).sources, for_backend
    )
    if args.profile:
        profiler.dump_stats(args.profile_out)

    version = sqlite3.sqlite_version
    if connection.vendor == "postgresql":
        version = ".".join(map(str, divmod(connection.pg_version, 10000)))
    return {
        "vendor": connection.vendor,
        "server": version,
        "docs": args.docs,
        "statuses": statuses,
        "chunks": chunks,
        "docs_per_s": args.docs / ingest_s,
        "service": service_ms,
        "backend": backend_ms,
        "mean_sources": statistics.mean(counts),
        "zero_sources": counts.count(0),
        "searches": len(counts),
    }


# --- Parent: fresh database and directories, one child per vendor ---------------


@contextmanager
def scratch_database(
    postgres: bool, sqlite_file: Path, server_url: str = PG_URL
) -> Iterator[str]:
    """A DATABASE_URL of the run's own: the SQLite file, or a PostgreSQL database
    created on ``server_url`` and dropped at the end, also when the run fails.
    The bench scripts share it."""
    if not postgres:
        yield f"sqlite:///{sqlite_file}"
        return
    import psycopg

    server = urlsplit(server_url)
    name = f"fh_bench_{secrets.token_hex(4)}"
    admin = urlunsplit(server._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(server._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_vendor(vendor: str, args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"fh-bench-{vendor}-"))
    env = {**os.environ, **CHILD_ENV, "DATA_DIR": str(tmp)}
    env["MEDIA_ROOT"] = str(tmp / "media")
    env["EMBEDDINGS"] = args.embeddings
    env.setdefault("EMBEDDINGS_CACHE_DIR", MODEL_CACHE)
    child = [sys.executable, __file__, "--child", "--docs", str(args.docs)]
    child += ["--searches", str(args.searches), "--seed", str(args.seed)]
    child += ["--analyze"] if args.analyze else []
    if args.profile:
        stats_file = f"{args.profile_out}.{vendor}"
        child += ["--profile", args.profile, "--profile-out", stats_file]
    try:
        with scratch_database(vendor == "postgres", tmp / "bench.sqlite3") as url:
            env["DATABASE_URL"] = url
            out = subprocess.run(
                child, env=env, cwd=ROOT, check=True, capture_output=True, text=True
            )
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line.removeprefix("RESULT "))
    except subprocess.CalledProcessError as exc:
        sys.stderr.write(exc.stdout + exc.stderr)
        raise SystemExit(f"{vendor} run failed (exit {exc.returncode})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mark(value: float, limit: float | None, higher_is_better: bool = False) -> str:
    if limit is None:
        return f"{value:8.1f}      "
    ok = value >= limit if higher_is_better else value <= limit
    return f"{value:8.1f} {'PASS' if ok else 'MISS'}"


def report(results: list[dict], args: argparse.Namespace) -> None:
    servers = ", ".join(f"{r['vendor']} {r['server']}" for r in results)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {servers}")
    print(f"EMBEDDINGS={args.embeddings}")
    print(
        f"{'vendor':<11}{'docs':>7}{'chunks':>8}{'docs/s':>14}"
        f"{'p50 ms':>14}{'p95 ms':>8}{'p99 ms':>14}{'max ms':>8}"
        f"{'be p50':>9}{'be p99':>9}{'srcs':>6}{'zero':>5}"
    )
    for r in results:
        min_rate, p50_max, p99_max = TARGETS_2K if r["docs"] <= 2000 else TARGETS_20K
        s, b = r["service"], r["backend"]
        print(
            f"{r['vendor']:<11}{r['docs']:>7}{r['chunks']:>8} "
            f"{mark(r['docs_per_s'], min_rate, True)}"
            f" {mark(s['p50'], p50_max)}{s['p95']:8.1f} {mark(s['p99'], p99_max)}"
            f"{s['max']:8.1f}{b['p50']:9.1f}{b['p99']:9.1f}"
            f"{r['mean_sources']:6.1f}{r['zero_sources']:5d}"
        )
        if r["statuses"] != {"ready": r["docs"]}:
            print(f"  WARNING: document statuses {r['statuses']}")
    print(
        "targets: >= 200 docs/s; search (service) p50 <= 5 ms and p99 <= 25 ms at "
        "<= 2,000 docs, p50 <= 15 ms above (the 20,000-doc target).\n"
        "be = local backend alone (no cache, no store lookup); srcs = mean sources "
        "per search; zero = searches with no source."
    )
    if args.analyze:
        print("statistics: (VACUUM) ANALYZE ran between ingestion and searches")
    if args.profile:
        print(
            f"profile ({args.profile}, figures inflated): {args.profile_out}.<vendor>"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--docs", type=int, default=2000)
    add("--searches", type=int, default=200)
    add("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    add("--seed", type=int, default=1)
    add("--analyze", action="store_true", help="(VACUUM) ANALYZE after ingestion")
    add(
        "--embeddings",
        choices=["off", "builtin"],
        default="off",
        help="EMBEDDINGS in the child (builtin: vectors by the background thread)",
    )
    add("--profile", choices=["ingest", "search"], help="cProfile one phase")
    add("--profile-out", default="bench.prof", help="stats file prefix")
    add("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(args)), flush=True)
        return
    vendors = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = []
    for vendor in vendors:
        print(f"running {vendor}: {args.docs} docs ...", flush=True)
        results.append(run_vendor(vendor, args))
    report(results, args)


if __name__ == "__main__":
    main()
