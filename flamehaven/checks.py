"""System checks: several processes need a shared cache.

With a per-process cache (locmem), a revision bump in one process never reaches
another process's cached store rows (django-cachalot) or search answers: it goes
on answering from stale cache; and each process keeps its own rate-limit counts
(flamehaven.ratelimit keeps them in the process without Redis). That
happens under gunicorn with several workers, and with a database task worker
beside the web process.
"""

from __future__ import annotations

import structlog
from django.conf import settings
from django.core import checks
from django.core.cache.backends.locmem import LocMemCache
from django.utils.module_loading import import_string

log = structlog.get_logger(__name__)


def _per_process(backend: str) -> bool:
    # django-prometheus's LocMemCache is a subclass: compare classes, not paths.
    return issubclass(import_string(backend), LocMemCache)


def shared_cache_warnings(*, workers: int) -> list[checks.Warning]:
    """Warnings for ``workers`` web processes (plus a task worker, if configured)."""
    per_process = sorted(
        alias
        for alias, config in settings.CACHES.items()
        if _per_process(config["BACKEND"])
    )
    if not per_process:
        return []
    reasons = []
    if workers > 1:
        reasons.append(f"{workers} worker processes serve requests")
    if settings.TASKS_BACKEND == "database":
        reasons.append("TASKS_BACKEND=database runs tasks in another process")
    if not reasons:
        return []
    return [
        checks.Warning(
            f"The {', '.join(per_process)} cache is per process (locmem), but "
            f"{' and '.join(reasons)}: a change made in one process is not seen by "
            "the others, which go on answering searches from stale cache, and "
            "each process counts rate limits on its own.",
            hint="Set REDIS_URL so that every process shares one cache.",
            id="flamehaven.W001",
        )
    ]


@checks.register(checks.Tags.caches)
def check_shared_cache(app_configs, **kwargs) -> list[checks.CheckMessage]:
    # WORKERS is what gunicorn will run (deploy/gunicorn.conf.py); gunicorn also
    # runs this check itself with its real worker count, 4 when WORKERS is unset.
    return shared_cache_warnings(workers=settings.WORKERS)


def log_shared_cache_warnings(*, workers: int) -> None:
    """For gunicorn, where Django runs no system checks by itself."""
    for warning in shared_cache_warnings(workers=workers):
        log.warning("system_check", id=warning.id, msg=warning.msg, hint=warning.hint)
