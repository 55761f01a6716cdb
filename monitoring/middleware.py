"""HTTP metrics: requests, durations, requests in flight and error responses."""

import time

from monitoring import metrics
from monitoring.routes import route_name


class MetricsMiddleware:
    """Counts every request by route name (never the raw path), once.

    Outermost but for the request id, so it sees every answer, the error
    handlers' included.

    The one metrics middleware. django-prometheus's pair measured every request
    a second time until issue 13: 8 counters and 4 histograms per request
    (0.063 ms of the floor's 0.3 ms in bench/observability.py), under names and
    labels that are not the documented ``http_requests_total{method, endpoint,
    status}`` the dashboard and alert rules read, and without error codes.
    django-prometheus stays for the database and cache metrics.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        metrics.ACTIVE_REQUESTS.inc()
        try:
            response = self.get_response(request)
        finally:
            metrics.ACTIVE_REQUESTS.dec()
        endpoint = route_name(request)
        method = request.method if request.method in _METHODS else "OTHER"
        metrics.HTTP_REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        metrics.HTTP_REQUEST_DURATION.labels(method, endpoint).observe(
            time.perf_counter() - started
        )
        code = getattr(response, "error_code", None)
        if code:
            metrics.ERRORS.labels(code, endpoint).inc()
        return response


# Any other verb is one label value: a client cannot grow the label set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
