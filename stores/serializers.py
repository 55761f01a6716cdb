from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from stores import embedding
from stores.models import STORE_NAME_PATTERN, Document, Store


@extend_schema_field({"type": "string", "pattern": STORE_NAME_PATTERN, "maxLength": 63})
class StoreNameField(serializers.CharField):
    """A store name. The service checks the pattern and uniqueness (400 vs 409);
    the schema tells clients the pattern."""


class StoreSerializer(serializers.ModelSerializer):
    name = StoreNameField(max_length=63)
    backend = serializers.ChoiceField(
        choices=Store.Backend.choices,
        required=False,
        help_text="Defaults to gemini when Gemini is configured, else local.",
    )
    documents = serializers.SerializerMethodField()

    class Meta:
        model = Store
        fields = [
            "name",
            "uid",
            "description",
            "backend",
            "remote_name",
            "revision",
            "documents",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "uid",
            "remote_name",
            "revision",
            "created_at",
            "updated_at",
        ]

    def get_documents(self, store) -> dict[str, int]:
        """Document counts by status (annotated by ``stores_with_counts``)."""
        counts = {
            status: getattr(store, f"documents_{status}", None)
            for status in Document.Status.values
        }
        if any(value is None for value in counts.values()):
            return {}
        return {"total": store.documents_total, **counts}


class DocumentSerializer(serializers.ModelSerializer):
    store = serializers.CharField(source="store.name", read_only=True)
    uri = serializers.SerializerMethodField()
    vectors = serializers.SerializerMethodField(
        help_text=(
            "The passages' vectors for semantic search (local stores): ready, "
            "pending (being computed; the document is found by its words "
            "meanwhile), stale (made by another model than the configured one), "
            "or null when it gets none (EMBEDDINGS=off, a Gemini store, or not "
            "ready)."
        )
    )

    class Meta:
        model = Document
        fields = [
            "id",
            "store",
            "filename",
            "size_bytes",
            "mime_type",
            "sha256",
            "status",
            "error",
            "chunk_count",
            "char_count",
            "page_count",
            "vectors",
            "uri",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(
        serializers.ChoiceField(choices=["ready", "pending", "stale"], allow_null=True)
    )
    def get_vectors(self, document) -> str | None:
        return embedding.vector_state(document)

    def get_uri(self, document) -> str:
        return reverse(
            "document-detail",
            kwargs={"store_name": document.store.name, "pk": document.pk},
        )


class DocumentUploadSerializer(serializers.Serializer):
    """Multipart: ``file`` for one document, ``files`` (repeated) for several."""

    file = serializers.FileField(required=False)
    files = serializers.ListField(child=serializers.FileField(), required=False)


class CompatUploadSerializer(serializers.Serializer):
    store = serializers.CharField(default="default")
    file = serializers.FileField(required=False)
    files = serializers.ListField(child=serializers.FileField(), required=False)


class DocumentListResultSerializer(serializers.Serializer):
    results = DocumentSerializer(many=True)
