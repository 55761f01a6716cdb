"""The admin as staff use it: pages render, and writes go through the services."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from stores import services
from stores.models import Chunk, Document, Store
from tests.conftest import stored_files
from tests.factories import make_docx, make_pdf, make_png

UPLOADS = pytest.mark.django_db(transaction=True)

HANDBOOK = (
    b"Expense reports are due on the fifth working day of each month.\n\n"
    b"Travel must be approved by a manager before any booking is made.\n"
)


def add_text(store, name="handbook.txt", content=HANDBOOK) -> Document:
    document, created = services.document_add(
        store=store, file=io.BytesIO(content), name=name
    )
    assert created
    document.refresh_from_db()
    return document


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- Stores ---------------------------------------------------------------------


@UPLOADS
def test_store_changelist_shows_counts_by_status(admin_client, store):
    add_text(store)
    add_text(store, "policy.md", b"# Policy\n\nLaptops are locked at night.\n")
    services.document_add(store=store, file=io.BytesIO(make_pdf([""])), name="x.pdf")
    services.store_create(name="empty")

    response = admin_client.get("/admin/stores/store/")

    assert response.status_code == 200
    rows = {s.name: s for s in response.context["cl"].result_list}
    default = rows["default"]
    assert (default.documents_total, default.documents_ready) == (3, 2)
    assert default.documents_failed == 1
    assert (default.documents_pending, default.documents_processing) == (0, 0)
    assert rows["empty"].documents_total == 0
    assert b"Search this store" in response.content
    assert f"/admin/stores/store/{store.pk}/search/".encode() in response.content


@pytest.mark.django_db
def test_store_add_goes_through_the_service(admin_client, monkeypatch):
    calls = []
    real = services.store_create

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(services, "store_create", spy)
    response = admin_client.post(
        "/admin/stores/store/add/",
        {"name": "handbook", "description": "HR", "backend": "local"},
    )

    assert response.status_code == 302
    store = Store.objects.get()
    assert (store.name, store.description, store.backend) == ("handbook", "HR", "local")
    assert calls == [{"name": "handbook", "description": "HR", "backend": "local"}]
    assert response["Location"] == "/admin/stores/store/"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["Bad Name", "-dash-first", "x" * 64, ""])
def test_store_add_with_a_bad_name_shows_a_form_error(admin_client, name):
    response = admin_client.post(
        "/admin/stores/store/add/", {"name": name, "backend": "local"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"]
    assert b"errornote" in response.content
    assert not Store.objects.exists()


@pytest.mark.django_db
def test_store_add_with_a_taken_name_shows_a_form_error(admin_client, store):
    response = admin_client.post(
        "/admin/stores/store/add/", {"name": "default", "backend": "local"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"]
    assert Store.objects.count() == 1


@pytest.mark.django_db
@override_settings(GEMINI_API_KEY="")
def test_store_add_gemini_without_a_key_is_a_form_error_not_a_crash(admin_client):
    response = admin_client.post(
        "/admin/stores/store/add/", {"name": "remote", "backend": "gemini"}
    )

    assert response.status_code == 200
    assert "GEMINI_API_KEY" in str(response.context["adminform"].form.errors)
    assert not Store.objects.exists()


@pytest.mark.django_db
def test_store_change_page_edits_only_the_description(admin_client, store):
    url = f"/admin/stores/store/{store.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert store.uid.hex[:8] in page.content.decode().replace("-", "")
    assert set(page.context["adminform"].form.fields) == {"description"}

    response = admin_client.post(
        url, {"name": "renamed", "backend": "gemini", "description": "new words"}
    )

    assert response.status_code == 302
    store.refresh_from_db()
    assert (store.name, store.backend) == ("default", "local")
    assert store.description == "new words"


@UPLOADS
def test_store_delete_page_deletes_documents_chunks_and_files(
    admin_client, store, media_root
):
    add_text(store)
    url = f"/admin/stores/store/{store.pk}/delete/"

    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert not confirm.context["perms_lacking"]

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Store.objects.exists()
    assert not Chunk.objects.exists()
    assert stored_files(media_root) == []


@UPLOADS
def test_store_delete_action_asks_first_then_deletes(admin_client, store, media_root):
    add_text(store)
    other = services.store_create(name="keep")
    data = {"action": "delete_stores", "_selected_action": [store.pk]}

    confirm = admin_client.post("/admin/stores/store/", data)
    assert confirm.status_code == 200
    assert b"handbook.txt" in confirm.content
    chunks = Chunk.objects.count()
    assert dict(confirm.context["model_count"]) == {
        "store": 1,
        "document": 1,
        "chunk" if chunks == 1 else "chunks": chunks,
    }
    assert b'name="action" value="delete_stores"' in confirm.content
    assert Store.objects.count() == 2

    response = admin_client.post("/admin/stores/store/", {**data, "post": "yes"})

    assert response.status_code == 302
    assert list(Store.objects.all()) == [other]
    assert not Document.objects.exists()
    assert stored_files(media_root) == []


@pytest.mark.django_db
def test_store_actions_do_not_offer_delete_selected(admin_client, store):
    response = admin_client.get("/admin/stores/store/")
    choices = dict(response.context["action_form"].fields["action"].choices)
    assert "delete_selected" not in choices
    assert "delete_stores" in choices


# --- Search this store ------------------------------------------------------------


@UPLOADS
def test_search_page_shows_the_answer_and_source_links(admin_client, store):
    document = add_text(store)
    assert document.status == Document.Status.READY

    response = admin_client.get(
        f"/admin/stores/store/{store.pk}/search/", {"q": "when are expense reports due"}
    )

    assert response.status_code == 200
    result = response.context["result"]
    assert "fifth working day" in result["answer"]
    assert result["sources"][0]["document_id"] == document.pk
    content = response.content.decode()
    assert "fifth working day" in content
    assert f'href="/admin/stores/document/{document.pk}/change/"' in content
    assert "handbook.txt" in content
    assert 'class="errornote"' not in content


@UPLOADS
def test_search_page_shows_the_page_and_section_of_each_source(admin_client, store):
    pdf = make_pdf(["Harbours and lighthouses.", "Lock keepers raise canal barges."])
    add_text(store, "guide.pdf", pdf)
    add_text(store, "ops.md", b"# Operations\n\n## Canals\n\nBarges queue at locks.\n")

    response = admin_client.get(
        f"/admin/stores/store/{store.pk}/search/", {"q": "canal barges locks"}
    )

    where = {
        source["title"]: (source["page"], source["section"])
        for source in response.context["result"]["sources"]
    }
    assert where == {"guide.pdf": (2, None), "ops.md": (None, "Canals")}
    content = response.content.decode()
    assert '<td class="source-where">page 2</td>' in content
    assert '<td class="source-where">Canals</td>' in content


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["", "   "])
def test_search_page_with_an_empty_query_shows_the_error(admin_client, store, query):
    response = admin_client.get(f"/admin/stores/store/{store.pk}/search/", {"q": query})

    assert response.status_code == 200
    assert response.context["result"] is None
    assert response.context["error"] == "The query is empty."
    assert b'class="errornote"' in response.content


@pytest.mark.django_db
def test_search_page_without_a_query_shows_just_the_form(admin_client, store):
    response = admin_client.get(f"/admin/stores/store/{store.pk}/search/")

    assert response.status_code == 200
    assert response.context["error"] is None
    assert b'name="q"' in response.content


@pytest.mark.django_db
def test_search_page_escapes_the_query(admin_client, store):
    response = admin_client.get(
        f"/admin/stores/store/{store.pk}/search/", {"q": "<script>x</script>"}
    )

    assert response.status_code == 200
    assert b"<script>x</script>" not in response.content


@pytest.mark.django_db
def test_search_page_for_a_missing_store_is_404(admin_client):
    assert admin_client.get("/admin/stores/store/999/search/?q=x").status_code == 404


@pytest.mark.django_db
def test_search_page_needs_view_permission(client, django_user_model, store):
    staff = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(staff)

    response = client.get(f"/admin/stores/store/{store.pk}/search/?q=x")

    assert response.status_code == 403


# --- Documents --------------------------------------------------------------------


@UPLOADS
def test_document_changelist_and_change_page(admin_client, store):
    document = add_text(store)

    listing = admin_client.get("/admin/stores/document/")
    assert listing.status_code == 200
    assert b"handbook.txt" in listing.content

    page = admin_client.get(f"/admin/stores/document/{document.pk}/change/")

    assert page.status_code == 200
    content = page.content.decode()
    assert document.sha256 in content
    link = f"/admin/stores/chunk/?document__id__exact={document.pk}"
    assert link in content.replace("&amp;", "&")
    assert f"View {document.chunk_count} chunks" in content
    assert f'href="/admin/stores/document/{document.pk}/download/"' in content
    assert "/media/" not in content


@UPLOADS
def test_document_download_gives_the_stored_bytes(admin_client, store, media_root):
    document = add_text(store)

    response = admin_client.get(f"/admin/stores/document/{document.pk}/download/")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == HANDBOOK
    assert response["Content-Type"] == "text/plain"
    assert response["Content-Disposition"] == 'attachment; filename="handbook.txt"'

    (media_root / document.file.name).unlink()
    missing = admin_client.get(f"/admin/stores/document/{document.pk}/download/")
    assert missing.status_code == 404


@UPLOADS
def test_document_change_page_post_changes_nothing(admin_client, store):
    document = add_text(store)

    response = admin_client.post(
        f"/admin/stores/document/{document.pk}/change/", {"filename": "evil.txt"}
    )

    assert response.status_code == 403
    document.refresh_from_db()
    assert document.filename == "handbook.txt"


@pytest.mark.django_db
def test_document_add_page_shows_the_upload_form(admin_client, store):
    response = admin_client.get("/admin/stores/document/add/")

    assert response.status_code == 200
    assert set(response.context["adminform"].form.fields) == {"store", "upload"}
    assert b'enctype="multipart/form-data"' in response.content


@UPLOADS
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", HANDBOOK),
        ("guide.pdf", make_pdf(["Expense reports are due on the fifth day."])),
        ("memo.docx", make_docx(["Expense reports are due on the fifth day."])),
    ],
)
def test_document_add_uploads_through_the_service(
    admin_client, store, media_root, name, content
):
    response = admin_client.post(
        "/admin/stores/document/add/",
        {"store": store.pk, "upload": SimpleUploadedFile(name, content)},
    )

    assert response.status_code == 302
    document = Document.objects.get()
    assert document.filename == name
    assert document.status == Document.Status.READY, document.error
    assert document.chunk_count >= 1
    assert document.chunks.count() == document.chunk_count
    assert len(stored_files(media_root)) == 1
    assert response["Location"] == "/admin/stores/document/"


@UPLOADS
def test_document_add_of_known_content_says_so(admin_client, store, media_root):
    existing = add_text(store)

    response = admin_client.post(
        "/admin/stores/document/add/",
        {"store": store.pk, "upload": SimpleUploadedFile("copy.txt", HANDBOOK)},
        follow=True,
    )

    assert response.status_code == 200
    assert list(Document.objects.all()) == [existing]
    assert any("already in the store" in m for m in messages_of(response))
    assert len(stored_files(media_root)) == 1


@UPLOADS
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("picture.pdf", make_png(), "content is not a PDF"),
        ("picture.png", make_png(), "not supported"),
        (".env", b"SECRET=1\n", "Hidden files"),
        ("empty.txt", b"", "empty"),
    ],
)
def test_document_add_of_a_bad_file_shows_a_form_error_and_stores_nothing(
    admin_client, store, media_root, name, content, message
):
    response = admin_client.post(
        "/admin/stores/document/add/",
        {"store": store.pk, "upload": SimpleUploadedFile(name, content)},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in str(errors)
    assert b"errornote" in response.content
    assert not Document.objects.exists()
    assert stored_files(media_root) == []


@UPLOADS
def test_document_add_of_an_oversized_file_shows_an_error(
    admin_client, store, media_root, settings
):
    settings.MAX_FILE_SIZE_BYTES = 100
    response = admin_client.post(
        "/admin/stores/document/add/",
        {"store": store.pk, "upload": SimpleUploadedFile("big.txt", b"a" * 500)},
    )

    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["upload"]
    assert "Files must be at most" in error
    assert "'big.txt'" in error
    assert not Document.objects.exists()
    assert stored_files(media_root) == []


@UPLOADS
def test_reindex_action_runs_ingestion_again(admin_client, store):
    document = add_text(store)
    Chunk.objects.filter(document=document).delete()
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.FAILED, error="old", chunk_count=0
    )

    response = admin_client.post(
        "/admin/stores/document/",
        {"action": "reindex_documents", "_selected_action": [document.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert any("1 document(s)" in m for m in messages_of(response))
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert document.error == ""
    assert document.chunks.count() == document.chunk_count >= 1


@UPLOADS
def test_delete_action_asks_first_then_removes_file_and_chunks(
    admin_client, store, media_root
):
    document = add_text(store)
    kept = add_text(store, "other.txt", b"Another document about the canteen menu.\n")
    revision = Store.objects.get().revision
    assert len(stored_files(media_root)) == 2
    data = {"action": "delete_documents", "_selected_action": [document.pk]}

    confirm = admin_client.post("/admin/stores/document/", data)
    assert confirm.status_code == 200
    assert Document.objects.count() == 2

    response = admin_client.post(
        "/admin/stores/document/", {**data, "post": "yes"}, follow=True
    )

    assert response.status_code == 200
    assert any("Deleted 1 document(s)" in m for m in messages_of(response))
    assert list(Document.objects.all()) == [kept]
    assert not Chunk.objects.filter(document_id=document.pk).exists()
    assert stored_files(media_root) == [media_root / kept.file.name]
    assert Store.objects.get().revision > revision


@UPLOADS
def test_document_delete_page_removes_file_and_chunks(admin_client, store, media_root):
    document = add_text(store)
    url = f"/admin/stores/document/{document.pk}/delete/"

    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert not confirm.context["perms_lacking"]

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Document.objects.exists()
    assert not Chunk.objects.exists()
    assert stored_files(media_root) == []


@pytest.mark.django_db
def test_document_actions_do_not_offer_delete_selected(admin_client, store):
    response = admin_client.get("/admin/stores/document/")
    choices = dict(response.context["action_form"].fields["action"].choices)
    assert "delete_selected" not in choices
    assert {"reindex_documents", "delete_documents"} <= set(choices)


@UPLOADS
def test_delete_selected_cannot_be_posted_either(admin_client, store):
    document = add_text(store)

    admin_client.post(
        "/admin/stores/document/",
        {"action": "delete_selected", "_selected_action": [document.pk], "post": "yes"},
    )

    assert Document.objects.filter(pk=document.pk).exists()


@UPLOADS
def test_staff_who_may_only_view_get_no_actions(client, django_user_model, store):
    from django.contrib.auth.models import Permission

    document = add_text(store)
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.set(
        Permission.objects.filter(codename__in=["view_document", "view_store"])
    )
    client.force_login(clerk)

    listing = client.get("/admin/stores/document/")
    assert listing.status_code == 200
    assert listing.context["action_form"] is None
    response = client.post(
        "/admin/stores/document/",
        {
            "action": "delete_documents",
            "_selected_action": [document.pk],
            "post": "yes",
        },
    )
    assert response.status_code in (200, 302)
    assert Document.objects.filter(pk=document.pk).exists()
    assert client.get(f"/admin/stores/store/{store.pk}/search/?q=x").status_code == 200


# --- Chunks -----------------------------------------------------------------------


@UPLOADS
def test_chunk_changelist_filtered_by_document(admin_client, store):
    document = add_text(store)
    other = add_text(store, "other.txt", b"Another document about the canteen menu.\n")

    response = admin_client.get(
        "/admin/stores/chunk/", {"document__id__exact": document.pk}
    )

    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown and {c.document_id for c in shown} == {document.pk}
    assert other.pk not in {c.document_id for c in shown}
    assert b"fifth working day" in response.content


@UPLOADS
def test_chunk_pages_are_read_only(admin_client, store):
    chunk = add_text(store).chunks.first()

    assert admin_client.get("/admin/stores/chunk/add/").status_code == 403
    page = admin_client.get(f"/admin/stores/chunk/{chunk.pk}/change/")
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert (
        admin_client.post(
            f"/admin/stores/chunk/{chunk.pk}/change/", {"text": "changed"}
        ).status_code
        == 403
    )
    assert (
        admin_client.get(f"/admin/stores/chunk/{chunk.pk}/delete/").status_code == 403
    )
    chunk.refresh_from_db()
    assert chunk.text != "changed"


# --- Anonymous visitors -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/admin/stores/store/",
        "/admin/stores/store/add/",
        "/admin/stores/store/{store}/change/",
        "/admin/stores/store/{store}/delete/",
        "/admin/stores/store/{store}/search/?q=expenses",
        "/admin/stores/document/",
        "/admin/stores/document/add/",
        "/admin/stores/document/{document}/change/",
        "/admin/stores/document/{document}/download/",
        "/admin/stores/chunk/",
        "/admin/stores/chunk/{chunk}/change/",
    ],
)
def test_anonymous_users_are_sent_to_the_login(client, store, path):
    document = Document.objects.create(
        store=store,
        filename="a.txt",
        file="x.txt",
        size_bytes=1,
        mime_type="text/plain",
    )
    chunk = Chunk.objects.create(
        document=document, store=store, ordinal=0, text="a", start_char=0, end_char=1
    )
    url = path.format(store=store.pk, document=document.pk, chunk=chunk.pk)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.django_db
def test_anonymous_posts_change_nothing(client, store):
    response = client.post(
        "/admin/stores/store/add/", {"name": "sneaky", "backend": "local"}
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert list(Store.objects.all()) == [store]
