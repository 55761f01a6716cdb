"""Health checks: each answers fast and never raises; /health reads them from a
probe refreshed in the background (``probe``)."""

from __future__ import annotations

import os
import threading
import time
import uuid

import psutil
from django.conf import settings
from django.core.cache import caches
from django.db import connection

from flamehaven import database_outage

STARTED_AT = time.time()
GEMINI_PROBE_EVERY_SEC = 60


class _GeminiProbe:
    """Whether Gemini answered, from a probe run at most once a minute.

    The probe (one small list call) runs in its own thread: /health answers at
    once with the last result, and is never held up by Gemini.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self.reset()

    def reset(self) -> None:
        self._generation += 1  # a probe still running reports to nobody
        self.reachable: bool | None = None  # None: no probe has finished yet
        self.error: str | None = None
        self.checked_at: float | None = None
        self._started_at: float | None = None

    def status(self) -> dict:
        now = time.monotonic()
        with self._lock:
            due = self._started_at is None or (
                now - self._started_at >= GEMINI_PROBE_EVERY_SEC
            )
            if due:
                self._started_at = now
        if due:
            threading.Thread(
                target=self._probe, args=(self._generation,), daemon=True
            ).start()
        checked_ago = None if self.checked_at is None else now - self.checked_at
        return {
            "configured": True,
            "reachable": self.reachable,
            "error": self.error,
            "checked_seconds_ago": None if checked_ago is None else round(checked_ago),
        }

    def _probe(self, generation: int) -> None:
        from stores.backends.gemini import UPSTREAM_FAILURES, client

        try:
            client().file_search_stores.list(config={"page_size": 1})
            reachable, error = True, None
        except UPSTREAM_FAILURES as exc:
            reachable, error = False, type(exc).__name__
        with self._lock:
            if generation == self._generation:
                self.reachable, self.error = reachable, error
                self.checked_at = time.monotonic()


gemini_probe = _GeminiProbe()


def check_gemini() -> dict:
    if not settings.GEMINI_API_KEY:
        return {"configured": False}
    return gemini_probe.status()


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "unreachable"
        if database_outage.is_connection_failure(exc):
            # A probe notices an outage even when no request needs the database.
            database_outage.outage.failed(exc, refused=False)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor, "ms": _ms(started)}


def check_cache(alias: str = "default") -> dict:
    started = time.perf_counter()
    cache = caches[alias]
    key = f"health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", 5)
        ok = cache.get(key) == "1"
        cache.delete(key)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    backend = type(cache).__name__
    return {"ok": ok, "backend": backend, "ms": _ms(started)}


def system_info() -> dict:
    """CPU, memory and data-disk use: /health, /metrics and a scrape read these.

    Non-blocking readings only: cpu_percent(interval=None) compares with the
    previous call instead of sleeping to sample (the original slept 100 ms).
    """
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": psutil.virtual_memory().percent,
        "disk_percent": data_disk_usage().percent,
        "cpu_count": psutil.cpu_count(),
    }


def data_disk_usage():
    """psutil's usage of the filesystem holding MEDIA_ROOT (the uploads)."""
    return psutil.disk_usage(data_disk_path(settings.MEDIA_ROOT))


def check_disk() -> dict:
    """Free space where uploads go: below DISK_FREE_MIN_PERCENT is "degraded".

    Free is what the service may still write (root-reserved blocks excluded), so
    ``free_percent`` is 100 minus ``system.disk_percent``.
    """
    minimum = settings.DISK_FREE_MIN_PERCENT
    try:
        usage = data_disk_usage()
    except OSError as exc:
        return {"ok": False, "error": type(exc).__name__, "min_free_percent": minimum}
    free_percent = round(100 - usage.percent, 1)
    return {
        "ok": free_percent >= minimum,
        "free_percent": free_percent,
        "free_mb": usage.free // (1024 * 1024),
        "min_free_percent": minimum,
    }


def data_disk_path(path) -> str:
    """The nearest existing folder of ``path``: what disk usage is read on."""
    path = os.fspath(path)
    while path and not os.path.isdir(path):
        path = os.path.dirname(path)
    return path or "/"


def uptime_seconds() -> float:
    return round(time.time() - STARTED_AT, 1)


def human_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    return " ".join([*parts, f"{hours}h", f"{minutes}m", f"{secs}s"])


class _Probe:
    """The readings /health reports, refreshed in the background.

    /health answers from the last reading and, when it is older than
    HEALTH_PROBE_SEC, starts the next one in a thread of its own: a request
    never waits on the database, the cache, psutil or the disk. A database that
    goes away shows within about HEALTH_PROBE_SEC (plus its connect timeout).
    A reading older than HEALTH_PROBE_STALE_SEC (no probe has finished since: a
    database that hangs, say) is taken again before answering, as is the first.
    HEALTH_PROBE_SEC 0 takes the readings on every request (the tests do).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading: dict | None = None
        self._taken_at = 0.0
        self._running = False

    def reading(self) -> dict:
        interval = settings.HEALTH_PROBE_SEC
        if interval <= 0:
            return _readings()
        now = time.monotonic()
        with self._lock:
            age = now - self._taken_at
            stale = self._reading is None or age > settings.HEALTH_PROBE_STALE_SEC
            start = not stale and age > interval and not self._running
            if start:
                self._running = True
        if stale:
            self._store(_readings(), now)
        elif start:
            threading.Thread(target=self._refresh, daemon=True).start()
        return self._reading

    def _store(self, reading: dict, taken_at: float) -> None:
        with self._lock:
            self._reading, self._taken_at = reading, taken_at

    def _refresh(self) -> None:
        try:
            self._store(_readings(), time.monotonic())
        finally:
            self._running = False
            connection.close()  # this thread's own; the next probe opens one

    def reset(self) -> None:
        with self._lock:
            self._reading, self._taken_at = None, 0.0


probe = _Probe()


def _readings() -> dict:
    return {
        "database": check_database(),
        "cache": check_cache(),
        "disk": check_disk(),
        "system": system_info(),
    }


def health() -> tuple[dict, int]:
    reading = probe.reading()
    database, cache, disk = reading["database"], reading["cache"], reading["disk"]
    gemini = check_gemini()
    if not database["ok"]:
        status = "unhealthy"
    elif not cache["ok"] or gemini.get("reachable") is False or not disk["ok"]:
        status = "degraded"
    else:
        status = "ok"
    uptime = uptime_seconds()
    body = {
        "status": status,
        "version": settings.VERSION,
        "environment": settings.ENVIRONMENT,
        "uptime": human_duration(uptime),
        "uptime_seconds": uptime,
        "search_backend": "gemini" if settings.GEMINI_API_KEY else "local",
        "gemini_configured": bool(settings.GEMINI_API_KEY),
        "gemini": gemini,
        "database": database,
        "cache": cache,
        "disk": disk,
        "system": reading["system"],
    }
    return body, 503 if status == "unhealthy" else 200


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
