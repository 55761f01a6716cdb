"""Gemini File Search through google-genai.

One ``genai.Client`` per process (per API key and base URL). The SDK retries 408,
429 and 5xx with exponential backoff and jitter, but only when ``retry_options``
is set, so it is set here and no second retry loop wraps it. Timeouts are the
SDK's ``HttpOptions.timeout``, in milliseconds.

Grounding chunks name no document, so every upload carries a custom metadata
entry with our document id, and sources are mapped back by it (the title only as
a fallback: two documents may share a file name).

Failures become the API's errors: ``UPSTREAM_UNAVAILABLE`` (503) when Gemini timed
out, was rate-limited or kept failing with 5xx after the retries, else
``UPSTREAM_ERROR`` (502) with Gemini's message. Neither ever carries the API key.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from django.conf import settings
from google import genai
from google.genai import errors, types

from flamehaven.errors import UpstreamError, UpstreamUnavailable
from stores.backends.base import (
    Answer,
    Citation,
    SearchBackend,
    SearchOptions,
    Source,
    document_uri,
)

if TYPE_CHECKING:
    from stores.models import Document, Store

log = structlog.get_logger(__name__)

API_VERSION = "v1beta"  # File Search is not on the SDK's default, v1
DOCUMENT_ID_KEY = "document_id"
# Every remote store we make is named this plus the store's name, so a remote
# store left without its row can be recognised as ours (manage.py fsck).
STORE_DISPLAY_PREFIX = "flamehaven-"
SNIPPET_CHARS = 300
# Statuses worth another try; the SDK's own default list, written out.
RETRY_STATUSES = [408, 429, 500, 502, 503, 504]


def _transport_errors() -> tuple[type[Exception], ...]:
    """Timeouts and connection failures, from whichever httpx the SDK runs on."""
    found = []
    for module_name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(module_name).TransportError)
    return tuple(found)


# What the SDK lets through after its retries: API errors and transport errors.
UPSTREAM_FAILURES = (errors.APIError, *_transport_errors())

_clients: dict[tuple[str, str], genai.Client] = {}
_clients_lock = threading.Lock()


def client() -> genai.Client:
    """This process's client for the configured key and base URL."""
    identity = (settings.GEMINI_API_KEY, settings.GEMINI_BASE_URL)
    with _clients_lock:
        if identity not in _clients:
            _clients[identity] = genai.Client(
                api_key=settings.GEMINI_API_KEY,
                http_options=types.HttpOptions(
                    base_url=settings.GEMINI_BASE_URL or None,
                    api_version=API_VERSION,
                    timeout=int(settings.GEMINI_TIMEOUT_SEC * 1000),
                    retry_options=types.HttpRetryOptions(
                        attempts=settings.GEMINI_RETRY_ATTEMPTS,
                        initial_delay=settings.GEMINI_RETRY_DELAY_SEC,
                        max_delay=settings.GEMINI_RETRY_DELAY_SEC * 8,
                        exp_base=2,
                        jitter=settings.GEMINI_RETRY_DELAY_SEC,
                        http_status_codes=RETRY_STATUSES,
                    ),
                ),
            )
        return _clients[identity]


def _upstream_error(error: Exception, action: str) -> Exception:
    """Our API error for one of UPSTREAM_FAILURES (never with the key)."""
    if isinstance(error, errors.APIError):
        if error.code in RETRY_STATUSES:
            return UpstreamUnavailable(
                f"Gemini could not {action} right now ({error.code} {error.status}).",
                details={"upstream_status": error.code},
            )
        return UpstreamError(
            f"Gemini refused to {action}: {error.message or error.status}",
            details={"upstream_status": error.code},
        )
    # Timeouts and connection errors: the SDK has retried them already.
    return UpstreamUnavailable(
        f"Gemini could not {action}: {type(error).__name__}.",
        details={"upstream_status": None},
    )


def _is_not_found(error: Exception) -> bool:
    return isinstance(error, errors.APIError) and error.code == 404


