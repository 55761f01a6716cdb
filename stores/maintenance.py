"""Periodic work: finish what crashed processes left, and tidy up after them.

:func:`run` does one round. It runs every ``MAINTENANCE_INTERVAL_SEC`` in a
thread of every process that owns ingestion work (a db_worker, or each web
process when tasks run in-process) and once at the start of that thread, and
``manage.py maintenance`` runs it from cron. Rounds in several processes at
once are safe: every change they make is conditional on the state they read.
"""

from __future__ import annotations

import os
import threading
import time

import structlog
from django.conf import settings
from django.db import DatabaseError, connection

from stores import embedding, ownership, services, uploads

log = structlog.get_logger(__name__)

_started: set[int] = set()
_lock = threading.Lock()


def run() -> dict[str, int]:
    """One round of every periodic job; what each did, by name."""
    done = {
        "requeued": len(services.documents_requeue_orphans()),
        "vectors_requeued": len(embedding.requeue_orphans()),
        "tasks_failed": ownership.fail_lost_tasks(),
        "workers_forgotten": ownership.forget_dead_workers(),
        "temp_files_removed": len(uploads.remove_abandoned_temp_files()),
    }
    if any(done.values()):
        log.info("maintenance_done", **done)
    return done


def start_in_background() -> None:
    """Start this process's maintenance thread, once (per forked process too)."""

    if not settings.BACKGROUND_MAINTENANCE:
        return
    pid = os.getpid()
    if pid in _started:
        return
    with _lock:
        if pid in _started:
            return
        _started.add(pid)
    threading.Thread(target=_loop, name="flamehaven-maintenance", daemon=True).start()


def _loop() -> None:
    failing = False
    while True:
        try:
            ownership.register()
            run()
        except DatabaseError as exc:
            if not failing:
                log.warning("maintenance_failed", error=str(exc))
            failing = True
            connection.close()
        except Exception:
            log.exception("maintenance_crashed")
        else:
            failing = False
        time.sleep(settings.MAINTENANCE_INTERVAL_SEC)
