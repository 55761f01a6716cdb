"""The built-in full-text backend: answers from the store's own chunks, no network.

The index is vendor SQL made by migration 0002 (FTS5 + triggers on SQLite, a
generated ``tsvector`` column on PostgreSQL) and follows the chunk rows inside the
writing transaction, so there is nothing to create, upload or delete here: only
:meth:`LocalBackend.search` does work.

User text never reaches either query language as syntax: :func:`query_terms` reduces
a question to letter-and-digit tokens, and only those are quoted into the
expression, always as a bound parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from embeddings import EmbeddingError
from stores import embedding
from stores.backends.base import (
    Answer,
    SearchBackend,
    SearchOptions,
    Source,
    document_uri,
)
from stores.backends.query import query_terms
from stores.backends.vectors import StoreVectors, store_vectors
from stores.extraction import headings
from stores.models import Chunk, Document

if TYPE_CHECKING:
    from stores.models import Store

log = structlog.get_logger(__name__)

MODEL_NAME = "local-fts"
NO_MATCH_TEXT = (
    "No matching passages found. Try other words, or check that the store's "
    "documents have finished processing."
)
NOT_RELEVANT_TEXT = (
    "Nothing in this store answers that question closely enough to quote. "
    "Try other words, or another store."
)

# Fusion of the dense and lexical rankings (_fuse): the chunks taken from the
# dense side, and the lexical side's weight. On the bench/quality dev questions
# 0.2/0.3/0.4/0.5 gave hit@5 92.5/94.0/94.0/91.0 and MRR@10 .774/.792/.818/.816.
DENSE_CANDIDATES = 60
# A store of this many passages discounts a question's words unknown to it in
# full (see _known_share); smaller ones in proportion.
UNKNOWN_WORDS_FULL_AT = 500
LEXICAL_WEIGHT = 0.4

# Chunks fetched per search: enough that the best chunk of top_k different
# documents is usually among them, small enough to stay a few milliseconds.
MIN_CANDIDATES = 60
# A term found in this many of a store's chunks or more is "common": when the
# question also has rarer terms, candidates come from those (see _candidates).
COMMON_TERM_CHUNKS = 1000
CANDIDATES_PER_SOURCE = 6
# A document scores the sum of its best chunks' scores, this many of them.
DOCUMENT_CHUNKS = 3
# How much holding all of the question's words raises a chunk's score (x2 at 1).
COVERAGE_WEIGHT = 1.0
# The answer quotes at most this many sentences, taken from this many top chunks.
ANSWER_SENTENCES = 3
ANSWER_CHUNKS = 8
# Rank decay of a sentence's weight: a sentence with more of the question's terms
# from a lower-ranked chunk can still beat a weaker one from the top chunk.
RANK_DECAY = 0.3
SNIPPET_LENGTH = 300
SENTENCE_MAX_LENGTH = 400
# Shorter "sentences" are headings, list markers or chunk-boundary fragments.
SENTENCE_MIN_LENGTH = 12
# How many leading characters of a term stand for its stem (see _term_keys).
STEM_PREFIX = 5
ELLIPSIS = "…"


@dataclass(slots=True)
class _Hit:
    """A candidate passage of one search: made from its row, then scored in
    place by the steps of that search (dataclasses.replace per step cost
    1-1.5 ms a search)."""

    chunk_id: int
    document_id: int
    filename: str
    text: str
    page: int | None
    section: str
    score: float  # for ranking: higher is better, whatever the vendor
    # How relevant the passage is on the documented 0-1 scale the floor uses:
    # its cosine similarity to the question, or the share of the question's
    # words it holds when it has no vector.
    relevance: float = 0.0


class LocalBackend(SearchBackend):
    name = "local"

    def create_store(self, store: Store) -> None:
        """Nothing to create: a store is just a filter on the shared index."""

    def delete_store(self, store: Store) -> None:
        """Nothing to delete: the index rows go with the chunk rows."""

    def add_document(self, document: Document) -> None:
        """Nothing to do: saving the chunks already indexed them."""

    def delete_document(self, document: Document) -> None:
        """Nothing to do: deleting the chunks already unindexed them."""

    def search(self, store: Store, query: str, options: SearchOptions) -> Answer:
        """Rank the store's chunks against the question; answer extractively.

        Dense and lexical rankings are fused where the store has vectors (see
        _fuse); without vectors the ranking is lexical alone. When no source is
        as relevant as the floor, the answer says that nothing relevant was
        found and has no sources. Any text is a valid question here.
        """
        terms = query_terms(query)
        keys = _term_keys(terms)
        top_k = max(1, options.top_k)
        limit = max(top_k * CANDIDATES_PER_SOURCE, MIN_CANDIDATES)
        counts = _match_counts(store, terms, COMMON_TERM_CHUNKS) if terms else {}
        lexical = _candidates(store, terms, counts, limit, top_k) if terms else []
        dense = _dense(store, query)
        if dense is not None:
            hits = _fuse(lexical, *dense, keys)
        else:
            hits = _weigh_coverage(lexical, keys)
        known = _known_share(store, counts)
        floor = (
            settings.SEARCH_MIN_SCORE
            if options.min_score is None
            else options.min_score
        )
        best = {
            document_id: replace(hit, relevance=hit.relevance * known)
            for document_id, (hit, _score) in _best_documents(hits, top_k).items()
        }
        # The floor is the question's, not each source's: when the store's most
        # relevant passage is below it the store has no answer; else the ranking
        # stands, since a source ranked in by its words is still worth showing
        # (dropping each source below the floor cost 1.5-3 points of hit@5 on
        # the bench/quality dev questions and abstained no more often).
        if not best or max(hit.relevance for hit in best.values()) < floor:
            text = NOT_RELEVANT_TEXT if hits else NO_MATCH_TEXT
            return Answer(text=text, sources=[], model=MODEL_NAME, grounded=False)

        sources = [
            Source(
                title=hit.filename,
                uri=document_uri(store.name, hit.document_id),
                document_id=hit.document_id,
                snippet=_snippet(hit.text, keys),
                score=round(hit.relevance, 4),
                page=hit.page,
                section=_section(hit, keys),
                chunk_id=hit.chunk_id,
            )
            for hit in best.values()
        ]
        numbers = {doc_id: n for n, doc_id in enumerate(best, start=1)}
        text = _compose_answer(hits, numbers, keys, settings.ANSWER_MAX_LENGTH)
        if not text:
            # No whole sentence to quote: the best passage instead.
            room = settings.ANSWER_MAX_LENGTH - len(" [1]")
            text = _fit(sources[0].snippet, room) + " [1]"
        return Answer(text=text, sources=sources, model=MODEL_NAME)


def _known_share(store: Store, counts: dict[str, int]) -> float:
    """What the relevance of a question's sources is multiplied by: 1 less the
    share of its words that no passage of the store holds. "The capital of
    France" is not about a documentation set that never says "France", however
    close its vectors come (bench/quality dev: unanswerable questions left
    without sources 57% -> 86% at the chosen floor, answerable ones 1.5%).

    A small store uses few words, so that its not using one says little: the
    discount grows with the store, in full from UNKNOWN_WORDS_FULL_AT passages.
    """
    if not counts:
        return 1.0
    unknown = sum(1 for count in counts.values() if not count) / len(counts)
    weight = min(1.0, _chunk_total(store) / UNKNOWN_WORDS_FULL_AT)
    return 1 - weight * unknown


def _dense(store: Store, query: str) -> tuple[StoreVectors, np.ndarray] | None:
    """The store's vectors and the question's; None when dense retrieval is off
    or nothing has vectors yet."""
    try:
        found = embedding.embedder()
        if found is None:
            return None
        index = store_vectors(store, found.name)
        if not len(index.chunk_ids):
            return None
        return index, found.embed_query(query)
    except EmbeddingError as exc:  # a remote embedder that is down, say
        log.warning("dense_search_skipped", store=store.name, error=str(exc))
        return None


def _fuse(
    lexical: list[_Hit], index: StoreVectors, query: np.ndarray, keys: tuple[str, ...]
) -> list[_Hit]:
    """Dense and lexical candidates in one ranking, best first.

    Min-max score fusion per chunk, the lexical side a light correction
    (LEXICAL_WEIGHT): the dense side is what finds paraphrases, the lexical one
    keeps exact names findable. A chunk without a vector yet (its document is
    still being embedded) ranks by its lexical score alone, and its relevance
    is the share of the question's words it holds.
    """
    top, top_cosines = index.nearest(query, DENSE_CANDIDATES)
    dense_high, dense_low = float(top_cosines.max()), float(top_cosines.min())
    spread = dense_high - dense_low or 1.0

    weighed = _weigh_coverage(lexical, keys)
    lexical_norm: dict[int, float] = {}
    if weighed:
        high, low = weighed[0].score, weighed[-1].score
        for hit in weighed:
            lexical_norm[hit.chunk_id] = (
                (hit.score - low) / (high - low) if high > low else 1.0
            )
    by_id = {hit.chunk_id: hit for hit in weighed}
    dense_ids = [int(i) for i in index.chunk_ids[top]]
    wanted = [i for i in dense_ids if i not in by_id]
    by_id.update({hit.chunk_id: hit for hit in _chunks(wanted)})

    # Cosines of the dense candidates, and of the lexical ones that have vectors.
    cosines = dict(zip(dense_ids, top_cosines.tolist(), strict=True))
    lexical_only = [i for i in by_id if i not in cosines]
    positions = index.positions(lexical_only)
    embedded = positions[positions >= 0]
    cosines.update(
        zip(
            index.chunk_ids[embedded].tolist(),
            index.cosines(query, embedded).tolist(),
            strict=True,
        )
    )
    fused = []
    for chunk_id, hit in by_id.items():
        lexical_part = lexical_norm.get(chunk_id, 0.0)
        cosine = cosines.get(chunk_id)
        if cosine is None:  # no vector yet
            hit.score = lexical_part
        else:
            dense_part = min(max((cosine - dense_low) / spread, 0.0), 1.0)
            hit.score = (
                1 - LEXICAL_WEIGHT
            ) * dense_part + LEXICAL_WEIGHT * lexical_part
            hit.relevance = max(cosine, 0.0)
        fused.append(hit)
    fused.sort(key=lambda hit: (-hit.score, hit.chunk_id))
    return fused


def _chunks(chunk_ids: list[int]) -> list[_Hit]:
    """Chunks by id, as hits with no score yet. Plain SQL like _find_chunks:
    the ORM's query building was a third of this call's 3.5 ms."""
    if not chunk_ids:
        return []
    marks = ", ".join(["%s"] * len(chunk_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id, c.document_id, d.filename, c.text, c.page, c.section "
            "FROM stores_chunk c JOIN stores_document d ON d.id = c.document_id "
            f"WHERE c.id IN ({marks})",
            chunk_ids,
        )
        rows = cursor.fetchall()
    return [_Hit(*row, score=0.0) for row in rows]


def _weigh_coverage(hits: list[_Hit], keys: tuple[str, ...]) -> list[_Hit]:
    """Scale each chunk's score, in place, by the share of the question's words
    it holds, which is also its relevance while it has no vector.

    A light correction: the old rule, all distinct words first and bm25 only
    among equals, lost 4 points of MRR@10 on the bench/quality dev questions;
    this one gains 1.5 (COVERAGE_WEIGHT 1 of 0, 0.5, 1 and 2 tried).
    """
    for hit in hits:
        share = len(_matched_keys(hit.text.lower(), keys)) / len(keys) if keys else 0
        hit.score *= 1 + COVERAGE_WEIGHT * share
        hit.relevance = share
    return sorted(hits, key=lambda hit: -hit.score)


def _best_documents(hits: list[_Hit], top_k: int) -> dict[int, tuple[_Hit, float]]:
    """The top_k documents by the sum of their best DOCUMENT_CHUNKS chunk scores,
    each with its best chunk, whose relevance is the best of the document's: a
    document that answers in several passages beats one lucky passage
    (bench/quality: +6 points hit@5 on the dev questions over the best chunk
    alone)."""
    per_document: dict[int, list[_Hit]] = {}
    for hit in hits:  # best first
        per_document.setdefault(hit.document_id, []).append(hit)
    scored = [
        (
            replace(chunks[0], relevance=max(h.relevance for h in chunks)),
            sum(h.score for h in chunks[:DOCUMENT_CHUNKS]),
        )
        for chunks in per_document.values()
    ]
    scored.sort(key=lambda item: (-item[1], item[0].chunk_id))
    return {hit.document_id: (hit, score) for hit, score in scored[:top_k]}


# --- Retrieval --------------------------------------------------------------------

# Both queries rank bare chunk ids and join only the winners to their (large)
# text, and both filter by store on the chunk itself, never through documents:
# a chunk exists only for an indexed document (ingestion saves them together with
# status=ready; a failure deletes them; a re-index keeps the old ones searchable
# until the new ones replace them), so there is no status to check.
#
# SQLite: the store restriction is part of the MATCH (the FTS table indexes
# store_id), so FTS5 merges doclists instead of SQL building the store's chunk
# set per query; bm25 gives the store_id column no weight.
_SQLITE_SEARCH = """
    SELECT c.id, c.document_id, d.filename, c.text, c.page, c.section, hit.score
    FROM (
        SELECT rowid AS id, -bm25(stores_chunk_fts, 1.0, 0.0) AS score
        FROM stores_chunk_fts
        WHERE stores_chunk_fts MATCH %s
        ORDER BY score DESC, id
        LIMIT %s
    ) AS hit
    JOIN stores_chunk AS c ON c.id = hit.id
    JOIN stores_document AS d ON d.id = c.document_id
    ORDER BY hit.score DESC, hit.id
