"""Text extraction and chunking: pure functions, no database.

Stored files are turned into text, and the text into chunks whose offsets point
back into it, so a citation can show exactly where a passage came from.
"""

from __future__ import annotations

import bisect
import os
import re
import zipfile
from dataclasses import dataclass, replace

import structlog
from django.conf import settings

from stores import pdf_extract
from stores.filetypes import DOCX, PDF, UTF16_BOMS

log = structlog.get_logger(__name__)


# --- Extraction -------------------------------------------------------------------


class ExtractionError(Exception):
    """Text could not be extracted; str() is a message a user can act on."""


@dataclass(frozen=True)
class ExtractedText:
    text: str
    page_starts: tuple[int, ...] | None  # offset in `text` where each page begins
    page_count: int | None


def extract_text(*, path: str | os.PathLike[str], mime_type: str) -> ExtractedText:
    """The document's text, with page offsets for PDFs so chunks can cite pages."""
    if mime_type == PDF:
        extracted = _extract_pdf(path)
    elif mime_type == DOCX:
        extracted = ExtractedText(_extract_docx(path), None, None)
    elif mime_type in ("text/plain", "text/markdown"):
        extracted = ExtractedText(_clean(_read_text(path)), None, None)
    else:
        raise ExtractionError(f"Files of type {mime_type} cannot be read.")
    if not extracted.text.strip():
        raise ExtractionError(
            "No text could be extracted from this file (it may be empty, or a scanned "
            "document that holds only images)."
        )
    return extracted


