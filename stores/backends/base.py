"""The one interface every retrieval backend implements.

Callers use :func:`stores.backends.get_backend` and get an :class:`Answer`; the SQL
of the local index and the google-genai calls stay behind this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.urls import NoReverseMatch, reverse

if TYPE_CHECKING:
    from stores.models import Document, Store


@dataclass(frozen=True)
class Source:
    title: str
    uri: str
    document_id: int | None
    snippet: str
    score: float
    page: int | None = None  # 1-based, for PDFs
    section: str | None = None  # the heading the passage sits under
    chunk_id: int | None = None  # the passage itself (local stores)


@dataclass(frozen=True)
class Citation:
    """A span of the answer text, [start, end) in characters, and the sources
    (numbered from 1, like the answer's [n] markers) that support it."""

    start: int
    end: int
    sources: list[int]


@dataclass(frozen=True)
class Answer:
    text: str
    sources: list[Source] = field(default_factory=list)
    model: str = ""
    # Spans of `text` and their sources; None lets the caller derive them from
    # the [n] markers (see search.citations).
    citations: list[Citation] | None = None
    # False when nothing in the store was relevant enough to answer from: the
    # text says so and there are no sources.
    grounded: bool = True


@dataclass(frozen=True)
class SearchOptions:
    top_k: int
    model: str
    max_tokens: int
    temperature: float
    # The relevance floor for this search (local stores); None: SEARCH_MIN_SCORE.
    min_score: float | None = None


class SearchBackend(ABC):
    name: str

    @abstractmethod
    def create_store(self, store: Store) -> None:
        """Create the store's remote counterpart, if any, before the store is saved.

        Sets what the row must remember (``remote_name``); the caller saves it.
        """

    @abstractmethod
    def delete_store(self, store: Store) -> None:
        """Delete the store's remote counterpart and everything in it."""

    @abstractmethod
    def add_document(self, document: Document) -> None:
        """Index a document whose chunks are already saved locally."""

    @abstractmethod
    def delete_document(self, document: Document) -> None:
        """Remove a document from the backend's index."""

    @abstractmethod
    def search(self, store: Store, query: str, options: SearchOptions) -> Answer:
        """Answer a question from the store's documents, with sources."""


def document_uri(store_name: str, document_id: int) -> str:
    try:
        return reverse(
            "document-detail", kwargs={"store_name": store_name, "pk": document_id}
        )
    except NoReverseMatch:
        # The documents API may not be routed (or not under that name); the
        # documented path is still the right answer for a client.
        return f"/api/stores/{store_name}/documents/{document_id}/"
