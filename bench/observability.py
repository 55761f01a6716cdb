"""What the metrics and logging middleware cost per request, and /health under wrk.

Runs with production settings (``ENVIRONMENT=production``: JSON log lines, one
access line per request at INFO; prometheus_client in multiprocess mode, as under
gunicorn) on a fresh SQLite database, and measures, in one run:

- in one process, ``GET /bench/floor`` (a plain Django view) through Django's
  ``WSGIHandler`` called directly, with the service's middleware and without the
  observability part of it (``bench/settings_bare.py``: MetricsMiddleware and
  RequestLogMiddleware, the access line and the request id, which exists for
  the log lines). The two take turns, round after round; the
  cost is the difference of their per-request means, each the median over the
  rounds (target <= 0.3 ms);
- over HTTP, for context, the same floor on two gunicorn servers, one per
  variant, under wrk;
- ``GET /health`` on the server with every middleware, under wrk
  (target >= 500 req/s).

    .venv/bin/python bench/observability.py                  # locmem cache
    .venv/bin/python bench/observability.py --redis          # Redis, DB 6
    .venv/bin/python bench/observability.py --in-process-only --breakdown
    .venv/bin/python bench/observability.py --in-process-only --profile

Log lines are rendered and written to /dev/null, so their cost is counted and the
terminal stays readable.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cache_http import (  # noqa: E402
    Result,
    Target,
    check_redis,
    median_result,
    parse_wrk,
    run_wrk,
)
from tests.servers import (  # noqa: E402
    HIGH_RATE_LIMITS,
    ServerProcess,
    prepare_database,
)

TARGET_COST_MS = 0.3
TARGET_HEALTH_RPS = 500
WARMUP_REQUESTS = 2000
PROFILE_REQUESTS = 5000
FLOOR = "/bench/floor"
# For --breakdown: each part is measured as the full stack less that part.
PARTS = {
    "MetricsMiddleware": ("monitoring.middleware.MetricsMiddleware",),
    "RequestLogMiddleware": ("flamehaven.middleware.RequestLogMiddleware",),
}


def service_env(folder: Path, redis_url: str) -> dict[str, str]:
    """Production settings, less the TLS redirect: wrk speaks plain HTTP, as a
    TLS proxy in front of the service would."""
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "ENVIRONMENT": "production",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "DATA_DIR": str(folder),
        "MEDIA_ROOT": str(folder / "media"),
        "STATIC_ROOT": str(folder / "static"),
        "REDIS_URL": redis_url,
        "TASKS_BACKEND": "immediate",
        **HIGH_RATE_LIMITS,
        "GEMINI_API_KEY": "",
        "GOOGLE_API_KEY": "",
        "LOG_LEVEL": "INFO",
    }


# --- In one process -------------------------------------------------------------


def wsgi_environ() -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": FLOOR,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def get_floor(handler) -> tuple[str, dict[str, str], bytes]:
    """One request, as gunicorn makes it: call, read the body, close."""
    answer = []

    def start_response(status, headers, exc_info=None):
        answer.append((status, dict(headers)))

    response = handler(wsgi_environ(), start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()  # request_finished, as under gunicorn
    return *answer[0], body


def time_requests(handler, iterations: int) -> list[float]:
    clock = time.perf_counter
    timings = []
    gc.collect()
    for _ in range(iterations):
        started = clock()
        get_floor(handler)
        timings.append(clock() - started)
    return timings


@dataclass
class Variant:
    label: str
    handler: object
    means: list[float]
    medians: list[float]

    @property
    def mean_ms(self) -> float:
        return statistics.median(self.means) * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.medians) * 1000


def build_handlers(breakdown: bool) -> dict[str, object]:
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    from bench.settings_bare import OBSERVABILITY_MIDDLEWARE

    def handler_without(names) -> WSGIHandler:
        # The handler loads its middleware when it is made; the chain it holds
        # stays after the override ends.
        middleware = [name for name in settings.MIDDLEWARE if name not in names]
        with override_settings(MIDDLEWARE=middleware):
            return WSGIHandler()

    handlers = {
        "with observability": WSGIHandler(),
        "without": handler_without(OBSERVABILITY_MIDDLEWARE),
    }
    if breakdown:
        for part, names in PARTS.items():
            handlers[f"less {part}"] = handler_without(names)
    return handlers


def check_variants(handlers: dict[str, object]) -> None:
    """Each variant answers 200; only the full stack logs, counts and sets an id."""
    from monitoring import metrics

    root = logging.getLogger().handlers[0]
    requests_counted = metrics.HTTP_REQUESTS.labels("GET", "bench-floor", "200")
    for label, handler in handlers.items():
        lines = io.StringIO()
        root.setStream(lines)
        counted = requests_counted._value.get()
        status, headers, body = get_floor(handler)
        if not status.startswith("200") or json.loads(body) != {"status": "ok"}:
            sys.exit(f"{label}: GET {FLOOR} answered {status}: {body[:200]!r}")
        access = [
            line
            for line in lines.getvalue().splitlines()
            if json.loads(line).get("event") == "request"
        ]
        observed = (
            len(access),
            requests_counted._value.get() - counted,
            "X-Request-ID" in headers,
        )
        if label == "with observability" and observed != (1, 1, True):
            sys.exit(f"{label}: access lines, counted, request id: {observed}")
        if label == "without" and observed != (0, 0, False):
            sys.exit(f"{label}: still logs, counts or sets an id: {observed}")
    root.setStream(open(os.devnull, "w"))  # noqa: SIM115  (open until exit)


def measure_in_process(args: argparse.Namespace) -> list[Variant]:
    handlers = build_handlers(args.breakdown)
    check_variants(handlers)
    variants = [Variant(label, h, [], []) for label, h in handlers.items()]
    for variant in variants:
        time_requests(variant.handler, WARMUP_REQUESTS)
    # Variants take turns, so a slow spell of the machine lands on all of them.
    for round_number in range(1, args.rounds + 1):
        for variant in variants:
            timings = time_requests(variant.handler, args.iterations)
            variant.means.append(statistics.fmean(timings))
            variant.medians.append(statistics.median(timings))
            print(
                f"round {round_number}: {variant.label}: "
                f"mean {variant.means[-1] * 1000:.3f} ms"
            )
    if args.profile:
        profile(handlers["with observability"])
    return variants


def profile(handler) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(PROFILE_REQUESTS):
        get_floor(handler)
    profiler.disable()
    print(f"\ncProfile of {PROFILE_REQUESTS} requests with every middleware:")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(40)


def print_in_process(args: argparse.Namespace, variants: list[Variant]) -> None:
    print()
    print(
        f"in one process: GET {FLOOR} through WSGIHandler, one thread; "
        f"{args.iterations:,} requests per variant and round, {args.rounds} rounds "
        "taking turns; medians of the rounds"
    )
    width = max(len(v.label) for v in variants)
    print(f"{'variant':<{width}}  {'mean ms':>8}  {'median ms':>9}")
    for v in variants:
        print(f"{v.label:<{width}}  {v.mean_ms:>8.3f}  {v.median_ms:>9.3f}")
    full, bare, *parts = variants
    cost = full.mean_ms - bare.mean_ms
    print()
    print(
        f"metrics and logging middleware: {cost:.3f} ms per request (mean), "
        f"{full.median_ms - bare.median_ms:.3f} ms (median) "
        f"(target <= {TARGET_COST_MS:g} ms: "
        f"{'PASS' if cost <= TARGET_COST_MS else 'MISS'})"
    )
    print(
        "  without = less MetricsMiddleware and RequestLogMiddleware "
        "(the access line and the request id)"
    )
    for v in parts:
        part = v.label.removeprefix("less ")
        print(f"  {part}: {full.mean_ms - v.mean_ms:.3f} ms (mean)")


# --- Over HTTP ------------------------------------------------------------------


def measure_http(
    args: argparse.Namespace, env: dict[str, str], folder: Path
) -> list[Result]:
    servers = {
        "with observability": "bench.settings",
        "without": "bench.settings_bare",
    }
    common = {**env, "WORKERS": str(args.workers)}
    with (
        ServerProcess(
            {
                **common,
                "DJANGO_SETTINGS_MODULE": servers["with observability"],
                "PROMETHEUS_MULTIPROC_DIR": str(folder / "prometheus-with"),
            }
        ) as full,
        ServerProcess(
            {
                **common,
                "DJANGO_SETTINGS_MODULE": servers["without"],
                "PROMETHEUS_MULTIPROC_DIR": str(folder / "prometheus-without"),
            }
        ) as bare,
    ):
        runs = [
            (Target(f"GET {FLOOR}, with observability", FLOOR), full),
            (Target(f"GET {FLOOR}, without", FLOOR), bare),
            (Target("GET /health", "/health"), full),
        ]
        try:
            return wrk_rounds(args, runs, folder)
        except (Exception, SystemExit):
            for server in (full, bare):
                print(f"--- server log (tail) ---\n{server.log_text()[-3000:]}")
            raise


def wrk_rounds(
    args: argparse.Namespace,
    runs: list[tuple[Target, ServerProcess]],
    folder: Path,
) -> list[Result]:
    wrk = dict(connections=args.connections, threads=args.threads)
    rounds: dict[str, list[Result]] = {target.label: [] for target, _ in runs}
    for round_number in range(1, args.rounds + 1):
        for target, server in runs:
            if args.warmup > 0:
                run_wrk(target, server.base_url, folder, duration=args.warmup, **wrk)
            output = run_wrk(
                target, server.base_url, folder, duration=args.duration, **wrk
            )
            result = parse_wrk(target, output)
            rounds[target.label].append(result)
            print(f"round {round_number}: {target.label}: {result.rps:.1f} req/s")
    return [median_result(results) for results in rounds.values()]


def print_http(args: argparse.Namespace, results: list[Result]) -> None:
    threads = os.environ.get("THREADS", "8")
    print()
    print(
        f"over HTTP: gunicorn gthread, {args.workers} workers x {threads} threads "
        f"per server; wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration:g}s per target and round; medians of {args.rounds} rounds"
    )
    width = max(len(r.target.label) for r in results)
    print(f"{'target':<{width}}  {'req/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  requests")
    for r in results:
        print(
            f"{r.target.label:<{width}}  {r.rps:>9.1f}  {r.p50_ms:>7.2f}  "
            f"{r.p99_ms:>7.2f}  {r.requests}"
        )
    full, bare, health = results
    print()
    if bare.rps:
        print(f"floor with observability / without, req/s: {full.rps / bare.rps:.0%}")
    print(
        f"/health: {health.rps:.1f} req/s, p50 {health.p50_ms:.2f} ms, "
        f"p99 {health.p99_ms:.2f} ms (target >= {TARGET_HEALTH_RPS} req/s: "
        f"{'PASS' if health.rps >= TARGET_HEALTH_RPS else 'MISS'})"
    )
    for r in results:
        errors = {name: n for name, n in r.socket_errors.items() if n}
        if r.non_2xx or errors:
            print(
                f"WARNING: {r.target.label}: {r.non_2xx} non-2xx responses, "
                f"socket errors {errors or 'none'}"
            )


# --- Main -----------------------------------------------------------------------


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "unknown"


def machine_context(args: argparse.Namespace, load: str, code: str) -> list[str]:
    cache = f"Redis ({args.redis_url})" if args.redis else "locmem"
    lines = [
        f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run {load}, "
        f"after {load_average()}",
        f"service: commit {code}, ENVIRONMENT=production (JSON logs at INFO), "
        f"SQLite, cache {cache}",
    ]
    if not args.in_process_only:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        lines.append(f"load:    {(wrk.stdout or wrk.stderr).split(' [')[0].strip()}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--iterations",
        type=int,
        default=20_000,
        help="in-process requests per variant and round",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of each; medians are printed"
    )
    parser.add_argument("--duration", type=float, default=10, help="wrk seconds")
    parser.add_argument(
        "--warmup", type=float, default=2, help="wrk seconds, unmeasured"
    )
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--redis", action="store_true", help="Redis as the cache")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument(
        "--in-process-only", action="store_true", help="no gunicorn, no wrk"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also measure the stack less each observability middleware in turn",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"then cProfile {PROFILE_REQUESTS:,} requests with every middleware",
    )
    args = parser.parse_args()

    if not args.in_process_only and not shutil.which("wrk"):
        sys.exit("wrk is not on PATH; install wrk: apt-get install wrk")
    if args.redis:
        check_redis(args.redis_url)

    folder = Path(tempfile.mkdtemp(prefix="fh-bench-obs-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> None:
    load, code = load_average(), commit()
    (folder / "static").mkdir()
    env = service_env(folder, args.redis_url if args.redis else "")
    prepare_database(env)

    # prometheus_client picks multiprocess mode when it is imported.
    os.environ.update(env, PROMETHEUS_MULTIPROC_DIR=str(folder / "prometheus"))
    import django

    django.setup()
    variants = measure_in_process(args)
    results = [] if args.in_process_only else measure_http(args, env, folder)

    print()
    print("\n".join(machine_context(args, load, code)))
    print_in_process(args, variants)
    if results:
        print_http(args, results)


if __name__ == "__main__":
    main()
