"""Thin views: parse, call one service function, serialize what comes back."""

from drf_spectacular.utils import (
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from flamehaven import ratelimit
from flamehaven.errors import StoreNotFound
from stores import embedding, ownership, services
from stores.models import Document, Store
from stores.serializers import (
    CompatUploadSerializer,
    DocumentListResultSerializer,
    DocumentSerializer,
    DocumentUploadSerializer,
    StoreSerializer,
)
from stores.uploads import raise_if_oversized

_UPLOAD_ERRORS = (413, 415, 422, 507)


def _upload_responses(serializer) -> dict:
    """200 (content already stored), 201 (stored and indexed), 202 (queued)."""
    return {code: serializer for code in (200, 201, 202)}


def _uploaded_files(request, *fields: str, many: bool) -> list:
    """The files of an upload, counted against its rate limit once parsed."""
    raise_if_oversized(request)
    files = [
        (file, file.name) for field in fields for file in request.FILES.getlist(field)
    ]
    ratelimit.check(request, "upload-multiple" if many else "upload-single")
    return files


def _upload_response(results, *, many: bool, context) -> Response:
    """201 when new work was done, 202 while some of it is still queued, else 200.

    New work is a created document, or an existing one whose interrupted
    ingestion was started again.
    """
    fresh = [
        document
        for document, created in results
        if created or getattr(document, "restarted", False)
    ]
    documents = [document for document, _ in results]
    # With their store in the same query: a store deleted from here on must not
    # be loaded lazily by the serializer (Store.DoesNotExist, a 500).
    live = Document.objects.select_related("store").in_bulk(
        [document.pk for document in documents]
    )
    if not live and not Store.objects.filter(pk=documents[0].store_id).exists():
        # The store was deleted, with these documents, before this answer.
        raise StoreNotFound(
            f"Store '{documents[0].store.name}' not found",
            details={"store": documents[0].store.name},
        )
    # Ingestion may have run already (immediate tasks).
    documents = [live.get(document.pk, document) for document in documents]
    if not fresh:
        code = status.HTTP_200_OK
    elif any(live.get(d.pk, d).status in ownership.ACTIVE for d in fresh):
        code = status.HTTP_202_ACCEPTED
    else:
        code = status.HTTP_201_CREATED
    serialized = DocumentSerializer(documents, many=True, context=context).data
    body = {"results": serialized} if many else serialized[0]
    return Response(body, status=code)


@extend_schema_view(
    create=extend_schema(summary="Create a store"),
    destroy=extend_schema(summary="Delete a store with its documents"),
)
class StoreViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = StoreSerializer
    lookup_field = "name"
    error_statuses = {"POST": (409,)}

    def get_queryset(self):
        return services.stores_with_counts()

    def get_object(self):
        store = self.get_queryset().filter(name=self.kwargs["name"]).first()
        if store is None:
            raise StoreNotFound(
                f"Store '{self.kwargs['name']}' not found",
                details={"store": self.kwargs["name"]},
            )
        return store

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        store = services.store_create(**serializer.validated_data)
        store = self.get_queryset().get(pk=store.pk)
        return Response(self.get_serializer(store).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, name=None):
        services.store_delete(store=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class DocumentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = DocumentSerializer
    parser_classes = [MultiPartParser, FormParser]
    error_statuses = {"POST": (*_UPLOAD_ERRORS, 409)}  # 409: DOCUMENT_BUSY

    def get_throttles(self):
        # An upload is counted once its files say which upload group it is.
        return [] if self.action == "create" else super().get_throttles()

    def get_store(self) -> Store:
        if not hasattr(self, "_store"):
            self._store = services.store_get(name=self.kwargs["store_name"])
        return self._store

    def get_queryset(self):
        return embedding.with_vector_model(
            Document.objects.filter(store=self.get_store()).select_related("store")
        )

    def get_object(self):
        return services.document_get(store=self.get_store(), pk=self.kwargs["pk"])

    @extend_schema(
        summary="Upload one document (file) or several (files)",
        request={"multipart/form-data": DocumentUploadSerializer},
        responses=_upload_responses(
            PolymorphicProxySerializer(
                component_name="UploadResult",
                serializers=[DocumentSerializer, DocumentListResultSerializer],
                resource_type_field_name=None,  # oneOf: told apart by their shape
            )
        ),
        description=(
            "One `file` answers with the document; `files` answers with "
            '`{"results": [documents]}`. 201 when stored and indexed, 202 when '
            "ingestion is queued, 200 when the content was already in the store."
        ),
    )
    def create(self, request, store_name=None):
        store = self.get_store()
        many = "files" in request.FILES
        files = _uploaded_files(request, "file", "files", many=many)
        results = services.documents_add(store=store, files=files)
        return _upload_response(
            results, many=many, context=self.get_serializer_context()
        )

    def destroy(self, request, store_name=None, pk=None):
        services.document_delete(document=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses={202: DocumentSerializer, 200: DocumentSerializer},
        description=(
            "Run the ingestion again. 409 `DOCUMENT_BUSY` while the document is "
            "pending or processing (one ingestion at a time), unless the process "
            "that had it is gone, when it starts again."
        ),
    )
    @action(detail=True, methods=["post"])
    def reindex(self, request, store_name=None, pk=None):
        document = services.document_reindex(document=self.get_object())
        code = (
            status.HTTP_202_ACCEPTED
            if document.status == Document.Status.PENDING
            else status.HTTP_200_OK
        )
        return Response(self.get_serializer(document).data, status=code)


class UploadSingleView(APIView):
    """The compatible upload form: multipart ``file`` with form field ``store``."""

    parser_classes = [MultiPartParser, FormParser]
    error_statuses = {"POST": _UPLOAD_ERRORS}
    throttle_classes = []  # counted once its files are parsed (_uploaded_files)
    many = False

    @extend_schema(
        request={"multipart/form-data": CompatUploadSerializer},
        responses=_upload_responses(DocumentSerializer),
    )
    def post(self, request):
        store = services.store_get(name=request.data.get("store") or "default")
        files = _uploaded_files(
            request, "files" if self.many else "file", many=self.many
        )
        results = services.documents_add(store=store, files=files)
        return _upload_response(results, many=self.many, context={"request": request})


class UploadMultipleView(UploadSingleView):
    """The compatible upload form: multipart ``files`` with form field ``store``."""

    many = True

    @extend_schema(
        request={"multipart/form-data": CompatUploadSerializer},
        responses=_upload_responses(DocumentListResultSerializer),
    )
    def post(self, request):
        return super().post(request)
