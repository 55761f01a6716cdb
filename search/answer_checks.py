"""Answer checks ("Driftlock"): bounds and banned terms, before an answer is cached.

Too short, or with a banned term: rejected (ANSWER_REJECTED, 422, never cached).
Too long: cut at a word boundary, and logged. The banned terms are matched as
whole words, case folded, and never echoed back to the client.
"""

from __future__ import annotations

import re

import structlog
from django.conf import settings

from flamehaven.errors import AnswerRejected

log = structlog.get_logger(__name__)

ELLIPSIS = "…"


def check_answer(text: str) -> str:
    """The answer to give, or AnswerRejected."""
    answer = text.strip()
    if len(answer) < settings.ANSWER_MIN_LENGTH:
        raise AnswerRejected(
            "The answer was too short to be given.",
            details={"reason": "too_short", "min_length": settings.ANSWER_MIN_LENGTH},
        )
    found = _banned_terms_in(answer)
    if found:
        log.warning("answer_rejected", reason="banned_term", terms=len(found))
        raise AnswerRejected(
            "The answer contained a term this service does not give out.",
            details={"reason": "banned_term"},
        )
    limit = settings.ANSWER_MAX_LENGTH
    if len(answer) > limit:
        log.warning("answer_truncated", length=len(answer), max_length=limit)
        answer = _truncate(answer, limit)
    return answer


def _banned_terms_in(answer: str) -> list[str]:
    terms = [term.strip() for term in settings.BANNED_TERMS if term.strip()]
    return [
        term
        for term in terms
        if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", answer, re.IGNORECASE)
    ]


def _truncate(answer: str, limit: int) -> str:
    cut = answer[: limit - len(ELLIPSIS)]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + ELLIPSIS
