"""The current request's id, readable anywhere while the request is served."""

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="")

# A client's id is kept only if it is a sane token: it ends up in logs and headers.
_SANE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def accept_or_new(value: str | None) -> str:
    if value and _SANE.match(value):
        return value
    return str(uuid.uuid4())


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str):
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)
