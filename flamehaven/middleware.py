"""The request id and access line, security headers, and the refusals no view
should have to make."""

import re
import time

import structlog
from django.conf import settings

from flamehaven import rowmemo
from flamehaven.chunked import is_chunked_without_length
from flamehaven.client_ip import client_ip
from flamehaven.errors import bad_path, length_required, method_not_allowed
from flamehaven.request_id import accept_or_new
from monitoring.routes import route_name

access_log = structlog.get_logger("flamehaven.access")


class RequestLogMiddleware:
    """The request id, and the one access-log line per request.

    Outermost, so the line covers every answer, the error handlers' and the
    static files' included. A sane ``X-Request-ID`` is kept, else one is made;
    it is bound to every log record of the request and returned in the header.
    The line has method, route, status, duration, client, error code, and never
    the key: only its public prefix.

    Our own rather than django-structlog's RequestMiddleware: by its
    documentation it writes two lines per request (``request_started``, then
    ``request_finished``) and no duration without an extension, where one line
    with the duration is the contract (README, "Logs").
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        request_id = accept_or_new(request.headers.get("X-Request-ID"))
        request.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            with rowmemo.request_scope():
                response = self.get_response(request)
            response["X-Request-ID"] = request_id
            access_log.info(
                "request",
                method=request.method,
                route=route_name(request),
                path=request.path,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=client_ip(request),
                key_prefix=_api_key_prefix(request),
                error=getattr(response, "error_code", None),
            )
        finally:
            # The thread serves other requests next: nothing of this one stays.
            structlog.contextvars.clear_contextvars()
        return response


def _api_key_prefix(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "api-key" and "." in key:
        return key.partition(".")[0][:16]
    return None


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


# C0 and C1 control characters, NUL included, after percent-decoding.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class RequestChecksMiddleware:
    """Refusals no view should have to make, in the error shape:

    - 400 for a path with a control character in it, before any view reads it.
      No store name, document id or file has one, and PostgreSQL refuses a NUL
      in a query parameter (DataError, which would be a 500).
    - 411 for a chunked body that nothing could read. Under gunicorn,
      :mod:`flamehaven.chunked` has already read such a body and given it a
      length; where the server cannot say where a chunked body ends (runserver),
      Django would read it as empty: the client is told what to change instead
      of being answered "no file was submitted".
    - Django's own 405 (``require_safe``, a class-based view without the
      method) has an empty body: it gets the error shape, keeping ``Allow``.
      DRF's 405s already have it (they carry an error code).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _CONTROL_CHARACTERS.search(request.path_info):
            return bad_path("The path contains a control character.")
        if is_chunked_without_length(request.META):
            return length_required()
        response = self.get_response(request)
        if response.status_code == 405 and not getattr(response, "error_code", None):
            return method_not_allowed(request.method, response.get("Allow", ""))
        return response
