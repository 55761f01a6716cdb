"""Citations: which spans of the answer each source supports.

Offsets are characters (Unicode code points) of the answer as returned, so a
client can take ``answer[start:end]``; sources are numbered from 1, like the
answer's ``[n]`` markers. The local engine writes those markers after each
sentence it quotes, so its citations are read back from them; a backend that
knows its spans itself (Gemini) gives them over its own text, and they are
moved onto the answer as returned (stripped, maybe cut by the answer checks).
"""

from __future__ import annotations

import re

from stores.backends import Answer, Citation

# One run of markers after a sentence: " [1]", " [1][2]", " [1, 2]", " [1] [2]";
# never glued to a word ("items[1]") or followed by one.
_MARKERS = re.compile(
    r"\s+(?:\[\d+(?:\s*,\s*\d+)*\]\s*)*\[\d+(?:\s*,\s*\d+)*\](?=\s|$)"
)
_NUMBER = re.compile(r"\d+")


def citations_from_markers(
    text: str, *, source_count: int | None = None
) -> list[Citation]:
    """A citation per marked sentence: the text from the end of the previous
    markers to the whitespace before its own, and the numbers in its markers.

    Numbers above ``source_count`` (when given), or 0, name no source and are
    dropped; brackets naming no source at all are the quoted text's own (a
    document may cite its own references) and stay part of the sentence.
    """
    citations: list[Citation] = []
    position = 0
    for match in _MARKERS.finditer(text):
        numbers = _numbers(match.group(), source_count)
        if not numbers:
            continue  # brackets of the quoted text, not ours: part of the sentence
        start = position
        while start < match.start() and text[start].isspace():
            start += 1
        if start < match.start():
            citations.append(Citation(start=start, end=match.start(), sources=numbers))
        position = match.end()
    return citations


def clip_citations(
    citations: list[Citation],
    original: str,
    answer: str,
    *,
    source_count: int | None = None,
) -> list[Citation]:
    """Citations over ``original`` moved onto ``answer``, what the answer checks
    made of it: stripped, and maybe cut to a prefix with an ellipsis after it.

    Spans starting past the cut are dropped and those running over it end there
    (the ellipsis is never cited); spans lose their edge whitespace, numbers
    naming no source are dropped, and so is a span left empty or without
    sources. Every span left is a slice of ``answer``, in the answer's order.
    """
    shift = len(original) - len(original.lstrip())
    kept = _common_prefix_length(original[shift:], answer)
    clipped: list[Citation] = []
    for citation in citations:
        start = max(citation.start - shift, 0)
        end = min(citation.end - shift, kept)
        while start < end and answer[start].isspace():
            start += 1
        while end > start and answer[end - 1].isspace():
            end -= 1
        numbers = _valid(citation.sources, source_count)
        if start < end and numbers:
            clipped.append(Citation(start=start, end=end, sources=numbers))
    clipped.sort(key=lambda citation: (citation.start, citation.end))
    return clipped


def answer_citations(answer: Answer, text: str) -> list[Citation]:
    """The citations of ``answer`` over ``text``, the answer as it is returned:
    the backend's own, or else those its [n] markers make."""
    count = len(answer.sources)
    if answer.citations is None:
        return citations_from_markers(text, source_count=count)
    return clip_citations(answer.citations, answer.text, text, source_count=count)


def _numbers(markers: str, source_count: int | None) -> list[int]:
    return _valid([int(found) for found in _NUMBER.findall(markers)], source_count)


def _valid(numbers: list[int], source_count: int | None) -> list[int]:
    """Each number once, in order, if it names a source."""
    return [
        number
        for number in dict.fromkeys(numbers)
        if number >= 1 and (source_count is None or number <= source_count)
    ]


def _common_prefix_length(first: str, second: str) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length
