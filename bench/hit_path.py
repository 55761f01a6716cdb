"""What a cache-hit search costs inside one process, and its parts.

No server and no load tool: Django's test client in one thread, so the figures
are the work a hit does, without gunicorn, wrk or thread contention (see
cache_http.py for those). Prints medians:

- a cache-hit ``POST /api/search`` and ``GET /bench/floor`` (a plain view under
  the same middleware) through the whole stack;
- the parts of a hit: the API-key row, the store row (each through
  django-cachalot, as without the row memos), one search-cache lookup, one log line.

    .venv/bin/python bench/hit_path.py                                  # locmem
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/hit_path.py
    .venv/bin/python bench/hit_path.py --profile       # and where a hit's time goes
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(folder: str) -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    os.environ["DATA_DIR"] = folder
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    # Lexical only: vectors arriving in the background would bump the store's
    # revision, and the "hits" would miss.
    os.environ["EMBEDDINGS"] = "off"
    # Thousands of searches from one key: raise the limits, keep the limiter.
    from tests.servers import HIGH_RATE_LIMITS

    os.environ.update(HIGH_RATE_LIMITS)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile --repeat cache hits and print the top functions",
    )
    args = parser.parse_args()
    setup(tempfile.mkdtemp(prefix="fh-bench-hit-"))

    import structlog
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from accounts.models import ApiKey
    from accounts.services import api_key_create
    from search import cache
    from stores.services import store_create, store_get

    # The stream handler writes to stderr; keep the terminal for the figures.
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115

    _, key = api_key_create(name="bench", scope="read")
    store_create(name="bench")
    writer = Client(
        HTTP_AUTHORIZATION=f"Api-Key {api_key_create(name='w', scope='write')[1]}"
    )
    text = b"The search cache keeps answers. Workers share one cache. " * 20
    for index in range(5):
        writer.post(
            "/api/stores/bench/documents/",
            {
                "file": SimpleUploadedFile(
                    f"doc-{index}.txt", text + bytes([65 + index])
                )
            },
        )
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    body = '{"query": "search cache answers", "store_name": "bench"}'

    def hit() -> None:
        response = client.post("/api/search", body, content_type="application/json")
        assert response.status_code == 200 and response.json()["cached"] is True

    client.post("/api/search", body, content_type="application/json")  # the miss
    entry = cache.search_cache_key(
        store_uid="bench", revision=0, query="q", mode="auto", model="m",
        max_tokens=1, temperature=0.5, top_k=5,
    )  # fmt: skip
    cache.remember(
        entry, client.post("/api/search", body, content_type="application/json").json()
    )
    log = structlog.get_logger("bench")

    rows = [
        ("cache-hit POST /api/search", hit),
        ("GET /bench/floor", lambda: client.get("/bench/floor")),
        ("  API-key row via cachalot", lambda: ApiKey.objects.get_from_key(key)),
        ("  store row via cachalot", lambda: store_get(name="bench")),
        ("  search-cache lookup", lambda: cache.lookup(entry)),
        ("  one structlog line", lambda: log.info("bench", a=1, b="x")),
    ]
    where = settings.REDIS_URL or "locmem"
    print(f"cache: {where}; medians of {args.repeat} calls, one thread")
    for label, fn in rows:
        print(f"{label:32s} {median_ms(fn, args.repeat):7.3f} ms")
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [hit() for _ in range(args.repeat)])
        pstats.Stats(profiler).sort_stats(
            os.environ.get("PROFILE_SORT", "cumulative")
        ).print_stats(60)


if __name__ == "__main__":
    main()
