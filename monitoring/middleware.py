"""HTTP metrics: requests, durations, requests in flight and error responses."""

import time

from monitoring import metrics


class MetricsMiddleware:
    """Counts every request by route name (never the raw path), once.

    Outermost but for the request id, so it sees every answer, the error
    handlers' included.
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
        match = getattr(request, "resolver_match", None)
        endpoint = (match.url_name if match else None) or metrics.UNMATCHED
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