"""

# PostgreSQL: the terms hold only letters and digits (query_terms), so joining
# them with "|" is a valid to_tsquery expression whatever the user typed; a term
# that is an English stop word just drops out (with a NOTICE). The query is a
# constant the planner can estimate, and the store's matches come from one pass
# over the GIN index: when the query joined documents, a planner without
# statistics (a freshly loaded table) probed the chunks once per document
# instead (670 ms instead of 30).
#
# ts_rank_cd knows no term rarity, and ranked a passage with one common word
# above one with the question's rare word; the score is a BM25-like sum over the
# terms of idf(term) * ts_rank(term, normalised by length), with the idf from
# the store's own counts ({score} below; bench/quality dev questions: hit@5
# 73% -> see docs/benchmarks.md).
_POSTGRESQL_SEARCH = """
    WITH hit AS (
        SELECT m.id, {score} AS score
        FROM stores_chunk AS m
        WHERE m.store_id = %s AND m.search_vector @@ to_tsquery('english', %s)
        ORDER BY score DESC, m.id
        LIMIT %s
    )
    SELECT c.id, c.document_id, d.filename, c.text, c.page, c.section, hit.score
    FROM hit
    JOIN stores_chunk AS c ON c.id = hit.id
    JOIN stores_document AS d ON d.id = c.document_id
    ORDER BY hit.score DESC, hit.id
