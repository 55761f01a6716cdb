"""Rate limits (django-ratelimit): one bucket per API key, else per client address.

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
made-up key cannot open a fresh one); upload views decide between the two upload
groups once the files are parsed; the monitoring views use ``monitoring_limit``.

Counters live in the ``default`` cache: with Redis they hold across workers and
machines. While Redis is unreachable requests are served unchecked, and counted
in ``rate_limit_unchecked_total`` (the breaker logs the outage itself).
"""

from __future__ import annotations

import functools

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.exceptions import Throttled
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey
from flamehaven.client_ip import client_ip
from monitoring import metrics

# The view's groups say "decide later" with this: the view calls check() itself.
DEFERRED = "deferred"


def bucket(group: str, request) -> str:
    """Whose bucket: the verified API key's prefix, a user, or the client address."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return f"key:{auth.prefix}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def rate(group: str, request) -> str:
    return settings.RATE_LIMITS[group]


def check(request, group: str) -> None:
    """Count the request in ``group``; raise Throttled (429) over the limit."""
    usage = get_usage(request, group=group, key=bucket, rate=rate, increment=True)
    endpoint = _endpoint(request)
    if usage is None:
        if settings.RATELIMIT_ENABLE:  # the cache did not answer: fail open
            metrics.RATE_LIMIT_UNCHECKED.labels(endpoint).inc()
        return
    if usage["should_limit"]:
        metrics.RATE_LIMIT_EXCEEDED.labels(endpoint).inc()
        wait = max(1, usage["time_left"])
        raise Throttled(
            wait=wait,
            detail=f"Rate limit exceeded ({rate(group, request)}). "
            f"Try again in {wait} s.",
        )


class RateLimitThrottle(BaseThrottle):
    """DRF's hook for django-ratelimit: every API view, after authentication.

    A view names its group with ``rate_limit_group`` (or per method with
    ``rate_limit_groups``); otherwise reads count as ``read`` and changes as
    ``stores``.
    """

    def allow_request(self, request, view) -> bool:
        per_method = getattr(view, "rate_limit_groups", None) or {}
        group = per_method.get(request.method) or getattr(
            view, "rate_limit_group", None
        )
        if group is None:
            group = "read" if request.method in SAFE_METHODS else "stores"
        if group != DEFERRED:
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


def _endpoint(request) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.url_name if match else None) or metrics.UNMATCHED