def _clean(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; \r\n and \r are one line break.
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def _read_text(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as raw:
        bom = raw.read(2)
    encoding = "utf-16" if bom in UTF16_BOMS else "utf-8-sig"
    # newline=None turns \r\n and \r into \n while decoding.
    with open(path, encoding=encoding, errors="replace", newline=None) as fh:
        return fh.read()


def _extract_pdf(path: str | os.PathLike[str]) -> ExtractedText:
    """In a child process bounded in time and memory (stores.pdf_extract)."""
    try:
        pages = pdf_extract.extract_pages(
            path,
            max_pages=settings.MAX_PDF_PAGES,
            timeout=settings.PDF_EXTRACT_TIMEOUT_SEC,
            memory_mb=settings.PDF_EXTRACT_MEMORY_MB,
        )
    except pdf_extract.PdfError as exc:
        log.info("pdf_unreadable", error=str(exc))
        raise ExtractionError(str(exc)) from exc
    texts = [_clean(text).strip() for text in pages]
    starts, offset = [], 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 2
    return ExtractedText("\n\n".join(texts), tuple(starts), len(texts))


def _extract_docx(path: str | os.PathLike[str]) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(os.fspath(path))
        return _clean("\n\n".join(_docx_blocks(document)))
    except (zipfile.BadZipFile, PackageNotFoundError) as exc:
        raise ExtractionError(
            "Could not read DOCX: file is not a valid Word document."
        ) from exc
    except Exception as exc:
        log.info("docx_unreadable", error=repr(exc))
        raise ExtractionError(
            "Could not read DOCX: file is damaged or incomplete."
        ) from exc


def _docx_blocks(container) -> list[str]:
    """Paragraphs in document order; a table row becomes one "a | b | c" block."""
    from docx.table import Table

    blocks = []
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells, seen = [], set()
                for cell in row.cells:  # a merged cell is listed once per grid column
                    if cell._tc not in seen:
                        seen.add(cell._tc)
                        cells.append(" ".join(_docx_blocks(cell)))
                if line := " | ".join(c for c in cells if c):
                    blocks.append(line)
        elif text := block.text.strip():
            # A Heading N paragraph becomes a Markdown heading, so the chunker
            # finds sections in DOCX files as it does in Markdown.
            level = _heading_level(block)
            blocks.append(f"{'#' * level} {text}" if level else text)
    return blocks


def _heading_level(paragraph) -> int:
    style = getattr(paragraph.style, "name", "") or ""
    if style == "Title":
        return 1
    if style.startswith("Heading "):
        level = style.removeprefix("Heading ")
        return min(int(level), 6) if level.isdigit() else 0
    return 0


# --- Chunking ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkSpan:
    text: str
    start_char: int
    end_char: int  # text == extracted.text[start_char:end_char]
    page: int | None  # 1-based page of start_char (PDFs)
    section: str = ""  # the heading the chunk starts under, if any


# Where a chunk may end, strongest first. A sentence break is the whitespace after
# sentence punctuation (maybe closed by a quote or bracket) or any line break. Each
# pattern starts at a fixed character, so scanning stays linear on runs of spaces.
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"'’”)\]])\s+|\n\s*")
_SPACE = re.compile(r"\s+")
_NON_SPACE = re.compile(r"\S")


def chunk_text(
    extracted: ExtractedText, *, size: int | None = None, overlap: int | None = None
) -> list[ChunkSpan]:
    """Pieces of at most `size` characters, cut at the most natural boundary.

    Each chunk ends at the strongest break (paragraph, sentence, word, else anywhere)
    in the second half of its window, so work is per chunk, not per sentence.
    Neighbouring chunks share about `overlap` characters, starting at a sentence or a
    word, so a passage cut in two can still be found whole.
    """
    size = max(size or getattr(settings, "CHUNK_SIZE", 1000), 2)
    if overlap is None:
        overlap = getattr(settings, "CHUNK_OVERLAP", 150)
    overlap = max(0, min(overlap, size // 2))
    text = extracted.text
    starts = extracted.page_starts
    if not starts:
        spans = [
            ChunkSpan(text[s:e], s, e, None)
            for s, e in _spans(text, 0, len(text), size, overlap)
        ]
    else:
        # PDF chunks never straddle a page, so each one cites the page it came from.
        bounds = [*starts, len(text)]
        spans = [
            ChunkSpan(text[s:e], s, e, page)
            for page, (lo, hi) in enumerate(
                zip(bounds, bounds[1:], strict=False), start=1
            )
            for s, e in _spans(text, lo, hi, size, overlap)
        ]
    return _with_sections(text, spans)


# A Markdown heading ("## Install"), or a reStructuredText/setext title: a line
# underlined (and maybe overlined) by one punctuation character repeated.
_ATX_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(?P<title>.*?)[ \t#]*")
_RULE_LINE = re.compile(r"([=\-~^\"'`*+#])\1{2,}[ \t]*")
_HEADING_STARTS = frozenset("#=-~^\"'`*+ ")
SECTION_MAX_LENGTH = 200


def headings(text: str) -> list[tuple[int, str]]:
    """(offset, title) of every heading in ``text``, in order.

    One pass over the lines; only those starting with a heading character are
    looked at closely (a regex anchored at every line start costs more than
    chunking the whole text).
    """
    found: list[tuple[int, str]] = []
    offset, previous, previous_offset = 0, "", 0
    for line in text.split("\n"):
        if line[:1] in _HEADING_STARTS and line:
            if atx := _ATX_HEADING.fullmatch(line):
                if title := atx.group("title").strip():
                    found.append((offset, title[:SECTION_MAX_LENGTH]))
            elif _RULE_LINE.fullmatch(line):
                title = previous.strip()
                # Not the rule under an ATX heading, already found.
                underlines = not found or found[-1][0] != previous_offset
                if title and underlines and len(line.strip()) >= min(len(title), 3):
                    found.append((previous_offset, title[:SECTION_MAX_LENGTH]))
        previous, previous_offset = line, offset
        offset += len(line) + 1
    return found


def _with_sections(text: str, spans: list[ChunkSpan]) -> list[ChunkSpan]:
    """Each span with the heading in force where it starts (search refines it
    to the heading above the matching passage, see stores.backends.local)."""
    marks = headings(text)
    if not marks:
        return spans
    offsets = [offset for offset, _ in marks]
    result = []
    for span in spans:
        index = bisect.bisect_right(offsets, span.start_char) - 1
        section = marks[index][1] if index >= 0 else ""
        result.append(replace(span, section=section))
    return result


def _spans(
    text: str, lo: int, hi: int, size: int, overlap: int
) -> list[tuple[int, int]]:
    text_end = lo + len(text[lo:hi].rstrip())
    spans: list[tuple[int, int]] = []
    start = resume = _next_word(text, lo)
    while start < text_end:
        if text_end - start <= size:
            spans.append((start, text_end))
            break
        # Every chunk reaches past the previous one: ends strictly increase.
        cut = _cut(text, max(start + size // 2, resume + 1), start + size)
        end = start + len(text[start:cut].rstrip())
        spans.append((start, end))
        resume = _next_word(text, cut)
        start = _overlap_start(text, start, end, overlap, resume, size)
    return spans


def _next_word(text: str, pos: int) -> int:
    match = _NON_SPACE.search(text, pos)
    return match.start() if match else len(text)


def _cut(text: str, lo: int, hi: int) -> int:
    """The start of the last, strongest break in text[lo:hi + 1], else `hi`."""
    for pattern in (_PARAGRAPH_BREAK, _SENTENCE_BREAK, _SPACE):
        last = None
        for match in pattern.finditer(text, lo, hi + 1):
            last = match
        if last:
            return last.start()
    return hi


def _overlap_start(
    text: str, chunk_start: int, end: int, overlap: int, resume: int, size: int
) -> int:
    """Where the next chunk starts: about `overlap` characters before `end`, at a
    sentence or word start; at `resume` (no overlap) if the overlap would fill the
    next chunk before it reaches new text."""
    lo = max(end - overlap, chunk_start + 1)
    if overlap == 0 or resume - lo >= size // 2:
        return resume
    sentence = _SENTENCE_BREAK.search(text, lo, end)
    if sentence and sentence.end() - lo <= overlap // 2:
        return sentence.end()
    if text[lo - 1].isspace() and not text[lo].isspace():
        return lo
    space = _SPACE.search(text, lo, end)
    return space.end() if space else lo
