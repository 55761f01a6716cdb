"""Rate limits: one bucket per API key, else per client address.

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
files say which upload group they are, and searches with their cache read
(``Deferred``): those views have no throttle. The monitoring views use
``monitoring_limit``.

Counting is a fixed window per bucket, as django-ratelimit's was (each bucket's
windows start at an offset of their own, so buckets do not all reset at once).
With Redis the counter is in Redis, so limits are exact across workers and
machines: INCR and EXPIRE in one round trip (a search counts in the same round
trip as its cache read, search.cache). Without Redis, in the ``default`` cache of
the process. While Redis is unreachable requests are served unchecked, and
counted in ``rate_limit_unchecked_total`` (the breaker logs the outage itself).

django-ratelimit took two round trips (ADD, then django-redis's INCR script) and
was a quarter of a cache hit's time under load. The ``limits`` package counts in
one, but a search must count in the same call as its cache read, which no
limiter's API can join, so the window is kept here: a key and two commands.
"""

from __future__ import annotations

import functools
import time
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django_redis import get_redis_connection
from rest_framework.exceptions import Throttled
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from flamehaven.client_ip import client_ip
from monitoring import metrics
from monitoring.routes import route_name

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Window:
    """A bucket's current window in one group: its counter and what it allows."""

    key: str  # the counter, in the default cache's key space
    limit: int
    seconds: int
    wait: int  # seconds until the window ends
    rate: str


def bucket(request) -> str:
    """Whose bucket: the verified API key's prefix, a user, or the client address."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return f"key:{auth.prefix}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def window(request, group: str) -> Window:
    rate = settings.RATE_LIMITS[group]
    count, _, period = rate.partition("/")  # "10/m", "10/5m": checked at start-up
    seconds = int(period[:-1] or 1) * _SECONDS[period[-1]]
    who = bucket(request)
    now = int(time.time()) + zlib.crc32(who.encode()) % seconds
    key = f"ratelimit:{group}:{who}:{seconds}:{now // seconds}"
    return Window(key, int(count), seconds, seconds - now % seconds, rate)


def _shared() -> bool:
    return hasattr(caches["default"], "delete_pattern")  # django-redis


def check(request, group: str) -> None:
    """Count the request in ``group``; raise Throttled (429) over the limit."""
    if not settings.RATELIMIT_ENABLE:
        return
    current = window(request, group)
    cache = caches["default"]
    try:
        if _shared():
            pipe = get_redis_connection("default").pipeline(transaction=False)
            pipe.incr(cache.make_key(current.key))
            pipe.expire(cache.make_key(current.key), current.seconds)
            count, _ = pipe.execute()
        else:
            cache.add(current.key, 0, current.seconds)
            count = cache.incr(current.key)
    except Exception:  # the cache did not answer: fail open
        unchecked(request)
        return
    if count > current.limit:
        raise exceeded(request, current)


def unchecked(request) -> None:
    """Count a request served without a check (Redis did not answer)."""
    metrics.RATE_LIMIT_UNCHECKED.labels(route_name(request)).inc()


def exceeded(request, current: Window) -> Throttled:
    """The 429 for a request over its window's limit, counted."""
    metrics.RATE_LIMIT_EXCEEDED.labels(route_name(request)).inc()
    wait = max(1, current.wait)
    return Throttled(
        wait=wait,
        detail=f"Rate limit exceeded ({current.rate}). Try again in {wait} s.",
    )


class Deferred:
    """A request's count in ``group``, made later and exactly once; a context.

    For a view with no throttle that counts its own request: the search cache
    counts it in the round trip of its read (search.cache.lookup, with
    ``redis_window``), and leaving the block counts it the usual way if nothing
    did, e.g. when the request failed before reaching the cache. Over the limit
    the 429 then wins over any other error, as it does with a throttle.
    """

    def __init__(self, request, group: str) -> None:
        self.request = request
        self.group = group
        self.done = not settings.RATELIMIT_ENABLE

    def __enter__(self) -> Deferred:
        return self

    def __exit__(self, *exc_info) -> None:
        self.settle()

    def settle(self) -> None:
        """Count the request now, unless it has been."""
        if not self.done:
            self.done = True
            check(self.request, self.group)

    def redis_window(self) -> Window | None:
        """The window to count in with Redis; None when not counting there."""
        if self.done or not _shared():
            return None
        current = window(self.request, self.group)
        key = caches["default"].make_key(current.key)
        return Window(key, current.limit, current.seconds, current.wait, current.rate)

    def counted(self, current: Window, count: int | None) -> None:
        """Record what the caller's Redis call counted (None: Redis did not
        answer); raise Throttled when ``count`` is over the limit."""
        self.done = True
        if count is None:
            unchecked(self.request)
        elif count > current.limit:
            raise exceeded(self.request, current)


class RateLimitThrottle(BaseThrottle):
    """DRF's hook for the limiter: every API view, after authentication.

    Reads count as ``read`` and changes as ``stores``; the views of the other
    groups have no throttle and count themselves.
    """

    def allow_request(self, request, view) -> bool:
        check(request, "read" if request.method in SAFE_METHODS else "stores")
        return True  # check raised Throttled, with its message, over the limit


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
