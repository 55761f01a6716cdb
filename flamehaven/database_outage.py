"""Database outages: which errors mean "unreachable", logged once per outage.

While the database cannot be reached, a request that needs it is refused with 503
``DATABASE_UNAVAILABLE`` and ``Retry-After`` (:mod:`flamehaven.errors`), not
answered 500 with a traceback logged for each one: an outage is one event. This
process logs ``database_unavailable`` (a warning) at its first failure and
``database_available`` when it connects again, with how many requests it refused
meanwhile. Requests that need no SQL are answered throughout: a cache-hit
search, while the store and API-key rows the process keeps are still trusted
(flamehaven.rowmemo: no write to their tables since they were read, for at most
a minute). Nothing needs a restart: Django drops a connection that failed and
makes a new one for the next request.

Only failures to reach the server count: a connection that could not be made
(refused, timed out, or turned away at connect; the warning line says why, so a
wrong password or a missing database shows there), lost or closed, a server
shutting down or starting up, too many connections, SQLite's "unable to open
database file". Integrity, data and programming errors, statement timeouts,
deadlocks and serialization failures are bugs or the request's own problem,
and stay 500s (or what the code makes of them).

State is per process (each gunicorn worker logs its own pair of lines);
``errors_total{type="DATABASE_UNAVAILABLE"}`` counts every refusal of every
worker.

An outage also leaves django-cachalot a level too deep in the threads where a
transaction could not begin; each request starts by putting that right (see
``_close_cachalot_levels_left_by_failed_transactions``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator

import psycopg
import structlog
from cachalot.cache import cachalot_caches
from django.core.signals import request_started
from django.db import connections
from django.db.backends.signals import connection_created

log = structlog.get_logger(__name__)

# What a refused client is told to wait (Retry-After) before asking again.
RETRY_AFTER_SEC = 5

# SQLSTATEs a server sends that mean "not now" rather than "wrong": besides class
# 08 (connection exception), admin and crash shutdown, "the database system is
# starting up" or "shutting down", and too many connections.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc``, or the driver's error Django wrapped in it, means that
    the database could not be reached."""
    for error in _chain(exc):
        if isinstance(error, psycopg.Error):
            return _psycopg_unreachable(error)
        if isinstance(error, sqlite3.Error):
            return (
                isinstance(error, sqlite3.OperationalError)
                and error.sqlite_errorcode == sqlite3.SQLITE_CANTOPEN
            )
    return False


def _psycopg_unreachable(error: psycopg.Error) -> bool:
    if not isinstance(error, psycopg.OperationalError):
        return False  # InterfaceError is a closed cursor: a bug, not an outage
    if error.sqlstate is None:
        # Raised by the client, not sent by a server: the connection could not
        # be made, or it was lost or closed under the query.
        return True
    return error.sqlstate.startswith("08") or error.sqlstate in _UNAVAILABLE_SQLSTATES


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes: Django raises its own class ``from`` the driver's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> tuple[str, str]:
    """The driver's error class and the first line of its message."""
    errors = list(_chain(exc))
    driver = next(
        (e for e in errors if isinstance(e, (psycopg.Error, sqlite3.Error))), exc
    )
    lines = str(driver).strip().splitlines()
    return type(driver).__name__, (lines[0] if lines else "")[:300]


class _Outage:
    """This process's view of the database: reachable, or down since when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._refused = 0

    def failed(self, exc: BaseException, *, refused: bool) -> None:
        """The database could not be reached; ``refused``: a request was
        answered 503 for it (a health check is not)."""
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
                self._refused = 0
            if refused:
                self._refused += 1
        if first:
            error, reason = _reason(exc)
            log.warning(
                "database_unavailable",
                error=error,
                reason=reason,
                retry_after_s=RETRY_AFTER_SEC,
                pid=os.getpid(),
            )

    def connected(self) -> None:
        """A connection was made: an outage, if there was one, is over."""
        if self._down_since is None:  # the common case: no lock
            return
        with self._lock:
            down_since, self._down_since = self._down_since, None
            refused, self._refused = self._refused, 0
        if down_since is not None:
            log.info(
                "database_available",
                down_s=round(time.monotonic() - down_since, 1),
                refused=refused,
                pid=os.getpid(),
            )

    def reset(self) -> None:
        """Forget any outage without logging (tests)."""
        with self._lock:
            self._down_since = None
            self._refused = 0


outage = _Outage()


def _on_connection_created(sender, connection, **kwargs) -> None:
    # After a failure Django closes the connection (errors_occurred), so the
    # first success after an outage is always a new connection.
    outage.connected()


connection_created.connect(
    _on_connection_created, dispatch_uid="flamehaven.database_outage"
)


def _close_cachalot_levels_left_by_failed_transactions(**kwargs) -> None:
    """Outside any transaction, django-cachalot's per-thread stack is empty.

    cachalot pushes a level on entering ``transaction.atomic()`` and pops it on
    leaving, but when entering fails (BEGIN cannot reach the database) leaving
    never runs (noripyt/django-cachalot#278, open in 2.9.1). That thread's
    writes would then invalidate only its own level, never the shared cache:
    every other thread and process would keep reading the old rows (stores, API
    keys) for up to CACHALOT_TIMEOUT, and the level would grow for good.

    What such a level holds was read or written outside any transaction (none
    began), so it is committed to the shared cache, not dropped.
    """
    for alias, levels in list(cachalot_caches.atomic_caches.items()):
        if levels and not connections[alias].in_atomic_block:
            while levels:
                cachalot_caches.exit_atomic(alias, True)


request_started.connect(
    _close_cachalot_levels_left_by_failed_transactions,
    dispatch_uid="flamehaven.database_outage.cachalot",
)
