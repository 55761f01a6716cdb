"""The API's one error shape, its exceptions, and the handlers that produce it.

Every error answer, from a DRF validation error to an unhandled exception on a
non-API route, is::

    {"error": CODE, "message": str, "status_code": int, "details": {...},
     "request_id": str, "timestamp": ISO-8601}
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, JsonResponse
from django.views.csrf import csrf_failure as django_csrf_failure
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from flamehaven import database_outage
from flamehaven.request_id import current_request_id

log = structlog.get_logger(__name__)


class ApiError(drf.APIException):
    """An error with a stable code; services raise these, the handler shapes them."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "BAD_REQUEST"
    default_message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, details: dict | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(detail=self.message, code=self.code)


def _error(name: str, status_code: int, code: str, message: str) -> type[ApiError]:
    return type(
        name,
        (ApiError,),
        {"status_code": status_code, "code": code, "default_message": message},
    )


ValidationFailed = _error("ValidationFailed", 400, "VALIDATION_ERROR", "Invalid input.")
InvalidFilename = _error(
    "InvalidFilename", 400, "INVALID_FILENAME", "Invalid file name."
)
EmptyFile = _error("EmptyFile", 400, "EMPTY_FILE", "The file is empty.")
TooManyFiles = _error("TooManyFiles", 400, "TOO_MANY_FILES", "Too many files.")
EmptyQuery = _error("EmptyQuery", 400, "EMPTY_QUERY", "The query is empty.")
FileSizeExceeded = _error(
    "FileSizeExceeded", 413, "FILE_SIZE_EXCEEDED", "The file is too large."
)
RequestTooLarge = _error(
    "RequestTooLarge", 413, "REQUEST_TOO_LARGE", "The request is too large."
)
UnsupportedFileType = _error(
    "UnsupportedFileType", 415, "UNSUPPORTED_FILE_TYPE", "Unsupported file type."
)
UnsafeFile = _error("UnsafeFile", 422, "UNSAFE_FILE", "The file is unsafe.")
AnswerRejected = _error(
    "AnswerRejected", 422, "ANSWER_REJECTED", "The answer failed the answer checks."
)
StoreNotFound = _error("StoreNotFound", 404, "STORE_NOT_FOUND", "Store not found.")
DocumentNotFound = _error(
    "DocumentNotFound", 404, "DOCUMENT_NOT_FOUND", "Document not found."
)
StoreExists = _error("StoreExists", 409, "STORE_EXISTS", "The store already exists.")
DocumentBusy = _error(
    "DocumentBusy", 409, "DOCUMENT_BUSY", "The document is being ingested."
)
InsufficientStorage = _error(
    "InsufficientStorage",
    507,
    "INSUFFICIENT_STORAGE",
    "There is no room left to store the file.",
)
UpstreamUnavailable = _error(
    "UpstreamUnavailable",
    503,
    "UPSTREAM_UNAVAILABLE",
    "The search backend is unavailable.",
)
UpstreamError = _error(
    "UpstreamError", 502, "UPSTREAM_ERROR", "The search backend answered with an error."
)

