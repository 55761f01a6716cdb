"""Request id, security headers, the one access-log line per request, and the
refusal of a body nothing could read."""

import time

import structlog
from django.conf import settings

from flamehaven import rowmemo
from flamehaven.chunked import is_chunked_without_length
from flamehaven.client_ip import client_ip
from flamehaven.errors import length_required
from flamehaven.request_id import accept_or_new, reset_request_id, set_request_id

access_log = structlog.get_logger("flamehaven.access")


class RequestIdMiddleware:
    """Accepts a sane ``X-Request-ID`` or makes one; binds it for every log record."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accept_or_new(request.headers.get("X-Request-ID"))
        request.request_id = request_id
        token = set_request_id(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            with rowmemo.request_scope():
                response = self.get_response(request)
        finally:
            reset_request_id(token)
            # The thread serves other requests next: nothing of this one stays.
            structlog.contextvars.clear_contextvars()
        response["X-Request-ID"] = request_id
        return response


class SecurityHeadersMiddleware:
    """The headers neither Django's SecurityMiddleware nor django-csp set."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        # Current OWASP advice: the legacy XSS auditor does more harm than good.
        response["X-XSS-Protection"] = "0"
        return response


def _api_key_prefix(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "api-key" and "." in key:
        return key.partition(".")[0][:16]
    return None


class AccessLogMiddleware:
    """One line per request: method, route, status, duration, error code.

    Never the key: only its public prefix.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        access_log.info(
            "request",
            method=request.method,
            route=match.url_name if match and match.url_name else None,
            path=request.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            client=client_ip(request),
            key_prefix=_api_key_prefix(request),
            error=getattr(response, "error_code", None),
        )
        return response


class LengthRequiredMiddleware:
    """411 for a chunked body that nothing could read.

    Under gunicorn, :mod:`flamehaven.chunked` has already read such a body and
    given it a length. Where the server cannot say where a chunked body ends
    (runserver), Django would read it as empty: the client is told what to change
    instead of being answered "no file was submitted".
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_chunked_without_length(request.META):
            return length_required()
        return self.get_response(request)
