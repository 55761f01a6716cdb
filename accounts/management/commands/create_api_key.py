"""`manage.py create_api_key NAME [--scope S] [--expires-days N]`.

The key goes alone on stdout (and only there) so scripts can capture it with
`KEY=$(manage.py create_api_key ci)`; the human note goes to stderr.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import Scope
from accounts.services import api_key_create
from flamehaven.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API key and print it once (it cannot be shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A label for the key, e.g. who uses it.")
        parser.add_argument("--scope", choices=Scope.values, default=Scope.READ)
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="Days until the key stops working (default: never).",
        )

    def handle(self, *args, name: str, scope: str, expires_days: int | None, **opts):
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expiry_date = (
            timezone.now() + timedelta(days=expires_days) if expires_days else None
        )
        try:
            api_key, key = api_key_create(
                name=name, scope=scope, expiry_date=expiry_date
            )
        except ValidationFailed as exc:
            raise CommandError(f"{exc.message} {exc.details}") from exc
        expires = f", expires {expiry_date:%Y-%m-%d}" if expiry_date else ""
        self.stderr.write(
            f"Created API key '{api_key.name}' (prefix {api_key.prefix}, "
            f"scope {api_key.scope}{expires}). Store it now: it is not shown again.",
            style_func=self.style.WARNING,
        )
        self.stdout.write(key)
