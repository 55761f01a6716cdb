"""Search quality on a public corpus: hit@1, hit@5, MRR@10 and abstentions.

Loads Sphinx's documentation (corpus.py) into a fresh store through the service
layer (``stores.services.documents_add``, ingestion in-process), asks every
question of ``questions.jsonl`` through ``search.services.search`` (mode
``local``: no Gemini), and prints per split how often a gold file is among the
sources, how often answerable questions got no sources, and how often
unanswerable ones correctly got none; then the same for plain BM25 over the same
chunks, computed here, as a yardstick.

    .venv/bin/python bench/quality/evaluate.py                   # dev split, SQLite
    .venv/bin/python bench/quality/evaluate.py --split test --per-kind
    .venv/bin/python bench/quality/evaluate.py --split all --json > quality.json
    .venv/bin/python bench/quality/evaluate.py \\
        --database-url postgres://postgres@127.0.0.1:5432/fh_quality_mine

Every run gets a temporary DATA_DIR/MEDIA_ROOT and, by default, a temporary
SQLite database, removed at the end. A PostgreSQL database named by
``--database-url`` is created by the run and dropped after it; one that already
exists is refused, so no real database is ever written to.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from corpus import CORPUS_ROOT, SDIST, SHA256, corpus_files, ensure_corpus  # noqa: E402
from questions import KINDS, Question, load  # noqa: E402

STORE = "quality"
MRR_DEPTH = 10
UPLOAD_BATCH = 20  # files per documents_add call (the API's MAX_FILES_PER_REQUEST)
# Set before django.setup(): no Redis, no Gemini, ingestion runs in-process.
DJANGO_ENV = {
    "DJANGO_SETTINGS_MODULE": "flamehaven.settings",
    "ENVIRONMENT": "development",
    "LOG_LEVEL": "WARNING",
    "DEBUG": "false",
    "TASKS_BACKEND": "immediate",
    "REDIS_URL": "",
    "GEMINI_API_KEY": "",
    "GOOGLE_API_KEY": "",
}


# --- Results ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one system answered to one question."""

    id: str
    split: str
    kind: str
    ranked: list[str]  # corpus paths of the sources, best first ([] = abstained)
    gold: list[str]
    ms: float | None = None
    rank: int | None = field(init=False)  # 1-based rank of the first gold file

    def __post_init__(self) -> None:
        self.rank = next(
            (i for i, path in enumerate(self.ranked, 1) if path in self.gold), None
        )


@dataclass
class Figures:
    """One row of the report: a system on a split (and maybe one kind)."""

    system: str
    split: str
    kind: str
    answerable: int
    unanswerable: int
    hit_at_1: float | None
    hit_at_5: float | None
    mrr_at_10: float | None
    answerable_without_sources: float | None
    unanswerable_without_sources: float | None
    p50_ms: float | None


def share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


def figures(system: str, split: str, kind: str, outcomes: list[Outcome]) -> Figures:
    """Ranking figures count answerable questions only; an abstention is a miss."""
    answerable = [o for o in outcomes if o.kind != "unanswerable"]
    unanswerable = [o for o in outcomes if o.kind == "unanswerable"]
    times = [o.ms for o in outcomes if o.ms is not None]
    mrr = [1 / o.rank if o.rank and o.rank <= MRR_DEPTH else 0.0 for o in answerable]
    return Figures(
        system=system,
        split=split,
        kind=kind,
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        hit_at_1=share(o.rank == 1 for o in answerable),
        hit_at_5=share(o.rank is not None and o.rank <= 5 for o in answerable),
        mrr_at_10=statistics.fmean(mrr) if mrr else None,
        answerable_without_sources=share(not o.ranked for o in answerable),
        unanswerable_without_sources=share(not o.ranked for o in unanswerable),
        p50_ms=statistics.median(times) if times else None,
    )


def report_rows(
    outcomes: dict[str, list[Outcome]], splits: list[str], per_kind: bool
) -> list[Figures]:
    rows = []
    for split in splits:
        for system, results in outcomes.items():
            in_split = [o for o in results if split == "all" or o.split == split]
            rows.append(figures(system, split, "all", in_split))
            if per_kind:
                for kind in KINDS:
                    of_kind = [o for o in in_split if o.kind == kind]
                    rows.append(figures(system, split, kind, of_kind))
    return rows


# --- Django and the scratch database ---------------------------------------------


