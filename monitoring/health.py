"""Cheap health checks: each answers fast and never raises."""

from __future__ import annotations

import time
import uuid

import psutil
from django.conf import settings
from django.core.cache import caches
from django.db import connection

STARTED_AT = time.time()


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "unreachable"
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
    # Non-blocking readings only: cpu_percent(interval=None) compares with the
    # previous call instead of sleeping to sample.
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": psutil.virtual_memory().percent,
        "cpu_count": psutil.cpu_count(),
    }


def uptime_seconds() -> float:
    return round(time.time() - STARTED_AT, 1)


def human_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d"] if days else []
    return " ".join([*parts, f"{hours}h", f"{minutes}m", f"{secs}s"])


def health() -> tuple[dict, int]:
    database = check_database()
    cache = check_cache()
    if not database["ok"]:
        status = "unhealthy"
    elif not cache["ok"]:
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
        "database": database,
        "cache": cache,
        "system": system_info(),
    }
    return body, 503 if status == "unhealthy" else 200


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
