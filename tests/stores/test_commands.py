"""manage.py ingest and quickstart, run the way an operator runs them."""

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from stores import services
from stores.models import Document, Store
from tests.conftest import stored_files
from tests.factories import make_docx, make_pdf, make_png

UPLOADS = pytest.mark.django_db(transaction=True)
SAMPLES = Path(__file__).resolve().parents[2] / "stores" / "samples"
KEY_PATTERN = re.compile(r"Write API key: (\S+)")


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


# --- ingest -----------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "docs"
    (root / "guides" / "deep").mkdir(parents=True)
    (root / "images").mkdir()
    (root / ".git").mkdir()
    (root / "readme.txt").write_text("Deployments happen every Tuesday morning.\n")
    (root / "guides" / "setup.md").write_text("# Setup\n\nInstall the agent first.\n")
    (root / "guides" / "deep" / "manual.pdf").write_bytes(
        make_pdf(["The warranty lasts two years from delivery."])
    )
    (root / "guides" / "memo.docx").write_bytes(
        make_docx(["Parking permits are renewed in January."])
    )
    (root / "images" / "logo.png").write_bytes(make_png())
    (root / ".env").write_text("SECRET_KEY=do-not-index-me\n")
    (root / ".git" / "config").write_text("[core]\n")
    return root


@UPLOADS
def test_ingest_adds_supported_files_and_lists_the_rest(folder, media_root):
    services.store_create(name="docs")

    out = run("ingest", str(folder), "--store", "docs")

    assert "Store 'docs': 4 added, 0 existing, 0 failed, 3 skipped." in out
    assert "images/logo.png: unsupported type '.png'" in out
    assert ".env: hidden, ignored" in out
    assert ".git: hidden, ignored" in out
    assert "SECRET_KEY" not in out
    documents = Document.objects.filter(store__name="docs")
    assert sorted(d.filename for d in documents) == [
        "manual.pdf",
        "memo.docx",
        "readme.txt",
        "setup.md",
    ]
    assert {d.status for d in documents} == {Document.Status.READY}
    assert all(d.chunk_count >= 1 for d in documents)
    assert len(stored_files(media_root)) == 4


@UPLOADS
def test_ingest_again_reports_existing_and_adds_nothing(folder, media_root):
    services.store_create(name="docs")
    run("ingest", str(folder), "--store", "docs")
    revision = Store.objects.get(name="docs").revision

    out = run("ingest", str(folder), "--store", "docs")

    assert "Store 'docs': 0 added, 4 existing, 0 failed, 3 skipped." in out
    assert Document.objects.count() == 4
    assert len(stored_files(media_root)) == 4
    assert Store.objects.get(name="docs").revision == revision


@UPLOADS
def test_ingest_lists_rejected_and_failed_files_with_the_reason(tmp_path):
    services.store_create(name="docs")
    (tmp_path / "fake.pdf").write_bytes(make_png())
    (tmp_path / "blank.pdf").write_bytes(make_pdf([""]))
    (tmp_path / "empty.md").write_bytes(b"")

    out = run("ingest", str(tmp_path), "--store", "docs")

    assert "fake.pdf: 'fake.pdf' is named .pdf but its content is not a PDF" in out
    assert "empty.md: 'empty.md' is empty." in out
    assert re.search(r"blank\.pdf: failed: \S", out)
    assert "0 added, 0 existing, 1 failed, 2 skipped." in out
    failed = Document.objects.get()
    assert (failed.filename, failed.status) == ("blank.pdf", Document.Status.FAILED)


@pytest.mark.django_db
def test_ingest_into_a_missing_store_is_an_error(folder):
    with pytest.raises(CommandError, match="Store 'docs' not found.*--create"):
        run("ingest", str(folder), "--store", "docs")

    assert not Store.objects.exists()
    assert not Document.objects.exists()


