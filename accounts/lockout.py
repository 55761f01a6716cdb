"""Password logins locked after repeated failures (django-axes): the answer that a
locked-out login gets, and the log lines and metrics of failures and lockouts.

django-axes counts every failed ``django.contrib.auth.authenticate`` call made
with a request (the admin's login, the browsable API's login) per username and
client address (settings, "Login lockout"). API keys are checked by
``accounts.authentication`` without ``authenticate``, so a wrong key is never a
failed login. Nothing here sees or logs a password.
"""

from __future__ import annotations

import math

import structlog
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from flamehaven.client_ip import client_ip
from flamehaven.errors import error_body, wants_html
from monitoring import metrics

log = structlog.get_logger(__name__)

LOCKED_OUT = "LOGIN_LOCKED_OUT"
STATUS = 429


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with Retry-After; a page for browsers, the error
    shape for the rest. Every attempt during a lockout starts the cool-off again,
    so the wait is the whole cool-off."""
    failure_limit = get_failure_limit(request, credentials)
    cooloff_seconds = math.ceil(get_cool_off(request).total_seconds())
    cooloff_minutes = f"{cooloff_seconds / 60:g}"
    message = (
        f"Too many failed logins: this user may not log in from your address "
        f"for {cooloff_minutes} minutes."
    )
    if wants_html(request):
        context = {
            "title": "Too many failed logins",
            "message": message,
            "failure_limit": failure_limit,
            "cooloff_minutes": cooloff_minutes,
        }
        response = render(request, "accounts/locked_out.html", context, status=STATUS)
    else:
        details = {"failure_limit": failure_limit, "cooloff_seconds": cooloff_seconds}
        body = error_body(
            code=LOCKED_OUT, message=message, status_code=STATUS, details=details
        )
        response = JsonResponse(body, status=STATUS)
    response["Retry-After"] = str(cooloff_seconds)
    response.error_code = LOCKED_OUT  # for errors_total and the access line
    return response


@receiver(user_login_failed, dispatch_uid="accounts.lockout.login_failed")
def login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    """Runs after django-axes' own receiver (connected when axes.signals is
    imported, above), which has marked a locked-out request by then."""
    metrics.LOGIN_FAILURES.inc()
    log.warning(
        "login_failed",
        username=get_client_username(request, credentials),
        client=client_ip(request) if request is not None else None,
        path=request.path if request is not None else None,
        locked_out=bool(getattr(request, "axes_locked_out", False)),
    )


@receiver(user_locked_out, dispatch_uid="accounts.lockout.locked_out")
def locked_out(sender, request, username, ip_address, **kwargs) -> None:
    """django-axes sends this for the failure that reaches the limit and again
    for each attempt refused during the lockout: count and log the first."""
    credentials = getattr(request, "axes_credentials", None)
    failure_limit = get_failure_limit(request, credentials)
    if getattr(request, "axes_failures_since_start", None) != failure_limit:
        return
    metrics.LOGIN_LOCKOUTS.inc()
    log.warning(
        "login_locked_out",
        username=username,
        client=ip_address,
        path=request.path,
        failure_limit=failure_limit,
        cooloff_seconds=math.ceil(get_cool_off(request).total_seconds()),
    )
