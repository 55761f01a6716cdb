"""Do Gemini calls serialise the server? 20 searches, one by one and all at once.

Runs gunicorn (2 gthread workers x 8 threads, as deploy/gunicorn.conf.py) with the
Gemini backend pointed at the HTTP fake of tests/fakes/gemini.py, which answers
every generateContent after ``--latency`` seconds (0.3). Then 20 distinct searches
(never cache hits) go once one after another and once all at the same time.
With the server's threads free while they wait on Gemini, the concurrent batch
takes about 20 / 16 rounds of the latency (~1 s at 0.3 s), not 20 x 0.3 s.

    .venv/bin/python bench/gemini_concurrency.py
    .venv/bin/python bench/gemini_concurrency.py --searches 40 --latency 0.5
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.gemini import GeminiFake  # noqa: E402
from tests.servers import (  # noqa: E402
    HIGH_RATE_LIMITS,
    ServerProcess,
    create_api_key,
    prepare_database,
)

FAKE_KEY = "bench-gemini-key"
TOPICS = "lantern compass harbour glacier orchard meadow canyon river forest desert"


def _request(base_url: str, key: str, path: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        base_url + path,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _upload(base_url: str, key: str, name: str, text: str) -> None:
    boundary = secrets.token_hex(8)
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{name}"\r\nContent-Type: text/plain\r\n\r\n{text}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/api/stores/bench/documents/",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Api-Key {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["status"] == "ready"


def _search(base_url: str, key: str, query: str) -> dict:
    body = _request(
        base_url, key, "/api/search", {"query": query, "store_name": "bench"}
    )
    assert body["cached"] is False and body["backend"] == "gemini", body
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per answer")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fh-bench-gemini-"))
    with GeminiFake(api_key=FAKE_KEY) as fake:
        env = {
            "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
            "DATA_DIR": str(folder),
            "REDIS_URL": "",
            "GEMINI_API_KEY": FAKE_KEY,
            "GEMINI_BASE_URL": fake.base_url,
            "WORKERS": str(args.workers),
            "THREADS": str(args.threads),
            "ENVIRONMENT": "development",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECRET_KEY": secrets.token_urlsafe(40),
            **HIGH_RATE_LIMITS,
        }
        prepare_database(env)
        key = create_api_key(env, scope="write")
        with ServerProcess(env) as server:
            base = server.base_url
            _request(base, key, "/api/stores/", {"name": "bench"})
            for index, topic in enumerate(TOPICS.split()):
                _upload(base, key, f"{topic}.txt", f"The {topic} guide, part {index}.")
            fake.delay("generateContent", args.latency)

            started = time.perf_counter()
            for index in range(args.searches):
                _search(base, key, f"serial question {index} about the lantern")
            serial = time.perf_counter() - started

            queries = [
                f"parallel question {i} about the compass" for i in range(args.searches)
            ]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.searches) as pool:
                list(pool.map(lambda q: _search(base, key, q), queries))
            concurrent = time.perf_counter() - started
            calls = len(fake.calls(route="generateContent"))

    slots = args.workers * args.threads
    ideal = -(-args.searches // slots) * args.latency
    print(
        f"gunicorn {args.workers} workers x {args.threads} threads; the fake answers "
        f"generateContent after {args.latency:g} s; {args.searches} distinct searches"
    )
    print(f"serial:     {serial:6.2f} s wall ({args.searches} x {args.latency:g} s)")
    print(
        f"concurrent: {concurrent:6.2f} s wall (ideal {ideal:.2f} s with {slots} "
        f"threads; {serial / concurrent:.1f}x faster than serial)"
    )
    print(f"generateContent calls received by the fake: {calls}")


if __name__ == "__main__":
    main()
