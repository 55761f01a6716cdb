"""The one way to create an API key (the command and tests use it)."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import ApiKey, Scope
from flamehaven.errors import ValidationFailed


@transaction.atomic
def api_key_create(
    *, name: str, scope: str, expiry_date: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext.

    The plaintext exists only in the return value: the database holds a hash, so
    the caller must show it once and let it go.
    """
    if scope not in Scope.values:
        raise ValidationFailed(
            f"Unknown scope '{scope}'.",
            details={"scope": [f"Choose one of: {', '.join(Scope.values)}."]},
        )
    api_key = ApiKey(name=name, scope=scope, expiry_date=expiry_date)
    key = ApiKey.objects.assign_key(api_key)
    try:
        api_key.full_clean()
    except ValidationError as exc:
        raise ValidationFailed(details=exc.message_dict) from exc
    api_key.save()
    return api_key, key
