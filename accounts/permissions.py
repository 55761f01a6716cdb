"""Scope-based access: the default permission class of the API.

A view says what it needs with `required_scope = "admin"` or, per method,
`required_scopes = {"POST": "admin"}`; otherwise reads need `read` and anything
that changes state needs `write`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import ApiKey, Scope, scope_allows

if TYPE_CHECKING:
    # Only for hints: DRF imports this module while rest_framework.views is still
    # loading (DEFAULT_PERMISSION_CLASSES), so a real import would be circular.
    from rest_framework.request import Request
    from rest_framework.views import APIView


def request_scope(request: Request) -> str | None:
    """The scope a request carries: its key's, or admin for a staff session."""
    if isinstance(request.auth, ApiKey):
        return request.auth.scope
    user = request.user
    if user and user.is_authenticated and user.is_active and user.is_staff:
        # Staff use the browsable API with their admin login.
        return Scope.ADMIN
    return None


def required_scope(request: Request, view: APIView) -> str:
    """The scope a view needs for this request's method."""
    per_method = getattr(view, "required_scopes", None) or {}
    scope = per_method.get(request.method) or getattr(view, "required_scope", None)
    if scope is None:
        scope = Scope.READ if request.method in SAFE_METHODS else Scope.WRITE
    if scope not in Scope.values:
        # A typo must not silently lock everyone out (or let everyone in).
        raise ImproperlyConfigured(f"{type(view).__name__} requires unknown {scope=}")
    return scope


class HasScope(BasePermission):
    """Allow a request whose scope covers what the view needs.

    For anonymous requests DRF turns a False into 401; for authenticated ones
    into 403 with `message`, which says what was missing.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: APIView) -> bool:
        needed = required_scope(request, view)
        granted = request_scope(request)
        if scope_allows(granted, needed):
            return True
        if isinstance(request.auth, ApiKey):
            self.message = (
                f"This endpoint needs the '{needed}' scope; your key has '{granted}'."
            )
        else:
            self.message = (
                f"This endpoint needs the '{needed}' scope: use an API key "
                "or a staff account."
            )
        return False
