"""Ingestion over HTTP under production settings: documents/s until all are ready.

Starts the service as cache_http.py does (gunicorn -c deploy/gunicorn.conf.py,
gthread, ENVIRONMENT=production, PostgreSQL on a database of the run's own, Redis,
multiprocess metrics, rate limits on but high), with the embedding stage off or
deferred (``--tasks database`` adds a ``manage.py db_worker`` beside the web
server, as an operator runs it). Then ``--clients`` threads upload the
generated 5 KB documents of ingest_search.py through
``POST /api/stores/bench/documents/``, ``--batch`` files per request, and the
clock stops when every document is ``ready`` in the database and a search for
the last document's planted words finds it (lexically searchable).

    .venv/bin/python bench/ingest_http.py                     # 2,000 docs, PostgreSQL
    .venv/bin/python bench/ingest_http.py --tasks database    # ingestion in a db_worker
    .venv/bin/python bench/ingest_http.py --sqlite --docs 500

Prints the upload rate (requests answered), the ready rate (the issue-13 target:
>= 200 docs/s) and the statuses at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cache_http import check_redis, service_env  # noqa: E402
from bench.ingest_search import Corpus, scratch_database  # noqa: E402
from tests.servers import (  # noqa: E402
    ManageProcess,
    ServerProcess,
    create_api_key,
    prepare_database,
)

STORE = "bench"
TARGET_DOCS_PER_S = 200


def statuses(database_url: str) -> dict[str, int]:
    """Documents by status, read from the database itself."""
    query = "SELECT status, count(*) FROM stores_document GROUP BY status"
    if database_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            return dict(db.execute(query).fetchall())
    import psycopg

    with psycopg.connect(database_url) as db:
        return dict(db.execute(query).fetchall())


def upload(session: requests.Session, url: str, batch: list[tuple[str, bytes]]):
    files = [("files", (name, content, "text/plain")) for name, content in batch]
    response = session.post(url, files=files, timeout=300)
    if response.status_code not in (200, 201, 202):
        sys.exit(f"upload refused: {response.status_code} {response.text[:300]}")


def run(args: argparse.Namespace, folder: Path) -> None:
    corpus = Corpus(args.seed, args.docs)
    documents = [
        (f"doc-{index:05d}.txt", *corpus.document(index)) for index in range(args.docs)
    ]
    batches = [
        [(name, content) for name, content, _ in documents[i : i + args.batch]]
        for i in range(0, len(documents), args.batch)
    ]
    with scratch_database(
        not args.sqlite, folder / "db.sqlite3", args.postgres_url
    ) as database_url:
        env = {
            **service_env(args, folder, database_url),
            "TASKS_BACKEND": args.tasks,
            "EMBEDDINGS": args.embeddings,
        }
        prepare_database(env)
        key = create_api_key(env, scope="admin")
        worker = ManageProcess(env, "db_worker") if args.tasks == "database" else None
        with ServerProcess(env) as server:
            if worker:
                worker.start()
            try:
                session = requests.Session()
                session.headers["Authorization"] = f"Api-Key {key}"
                created = session.post(
                    f"{server.base_url}/api/stores/", json={"name": STORE}, timeout=30
                )
                created.raise_for_status()
                url = f"{server.base_url}/api/stores/{STORE}/documents/"
                started = time.perf_counter()
                with ThreadPoolExecutor(args.clients) as clients:
                    sessions = [requests.Session() for _ in range(args.clients)]
                    for s in sessions:
                        s.headers.update(session.headers)
                    for done in [
                        clients.submit(upload, sessions[i % args.clients], url, batch)
                        for i, batch in enumerate(batches)
                    ]:
                        done.result()
                uploaded = time.perf_counter() - started
                while statuses(database_url).get("ready", 0) < args.docs:
                    if time.perf_counter() - started > args.timeout:
                        left = statuses(database_url)
                        sys.exit(f"not all ready after {args.timeout:g} s: {left}")
                    time.sleep(0.2)
                name, _, planted = documents[-1]
                found = session.get(
                    f"{server.base_url}/api/search",
                    params={
                        "q": " ".join(planted),
                        "store": STORE,
                        "mode": "local",
                        "top_k": 10,
                        "min_score": 0,
                    },
                    timeout=30,
                ).json()
                ready = time.perf_counter() - started
            finally:
                if worker:
                    worker.stop()
        final = statuses(database_url)
    titles = [source["title"] for source in found.get("sources", [])]
    rate = args.docs / ready
    print(
        f"{args.docs} documents of ~5 KB, {args.clients} clients x {args.batch} "
        f"files per request, {'SQLite' if args.sqlite else 'PostgreSQL'}, "
        f"TASKS_BACKEND={args.tasks}, EMBEDDINGS={args.embeddings}, "
        f"{args.workers} gunicorn workers"
    )
    print(f"uploads answered: {uploaded:.1f} s ({args.docs / uploaded:.0f} docs/s)")
    print(
        f"all ready: {ready:.1f} s = {rate:.0f} docs/s (target >= {TARGET_DOCS_PER_S}: "
        f"{'PASS' if rate >= TARGET_DOCS_PER_S else 'MISS'}); statuses {final}"
    )
    print(f"the last document found by its planted words: {name in titles}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--docs", type=int, default=2000)
    add("--batch", type=int, default=10, help="files per upload request")
    add("--clients", type=int, default=2, help="uploading threads")
    add("--workers", type=int, default=2, help="gunicorn workers")
    add("--tasks", choices=["immediate", "database"], default="immediate")
    add("--embeddings", default="off", help="EMBEDDINGS for the server (off, builtin)")
    add("--seed", type=int, default=1)
    add("--timeout", type=float, default=1800)
    add("--redis-url", default="redis://127.0.0.1:6379/0")
    add("--no-redis", action="store_true", help="locmem cache")
    add("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    add("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    if not args.no_redis:
        check_redis(args.redis_url)
    folder = Path(tempfile.mkdtemp(prefix="fh-bench-ingest-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