"""


def _candidates(
    store: Store, terms: list[str], counts: dict[str, int], limit: int, top_k: int
) -> list[_Hit]:
    """The chunks worth re-ranking, found without ranking every match.

    Both indexes rank every chunk that matches any term, so a question with a
    word found in a fifth of the store costs time in proportion to the store.
    Such a word says little about which passage is meant (bm25 gives it almost
    no weight), so when the question also has rarer words the candidates come
    from those, provided they reach ``top_k`` documents. The common words still
    count in the re-ranking, which reads the candidates' text.
    """
    if len(terms) == 1:
        return _find_chunks(store, terms, limit, {})
    rare = [term for term in terms if counts[term] < COMMON_TERM_CHUNKS]
    if rare and len(rare) < len(terms):
        hits = _find_chunks(store, rare, limit, counts)
        if len({hit.document_id for hit in hits}) >= top_k:
            return hits
    return _find_chunks(store, terms, limit, counts)


def _match_counts(store: Store, terms: list[str], cap: int) -> dict[str, int]:
    """How many of the store's chunks match each term, counting no further than
    ``cap`` (so a common term costs at most ``cap`` steps), in one round trip."""
    if connection.vendor == "sqlite":
        one = (
            "(SELECT count(*) FROM (SELECT 1 FROM stores_chunk_fts "
            "WHERE stores_chunk_fts MATCH %s LIMIT %s))"
        )
        params = [
            value for term in terms for value in (_sqlite_match(store, [term]), cap)
        ]
    elif connection.vendor == "postgresql":
        one = (
            "(SELECT count(*) FROM (SELECT 1 FROM stores_chunk WHERE store_id = %s "
            "AND search_vector @@ to_tsquery('english', %s) LIMIT %s) AS t)"
        )
        params = [value for term in terms for value in (store.pk, term, cap)]
    else:
        raise _unsupported_vendor()
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join([one] * len(terms)), params)
        return dict(zip(terms, cursor.fetchone(), strict=True))


_chunk_totals: dict[tuple[int, int], int] = {}


def _chunk_total(store: Store) -> int:
    """The store's chunk count, kept per process under the store's revision."""
    key = (store.pk, store.revision)
    total = _chunk_totals.get(key)
    if total is None:
        total = Chunk.objects.filter(store_id=store.pk).count()
        if len(_chunk_totals) > 1000:
            _chunk_totals.clear()
        _chunk_totals[key] = total
    return total


def _idf(store: Store, terms: list[str], counts: dict[str, int]) -> list[float]:
    """BM25's idf of each term over the store's chunks (Lucene's, never negative),
    from the match counts _candidates made (capped at COMMON_TERM_CHUNKS: a term
    that common weighs almost nothing anyway); all alike for a single term.

    The store's chunk count is kept per process under the store's revision,
    which every change of its chunks bumps.
    """
    if len(terms) == 1:
        return [1.0]
    total = _chunk_total(store)
    return [
        math.log(1 + (total - counts[term] + 0.5) / (counts[term] + 0.5))
        for term in terms
    ]


def _sqlite_match(store: Store, terms: list[str]) -> str:
    """An FTS5 MATCH for any of ``terms`` within ``store``.

    Each term is a quoted FTS5 string, so no word is ever an operator; doubling
    quotes is belt and braces (terms hold only letters and digits).
    """
    words = " OR ".join('"{}"'.format(t.replace('"', '""')) for t in terms)
    return f'store_id : "{int(store.pk)}" AND text : ({words})'


def _find_chunks(
    store: Store, terms: list[str], limit: int, counts: dict[str, int]
) -> list[_Hit]:
    """The best chunks of the store's ready documents, best first, in one query.

    The only place that knows each vendor's index; OR semantics on both, so a
    question finds passages that share any of its words, ranked by how well.
    """
    if connection.vendor == "sqlite":
        sql, params = _SQLITE_SEARCH, [_sqlite_match(store, terms), limit]
    elif connection.vendor == "postgresql":
        weights = _idf(store, terms, counts)
        score = " + ".join(
            ["%s * ts_rank(m.search_vector, to_tsquery('english', %s), 1)"] * len(terms)
        )
        sql = _POSTGRESQL_SEARCH.format(score=score)
        tsquery = " | ".join(terms)
        ranked = [value for pair in zip(weights, terms, strict=True) for value in pair]
        params = [*ranked, store.pk, tsquery, limit]
    else:
        raise _unsupported_vendor()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [_Hit(*row) for row in rows]


def _unsupported_vendor() -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"The local search backend supports SQLite and PostgreSQL, "
        f"not {connection.vendor}."
    )


def _term_keys(terms: list[str]) -> tuple[str, ...]:
    """The word prefixes that stand for the terms, one per stem.

    The index stems (porter / snowball), so "uploads" must find "uploading": a
    word matches a term when it starts with the term's first few characters, and
    a short term loses a final "e" or "y" so "make" finds "making" and "city"
    "cities". One- and two-letter keys only match whole words.
    """
    keys: dict[str, None] = {}
    for term in terms:
        key = term[:STEM_PREFIX]
        if len(term) == len(key) >= 4 and key[-1] in "ey":
            key = key[:-1]
        keys[key] = None
    return tuple(keys)


def _find_key(text: str, key: str) -> int:
    """Where the first word of lower-cased ``text`` matching ``key`` starts, or -1.

    ``str.find`` plus a boundary check: several times faster than one regex
    alternation over the keys, which matters at 30 chunks per search.
    """
    whole_word = len(key) <= 2
    position = text.find(key)
    while position != -1:
        end = position + len(key)
        if (position == 0 or not text[position - 1].isalnum()) and (
            not whole_word or end == len(text) or not text[end].isalnum()
        ):
            return position
        position = text.find(key, position + 1)
    return -1


def _matched_keys(text: str, keys: tuple[str, ...]) -> set[str]:
    return {key for key in keys if _find_key(text, key) != -1}


def _first_match(text: str, keys: tuple[str, ...]) -> int:
    lowered = text.lower()
    found = [p for p in (_find_key(lowered, key) for key in keys) if p != -1]
    return min(found, default=0)


def _section(hit: _Hit, keys: tuple[str, ...]) -> str | None:
    """The heading above the passage that matched: the last one in the chunk
    before the match, else the one in force where the chunk starts."""
    position = _first_match(hit.text, keys)
    inside = [title for offset, title in headings(hit.text) if offset <= position]
    return (inside[-1] if inside else hit.section) or None


def _snippet(text: str, keys: tuple[str, ...]) -> str:
    """About SNIPPET_LENGTH characters around the first match, cut between words."""
    position = _first_match(text, keys)
    start = max(0, position - SNIPPET_LENGTH // 3)
    end = min(len(text), start + SNIPPET_LENGTH)
    start = max(0, end - SNIPPET_LENGTH)
    if start > 0:
        space = text.find(" ", start, position)
        start = space + 1 if space != -1 else start
    if end < len(text):
        space = text.rfind(" ", max(position, start), end)
        end = space if space > start else end
    snippet = " ".join(text[start:end].split())
    if start > 0:
        snippet = ELLIPSIS + snippet
    if end < len(text):
        snippet += ELLIPSIS
    return snippet


_NOT_PROSE = ("#", "|", "```", "---")
_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)]) ")
_SENTENCE_END = tuple(".!?:;)\"'”’`")


def _is_whole(sentence: str) -> bool:
    """Whether a sentence can stand in an answer on its own.

    Headings, table rows and code fences say what a passage is about, not what it
    says. Chunks start and end inside sentences (overlap, size limits), so a
    piece that starts in lower case or stops without punctuation is a fragment;
    list items need no final punctuation.
    """
    if sentence.startswith(_NOT_PROSE):
        return False
    if _LIST_ITEM.match(sentence):
        return True
    first = next((ch for ch in sentence if ch.isalnum()), "")
    return not first.islower() and sentence.endswith(_SENTENCE_END)


def _compose_answer(
    hits: list[_Hit],
    numbers: dict[int, int],
    keys: tuple[str, ...],
    max_length: int,
) -> str:
    """The sentences that cover most of the question, each with its source number.

    Chunks overlap, so the same sentence can come from two chunks: it is quoted
    once. The chosen sentences are put back in document order, which reads
    better than relevance order.
    """
    scored: list[tuple[float, int, int, _Hit, str]] = []
    # A question answered in other words than its own (found by the dense
    # side) matches no sentence: then the first sentence of the best passages,
    # one document each first.
    leads: list[tuple[float, int, int, _Hit, str]] = []
    seen: set[str] = set()
    chunks = [hit for hit in hits if hit.document_id in numbers][:ANSWER_CHUNKS]
    for rank, hit in enumerate(chunks):
        weight = 1.0 / (1.0 + RANK_DECAY * rank)
        lead = True
        for position, raw in enumerate(split_sentences(hit.text)):
            sentence = " ".join(raw.split())
            if len(sentence) < SENTENCE_MIN_LENGTH or not _is_whole(sentence):
                continue
            key = sentence.casefold()
            if key in seen:
                continue
            matched = _matched_keys(sentence.lower(), keys)
            if lead:
                leads.append((-rank, rank, position, hit, sentence))
                lead = False
            if not matched:
                continue
            seen.add(key)
            scored.append((len(matched) * weight, rank, position, hit, sentence))
    if not scored:
        first_of_document: dict[int, tuple] = {}
        for item in leads:
            first_of_document.setdefault(item[3].document_id, item)
        scored = [*first_of_document.values(), *leads]
        scored = list({id(item): item for item in scored}.values())
    else:
        scored.sort(key=lambda item: (-item[0], item[1], item[2]))
    chosen = scored[:ANSWER_SENTENCES]
    chosen.sort(
        key=lambda item: (numbers[item[3].document_id], item[3].chunk_id, item[2])
    )

    parts: list[str] = []
    length = 0
    for _score, _rank, _position, hit, sentence in chosen:
        suffix = f" [{numbers[hit.document_id]}]"
        room = min(SENTENCE_MAX_LENGTH, max_length - len(suffix))
        part = _fit(sentence, room) + suffix
        needed = len(part) + (1 if parts else 0)
        if length + needed > max_length:
            break
        parts.append(part)
        length += needed
    return " ".join(parts)


def _fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, marked with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


# --- Sentences ---------------------------------------------------------------

_SENTENCE_SPLIT = re.compile(
    r"(?<=[.!?])\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])"
    r"|(?<=[.!?][\"'’”)\]])\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])"
)
_BLOCK_START = re.compile(r"#|[-*+] |\d+[.)] |\||```")


# A reStructuredText or setext underline (or overline): one punctuation
# character repeated, alone on its line.
_RULE = re.compile(r"([=\-~^\"'`*+#:.])\1{2,}$")


def _pieces(text: str) -> Iterator[str]:
    """Paragraphs with wrapped lines joined. A heading is a piece of its own; a
    list item, table row or code fence starts a new piece."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if _RULE.match(line):
            # The line above was a title ("Install" over "======="): its own
            # piece, never glued to the sentence that follows.
            if lines:
                yield from filter(None, [" ".join(lines[:-1]), "# " + lines[-1]])
            lines = []
            continue
        if line and not _BLOCK_START.match(line):
            lines.append(line)
            continue
        if lines:
            yield " ".join(lines)
        lines = []
        if line.startswith("#"):
            yield line
        elif line:
            lines = [line]
    if lines:
        yield " ".join(lines)


def split_sentences(text: str) -> list[str]:
    """Sentences, with wrapped lines joined, for building extractive answers."""
    return [
        sentence
        for piece in _pieces(text)
        for part in _SENTENCE_SPLIT.split(piece)
        if (sentence := part.strip())
    ]
