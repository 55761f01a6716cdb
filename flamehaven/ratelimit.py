"""Rate limits (the ``limits`` package): one bucket per API key, else per client
address.

Each request counts against one group, whose rate is a setting
(``settings.RATE_LIMITS``, from these environment variables):

=================  ================================  ===========================
group              what                              setting (default)
=================  ================================  ===========================
upload-single      one file uploaded                 RATE_LIMIT_UPLOAD_SINGLE 10/m
upload-multiple    several files in one request      RATE_LIMIT_UPLOAD_MULTIPLE 5/m
search             searches                          RATE_LIMIT_SEARCH 100/m
stores             store, document and cache changes RATE_LIMIT_STORES 20/m
read               lists, details, stats, the schema RATE_LIMIT_READ 300/m
monitoring         /metrics, /prometheus             RATE_LIMIT_MONITORING 100/m
=================  ================================  ===========================

``/health`` is never limited. API views are limited by ``RateLimitThrottle``
(DRF runs it after authentication, so a key's bucket is its verified prefix and a
made-up key cannot open a fresh one); uploads are counted by ``check`` once their
files say which upload group they are (their views have no throttle); the
monitoring views use ``monitoring_limit``.

Counting is a fixed window per bucket. With Redis the counter is in Redis,
through the ``default`` cache's connection pool, so limits are exact across
workers and machines, and counting a request is one round trip (``limits``'
``incr`` script: INCR and the window's EXPIRE together). django-ratelimit, used
before, took two (an ADD, then django-redis's INCR script, which runs EXISTS
first) and was a quarter of a cache-hit search's time under load. Without Redis
the counter is in the process (``limits``' memory storage), as locmem was.
While Redis is unreachable requests are served unchecked, and counted in
``rate_limit_unchecked_total`` (the breaker logs the outage itself).
"""

from __future__ import annotations

import functools
import math
import threading
import time

from django.conf import settings
from django.core.cache import caches
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from rest_framework.exceptions import Throttled
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from flamehaven.client_ip import client_ip
from monitoring import metrics
from monitoring.routes import route_name

KEY_PREFIX = "fh-ratelimit"
_PERIODS = {
    "s": RateLimitItemPerSecond,
    "m": RateLimitItemPerMinute,
    "h": RateLimitItemPerHour,
    "d": RateLimitItemPerDay,
}

_limiters: dict[int, FixedWindowRateLimiter] = {}
_limiters_lock = threading.Lock()
_memory = MemoryStorage()


def _limiter() -> FixedWindowRateLimiter:
    """The limiter over the ``default`` cache's Redis pool, or the process's
    memory when that cache is not Redis; one per pool (tests swap caches)."""
    cache = caches["default"]
    if not hasattr(cache, "delete_pattern"):  # not django-redis
        storage: Storage = _memory
        ident = id(_memory)
    else:
        pool = cache.client.get_client().connection_pool
        ident = id(pool)
        storage = None
    limiter = _limiters.get(ident)
    if limiter is None:
        if storage is None:
            # The URL is only a label here: connections come from the pool.
            storage = RedisStorage(
                "redis://", connection_pool=pool, key_prefix=KEY_PREFIX
            )
        limiter = FixedWindowRateLimiter(storage)
        with _limiters_lock:
            _limiters[ident] = limiter
    return limiter


def reset() -> None:
    """Forget the counts kept in this process (tests; Redis is flushed apart)."""
    _memory.reset()


def bucket(group: str, request) -> str:
    """Whose bucket: the verified API key's prefix, a user, or the client address."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return f"key:{auth.prefix}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


@functools.lru_cache(maxsize=64)
def parse(rate: str) -> RateLimitItem:
    """``10/m`` or ``10/5m`` (the settings' form, checked at start-up) as a
    ``limits`` item: ``limits.parse`` wants ``10/minute``."""
    count, _, period = rate.partition("/")
    return _PERIODS[period[-1]](int(count), int(period[:-1] or 1))


def check(request, group: str) -> None:
    """Count the request in ``group``; raise Throttled (429) over the limit."""
    if not settings.RATELIMIT_ENABLE:
        return
    item = parse(settings.RATE_LIMITS[group])
    who = bucket(group, request)
    limiter = _limiter()
    try:
        allowed = limiter.hit(item, group, who)
    except Exception:  # the cache did not answer: fail open
        unchecked(request)
        return
    if allowed:
        return
    try:
        reset_at = limiter.get_window_stats(item, group, who).reset_time
        wait = math.ceil(reset_at - time.time())
    except Exception:
        wait = item.get_expiry()
    raise exceeded(request, settings.RATE_LIMITS[group], wait)


def unchecked(request) -> None:
    """Count a request served without a check (Redis did not answer)."""
    metrics.RATE_LIMIT_UNCHECKED.labels(route_name(request)).inc()


def exceeded(request, rate: str, wait: float) -> Throttled:
    """The 429 for a request over ``rate``, counted."""
    metrics.RATE_LIMIT_EXCEEDED.labels(route_name(request)).inc()
    wait = max(1, int(wait))
    return Throttled(
        wait=wait, detail=f"Rate limit exceeded ({rate}). Try again in {wait} s."
    )


class Deferred:
    """A request's count in ``group``, made later and exactly once.

    For a view with no throttle that counts its own request: the search cache
    counts it in the same round trip as its read (search.cache.lookup, through
    ``redis_counter``), and ``settle`` counts it the usual way if nothing did,
    e.g. when the request failed before reaching the cache. Settle in a
    ``finally``: over the limit, the 429 wins over any other error, as it does
    with a throttle.
    """

    def __init__(self, request, group: str) -> None:
        self.request = request
        self.group = group
        self.done = not settings.RATELIMIT_ENABLE

    def redis_counter(self) -> tuple[str, int, int] | None:
        """The Redis key ``limits`` keeps this count under, the limit and the
        window in seconds; None when it is not to be counted in Redis."""
        if self.done or not hasattr(caches["default"], "delete_pattern"):
            return None
        item = parse(settings.RATE_LIMITS[self.group])
        key = item.key_for(self.group, bucket(self.group, self.request))
        return f"{KEY_PREFIX}:{key}", item.amount, item.get_expiry()

    def counted(self, count: int | None, wait: float = 0) -> None:
        """Record what the caller's Redis call counted (None: Redis did not
        answer); raise Throttled when ``count`` is over the limit."""
        self.done = True
        if count is None:
            unchecked(self.request)
        elif count > parse(settings.RATE_LIMITS[self.group]).amount:
            raise exceeded(self.request, settings.RATE_LIMITS[self.group], wait)

    def settle(self) -> None:
        if not self.done:
            self.done = True
            check(self.request, self.group)


class RateLimitThrottle(BaseThrottle):
    """DRF's hook for the limiter: every API view, after authentication.

    A view names its group with ``rate_limit_group``; otherwise reads count as
    ``read`` and changes as ``stores``.
    """

    def allow_request(self, request, view) -> bool:
        group = getattr(view, "rate_limit_group", None)
        if group is None:
            group = "read" if request.method in SAFE_METHODS else "stores"
        check(request, group)  # raises Throttled itself, with its message
        return True


def monitoring_limit(view):
    """For the plain Django views of /metrics and /prometheus."""

    @functools.wraps(view)
    def limited(request, *args, **kwargs):
        # Imported here: flamehaven.errors imports rest_framework.views, whose
        # settings import this module for DEFAULT_THROTTLE_CLASSES.
        from flamehaven.errors import throttled_response

        try:
            check(request, "monitoring")
        except Throttled as exc:
            return throttled_response(exc)
        return view(request, *args, **kwargs)

    return limited
