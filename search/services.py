"""The search service (clean query -> cache -> backend -> cache) and cache control."""

from __future__ import annotations

import time
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from django.conf import settings

from flamehaven import ratelimit
from flamehaven.errors import (
    ApiError,
    EmptyQuery,
    UpstreamUnavailable,
    ValidationFailed,
)
from flamehaven.request_id import current_request_id
from monitoring import metrics
from search import cache
from search.answer_checks import check_answer
from search.citations import answer_citations
from stores.backends import SearchBackend, SearchOptions, get_backend, local_backend
from stores.models import Store
from stores.services import (
    gemini_configured,
    store_bump_revision,
    store_for_read,
    store_get,
    stores_bump_revisions,
)

log = structlog.get_logger(__name__)

MODES = ("auto", "gemini", "local")
# A fallback answer is kept this long, so Gemini is tried again soon.
FALLBACK_CACHE_TTL = 60


@dataclass(frozen=True)
class SearchParams:
    query: str
    store_name: str = "default"
    mode: str = "auto"
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    min_score: float | None = None


def clean_query(query: str) -> str:
    """Control characters become spaces; whitespace collapses; bounds are checked."""
    query = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in query or ""
    )
    query = " ".join(query.split())
    if not query:
        raise EmptyQuery("The query is empty.", details={"query": ["Ask a question."]})
    if len(query) > settings.MAX_QUERY_LENGTH:
        raise ValidationFailed(
            f"The query may be at most {settings.MAX_QUERY_LENGTH} characters.",
            details={
                "query": [
                    f"Ensure this field has no more than {settings.MAX_QUERY_LENGTH} "
                    "characters."
                ]
            },
        )
    return query


def _backend_for(store: Store, mode: str) -> SearchBackend:
    if mode == "local":
        return local_backend()
    if mode == "gemini":
        if not gemini_configured():
            raise ValidationFailed(
                "mode=gemini needs Gemini configured on this server.",
                details={"mode": ["Gemini is not configured (GEMINI_API_KEY)."]},
            )
        if store.backend != Store.Backend.GEMINI:
            raise ValidationFailed(
                f"Store '{store.name}' is not indexed in Gemini.",
                details={"mode": ["Use mode=auto or mode=local for this store."]},
            )
    return get_backend(store)


def _answer(
    store: Store, backend: SearchBackend, query: str, options: SearchOptions, mode: str
) -> tuple[dict[str, Any], int | None]:
    """The response payload for a miss, and how long to cache it (None: default).

    In auto mode, a Gemini store whose backend is unavailable after its retries
    (timeout, 429, 5xx) is answered from the local index, flagged ``fallback``
    and cached only briefly, so Gemini is asked again soon.
    """
    fallback = False
    try:
        answer = backend.search(store, query, options)
    except UpstreamUnavailable as exc:
        if mode != "auto" or backend.name == "local":
            raise
        log.warning("search_fallback", store=store.name, error=exc.message)
        backend, fallback = local_backend(), True
        answer = backend.search(store, query, options)
    text = check_answer(answer.text)
    payload = {
        "status": "success",
        "answer": text,
        "sources": [asdict(source) for source in answer.sources],
        # Spans of the answer as returned (after any cut), never of answer.text.
        "citations": [asdict(c) for c in answer_citations(answer, text)],
        "grounded": answer.grounded,
        "model": answer.model,
        "query": query,
        "store": store.name,
        "backend": backend.name,
        "fallback": fallback,
    }
    return payload, FALLBACK_CACHE_TTL if fallback else None


def search(
    params: SearchParams, count: ratelimit.Deferred | None = None
) -> dict[str, Any]:
    """The answer to ``params``, from the cache or the store's backend.

    ``count`` is the request's rate-limit count, made with the cache lookup (one
    round trip to Redis); the caller settles it if the search fails before.
    """
    started = time.perf_counter()
    query = clean_query(params.query)
    if params.mode not in MODES:
        raise ValidationFailed(details={"mode": [f"Choose one of {', '.join(MODES)}."]})
    store = store_for_read(name=params.store_name)
    backend = _backend_for(store, params.mode)
    options = SearchOptions(
        top_k=max(1, min(params.top_k or settings.MAX_SOURCES, settings.MAX_SOURCES)),
        model=params.model or settings.DEFAULT_MODEL,
        max_tokens=params.max_tokens or settings.MAX_OUTPUT_TOKENS,
        temperature=(
            settings.TEMPERATURE if params.temperature is None else params.temperature
        ),
        min_score=params.min_score,
    )
    key = cache.search_cache_key(
        store_uid=str(store.uid),
        revision=store.revision,
        query=query,
        mode=params.mode,
        model=options.model,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        top_k=options.top_k,
        min_score=options.min_score,
    )
    payload = cache.lookup(key, count)
    cached = payload is not None
    if not cached:
        try:
            payload, ttl = _answer(store, backend, query, options, params.mode)
        except ApiError as exc:
            metrics.SEARCH_REQUESTS.labels(
                store.name, backend.name, exc.code.lower(), "false"
            ).inc()
            raise
        cache.remember(key, payload, ttl)
    seconds = time.perf_counter() - started
    cached_label = "true" if cached else "false"
    status = "fallback" if payload["fallback"] else "success"
    metrics.SEARCH_REQUESTS.labels(
        store.name, payload["backend"], status, cached_label
    ).inc()
    metrics.SEARCH_DURATION.labels(payload["backend"], cached_label).observe(seconds)
    metrics.SEARCH_RESULTS.observe(len(payload["sources"]))
    took_ms = round(seconds * 1000, 2)
    # The request's access line carries these; a miss, the expensive case, also
    # gets a line of its own.
    structlog.contextvars.bind_contextvars(
        store=store.name,
        backend=payload["backend"],
        cached=cached,
        sources=len(payload["sources"]),
        search_ms=took_ms,
    )
    if not cached:
        log.info("search")
    return {
        **payload,
        "cached": cached,
        "took_ms": took_ms,
        "request_id": current_request_id(),
    }


def cache_stats() -> dict[str, Any]:
    return cache.stats()


def cache_clear(*, store_name: str | None = None) -> dict[str, Any]:
    """Clear one store's search-cache entries, or all of them.

    The revision bump is what makes every worker miss, even one whose cache is
    per-process or was unreachable just now; deleting the entries frees the space.
    """
    if store_name:
        store = store_get(name=store_name)
        store_bump_revision(store_id=store.pk)
        removed = cache.delete_entries(store_uid=str(store.uid))
    else:
        stores_bump_revisions()
        removed = cache.delete_entries()
    log.info("search_cache_cleared", store=store_name, removed=removed)
    return {"status": "success", "store": store_name, "removed": removed}