class GeminiBackend(SearchBackend):
    name = "gemini"

    def create_store(self, store: Store) -> None:
        try:
            remote = client().file_search_stores.create(
                config={"display_name": f"{STORE_DISPLAY_PREFIX}{store.name}"}
            )
        except UPSTREAM_FAILURES as error:
            raise _upstream_error(error, "create the store") from error
        store.remote_name = remote.name  # saved with the store by the caller
        log.info("gemini_store_created", store=store.name, remote=remote.name)

    def delete_store(self, store: Store) -> None:
        if not store.remote_name:
            return
        delete_remote_store(store.remote_name)
        log.info("gemini_store_deleted", store=store.name, remote=store.remote_name)

    def add_document(self, document: Document) -> None:
        """Upload the document and wait for Gemini to index it.

        On any failure the remote copy, if one was made, is deleted: a document
        is never left behind in Gemini without its row here.
        """
        store = document.store
        previous = document.remote_name  # a re-index replaces the old copy
        try:
            with document.file.open("rb") as handle:
                operation = client().file_search_stores.upload_to_file_search_store(
                    file_search_store_name=store.remote_name,
                    file=_raw_file(handle),
                    config={
                        "display_name": document.filename,
                        "mime_type": document.mime_type,
                        "custom_metadata": [
                            {"key": DOCUMENT_ID_KEY, "string_value": str(document.pk)}
                        ],
                    },
                )
            remote_name = self._wait_for(operation, document)
        except BaseException as error:
            self._delete_remote_copies(document)
            if isinstance(error, UPSTREAM_FAILURES):
                raise _upstream_error(error, "index the document") from error
            raise
        document.remote_name = remote_name
        type(document).objects.filter(pk=document.pk).update(remote_name=remote_name)
        log.info("gemini_document_indexed", document_id=document.pk, remote=remote_name)
        if previous and previous != remote_name:
            try:
                self._delete_by_name(previous)
            except (UpstreamError, UpstreamUnavailable) as exc:
                log.error("remote_copy_left_behind", remote=previous, error=exc.message)

    def _wait_for(self, operation: Any, document: Document) -> str:
        deadline = time.monotonic() + settings.UPLOAD_TIMEOUT_SEC
        pause = 0.2
        while not operation.done:
            if time.monotonic() + pause > deadline:
                raise UpstreamUnavailable(
                    f"Gemini did not finish indexing {document.filename!r} within "
                    f"UPLOAD_TIMEOUT_SEC ({settings.UPLOAD_TIMEOUT_SEC} s).",
                    details={"upstream_status": None},
                )
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            operation = client().operations.get(operation)
        if operation.error:
            message = operation.error.get("message") or str(operation.error)
            raise UpstreamError(
                f"Gemini could not index {document.filename!r}: {message}",
                details={"upstream_status": operation.error.get("code")},
            )
        return operation.response.document_name

    def _delete_remote_copies(self, document: Document) -> None:
        """Delete every remote document carrying this document's id."""
        wanted = str(document.pk)
        try:
            pager = client().file_search_stores.documents.list(
                parent=document.store.remote_name
            )
            for remote in pager:
                if _document_id(remote.custom_metadata) == wanted:
                    self._delete_by_name(remote.name)
                    log.info("gemini_orphan_deleted", remote=remote.name)
        except (*UPSTREAM_FAILURES, UpstreamError, UpstreamUnavailable) as error:
            # Logged, not raised: the upload's own failure is what the caller sees.
            log.error(
                "gemini_orphan_cleanup_failed",
                document_id=document.pk,
                error=type(error).__name__,
            )

    def delete_document(self, document: Document) -> None:
        if document.remote_name:
            self._delete_by_name(document.remote_name)

    def _delete_by_name(self, remote_name: str) -> None:
        delete_remote_document(remote_name)

    def search(self, store: Store, query: str, options: SearchOptions) -> Answer:
        try:
            response = client().models.generate_content(
                model=options.model,
                contents=query,
                config=types.GenerateContentConfig(
                    tools=[
                        types.Tool(
                            file_search=types.FileSearch(
                                file_search_store_names=[store.remote_name]
                            )
                        )
                    ],
                    max_output_tokens=options.max_tokens,
                    temperature=options.temperature,
                ),
            )
        except UPSTREAM_FAILURES as error:
            raise _upstream_error(error, "answer") from error
        sources, numbers = self._sources(store, response, options.top_k)
        return Answer(
            text=response.text or "",
            sources=sources,
            model=options.model,
            citations=_citations(response, numbers),
        )

    def _sources(
        self, store: Store, response: Any, top_k: int
    ) -> tuple[list[Source], dict[int, int]]:
        """The sources, one per document, and the number (from 1) of the source
        each grounding chunk became, by the chunk's index."""
        from stores.models import Document

        metadata = _grounding_metadata(response)
        contexts = [
            (index, chunk.retrieved_context)
            for index, chunk in enumerate(
                (metadata.grounding_chunks if metadata else None) or []
            )
            if chunk.retrieved_context
        ]
        ids = {_document_id(c.custom_metadata) for _, c in contexts} - {None}
        documents = Document.objects.filter(store=store)
        by_id = {str(d.pk): d for d in documents.filter(pk__in=ids)}
        titles = {
            c.title for _, c in contexts if _document_id(c.custom_metadata) is None
        }
        by_title = {d.filename: d for d in documents.filter(filename__in=titles)}
        sources: list[Source] = []
        number_of: dict[int | str, int] = {}  # document (or title) -> number
        numbers: dict[int, int] = {}  # chunk index -> number
        for index, context in contexts:
            document = by_id.get(_document_id(context.custom_metadata) or "") or (
                by_title.get(context.title or "")
            )
            identity = document.pk if document else context.title
            if identity not in number_of:
                if len(sources) == top_k:
                    continue  # chunks of documents already cited still map
                sources.append(
                    Source(
                        title=document.filename if document else (context.title or ""),
                        uri=document_uri(store.name, document.pk) if document else "",
                        document_id=document.pk if document else None,
                        snippet=(context.text or "")[:SNIPPET_CHARS],
                        score=round(1 / (len(sources) + 1), 4),
                        page=context.page_number or None,
                    )
                )
                number_of[identity] = len(sources)
            numbers[index] = number_of[identity]
        return sources, numbers


