"""manage.py quickstart: a working system in one command, safe to run again.

Migrates, creates the ``default`` store with the bundled sample documents, a staff
user and a write API key. Secrets are printed once, when they are created; a
second run leaves existing users and keys untouched.
"""

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management import call_command
from django.core.management.base import BaseCommand

from accounts.models import ApiKey
from accounts.services import api_key_create
from flamehaven.errors import StoreNotFound
from stores import services

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
QUICKSTART_KEY_NAME = "quickstart"


class Command(BaseCommand):
    help = (
        "Migrate, create the default store with samples, a staff user and an API "
        "key. Safe to run again: nothing is duplicated and no secret is shown twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the service will answer, for the printed example",
        )

    def handle(self, username: str, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Database migrated.")

        try:
            store = services.store_get(name="default")
        except StoreNotFound:
            store = services.store_create(
                name="default", description="Sample documents from quickstart"
            )
        added = 0
        for path in sorted(SAMPLES.glob("*.md")):
            with path.open("rb") as handle:
                _, created = services.document_add(
                    store=store, file=File(handle), name=path.name
                )
            added += created
        self.stdout.write(f"Store 'default': {added} sample document(s) added.")

        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Staff user '{username}' exists; password unchanged.")
        else:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(
                username=username, email="", password=password
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Staff user created: {username} / {password}  (shown once)"
                )
            )

        if ApiKey.objects.filter(name=QUICKSTART_KEY_NAME, revoked=False).exists():
            self.stdout.write(
                f"API key '{QUICKSTART_KEY_NAME}' exists; make another with "
                "`manage.py create_api_key NAME --scope write`."
            )
        else:
            _, key = api_key_create(name=QUICKSTART_KEY_NAME, scope="write")
            self.stdout.write(self.style.SUCCESS(f"Write API key: {key}  (shown once)"))
            self.stdout.write(
                "\nTry it:\n"
                f'  curl -H "Authorization: Api-Key {key}" '
                f'"{options["base_url"]}/api/search?q=how+do+uploads+work"\n'
            )
