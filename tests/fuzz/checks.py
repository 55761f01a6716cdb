"""Schemathesis checks and hooks of our own, loaded through SCHEMATHESIS_HOOKS."""

from urllib.parse import urlencode

import schemathesis

# gunicorn refuses a request line over limit_request_line (8190 bytes,
# deploy/gunicorn.conf.py) with its own HTML 414 before the service sees it:
# a server-level limit, outside what the API and its schema describe.
MAX_QUERY_STRING_BYTES = 6000

ERROR_KEYS = {"error", "message", "status_code", "details", "request_id", "timestamp"}


@schemathesis.check
def error_shape(ctx, response, case):
    """Every 4xx and 5xx answer is the project's error shape, whatever the route."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"A {response.status_code} answer that is not JSON "
            f"({response.headers.get('content-type')}): {response.content[:200]!r}"
        ) from None
    if set(body) != ERROR_KEYS:
        raise AssertionError(f"Not the error shape: {sorted(body)}")
    if body["status_code"] != response.status_code:
        raise AssertionError(
            f"status_code {body['status_code']} in a {response.status_code} answer"
        )
    if body["request_id"] != response.headers.get("x-request-id", [None])[0]:
        raise AssertionError("The body's request_id is not the X-Request-ID header")


@schemathesis.hook
def filter_query(ctx, query):
    """Only query strings the HTTP server accepts (see MAX_QUERY_STRING_BYTES)."""
    return query is None or len(urlencode(query, doseq=True)) <= MAX_QUERY_STRING_BYTES
