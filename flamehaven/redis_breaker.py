"""Fail fast while Redis is down, and notice when it is back.

redis-py retries a failed connect ten times with backoff, and each cache call pays
that again: with Redis unreachable every request would wait on the cache before
being answered from the database. These connection classes let one connect
attempt per ``REDIS_RETRY_SEC`` through; in between, connecting fails at once, so
cache calls become instant misses. The first success after a failure logs the
recovery and drops django-cachalot's cached reads, because invalidations written
while Redis was down were lost.

State is per process and per server address, shared by every pool (the
``default`` and ``search`` aliases use the same Redis).

Kept as our own after looking at what the libraries in use offer (redis-py 7.4,
django-redis 6): redis-py's ``Retry`` and backoff only decide how often one call
tries again, never that later calls skip the attempt; its circuit breaker
(``redis.multidb``, on pybreaker) switches a MultiDBClient between databases
and has no place in a django-redis connection pool; django-redis's
``IGNORE_EXCEPTIONS`` turns a failed call into a miss after it has paid the
connect attempt. None of them drops cachalot's reads on recovery.
"""

from __future__ import annotations

import threading
import time

import structlog
from django.conf import settings
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = structlog.get_logger(__name__)


class _Breaker:
    def __init__(self, address: str) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0

    def before_connect(self) -> None:
        if self._down_since is not None and time.monotonic() < self._retry_at:
            raise RedisConnectionError(
                f"Redis at {self.address} is unavailable; not retrying yet."
            )

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = now
            self._retry_at = now + settings.REDIS_RETRY_SEC
        if first:
            log.warning(
                "redis_unavailable",
                address=self.address,
                error=type(error).__name__,
                retry_every_s=settings.REDIS_RETRY_SEC,
            )

    def succeeded(self) -> None:
        if self._down_since is None:  # the common case: no lock
            return
        with self._lock:
            down_since, self._down_since = self._down_since, None
        if down_since is not None:
            log.info(
                "redis_recovered",
                address=self.address,
                down_s=round(time.monotonic() - down_since, 1),
            )
            # Before this connection serves its first command, so no request
            # reads a row whose invalidation was lost. It takes another pooled
            # connection (connect() runs outside the pool's lock); the breaker
            # is closed already, so that connect does not come back here.
            _drop_cachalot_reads()

    @property
    def is_down(self) -> bool:
        return self._down_since is not None


_breakers: dict[str, _Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(address: str) -> _Breaker:
    with _breakers_lock:
        if address not in _breakers:
            _breakers[address] = _Breaker(address)
        return _breakers[address]


def any_down() -> bool:
    return any(breaker.is_down for breaker in list(_breakers.values()))


def reset() -> None:
    """Forget every server's state (tests point caches at dead addresses)."""
    with _breakers_lock:
        _breakers.clear()


def _drop_cachalot_reads() -> None:
    try:
        from cachalot.api import invalidate

        invalidate()
    except Exception:
        log.warning("cachalot_invalidate_failed", exc_info=True)


class _BreakerMixin:
    def _breaker(self) -> _Breaker:
        path = getattr(self, "path", None)
        return breaker_for(path or f"{self.host}:{self.port}")

    def connect(self) -> None:
        if self._sock:
            return
        breaker = self._breaker()
        breaker.before_connect()
        try:
            super().connect()
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            breaker.failed(error)
            raise
        breaker.succeeded()


class BreakerConnection(_BreakerMixin, Connection):
    pass


class BreakerSSLConnection(_BreakerMixin, SSLConnection):
    pass


class BreakerUnixConnection(_BreakerMixin, UnixDomainSocketConnection):
    pass


def pool_kwargs(url: str) -> dict:
    """django-redis ``CONNECTION_POOL_KWARGS`` for a Redis URL."""
    scheme = url.split("://", 1)[0].lower()
    connection_class = {
        "rediss": BreakerSSLConnection,
        "unix": BreakerUnixConnection,
    }.get(scheme, BreakerConnection)
    return {
        "connection_class": connection_class,
        # One immediate retry covers a pooled connection that Redis closed.
        "retry": Retry(NoBackoff(), 1),
    }
