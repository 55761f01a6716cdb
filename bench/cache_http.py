"""Cache-hit search over HTTP, beside the framework's floor, under gunicorn and wrk.

Starts the service as it runs in production (gunicorn, gthread, several workers,
Redis as the shared cache) on a fresh SQLite database, fills a store over the API,
warms the search cache, then measures with wrk, in one run:

- ``POST /api/search``, a cache hit (DRF, API-key authentication, the store lookup,
  the cache read);
- ``GET /health`` (a database query and a cache round trip, no DRF);
- ``GET /bench/floor``, a plain Django view under the same middleware: the floor.

    .venv/bin/python bench/cache_http.py                # Redis on 127.0.0.1:6379
    .venv/bin/python bench/cache_http.py --no-redis     # locmem, one per worker
    .venv/bin/python bench/cache_http.py --duration 30 --connections 16 --workers 4

Prints the median req/s, p50 and p99 of each target over ``--rounds`` rounds,
the cache hit's req/s as a share of the floor's (target >= 60%) and whether
its p50 is <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import (  # noqa: E402
    HIGH_RATE_LIMITS,
    ServerProcess,
    create_api_key,
    prepare_database,
)

STORE = "bench"
DOCUMENTS = 20
QUERY = "how does the search cache keep answers fast for repeated questions"
TARGET_SHARE_OF_FLOOR = 0.60
TARGET_P50_MS = 5.0
# Consecutive cache hits that end the warm-up. With locmem each worker keeps its
# own cache, so the warm-up goes on until both have answered from it in a row.
WARM_HITS = 20
WARM_MAX_REQUESTS = 200
TOPIC_SENTENCES = [
    "The search cache keeps answers for repeated questions.",
    "A repeated question is answered fast from the cache.",
    "Answers stay cached until a document in the store changes.",
    "Workers share one cache when Redis is configured.",
]
FILLER = " ".join(
    [
        "store document upload index chunk passage citation source answer question",
        "worker thread request response latency throughput gunicorn database query",
        "redis memory network session header middleware view serializer backend",
    ]
).split()


# --- HTTP, with the standard library ----------------------------------------------


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Api-Key {key}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
    ) -> tuple[int, dict]:
        headers = dict(self.headers) if auth else {}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"raw": raw[:500].decode(errors="replace")}

    def post_json(self, path: str, payload: dict) -> tuple[int, dict]:
        return self.call(
            "POST",
            path,
            body=json.dumps(payload).encode(),
            content_type="application/json",
        )

    def upload(self, path: str, filename: str, content: bytes) -> tuple[int, dict]:
        boundary = secrets.token_hex(16)
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="file"; filename="{filename}"'
                "\r\n".encode(),
                b"Content-Type: text/plain\r\n\r\n",
                content,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        return self.call(
            "POST",
            path,
            body=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )


def expect(status: int, body: dict, ok: tuple[int, ...], what: str) -> dict:
    if status not in ok:
        sys.exit(f"{what}: HTTP {status}: {json.dumps(body)[:500]}")
    return body


# --- Setup ------------------------------------------------------------------------


def document_text(rng: random.Random, index: int) -> bytes:
    sentences = [f"Bench document {index}."]
    for _ in range(12):
        words = rng.choices(FILLER, k=rng.randint(8, 16))
        sentences.append(" ".join(words).capitalize() + ".")
        if rng.random() < 0.3:
            sentences.append(rng.choice(TOPIC_SENTENCES))
    return " ".join(sentences).encode()


def fill_store(api: Api) -> None:
    expect(*api.post_json("/api/stores/", {"name": STORE}), (201,), "create store")
    rng = random.Random(1)
    for index in range(1, DOCUMENTS + 1):
        status, body = api.upload(
            f"/api/stores/{STORE}/documents/",
            f"bench-{index:02d}.txt",
            document_text(rng, index),
        )
        expect(status, body, (200, 201, 202), f"upload document {index}")
    store = expect(*api.call("GET", f"/api/stores/{STORE}/"), (200,), "get store")
    ready = store.get("documents", {}).get("ready")
    if ready != DOCUMENTS:
        sys.exit(f"expected {DOCUMENTS} ready documents, got {store['documents']}")


def search(api: Api) -> dict:
    payload = {"query": QUERY, "store_name": STORE}
    return expect(*api.post_json("/api/search", payload), (200,), "search")


def warm_cache(api: Api) -> tuple[int, int]:
    """Search until WARM_HITS hits in a row; return (requests, misses)."""
    streak = misses = 0
    for requests in range(1, WARM_MAX_REQUESTS + 1):
        if search(api)["cached"]:
            streak += 1
            if streak == WARM_HITS:
                return requests, misses
        else:
            streak = 0
            misses += 1
    sys.exit(f"no {WARM_HITS} cache hits in a row in {WARM_MAX_REQUESTS} searches")


# --- wrk ----------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    path: str
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] | None = None


@dataclass
class Result:
    target: Target
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    misses: int | None = None  # cache misses the server logged during the run


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
RE_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
RE_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
RE_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
RE_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
RE_SEARCH_LOG = re.compile(r"\]\s+search\s+\[search\.services\].*?cached=(True|False)")


def lua_script(target: Target, folder: Path) -> Path | None:
    if target.method == "GET" and not target.headers:
        return None
    lines = [f'wrk.method = "{target.method}"']
    if target.body is not None:
        lines.append(f"wrk.body = [==[{target.body}]==]")
    for name, value in (target.headers or {}).items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    path = folder / f"{re.sub(r'[^a-z0-9]+', '-', target.label.lower())}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(
    target: Target,
    base_url: str,
    folder: Path,
    *,
    duration: float,
    connections: int,
    threads: int,
) -> str:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
    ]
    script = lua_script(target, folder)
    if script:
        command += ["-s", str(script)]
    command.append(base_url + target.path)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60
    )
    if done.returncode != 0:
        sys.exit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def parse_wrk(target: Target, output: str) -> Result:
    rps = RE_RPS.search(output)
    percentiles = {
        p: float(value) * UNIT_MS[unit]
        for p, value, unit in RE_PERCENTILE.findall(output)
    }
    if not rps or set(percentiles) != {"50", "99"}:
        sys.exit(f"could not read wrk's output for {target.label}:\n{output}")
    requests = RE_REQUESTS.search(output)
    non_2xx = RE_NON_2XX.search(output)
    socket_errors = RE_SOCKET_ERRORS.search(output)
    return Result(
        target=target,
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(requests.group(1)) if requests else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(
            zip(
                ("connect", "read", "write", "timeout"),
                map(int, socket_errors.groups()) if socket_errors else (0, 0, 0, 0),
                strict=True,
            )
        ),
    )


def median_result(runs: list[Result]) -> Result:
    """The median of each figure over the rounds; counts are summed."""
    return Result(
        target=runs[0].target,
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        requests=sum(r.requests for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors={
            name: sum(r.socket_errors[name] for r in runs)
            for name in runs[0].socket_errors
        },
        misses=None if runs[0].misses is None else sum(r.misses for r in runs),
    )


def logged_searches(server: ServerProcess) -> list[bool]:
    """`cached` of every search the server logged so far (INFO log lines)."""
    return [hit == "True" for hit in RE_SEARCH_LOG.findall(server.log_text())]


# --- Report -------------------------------------------------------------------------


def machine_context(args: argparse.Namespace, health: dict, load: str) -> list[str]:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    cache = health.get("cache", {}).get("backend", "?")
    where = "locmem, one per worker" if args.no_redis else args.redis_url
    threads = os.environ.get("THREADS", "8")
    return [
        f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run {load}",
        f"server:  gunicorn gthread, {args.workers} workers x {threads} threads, "
        f"SQLite, cache {cache} ({where})",
        f"load:    {(wrk_version.stdout or wrk_version.stderr).split(' [')[0].strip()}"
        f", -t{args.threads} -c{args.connections} -d{args.duration:g}s per target "
        f"and round; medians of {args.rounds} rounds",
    ]


def print_report(context: list[str], results: list[Result]) -> None:
    print()
    print("\n".join(context))
    print()
    width = max(len(r.target.label) for r in results)
    print(f"{'target':<{width}}  {'req/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  requests")
    for r in results:
        print(
            f"{r.target.label:<{width}}  {r.rps:>9.1f}  {r.p50_ms:>7.2f}  "
            f"{r.p99_ms:>7.2f}  {r.requests}"
        )
    hit, floor = results[0], next(r for r in results if r.target.path == "/bench/floor")
    share = hit.rps / floor.rps if floor.rps else 0.0
    print()
    print(
        f"cache hit / floor req/s: {share:.0%} "
        f"(target >= {TARGET_SHARE_OF_FLOOR:.0%}: "
        f"{'PASS' if share >= TARGET_SHARE_OF_FLOOR else 'MISS'})"
    )
    print(
        f"cache hit p50: {hit.p50_ms:.2f} ms (target <= {TARGET_P50_MS:g} ms: "
        f"{'PASS' if hit.p50_ms <= TARGET_P50_MS else 'MISS'})"
    )
    if hit.misses is not None:
        print(f"cache misses logged during the cache-hit run: {hit.misses}")
    for r in results:
        errors = {name: n for name, n in r.socket_errors.items() if n}
        if r.non_2xx or errors:
            print(
                f"WARNING: {r.target.label}: {r.non_2xx} non-2xx responses, "
                f"socket errors {errors or 'none'}"
            )


# --- Main ---------------------------------------------------------------------------


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        sys.exit(f"Redis at {url} does not answer ({exc}); start it or use --no-redis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per target")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--warmup", type=float, default=2, help="wrk seconds, unmeasured"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per target; medians are printed"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="locmem cache")
    parser.add_argument(
        "--stores-list",
        action="store_true",
        help="also measure GET /api/stores/ (DRF, API key, database; no cache)",
    )
    args = parser.parse_args()

    if not shutil.which("wrk"):
        sys.exit("wrk is not on PATH; install wrk: apt-get install wrk")
    if not args.no_redis:
        check_redis(args.redis_url)

    folder = Path(tempfile.mkdtemp(prefix="fh-bench-http-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(
    args: argparse.Namespace, server: ServerProcess, key: str, folder: Path
) -> tuple[dict, list[Result]]:
    api = Api(server.base_url, key)
    health = expect(*api.call("GET", "/health", auth=False), (200,), "health")
    if health["status"] != "ok":
        sys.exit(f"the service is not healthy: {json.dumps(health)}")

    started = time.perf_counter()
    fill_store(api)
    took = time.perf_counter() - started
    print(f"store '{STORE}': {DOCUMENTS} documents uploaded in {took:.1f} s")
    requests, misses = warm_cache(api)
    print(f"cache warm after {requests} searches ({misses} misses)")
    answer = search(api)
    if answer["cached"] is not True:
        sys.exit("the search after the warm-up was not a cache hit")
    print(
        f"a cache hit: {len(answer['sources'])} sources, "
        f"service took_ms {answer['took_ms']}"
    )

    auth = {"Authorization": f"Api-Key {key}"}
    targets = [
        Target(
            "POST /api/search (cache hit)",
            "/api/search",
            method="POST",
            body=json.dumps({"query": QUERY, "store_name": STORE}),
            headers={**auth, "Content-Type": "application/json"},
        ),
        Target("GET /health", "/health"),
        Target("GET /bench/floor", "/bench/floor"),
    ]
    if args.stores_list:
        targets.append(Target("GET /api/stores/", "/api/stores/", headers=auth))
    for target in targets:
        status, body = api.call(
            target.method,
            target.path,
            body=target.body.encode() if target.body else None,
            content_type=(target.headers or {}).get("Content-Type"),
            auth=bool(target.headers),
        )
        expect(status, body, (200,), target.label)

    wrk = dict(connections=args.connections, threads=args.threads)
    rounds: dict[str, list[Result]] = {target.label: [] for target in targets}
    # Targets take turns, round after round: a burst of load from elsewhere on
    # the machine, or wrk's connections landing unevenly on the workers, moves
    # one round, and the median leaves it out.
    for round_number in range(1, args.rounds + 1):
        for target in targets:
            if args.warmup > 0:
                run_wrk(target, server.base_url, folder, duration=args.warmup, **wrk)
            before = len(logged_searches(server))
            output = run_wrk(
                target, server.base_url, folder, duration=args.duration, **wrk
            )
            result = parse_wrk(target, output)
            if target.path == "/api/search":
                # Only a miss logs a "search" line (a hit is in the access line).
                result.misses = logged_searches(server)[before:].count(False)
            rounds[target.label].append(result)
            print(f"round {round_number}: {target.label}: {result.rps:.1f} req/s")
    results = [median_result(runs) for runs in rounds.values()]

    if search(api)["cached"] is not True:
        sys.exit("the search after the runs was not a cache hit")
    return health, results


def run(args: argparse.Namespace, folder: Path) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "ENVIRONMENT": "development",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "DATA_DIR": str(folder),
        "MEDIA_ROOT": str(folder / "media"),
        "REDIS_URL": "" if args.no_redis else args.redis_url,
        "TASKS_BACKEND": "immediate",
        **HIGH_RATE_LIMITS,
        "GEMINI_API_KEY": "",
        "GOOGLE_API_KEY": "",
        # INFO: the access line per request is part of the cost measured, and a
        # cache miss logs a "search" line of its own.
        "LOG_LEVEL": "INFO",
        "WORKERS": str(args.workers),
    }
    prepare_database(env)
    key = create_api_key(env, scope="admin")

    with ServerProcess(env) as server:
        try:
            health, results = measure(args, server, key, folder)
        except (Exception, SystemExit):
            print(f"--- server log (tail) ---\n{server.log_text()[-3000:]}")
            raise

    print_report(machine_context(args, health, load), results)


if __name__ == "__main__":
    main()
