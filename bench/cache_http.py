"""Cache-hit search, production settings, beside bare views: gunicorn and wrk.

Starts the service as an operator runs it (gunicorn -c deploy/gunicorn.conf.py,
gthread, ENVIRONMENT=production with JSON logs, PostgreSQL, Redis as the shared
cache, multiprocess metrics, rate limits on but high) on a database of its own,
fills a store over the API, warms the search cache, then measures with wrk, in
one run, taking turns:

- ``POST /api/search``, a cache hit;
- ``GET /health``;
- ``GET /bench/floor``, a view returning constant JSON, under the service's
  middleware;
- the same view with only the libraries' middleware (bench/settings_floor.py),
  served by the same gunicorn configuration (gthread, same workers and threads);
- the same again on plain sync workers.

    .venv/bin/python bench/cache_http.py                # PostgreSQL + Redis
    .venv/bin/python bench/cache_http.py --sqlite --no-redis
    .venv/bin/python bench/cache_http.py --duration 30 --connections 16 --workers 4

Prints the median req/s, p50 and p99 of each target over ``--rounds`` rounds,
the ratios between them, and issue 13's targets with PASS or MISS.
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

from bench.ingest_search import scratch_database  # noqa: E402
from tests.servers import (  # noqa: E402
    HIGH_RATE_LIMITS,
    ServerProcess,
    create_api_key,
    prepare_database,
)

STORE = "bench"
DOCUMENTS = 20
QUERY = "how does the search cache keep answers fast for repeated questions"
# Issue 13's targets for the cache hit and /health under production settings.
TARGET_HIT_RPS = 1500
TARGET_HIT_P50_MS = 5.0
TARGET_HIT_P99_MS = 20.0
TARGET_SHARE_OF_FLOOR = 0.40  # of the bare view on the same gunicorn configuration
TARGET_HEALTH_RPS = 1500
HIT = "POST /api/search (cache hit)"
FLOOR = "/bench/floor"
FLOOR_SAME_CONFIG = "GET /bench/floor, libraries' middleware only, gthread"
FLOOR_SYNC = "GET /bench/floor, libraries' middleware only, sync workers"
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
    found = []
    for line in server.log_text().splitlines():
        if '"search"' in line and line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "search":
                found.append(bool(record.get("cached")))
    return found


# --- Report -------------------------------------------------------------------------


def machine_context(args: argparse.Namespace, health: dict, load: str) -> list[str]:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    cache = health.get("cache", {}).get("backend", "?")
    where = "locmem, one per worker" if args.no_redis else args.redis_url
    threads = os.environ.get("THREADS", "8")
    return [
        f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run {load}",
        f"service: ENVIRONMENT=production (JSON logs at INFO), "
        f"{'SQLite' if args.sqlite else 'PostgreSQL'}, cache {cache} ({where}), "
        "multiprocess metrics, rate limits on (1,000,000/m)",
        f"servers: gunicorn gthread, {args.workers} workers x {threads} threads "
        f"(the sync floor: {args.workers} sync workers)",
        f"load:    {(wrk_version.stdout or wrk_version.stderr).split(' [')[0].strip()}"
        f", -t{args.threads} -c{args.connections} -d{args.duration:g}s per target "
        f"and round; medians of {args.rounds} rounds",
    ]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


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
    by_label = {r.target.label: r for r in results}
    hit, health = by_label[HIT], by_label["GET /health"]
    same, sync = by_label[FLOOR_SAME_CONFIG], by_label[FLOOR_SYNC]
    share = hit.rps / same.rps if same.rps else 0.0
    print()
    print(
        f"cache hit: {hit.rps:.0f} req/s (target >= {TARGET_HIT_RPS}: "
        f"{_verdict(hit.rps >= TARGET_HIT_RPS)}), p50 {hit.p50_ms:.2f} ms "
        f"(<= {TARGET_HIT_P50_MS:g}: {_verdict(hit.p50_ms <= TARGET_HIT_P50_MS)}), "
        f"p99 {hit.p99_ms:.2f} ms (<= {TARGET_HIT_P99_MS:g}: "
        f"{_verdict(hit.p99_ms <= TARGET_HIT_P99_MS)})"
    )
    print(
        f"cache hit / bare view, same gunicorn configuration: {share:.0%} "
        f"(target >= {TARGET_SHARE_OF_FLOOR:.0%}: "
        f"{_verdict(share >= TARGET_SHARE_OF_FLOOR)})"
    )
    if sync.rps:
        print(
            f"cache hit / bare view, sync workers: {hit.rps / sync.rps:.0%}; "
            f"bare view gthread / sync: {same.rps / sync.rps:.0%}"
        )
    print(
        f"GET /health: {health.rps:.0f} req/s (target >= {TARGET_HEALTH_RPS}: "
        f"{_verdict(health.rps >= TARGET_HEALTH_RPS)})"
    )
    if hit.misses is not None:
        print(f"cache misses logged during the cache-hit runs: {hit.misses}")
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
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="the PostgreSQL server the run creates (and drops) its database on",
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead")
    parser.add_argument(
        "--hit-only",
        action="store_true",
        help="measure the cache hit alone (for comparing configurations; no ratios)",
    )
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
    args: argparse.Namespace,
    servers: tuple[ServerProcess, ServerProcess, ServerProcess],
    key: str,
    folder: Path,
) -> tuple[dict, list[Result]]:
    server, floor, sync_floor = servers
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

    if not args.no_redis:
        per_hit = redis_commands_per_hit(api, args.redis_url)
        listed = ", ".join(f"{name} {n:g}" for name, n in per_hit.items())
        print(f"Redis commands per cache hit: {sum(per_hit.values()):g} ({listed})")

    auth = {"Authorization": f"Api-Key {key}"}
    runs = [
        (
            Target(
                HIT,
                "/api/search",
                method="POST",
                body=json.dumps({"query": QUERY, "store_name": STORE}),
                headers={**auth, "Content-Type": "application/json"},
            ),
            server,
        ),
        (Target("GET /health", "/health"), server),
        (Target("GET /bench/floor, the service's middleware", FLOOR), server),
        (Target(FLOOR_SAME_CONFIG, FLOOR), floor),
        (Target(FLOOR_SYNC, FLOOR), sync_floor),
    ]
    if args.stores_list:
        runs.append((Target("GET /api/stores/", "/api/stores/", headers=auth), server))
    if args.hit_only:
        runs = runs[:1]
    for target, target_server in runs:
        status, body = Api(target_server.base_url, key).call(
            target.method,
            target.path,
            body=target.body.encode() if target.body else None,
            content_type=(target.headers or {}).get("Content-Type"),
            auth=bool(target.headers),
        )
        expect(status, body, (200,), target.label)

    wrk = dict(connections=args.connections, threads=args.threads)
    rounds: dict[str, list[Result]] = {target.label: [] for target, _ in runs}
    # Targets take turns, round after round: a burst of load from elsewhere on
    # the machine, or wrk's connections landing unevenly on the workers, moves
    # one round, and the median leaves it out.
    for round_number in range(1, args.rounds + 1):
        for target, target_server in runs:
            url = target_server.base_url
            if args.warmup > 0:
                run_wrk(target, url, folder, duration=args.warmup, **wrk)
            before = len(logged_searches(server))
            output = run_wrk(target, url, folder, duration=args.duration, **wrk)
            result = parse_wrk(target, output)
            if target.path == "/api/search":
                # Only a miss logs a "search" line (a hit is in the access line).
                result.misses = logged_searches(server)[before:].count(False)
            rounds[target.label].append(result)
            print(f"round {round_number}: {target.label}: {result.rps:.1f} req/s")
    results = [median_result(done) for done in rounds.values()]

    if search(api)["cached"] is not True:
        sys.exit("the search after the runs was not a cache hit")
    return health, results


def redis_commands_per_hit(api: Api, url: str, hits: int = 100) -> dict[str, float]:
    """The commands Redis ran per cache hit, from INFO commandstats around
    ``hits`` searches (the server is otherwise idle here)."""
    import redis

    client = redis.Redis.from_url(url)

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}

    before = calls()
    for _ in range(hits):
        if search(api)["cached"] is not True:
            sys.exit("a search while counting Redis commands was not a cache hit")
    after = calls()
    # INFO itself is the one command of ours between the two readings.
    after["info"] = after.get("info", 0) - 1
    return {
        name: (count - before.get(name, 0)) / hits
        for name, count in sorted(after.items())
        if count > before.get(name, 0)
    }


def service_env(args: argparse.Namespace, folder: Path, database_url: str) -> dict:
    """Production settings as an operator runs them, less the TLS redirect (wrk
    speaks plain HTTP, as a TLS proxy in front of the service would)."""
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url,
        "DATA_DIR": str(folder),
        "MEDIA_ROOT": str(folder / "media"),
        "STATIC_ROOT": str(folder / "static"),
        "REDIS_URL": "" if args.no_redis else args.redis_url,
        "TASKS_BACKEND": "immediate",
        "EMBEDDINGS": "off",
        **HIGH_RATE_LIMITS,
        "GEMINI_API_KEY": "",
        "GOOGLE_API_KEY": "",
        # INFO: the access line per request is part of the cost measured, and a
        # cache miss logs a "search" line of its own.
        "LOG_LEVEL": "INFO",
        "WORKERS": str(args.workers),
    }


def run(args: argparse.Namespace, folder: Path) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with scratch_database(
        not args.sqlite, folder / "db.sqlite3", args.postgres_url
    ) as database_url:
        env = service_env(args, folder, database_url)
        prepare_database(env)
        key = create_api_key(env, scope="admin")
        floor_env = {**env, "DJANGO_SETTINGS_MODULE": "bench.settings_floor"}
        with (
            ServerProcess(env) as service,
            ServerProcess(floor_env) as floor,
            # gunicorn takes sync workers only with one thread (else gthread).
            ServerProcess(
                floor_env, gunicorn_args=["--worker-class", "sync", "--threads", "1"]
            ) as sync_floor,
        ):
            servers = (service, floor, sync_floor)
            try:
                health, results = measure(args, servers, key, folder)
            except (Exception, SystemExit):
                for server in servers:
                    print(f"--- server log (tail) ---\n{server.log_text()[-3000:]}")
                raise

    if args.hit_only:
        hit = results[0]
        print(
            f"cache hit: {hit.rps:.1f} req/s, "
            f"p50 {hit.p50_ms:.2f}, p99 {hit.p99_ms:.2f}"
        )
        return
    print_report(machine_context(args, health, load), results)


if __name__ == "__main__":
    main()