# DRF's own exceptions, by class, to our code. Order matters: subclasses first.
_DRF_CODES: list[tuple[type[Exception], str]] = [
    (drf.NotAuthenticated, "AUTHENTICATION_REQUIRED"),
    (drf.AuthenticationFailed, "AUTHENTICATION_REQUIRED"),
    (drf.PermissionDenied, "PERMISSION_DENIED"),
    (drf.NotFound, "NOT_FOUND"),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (drf.NotAcceptable, "NOT_ACCEPTABLE"),
    (drf.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (drf.ParseError, "MALFORMED_REQUEST"),
    (drf.Throttled, "RATE_LIMIT_EXCEEDED"),
    (drf.ValidationError, "VALIDATION_ERROR"),
]


def error_body(
    *, code: str, message: str, status_code: int, details: dict | None = None
) -> dict[str, Any]:
    return {
        "error": code,
        "message": message,
        "status_code": status_code,
        "details": details or {},
        "request_id": current_request_id(),
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _message_of(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    return "Invalid input."


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF exception handler: every exception becomes the error shape."""
    headers: dict[str, str] = {}
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, TooManyFilesSent):
        exc = TooManyFiles(
            f"At most {settings.MAX_FILES_PER_REQUEST} files per request.",
            details={"max_files": settings.MAX_FILES_PER_REQUEST},
        )
    elif isinstance(exc, (RequestDataTooBig, TooManyFieldsSent)):
        exc = RequestTooLarge(str(exc))
    elif isinstance(exc, SuspiciousOperation):
        exc = ApiError("The request was malformed.")

    if isinstance(exc, ApiError):
        status_code, code, message, details = (
            exc.status_code,
            exc.code,
            exc.message,
            exc.details,
        )
    elif isinstance(exc, drf.APIException):
        status_code = exc.status_code
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "API_ERROR")
        if isinstance(exc, drf.ValidationError):
            details = (
                exc.detail
                if isinstance(exc.detail, dict)
                else {"non_field_errors": exc.detail}
            )
            message = "Invalid input."
        else:
            details = {}
            message = _message_of(exc.detail)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    elif database_outage.is_connection_failure(exc):
        database_outage.outage.failed(exc, refused=True)  # logged once per outage
        status_code, code, message = 503, DATABASE_UNAVAILABLE, _DATABASE_DOWN
        details = {}
        headers["Retry-After"] = str(database_outage.RETRY_AFTER_SEC)
    else:
        log.exception("unhandled_exception", view=type(context.get("view")).__name__)
        status_code = 500
        code = "INTERNAL_ERROR"
        message = "An internal error occurred."
        details = {}

    set_rollback()
    _render_as_json_unless_browsing(context.get("request"))
    response = Response(
        error_body(
            code=code, message=message, status_code=status_code, details=details
        ),
        status=status_code,
        headers=headers,
    )
    response.error_code = code  # for errors_total and the access line
    # Django would log 5xx answers again ("Internal Server Error: ..."): the
    # access line has the status and code, an unhandled exception was logged
    # above with its traceback, once, and a database outage once per outage.
    response._has_been_logged = True
    return response


def _render_as_json_unless_browsing(request) -> None:
    """An error is JSON even where the view renders something else (the schema
    view's YAML); the browsable API keeps its HTML page."""
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is not None and renderer.format not in ("json", "api"):
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


def _django_error(status_code: int, code: str, message: str):
    def view(request, exception=None, *args, **kwargs):
        response = JsonResponse(
            error_body(code=code, message=message, status_code=status_code),
            status=status_code,
        )
        response.error_code = code
        return response

    view.__name__ = f"handler{status_code}"
    return view


def throttled_response(exc: drf.Throttled) -> JsonResponse:
    """A 429 in the error shape with Retry-After, for plain Django views."""
    response = _django_error(429, "RATE_LIMIT_EXCEEDED", _message_of(exc.detail))(None)
    response["Retry-After"] = str(int(exc.wait))
    return response


def length_required() -> JsonResponse:
    """A 411 in the error shape, for a request body sent without Content-Length."""
    return _django_error(
        411,
        "LENGTH_REQUIRED",
        "Send the request body with a Content-Length header; "
        "chunked request bodies are not read.",
    )(None)


DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
_DATABASE_DOWN = "The database is unavailable; try again shortly."


def database_unavailable() -> JsonResponse:
    """A 503 in the error shape with Retry-After, for plain Django views."""
    response = _django_error(503, DATABASE_UNAVAILABLE, _DATABASE_DOWN)(None)
    response["Retry-After"] = str(database_outage.RETRY_AFTER_SEC)
    # Not Django's "Service Unavailable: ..." line with a traceback, per request:
    # database_outage logs the outage once.
    response._has_been_logged = True
    return response


def permission_denied(message: str) -> JsonResponse:
    """A 403 in the error shape, for plain Django views."""
    return _django_error(403, "PERMISSION_DENIED", message)(None)


def bad_path(message: str) -> JsonResponse:
    """A 400 in the error shape, for a path refused before any view."""
    return _django_error(400, "BAD_REQUEST", message)(None)


def method_not_allowed(method: str, allow: str) -> JsonResponse:
    """A 405 in the error shape with Allow, for plain Django views."""
    response = _django_error(
        405, "METHOD_NOT_ALLOWED", f'Method "{method}" not allowed.'
    )(None)
    response["Allow"] = allow
    return response


def wants_html(request) -> bool:
    """A browser's page rather than JSON: asked for HTML and not for JSON."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: Django's page for browsers, the error shape for the rest.

    Only plain Django views check CSRF (the admin, the API login); API views do
    only for a session, and API keys need no token.
    """
    if wants_html(request):
        return django_csrf_failure(request, reason=reason)
    message = f"CSRF verification failed: {reason}"
    return _django_error(403, "CSRF_FAILED", message)(None)


handler400 = _django_error(400, "BAD_REQUEST", "Bad request.")
handler403 = _django_error(403, "PERMISSION_DENIED", "Permission denied.")
handler404 = _django_error(404, "NOT_FOUND", "Not found.")
_internal_error = _django_error(500, "INTERNAL_ERROR", "An internal error occurred.")


def handler500(request, *args, **kwargs):
    """Django's 500 view, for plain views and middleware (sessions, auth, the
    admin): a database that cannot be reached is a 503, logged once per outage.

    Django calls it inside the ``except`` block of response_for_exception, so
    the exception is ``sys.exc_info()``'s; any other one is logged by Django,
    with its traceback, once.
    """
    exc = sys.exc_info()[1]
    if exc is not None and database_outage.is_connection_failure(exc):
        database_outage.outage.failed(exc, refused=True)
        return database_unavailable()
    return _internal_error(request, *args, **kwargs)
