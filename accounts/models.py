"""Scoped API keys.

The library's abstract model keeps only a hash of each key; we add the scope that
decides what a key may do, and when it was last used so stale keys can be found.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey

# Writing on every authenticated request would turn each search into a database
# write; a minute's precision is plenty to tell a live key from a forgotten one.
LAST_USED_PRECISION = timedelta(minutes=1)


class Scope(models.TextChoices):
    """What a key may do; each scope includes the ones before it."""

    READ = "read", "read (search, list, cache statistics)"
    WRITE = "write", "write (also change stores and documents)"
    ADMIN = "admin", "admin (also clear the cache, metrics)"


_SCOPE_RANK = {scope.value: rank for rank, scope in enumerate(Scope)}


def scope_allows(granted: str | None, required: str) -> bool:
    """Whether `granted` covers `required` (read < write < admin).

    Unknown or missing scopes allow nothing, so a typo fails closed.
    """
    if granted not in _SCOPE_RANK or required not in _SCOPE_RANK:
        return False
    return _SCOPE_RANK[granted] >= _SCOPE_RANK[required]


class ApiKey(AbstractAPIKey):
    """An API key with a scope; the plaintext key is never stored."""

    Scope = Scope  # so callers can say ApiKey.Scope like any Django choices

    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    def touch(self) -> None:
        """Record a use, at most once per LAST_USED_PRECISION.

        The conditional UPDATE keeps concurrent requests from all writing, and it
        bypasses save() so a use never rewrites the other columns.
        """
        now = timezone.now()
        stale_before = now - LAST_USED_PRECISION
        if self.last_used_at is not None and self.last_used_at > stale_before:
            return
        type(self).objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True)
            | models.Q(last_used_at__lte=stale_before)
        ).update(last_used_at=now)
        self.last_used_at = now