@contextmanager
def scratch_environment(database_url: str | None) -> Iterator[str]:
    """Temporary DATA_DIR/MEDIA_ROOT and database; the database's vendor.

    Settings are read once, at django.setup(), so everything is in the
    environment before it; this process runs one database only.
    """
    tmp = Path(tempfile.mkdtemp(prefix="fh-quality-"))
    url = database_url or f"sqlite:///{tmp / 'quality.sqlite3'}"
    created = None
    try:
        if url.startswith(("postgres://", "postgresql://")):
            created = create_postgres_database(url)
        os.environ.update(DJANGO_ENV)
        os.environ.update(
            DATA_DIR=str(tmp), MEDIA_ROOT=str(tmp / "media"), DATABASE_URL=url
        )
        yield "postgresql" if created else "sqlite"
    finally:
        if created:
            drop_postgres_database(url)
        shutil.rmtree(tmp, ignore_errors=True)


def _maintenance_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise SystemExit(f"--database-url: {name!r} is not a plain database name")
    return urlunsplit(parts._replace(path="/postgres")), name


def create_postgres_database(url: str) -> bool:
    import psycopg

    admin, name = _maintenance_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if exists:
            raise SystemExit(
                f"database {name!r} exists; give a new name (the run creates and "
                "drops its own database)"
            )
        conn.execute(f'CREATE DATABASE "{name}"')
    return True


def drop_postgres_database(url: str) -> None:
    import psycopg
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    with suppress(ImproperlyConfigured):  # settings never loaded: nothing open
        connections.close_all()
    admin, name = _maintenance_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Loading the corpus -----------------------------------------------------------


def load_corpus(root: Path) -> tuple[dict[int, str], dict[str, int], float]:
    """Upload every corpus file; document id -> corpus path, statuses, seconds.

    The service keeps only a file's base name (``index.txt`` is sixteen
    different pages), so the corpus path of each document comes from this map,
    never from the name the answer shows.
    """
    from django.core.files.base import ContentFile

    from stores.models import Document
    from stores.services import documents_add, store_create

    store = store_create(name=STORE, backend="local")
    files = corpus_files(root)
    paths: dict[int, str] = {}
    started = time.perf_counter()
    for start in range(0, len(files), UPLOAD_BATCH):
        batch = files[start : start + UPLOAD_BATCH]
        uploads = [(ContentFile(f.file.read_bytes()), f.file.name) for f in batch]
        results = documents_add(store=store, files=uploads)
        for corpus_file, (document, created) in zip(batch, results, strict=True):
            if not created:
                print(f"warning: {corpus_file.path} duplicates a file", file=sys.stderr)
            paths.setdefault(document.pk, corpus_file.path)
    seconds = time.perf_counter() - started
    statuses = Counter(
        Document.objects.filter(store=store).values_list("status", flat=True)
    )
    return paths, dict(statuses), seconds


# --- Asking the service -----------------------------------------------------------


def source_paths(answer: dict[str, Any], paths: dict[int, str]) -> list[str]:
    """Corpus paths of an answer's sources, best first; [] when it abstained.

    Tolerant of later answer shapes: ``grounded: false`` counts as no answer
    whatever sources come with it, and a source without ``document_id`` is
    found from the id at the end of its ``uri``.
    """
    if answer.get("grounded") is False:
        return []
    ranked: list[str] = []
    for source in answer.get("sources") or []:
        doc_id = source.get("document_id")
        if doc_id is None:
            found = re.search(r"/(\d+)/?$", source.get("uri") or "")
            doc_id = int(found.group(1)) if found else None
        path = paths.get(doc_id, f"?{source.get('title', '')}")
        if path not in ranked:
            ranked.append(path)
    return ranked


def wait_for_vectors(timeout: float = 1800) -> float:
    """Seconds until the embedding stage (a thread of this process) has given
    every ready document its vectors."""
    from stores import embedding

    started = time.perf_counter()
    if not embedding.enabled():
        return 0.0
    while embedding.wanted().exists():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"vectors still missing after {timeout:.0f} s")
        time.sleep(0.5)
    return time.perf_counter() - started


