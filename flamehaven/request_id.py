"""The current request's id, readable anywhere while the request is served.

flamehaven.middleware.RequestLogMiddleware binds it in structlog's context, for
every log record of the request; this reads it back from there.
"""

import re
import uuid

import structlog

# A client's id is kept only if it is a sane token: it ends up in logs and headers.
_SANE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def accept_or_new(value: str | None) -> str:
    if value and _SANE.match(value):
        return value
    return str(uuid.uuid4())


def current_request_id() -> str:
    return structlog.contextvars.get_contextvars().get("request_id", "")
