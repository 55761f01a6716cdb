"""TASKS_BACKEND=database: uploads answer 202 and a db_worker does the ingestion."""

import pytest
from django.core.management import call_command

from stores.models import Document
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = b"Lanterns guide hikers at night."


@pytest.fixture
def queued(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def _work() -> None:
    call_command("db_worker", "--batch", "--no-startup-delay", verbosity=0)


def test_upload_is_accepted_then_made_ready_by_the_worker(queued, gemini, write_client):
    write_client.post("/api/stores/", {"name": "gem"}, format="json")

    response = upload(write_client, "gem", {"guide.txt": TEXT})

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert gemini.calls(route="upload.start") == []

    _work()

    document = Document.objects.get(pk=response.json()["id"])
    assert document.status == "ready"
    assert document.remote_name
    detail = write_client.get(f"/api/stores/gem/documents/{document.pk}/").json()
    assert detail["status"] == "ready"


def test_a_gemini_failure_in_the_worker_fails_the_document(
    queued, gemini, write_client
):
    write_client.post("/api/stores/", {"name": "gem"}, format="json")
    gemini.operation_error = {"code": 400, "message": "Unsupported file content"}
    document_id = upload(write_client, "gem", {"guide.txt": TEXT}).json()["id"]

    _work()

    detail = write_client.get(f"/api/stores/gem/documents/{document_id}/").json()
    assert detail["status"] == "failed"
    assert "Unsupported file content" in detail["error"]
