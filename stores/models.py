"""Stores hold documents; documents are split into chunks that the local index searches.

The full-text index over ``Chunk.text`` is not a model field: it is vendor SQL made
by migration 0002 (an FTS5 table kept in sync by triggers on SQLite, a generated
``tsvector`` column with a GIN index on PostgreSQL) and only
``stores/backends/local.py`` queries it.
"""

import uuid
from pathlib import PurePosixPath

from django.core.validators import RegexValidator
from django.db import models

STORE_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,62})$"


class StoreQuerySet(models.QuerySet):
    def bump_revision(self) -> int:
        """Mark these stores' searchable content as changed (cache keys follow).

        One UPDATE with F(): concurrent bumps never lose one, and django-cachalot
        drops its cached store rows on commit, in every worker sharing the cache.
        """
        return self.update(revision=models.F("revision") + 1)


class Store(models.Model):
    class Backend(models.TextChoices):
        LOCAL = "local", "Local full-text"
        GEMINI = "gemini", "Gemini File Search"

    name = models.CharField(
        max_length=63,
        unique=True,
        validators=[
            RegexValidator(
                STORE_NAME_PATTERN,
                "Use 1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit.",
            )
        ],
    )
    # Identifies this incarnation of the store: a store deleted and created again
    # under the same name gets a new uid, so nothing keyed by it (cache entries,
    # stored files) is ever shared between the two.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    description = models.TextField(blank=True, default="")
    backend = models.CharField(
        max_length=16, choices=Backend.choices, default=Backend.LOCAL
    )
    remote_name = models.CharField(max_length=255, blank=True, default="")
    # Bumped (with an F() update) whenever the store's searchable content changes;
    # search cache keys include it, so a change is never answered from stale cache.
    revision = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = StoreQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def document_upload_to(document: "Document", filename: str) -> str:
    """Storage names are generated; the client's name is only ever a label."""
    suffix = PurePosixPath(filename).suffix.lower()
    return f"documents/{document.store.uid.hex}/{uuid.uuid4().hex}{suffix}"


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="documents")
    filename = models.CharField(max_length=255)
    file = models.FileField(upload_to=document_upload_to, max_length=255)
    size_bytes = models.PositiveBigIntegerField()
    mime_type = models.CharField(max_length=127)
    sha256 = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    error = models.TextField(blank=True, default="")
    chunk_count = models.PositiveIntegerField(default=0)
    char_count = models.PositiveBigIntegerField(default=0)
    page_count = models.PositiveIntegerField(null=True, blank=True)
    remote_name = models.CharField(max_length=255, blank=True, default="")
    # Who will finish the ingestion of a pending or processing document: the
    # Worker id of the process that queued it in-process or is running it, or ""
    # while it waits in the database task queue (see stores.ownership).
    owner = models.CharField(max_length=64, blank=True, default="")
    # Ingestions started since the last upload or re-index; the sweep gives up
    # on a document whose ingestion keeps taking its process down.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Who will compute the vectors of a ready document that has none for the
    # current model: a Worker id, or "" while a database task waits for it (see
    # stores.embedding). Only meaningful while the vectors are missing.
    vector_owner = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "sha256"], name="document_unique_content_per_store"
            )
        ]

    def __str__(self) -> str:
        return self.filename


class Chunk(models.Model):
    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="chunks"
    )
    # Denormalised from the document: the full-text query filters by store on the
    # chunk row itself, so no plan can rescan the index once per document.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    start_char = models.PositiveIntegerField()
    end_char = models.PositiveIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True)
    # The heading the passage sits under (Markdown, reStructuredText, DOCX).
    section = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [
            models.UniqueConstraint(
                fields=["document", "ordinal"], name="chunk_unique_ordinal"
            )
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


class Embedding(models.Model):
    """The vectors of a ready document's chunks, as one model made them.

    One row per document, written in one go, so a document's vectors are all
    there or not at all. A chunk has one vector per window of its text (a model
    sees a few hundred tokens at most): row ``i`` of ``vectors`` belongs to chunk
    ``chunk_ids[i]``, and a chunk's rows are consecutive. Re-indexing or failing
    the document deletes the row with the chunks it describes.
    """

    document = models.OneToOneField(
        Document, on_delete=models.CASCADE, primary_key=True, related_name="embedding"
    )
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    # The embedder's name (Embedder.name): vectors of another model are stale.
    model = models.CharField(max_length=200)
    dimensions = models.PositiveSmallIntegerField()
    chunk_ids = models.BinaryField()  # little-endian int64, one per row
    vectors = models.BinaryField()  # little-endian float16, rows x dimensions
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["store", "model"], name="embedding_store_model")
        ]

    def __str__(self) -> str:
        return f"{self.document_id} ({self.model})"


class Worker(models.Model):
    """A process that owns ingestion work, alive while its heartbeat is fresh.

    Web processes (with the immediate task backend), db_workers and the ingest
    command register one when they first take a document; see stores.ownership.
    """

    id = models.CharField(primary_key=True, max_length=64)
    kind = models.CharField(max_length=16)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-heartbeat_at"]

    def __str__(self) -> str:
        return self.id
