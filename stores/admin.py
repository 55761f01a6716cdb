"""Staff manage stores and documents here; every write goes through stores.services."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from flamehaven.errors import ApiError
from search.services import SearchParams, search
from stores import services
from stores.models import Chunk, Document, Store
from stores.uploads import raise_if_oversized


class StoreForm(forms.ModelForm):
    class Meta:
        model = Store
        fields = ["name", "description", "backend"]


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
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
    actions = ["delete_stores"]

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

    @admin.display(description="documents", ordering="documents_total")
    def documents_total(self, store):
        return store.documents_total

    @admin.display(description="ready")
    def documents_ready(self, store):
        return store.documents_ready

    @admin.display(description="processing")
    def documents_processing(self, store):
        return store.documents_processing

    @admin.display(description="pending")
    def documents_pending(self, store):
        return store.documents_pending

    @admin.display(description="failed")
    def documents_failed(self, store):
        return store.documents_failed

    @admin.display(description="search")
    def search_link(self, store):
        url = reverse("admin:stores_store_search", args=[store.pk])
        return format_html('<a href="{}">Search this store</a>', url)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["description", "updated_at"])
            return
        try:
            store = services.store_create(
                name=obj.name, description=obj.description, backend=obj.backend
            )
        except ApiError as exc:
            # Model validation has run already; this is a race or a backend error.
            messages.error(request, exc.message)
            raise
        obj.pk = store.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.store_delete(store=obj)

    @admin.action(description="Delete selected stores with their documents")
    def delete_stores(self, request, queryset):
        count = 0
        for store in queryset:
            services.store_delete(store=store)
            count += 1
        self.message_user(request, f"Deleted {count} store(s).")

    def get_urls(self):
        search_view = self.admin_site.admin_view(self.search_view)
        return [
            path("<int:store_id>/search/", search_view, name="stores_store_search"),
            *super().get_urls(),
        ]

    def search_view(self, request, store_id):
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
        return TemplateResponse(request, "admin/stores/store/search.html", context)


class DocumentUploadForm(forms.ModelForm):
    upload = forms.FileField(label="File", help_text="PDF, DOCX, Markdown or text.")

    class Meta:
        model = Document
        fields = ["store"]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload is not None:
            try:
                services.check_uploads([(upload, upload.name)])
            except ApiError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = [
        "filename",
        "store",
        "status",
        "chunk_count",
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
        "file",
        "size_bytes",
        "mime_type",
        "sha256",
        "status",
        "error",
        "chunk_count",
        "char_count",
        "page_count",
        "remote_name",
        "chunks_link",
        "created_at",
        "updated_at",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = DocumentUploadForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["store", "upload"]
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass document_delete
        return actions

    def add_view(self, request, form_url="", extra_context=None):
        if request.method == "POST":
            try:
                raise_if_oversized(request)
            except ApiError as exc:
                messages.error(request, exc.message)
        return super().add_view(request, form_url, extra_context)

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

    @admin.display(description="chunks")
    def chunks_link(self, document):
        url = reverse("admin:stores_chunk_changelist") + f"?document__id__exact={document.pk}"
        return format_html('<a href="{}">View {} chunks</a>', url, document.chunk_count)

    @admin.action(description="Re-index selected documents")
    def reindex_documents(self, request, queryset):
        for document in queryset:
            services.document_reindex(document=document)
        self.message_user(request, f"Queued {queryset.count()} document(s) for indexing.")

    @admin.action(description="Delete selected documents")
    def delete_documents(self, request, queryset):
        count = 0
        for document in queryset.select_related("store"):
            services.document_delete(document=document)
            count += 1
        self.message_user(request, f"Deleted {count} document(s).")


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
