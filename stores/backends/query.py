"""Turn whatever a user typed into plain search terms.

The local index must never see user text as query syntax: FTS5 and ``tsquery`` both
have operators (quotes, ``AND``/``OR``/``NOT``/``NEAR``, ``*``, ``-``, ``:``,
parentheses, ``^``) that raise syntax errors or change the meaning of a question.
Reducing a query to lower-cased word tokens here means the backends only ever build
expressions out of letters and digits.
"""

from __future__ import annotations

import re
import unicodedata

# Letters and digits only: ``\w`` without the underscore, because both full-text
# tokenizers split on ``_`` anyway and a bare token is then always one word.
_TOKEN = re.compile(r"[^\W_]+")

# A word longer than this is not a word a person would search for (and PostgreSQL
# ignores lexemes over 2 KB); dropping it keeps pathological input cheap.
MAX_TERM_LENGTH = 100

# Question words, auxiliaries, pronouns, articles, prepositions and conjunctions:
# the words a natural-language question is made of that say nothing about what is
# asked. Content verbs ("make", "use", "run") stay searchable. The fragments at the
# end are what contractions ("don't", "it's", "I'm") leave behind after tokenizing.
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any anyone anything are
    as at be because been before being below between both but by can could did
    do does doing done down during each either else ever every few for from
    further had has have having he her here hers herself him himself his how i
    if in into is it its itself just let me more most much my myself neither no
    nor not of off on once only or other others our ours ourselves out over own
    please same shall she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up
    upon us very via was we were what whatever when whenever where whether which
    while who whom whose why will with within without would yet you your yours
    yourself yourselves may might must ought need tell explain cannot
    s t d ll m re ve don doesn didn isn aren wasn weren won wouldn shouldn couldn
    hasn haven hadn
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def query_terms(query: str, *, max_terms: int = 32) -> list[str]:
    """The distinct search terms of ``query``, in the order they were typed.

    Stop words are dropped so that OR semantics rank passages by what the question
    is about; a question made only of stop words keeps them, since searching for
    something beats answering nothing. The cap bounds the size of the SQL a single
    request can produce.
    """
    if not query or max_terms <= 0:
        return []
    text = unicodedata.normalize("NFKC", query).lower()
    tokens: list[str] = []
    seen: set[str] = set()
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in seen or len(token) > MAX_TERM_LENGTH:
            continue
        seen.add(token)
        tokens.append(token)
    content = [token for token in tokens if token not in STOP_WORDS]
    return (content or tokens)[:max_terms]
