"""Staff manage stores and documents here; every write goes through stores.services."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import model_ngettext
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator, capfirst

from flamehaven.errors import ApiError
from search.services import SearchParams, cache_clear, search
from stores import embedding, services
from stores.models import Chunk, Document, Store, Worker
from stores.uploads import raise_if_oversized

DELETE_CONFIRMATION_TEMPLATE = "admin/stores/delete_action_confirmation.html"


def _linked(obj) -> str:
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)


def _plural(model, count: int) -> str:
    opts = model._meta
    return str(opts.verbose_name if count == 1 else opts.verbose_name_plural)


class ServiceDeleteMixin:
    """Deletion pages and actions that call the services and summarise the cascade.

    Django's own summary loads every related row, chunk texts included, and asks
    for delete permission on chunks, which nobody has (chunks go with their
    document), so deleting from the admin would always be refused. The summary
    here lists stores and documents and counts the chunks with one query.
    """

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        to_delete, counts = self.deletion_summary(objs)
        model_count = {_plural(model, n): n for model, n in counts.items() if n}
        perms_needed = set()
        if not self.has_delete_permission(request):
            perms_needed.add(str(self.opts.verbose_name))
        return to_delete, model_count, perms_needed, []

    def delete_queryset(self, request, queryset):
        # Only the built-in delete_selected calls this, and it is not offered;
        # should it ever be, it still goes through the service.
        for obj in queryset:
            self.delete_model(request, obj)

    def confirm_or_delete(self, request, queryset, action: str, noun: str):
        """The delete actions' two steps, as Django's delete_selected does them."""
        if request.POST.get("post"):
            objs = list(queryset)
            self.log_deletions(request, objs)
            for obj in objs:
                self.delete_model(request, obj)
            self.message_user(
                request, f"Deleted {len(objs)} {noun}(s).", messages.SUCCESS
            )
            return None
        to_delete, model_count, _, _ = self.get_deleted_objects(queryset, request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete multiple objects",
            "subtitle": None,
            "objects_name": str(model_ngettext(queryset)),
            "deletable_objects": [to_delete],
            "model_count": model_count.items(),
            "queryset": queryset,
            "perms_lacking": set(),
            "protected": [],
            "opts": self.opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": action,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, DELETE_CONFIRMATION_TEMPLATE, context)


class StoreForm(forms.ModelForm):
    class Meta:
        model = Store
        fields = ["name", "description", "backend"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "backend" in self.fields and self.instance._state.adding:
            self.fields["backend"].initial = services.default_backend()

    def clean_backend(self):
        # store_create would refuse it; say so on the form rather than fail later.
        backend = self.cleaned_data["backend"]
        if backend == Store.Backend.GEMINI and not services.gemini_configured():
            raise forms.ValidationError(
                "Gemini is not configured on this server: set GEMINI_API_KEY to "
                "create Gemini stores."
            )
        return backend


def _count_column(status: str, label: str | None = None):
    """A changelist column for one of ``stores_with_counts``' annotations."""
    field = f"documents_{status}"

    @admin.display(description=label or status, ordering=field)
    def column(self, store):
        return getattr(store, field)

    return column