@UPLOADS
def test_ingest_with_create_makes_the_store(folder):
    out = run("ingest", str(folder), "--store", "docs", "--create")

    assert "Created store 'docs'." in out
    assert "4 added" in out
    assert Store.objects.get().name == "docs"


@pytest.mark.django_db
def test_ingest_with_create_and_a_bad_store_name_is_an_error(folder):
    with pytest.raises(CommandError, match="lowercase"):
        run("ingest", str(folder), "--store", "Bad Name", "--create")

    assert not Store.objects.exists()


@pytest.mark.django_db
def test_ingest_of_a_missing_folder_is_an_error(tmp_path, store):
    with pytest.raises(CommandError, match="is not a folder"):
        run("ingest", str(tmp_path / "nowhere"), "--store", "default")


@UPLOADS
def test_ingest_does_not_follow_links_out_of_the_folder(tmp_path):
    services.store_create(name="docs")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Payroll figures for the board.\n")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "note.txt").write_text("A public note about lunch.\n")
    (root / "linked.txt").symlink_to(outside / "secret.txt")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)

    out = run("ingest", str(root), "--store", "docs")

    assert [d.filename for d in Document.objects.all()] == ["note.txt"]
    assert "linked.txt: symbolic link, ignored" in out
    assert "linked-dir: symbolic link, ignored" in out


# --- quickstart -------------------------------------------------------------------


@UPLOADS
def test_quickstart_sets_up_store_user_and_key(media_root):
    out = run("quickstart")

    store = Store.objects.get(name="default")
    samples = sorted(p.name for p in SAMPLES.glob("*.md"))
    assert samples
    documents = store.documents.all()
    assert sorted(d.filename for d in documents) == samples
    assert {d.status for d in documents} == {Document.Status.READY}
    assert f"{len(samples)} sample document(s) added" in out

    user = get_user_model().objects.get()
    assert (user.username, user.is_staff, user.is_superuser) == ("admin", True, True)
    password = re.search(r"Staff user created: admin / (\S+)", out).group(1)
    assert user.check_password(password)

    [key] = KEY_PATTERN.findall(out)
    api_key = ApiKey.objects.get_from_key(key)
    assert api_key.scope == ApiKey.Scope.WRITE
    assert api_key.is_valid(key)
    assert ApiKey.objects.count() == 1
    assert out.count(key) == 2  # the line that shows it, and the example command


@UPLOADS
def test_quickstart_key_works_against_the_api(client):
    out = run("quickstart")
    [key] = KEY_PATTERN.findall(out)

    response = client.get(
        "/api/search",
        {"q": "how do I upload documents", "store": "default"},
        HTTP_AUTHORIZATION=f"Api-Key {key}",
    )

    assert response.status_code == 200, response.content
    assert response.json()["sources"]


@UPLOADS
def test_quickstart_twice_is_safe(media_root):
    first = run("quickstart")
    key = KEY_PATTERN.search(first).group(1)
    documents = sorted(Document.objects.values_list("pk", flat=True))

    second = run("quickstart")

    assert sorted(Document.objects.values_list("pk", flat=True)) == documents
    assert len(stored_files(media_root)) == len(documents)
    assert Store.objects.count() == 1
    assert get_user_model().objects.count() == 1
    assert ApiKey.objects.count() == 1
    assert ApiKey.objects.get_from_key(key).scope == ApiKey.Scope.WRITE
    assert "0 sample document(s) added" in second
    assert "shown once" not in second
    assert "Api-Key" not in second
    assert not KEY_PATTERN.search(second)
    assert "password unchanged" in second


@UPLOADS
def test_quickstart_with_a_revoked_key_makes_a_new_one():
    first = KEY_PATTERN.search(run("quickstart")).group(1)
    ApiKey.objects.update(revoked=True)

    second = KEY_PATTERN.search(run("quickstart")).group(1)

    assert second != first
    assert ApiKey.objects.get_from_key(second).scope == ApiKey.Scope.WRITE
    assert ApiKey.objects.filter(revoked=False).count() == 1