def ask_service(
    questions: list[Question],
    paths: dict[int, str],
    top_k: int,
    min_score: float | None = None,
) -> list[Outcome]:
    """Each question once, through the search service, with a cold search cache."""
    from django.core.cache import caches

    from search.services import SearchParams, search

    caches["search"].clear()
    outcomes = []
    for q in questions:
        params = SearchParams(
            query=q.question,
            store_name=STORE,
            mode="local",
            top_k=top_k,
            min_score=min_score,
        )
        started = time.perf_counter()
        answer = search(params)
        ms = (time.perf_counter() - started) * 1000
        ranked = source_paths(answer, paths)
        outcomes.append(Outcome(q.id, q.split, q.kind, ranked, q.gold, ms))
    return outcomes


def ask_variants(
    questions: list[Question], paths: dict[int, str], args
) -> dict[str, list[Outcome]]:
    """The service as configured, or once per lexical weight and floor asked."""
    from stores.backends import local

    weights = [float(w) for w in (args.lexical_weights or "").split(",") if w]
    floors = [float(f) for f in (args.min_scores or "").split(",") if f]
    fulls = [int(n) for n in (args.unknown_full_at or "").split(",") if n]
    if not weights and not floors and not fulls:
        return {"service": ask_service(questions, paths, args.top_k)}
    outcomes = {}
    defaults = local.LEXICAL_WEIGHT, local.UNKNOWN_WORDS_FULL_AT
    for weight in weights or [defaults[0]]:
        local.LEXICAL_WEIGHT = weight
        for full in fulls or [defaults[1]]:
            local.UNKNOWN_WORDS_FULL_AT = full
            for floor in floors or [None]:
                name = f"w{weight:g}" + (f"/u{full}" if fulls else "")
                name += "" if floor is None else f"/f{floor:g}"
                outcomes[name] = ask_service(questions, paths, args.top_k, floor)
    local.LEXICAL_WEIGHT, local.UNKNOWN_WORDS_FULL_AT = defaults
    return outcomes


# --- Plain BM25 over the same chunks ----------------------------------------------

BM25_K1 = 1.2
BM25_B = 0.75
_WORD = re.compile(r"[^\W_]+")


class ChunkBM25:
    """Okapi BM25 over the store's chunk texts, ranking documents by best chunk.

    The yardstick: the same passages the engine indexes and the same query words
    (the service's ``query_terms``, stop words dropped), lower-cased, no stemming,
    no coordination boost. Lucene's idf, which stays positive for common words.
    """

    def __init__(self, chunks: list[tuple[int, str]]) -> None:
        tfs = [(doc, Counter(_WORD.findall(text.lower()))) for doc, text in chunks]
        self.chunks = [(doc_id, tf, sum(tf.values())) for doc_id, tf in tfs]
        self.avg_length = statistics.fmean(length for _, _, length in self.chunks)
        df = Counter(term for _, tf in tfs for term in tf)
        n = len(tfs)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def search(self, terms: list[str], top_k: int) -> list[int]:
        best: dict[int, float] = {}
        for doc_id, tf, length in self.chunks:
            score = 0.0
            for term in terms:
                f = tf.get(term)
                if f:
                    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / self.avg_length)
                    score += self.idf[term] * f * (BM25_K1 + 1) / (f + norm)
            if score > best.get(doc_id, 0.0):
                best[doc_id] = score
        return sorted(best, key=lambda d: -best[d])[:top_k]


def ask_bm25(
    questions: list[Question], paths: dict[int, str], top_k: int
) -> list[Outcome]:
    from stores.backends.query import query_terms
    from stores.models import Chunk

    chunks = list(
        Chunk.objects.filter(store__name=STORE)
        .order_by("document_id", "ordinal")
        .values_list("document_id", "text")
    )
    index = ChunkBM25(chunks)
    outcomes = []
    for q in questions:
        started = time.perf_counter()
        doc_ids = index.search(query_terms(q.question), top_k)
        ms = (time.perf_counter() - started) * 1000
        ranked = [paths[d] for d in doc_ids]
        outcomes.append(Outcome(q.id, q.split, q.kind, ranked, q.gold, ms))
    return outcomes


# --- Output -----------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "     -" if value is None else f"{value * 100:5.1f}%"