@admin.register(Store)
class StoreAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    form = StoreForm
    list_display = [
        "name",
        "backend",
        "revision",
        "documents_total",
        "documents_ready",
        "documents_processing",
        "documents_pending",
        "documents_failed",
        "search_link",
    ]
    search_fields = ["name", "description"]
    readonly_fields = ["uid", "revision", "remote_name", "created_at", "updated_at"]
    actions = ["clear_search_cache", "delete_stores"]

    def get_queryset(self, request):
        return services.stores_with_counts()

    def get_readonly_fields(self, request, obj=None):
        # Name and backend are fixed at creation: remote stores and cache keys
        # hang off them.
        if obj is not None:
            return [*self.readonly_fields, "name", "backend"]
        return self.readonly_fields

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass store_delete
        return actions

    documents_total = _count_column("total", "documents")
    documents_ready = _count_column("ready")
    documents_processing = _count_column("processing")
    documents_pending = _count_column("pending")
    documents_failed = _count_column("failed")

    @admin.display(description="search")
    def search_link(self, store):
        url = reverse("admin:stores_store_search", args=[store.pk])
        return format_html('<a href="{}">Search this store</a>', url)

    def save_model(self, request, obj, form, change):
        if change:
            services.store_update(store=obj, description=obj.description)
            return
        # The form has checked the name, its uniqueness and the backend; an
        # ApiError here is a concurrent create or a backend failure.
        store = services.store_create(
            name=obj.name, description=obj.description, backend=obj.backend
        )
        obj.pk = store.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.store_delete(store=obj)

    def deletion_summary(self, stores):
        documents = Document.objects.filter(store__in=stores).only("store", "filename")
        by_store: dict[int, list] = {}
        for document in documents.order_by("store_id", "filename"):
            by_store.setdefault(document.store_id, []).append(_linked(document))
        to_delete = []
        for store in stores:
            to_delete.append(_linked(store))
            if by_store.get(store.pk):
                to_delete.append(by_store[store.pk])
        counts = {
            Store: len(stores),
            Document: documents.count(),
            Chunk: Chunk.objects.filter(document__store__in=stores).count(),
        }
        return to_delete, counts

    @admin.action(
        description="Delete selected stores with their documents",
        permissions=["delete"],
    )
    def delete_stores(self, request, queryset):
        return self.confirm_or_delete(request, queryset, "delete_stores", "store")

    @admin.action(
        description="Clear the search cache of selected stores",
        permissions=["change"],
    )
    def clear_search_cache(self, request, queryset):
        stores = list(queryset)
        removed = sum(
            cache_clear(store_name=store.name)["removed"] or 0 for store in stores
        )
        self.message_user(
            request,
            f"Cleared the search cache of {len(stores)} "
            f"{model_ngettext(queryset, len(stores))}: "
            f"{removed} cached answer(s) removed.",
            messages.SUCCESS,
        )

    def get_urls(self):
        search_view = self.admin_site.admin_view(self.search_view)
        return [
            path("<int:store_id>/search/", search_view, name="stores_store_search"),
            *super().get_urls(),
        ]

    def search_view(self, request, store_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        store = get_object_or_404(Store, pk=store_id)
        query = request.GET.get("q", "")
        result = error = None
        if "q" in request.GET:
            try:
                result = search(SearchParams(query=query, store_name=store.name))
            except ApiError as exc:
                error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "store": store,
            "query": query,
            "result": result,
            "error": error,
            "title": f"Search {store.name}",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/stores/store/search.html", context)


class DocumentUploadForm(forms.ModelForm):
    upload = forms.FileField(label="File", help_text="PDF, DOCX, Markdown or text.")
    # Set by DocumentAdmin.get_form when the upload handler dropped the file for
    # its size: the field is then empty, and "required" would be the wrong reason.
    upload_error: str | None = None

    class Meta:
        model = Document
        fields = ["store"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.upload_error:
            self.fields["upload"].error_messages["required"] = self.upload_error

    def clean_upload(self):
        upload = self.cleaned_data["upload"]
        try:
            services.check_uploads([(upload, upload.name)])
        except ApiError as exc:
            raise forms.ValidationError(exc.message) from exc
        return upload


@admin.register(Document)
class DocumentAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    """Documents are uploaded, re-indexed and deleted, never edited in place."""

    list_display = [
        "filename",
        "store",
        "status",
        "chunk_count",
        "vectors",
        "size_bytes",
        "mime_type",
        "created_at",
    ]
    list_filter = ["status", "store", "mime_type"]
    search_fields = ["filename", "sha256"]
    list_select_related = ["store"]
    actions = ["reindex_documents", "delete_documents"]
    readonly_fields = [
        "store",
        "filename",
        "stored_file",
        "size_bytes",
        "mime_type",
        "sha256",
        "status",
        "error",
        "chunk_count",
        "char_count",
        "page_count",
        "vectors",
        "remote_name",
        "owner",
        "attempts",
        "chunks_link",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request):
        return embedding.with_vector_model(super().get_queryset(request))

    @admin.display(description="vectors")
    def vectors(self, document: Document) -> str:
        return embedding.vector_state(document) or "-"

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, **kwargs)
        form = super().get_form(request, obj, form=DocumentUploadForm, **kwargs)
        if request.method == "POST":
            request.FILES  # noqa: B018 (parse the body, so the size check sees it)
            try:
                raise_if_oversized(request)
            except ApiError as exc:
                form = type(form.__name__, (form,), {"upload_error": exc.message})
        return form

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["store", "upload"]
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def has_change_permission(self, request, obj=None):
        return False

    def has_reindex_permission(self, request):
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass document_delete
        return actions

    def save_model(self, request, obj, form, change):
        upload = form.cleaned_data["upload"]
        document, created = services.document_add(
            store=form.cleaned_data["store"], file=upload, name=upload.name
        )
        if not created:
            messages.info(request, "This content is already in the store.")
        obj.pk = document.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.document_delete(document=obj)

    def deletion_summary(self, documents):
        counts = {
            Document: len(documents),
            Chunk: Chunk.objects.filter(document__in=documents).count(),
        }
        return [_linked(document) for document in documents], counts

    @admin.display(description="file")
    def stored_file(self, document):
        # MEDIA_URL is not served (documents are not public), so the file comes
        # through a staff-only view instead of the FileField's usual link.
        url = reverse("admin:stores_document_download", args=[document.pk])
        return format_html(
            '<a href="{}">Download</a> <span class="help">{}</span>',
            url,
            document.file.name,
        )

    def get_urls(self):
        download_view = self.admin_site.admin_view(self.download_view)
        return [
            path(
                "<int:document_id>/download/",
                download_view,
                name="stores_document_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request, document_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        document = get_object_or_404(Document, pk=document_id)
        try:
            handle = document.file.open("rb")
        except FileNotFoundError:
            raise Http404("The stored file is missing.") from None
        return FileResponse(
            handle,
            as_attachment=True,
            filename=document.filename,
            content_type=document.mime_type,
        )

    @admin.display(description="chunks")
    def chunks_link(self, document):
        url = reverse("admin:stores_chunk_changelist")
        return format_html(
            '<a href="{}?document__id__exact={}">View {} chunks</a>',
            url,
            document.pk,
            document.chunk_count,
        )

    @admin.action(description="Re-index selected documents", permissions=["reindex"])
    def reindex_documents(self, request, queryset):
        count, busy = 0, []
        for document in queryset:
            try:
                services.document_reindex(document=document)
            except ApiError as exc:  # DOCUMENT_BUSY, or deleted meanwhile
                busy.append(f"{document.filename}: {exc.message}")
                continue
            count += 1
        self.message_user(request, f"Queued {count} document(s) for indexing.")
        for message in busy:
            self.message_user(request, message, level=messages.WARNING)

    @admin.action(description="Delete selected documents", permissions=["delete"])
    def delete_documents(self, request, queryset):
        queryset = queryset.select_related("store")
        return self.confirm_or_delete(request, queryset, "delete_documents", "document")


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    """Read-only: chunks are made by ingestion, never by hand."""

    list_display = ["document", "ordinal", "page", "start_char", "end_char", "preview"]
    list_filter = ["document__store"]
    search_fields = ["document__filename"]
    list_select_related = ["document"]
    readonly_fields = ["document", "ordinal", "page", "start_char", "end_char", "text"]

    @admin.display(description="text")
    def preview(self, chunk):
        return Truncator(chunk.text).chars(120)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Read-only: the processes that own ingestion work, and their heartbeats."""

    list_display = ["id", "kind", "hostname", "pid", "started_at", "heartbeat_at"]
    list_filter = ["kind", "hostname"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
