"""Fixtures for tests that run the service as real processes over a database."""

import json

import pytest
from django.conf import settings

from tests.servers import HIGH_RATE_LIMITS, manage, scratch_postgres, server_env

# Prints what a test asserts on after crashes and races: every document with its
# real chunk count, the stored files, and the ingestion tasks' statuses.
_STATE = """
import json
from django.conf import settings
from pathlib import Path
from django_tasks_db.models import DBTaskResult
from stores.models import Chunk, Document, Store
from django.db.models import Count
media = Path(settings.MEDIA_ROOT)
print(json.dumps({
    "stores": list(Store.objects.values_list("name", flat=True)),
    "documents": list(Document.objects.annotate(real_chunks=Count("chunks")).values(
        "id", "store__name", "filename", "status", "owner", "attempts",
        "chunk_count", "real_chunks", "file", "error")),
    "chunks": Chunk.objects.count(),
    "files": sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file())
        if media.exists() else [],
    "folders": sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_dir())
        if media.exists() else [],
    "tasks": list(DBTaskResult.objects.values_list("status", flat=True)),
}))
"""


@pytest.fixture
def service_env(tmp_path):
    """A server environment on a database of its own: a SQLite file, or (in the
    PostgreSQL pass) a scratch PostgreSQL database dropped afterwards."""
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        yield server_env(tmp_path, **HIGH_RATE_LIMITS)
        return
    with scratch_postgres("fh_proc") as (address, name):
        url = f"postgres://{address['user']}@{address['host']}:{address['port']}/{name}"
        yield server_env(tmp_path, DATABASE_URL=url, **HIGH_RATE_LIMITS)


def service_state(env) -> dict:
    """What the service's database and media folder hold now."""
    return json.loads(manage(env, "shell", "-c", _STATE).strip().splitlines()[-1])


def fsck(env) -> str:
    """``manage.py fsck`` on the service's data; fails the test unless clean."""
    return manage(env, "fsck")