def print_table(rows: list[Figures], top_k: int) -> None:
    print(
        f"{'system':<16}{'split':<6}{'kind':<13}{'ans':>4}{'un':>4}"
        f"{'hit@1':>8}{'hit@5':>8}{'MRR@10':>8}{'ans∅':>8}{'un∅':>8}{'p50 ms':>8}"
    )
    for r in rows:
        mrr = "     -" if r.mrr_at_10 is None else f"{r.mrr_at_10:6.3f}"
        p50 = "     -" if r.p50_ms is None else f"{r.p50_ms:6.1f}"
        print(
            f"{r.system:<16}{r.split:<6}{r.kind:<13}{r.answerable:>4}"
            f"{r.unanswerable:>4}  {_pct(r.hit_at_1)}  {_pct(r.hit_at_5)}  {mrr}"
            f"  {_pct(r.answerable_without_sources)}"
            f"  {_pct(r.unanswerable_without_sources)}  {p50}"
        )
    print(
        f"ans/un = answerable/unanswerable questions; hit@k = a gold file among the "
        f"first k sources; MRR over the first {min(top_k, MRR_DEPTH)};\n"
        "ans∅ = answerable questions left without sources (lower is better); "
        "un∅ = unanswerable ones left without sources (higher is better).\n"
        "bm25 = plain BM25 over the same chunks (no stemming), computed here; "
        "its p50 is an in-memory Python loop, not a database query."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--split", choices=["dev", "test", "all"], default="dev")
    add("--top-k", type=int, default=MRR_DEPTH, help="sources asked for (default 10)")
    add("--json", action="store_true", help="machine-readable output on stdout")
    add("--per-kind", action="store_true", help="also one row per question kind")
    add("--database-url", help="a new PostgreSQL database to create and drop")
    add("--no-bm25", action="store_true", help="skip the BM25 baseline")
    add(
        "--embeddings",
        default="builtin",
        help="EMBEDDINGS for the run (builtin, off, ...; default builtin)",
    )
    add(
        "--lexical-weights",
        help="comma-separated LEXICAL_WEIGHT values to try (default: the code's)",
    )
    add(
        "--unknown-full-at",
        help="comma-separated UNKNOWN_WORDS_FULL_AT values to try (passages; "
        "default: the code's)",
    )
    add(
        "--min-scores",
        help="comma-separated relevance floors to try (default: SEARCH_MIN_SCORE)",
    )
    args = parser.parse_args()
    os.environ["EMBEDDINGS"] = args.embeddings
    # The built-in model's graph is built once per machine, not per run.
    os.environ.setdefault(
        "EMBEDDINGS_CACHE_DIR",
        str(Path(tempfile.gettempdir()) / "flamehaven-bench-models"),
    )

    root = ensure_corpus()
    questions = [q for q in load() if args.split in ("all", q.split)]
    with scratch_environment(args.database_url) as vendor:
        # The service caps top_k at MAX_SOURCES; lift the cap to what is asked.
        os.environ["MAX_SOURCES"] = str(max(args.top_k, 5))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        paths, statuses, load_s = load_corpus(root)
        embed_s = wait_for_vectors()
        outcomes = ask_variants(questions, paths, args)
        if not args.no_bm25:
            outcomes["bm25"] = ask_bm25(questions, paths, args.top_k)
        from stores.models import Chunk

        chunks = Chunk.objects.filter(store__name=STORE).count()

    splits = ["dev", "test"] if args.split == "all" else [args.split]
    splits += ["all"] if args.split == "all" else []
    rows = report_rows(outcomes, splits, args.per_kind)
    run = {
        "corpus": {"sdist": SDIST, "sha256": SHA256, "root": str(CORPUS_ROOT)},
        "database": vendor,
        "documents": len(paths),
        "statuses": statuses,
        "chunks": chunks,
        "load_seconds": round(load_s, 1),
        "embedding": args.embeddings,
        "vectors_seconds": round(embed_s, 1),
        "top_k": args.top_k,
    }
    if args.json:
        by_question = defaultdict(dict)
        for system, results in outcomes.items():
            for o in results:
                by_question[o.id][system] = {"rank": o.rank, "sources": o.ranked}
        print(
            json.dumps(
                {**run, "figures": [asdict(r) for r in rows], "questions": by_question},
                indent=2,
            )
        )
        return
    print(
        f"corpus {SDIST}: {len(paths)} documents, {chunks} chunks, loaded in "
        f"{load_s:.1f} s ({vendor}); statuses {statuses}; top_k {args.top_k}; "
        f"EMBEDDINGS={args.embeddings}, all vectors {embed_s:.1f} s after loading"
    )
    print_table(rows, args.top_k)


if __name__ == "__main__":
    main()