def _grounding_metadata(response: Any) -> Any:
    candidate = (response.candidates or [None])[0]
    return candidate.grounding_metadata if candidate else None


def _text_parts(response: Any) -> dict[int, tuple[int, bytes]]:
    """Where each text part starts in ``response.text`` (which joins the first
    candidate's text parts, thoughts left out), and its UTF-8 bytes, by index."""
    content = response.candidates[0].content if response.candidates else None
    found: dict[int, tuple[int, bytes]] = {}
    offset = 0
    for index, part in enumerate((content.parts if content else None) or []):
        if isinstance(part.text, str) and not part.thought:
            found[index] = (offset, part.text.encode())
            offset += len(part.text)
    return found


def _citations(response: Any, numbers: dict[int, int]) -> list[Citation]:
    """The grounding supports as spans of ``response.text`` with source numbers.

    A segment's offsets are UTF-8 bytes into one part of the answer: they become
    characters, moved by where that part starts in the text. Chunk indices that
    became no source (past top_k, no retrieved context) are dropped, and so is
    a support left with none.
    """
    metadata = _grounding_metadata(response)
    if metadata is None or not metadata.grounding_supports:
        return []
    parts = _text_parts(response)
    citations = []
    for support in metadata.grounding_supports:
        segment = support.segment
        part = parts.get(segment.part_index or 0) if segment else None
        if part is None:
            continue
        base, encoded = part
        # Proto3 JSON leaves zeros out: a missing start_index is 0.
        start = base + _characters(encoded, segment.start_index or 0)
        end = base + _characters(encoded, segment.end_index or 0)
        cited = sorted(
            {
                numbers[index]
                for index in support.grounding_chunk_indices or []
                if index in numbers
            }
        )
        if start < end and cited:
            citations.append(Citation(start=start, end=end, sources=cited))
    return citations


def _characters(encoded: bytes, byte_offset: int) -> int:
    """How many characters the first ``byte_offset`` bytes hold (a character cut
    in the middle does not count)."""
    return len(encoded[: max(byte_offset, 0)].decode("utf-8", errors="ignore"))


# --- Remote inventory (manage.py fsck) ------------------------------------------


@dataclass(frozen=True)
class RemoteDocument:
    name: str
    display_name: str
    document_id: str | None  # our Document's pk, from its custom metadata


@dataclass(frozen=True)
class RemoteStore:
    name: str
    display_name: str
    create_time: datetime | None


def list_remote_documents(store: Store) -> list[RemoteDocument]:
    """Every document in the store's File Search store (all pages)."""
    try:
        return [
            RemoteDocument(
                name=remote.name,
                display_name=remote.display_name or "",
                document_id=_document_id(remote.custom_metadata),
            )
            for remote in client().file_search_stores.documents.list(
                parent=store.remote_name
            )
        ]
    except UPSTREAM_FAILURES as error:
        raise _upstream_error(error, "list the store's documents") from error


def list_remote_stores() -> list[RemoteStore]:
    """Every File Search store of this API key, ours and anyone else's."""
    try:
        return [
            RemoteStore(
                name=remote.name,
                display_name=remote.display_name or "",
                create_time=remote.create_time,
            )
            for remote in client().file_search_stores.list()
        ]
    except UPSTREAM_FAILURES as error:
        raise _upstream_error(error, "list the stores") from error


def delete_remote_document(remote_name: str) -> None:
    """Delete one remote document; one already gone is not an error."""
    try:
        client().file_search_stores.documents.delete(
            name=remote_name, config={"force": True}
        )
    except UPSTREAM_FAILURES as error:
        if not _is_not_found(error):
            raise _upstream_error(error, "delete the document") from error


def delete_remote_store(remote_name: str) -> None:
    """Delete one remote store with its documents; one already gone is not an error."""
    try:
        client().file_search_stores.delete(name=remote_name, config={"force": True})
    except UPSTREAM_FAILURES as error:
        if not _is_not_found(error):
            raise _upstream_error(error, "delete the store") from error


def _raw_file(file: Any) -> io.IOBase:
    """The io object inside Django's File wrappers: the SDK takes only that."""
    while not isinstance(file, io.IOBase):
        file = file.file
    return file


def _document_id(metadata: list | None) -> str | None:
    for item in metadata or []:
        if item.key == DOCUMENT_ID_KEY:
            if item.string_value is not None:
                return item.string_value
            if item.numeric_value is not None:
                return str(int(item.numeric_value))
    return None
