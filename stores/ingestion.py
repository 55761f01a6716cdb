"""Text extraction and chunking: pure functions, no database.

Uploads are checked here before anything is stored (the type must match the content,
archives must not be decompression bombs), and stored files are turned into text and
into chunks whose offsets point back into that text, so a citation can show exactly
where a passage came from.
"""

from __future__ import annotations

import codecs
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog
from django.conf import settings

from flamehaven.errors import UnsafeFile, UnsupportedFileType
from stores import pdf_extract

log = structlog.get_logger(__name__)

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

# Order matters to callers that map a mime type back to a suffix: .md before .markdown.
SUPPORTED_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".pdf": PDF,
    ".docx": DOCX,
}

_TYPE_NAMES = {
    "text/plain": "text",
    "text/markdown": "text",
    PDF: "a PDF",
    DOCX: "a DOCX",
}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Share of characters (controls, undecodable bytes) above which "text" is binary.
_MAX_BAD_SHARE = 0.1
_ALLOWED_CONTROLS = frozenset("\t\n\r\f")

_MAX_ZIP_MEMBERS = 10_000
_MAX_ZIP_RATIO = 100
_RATIO_CHECK_MIN_BYTES = 1024 * 1024

Source = str | os.PathLike[str] | IO[bytes]


# --- Type detection ---------------------------------------------------------------


def detect_mime_type(*, filename: str, head: bytes) -> str:
    """The mime type of an upload, from its extension and its first bytes.

    The extension alone is a client's claim; the content must agree, so a renamed
    executable or image never reaches a parser that was not written for it.
    """
    ext = Path(filename).suffix.lower()
    details = {"filename": filename, "supported": sorted(SUPPORTED_TYPES)}
    mime_type = SUPPORTED_TYPES.get(ext)
    if mime_type is None:
        raise UnsupportedFileType(
            f"'{filename}': {ext or 'files without an extension'} is not supported; "
            f"upload one of {', '.join(sorted(SUPPORTED_TYPES))}.",
            details=details,
        )
    if mime_type == PDF:
        ok = head[:1024].lstrip(b" \t\r\n\f").startswith(b"%PDF-")
    elif mime_type == DOCX:
        ok = head.startswith(b"PK\x03\x04")
    else:
        ok = _looks_like_text(head)
    if not ok:
        raise UnsupportedFileType(
            f"'{filename}' is named {ext} but its content is not "
            f"{_TYPE_NAMES[mime_type]}.",
            details=details,
        )
    return mime_type


def _looks_like_text(head: bytes) -> bool:
    # A few undecodable bytes (a Latin-1 "é") still make a readable text file, and
    # extraction replaces them; binary data has them everywhere.
    if head.startswith(_UTF16_BOMS):
        decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    elif b"\x00" in head:
        return False
    else:
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    # final=False: a multibyte character cut by the end of `head` is not an error.
    text = decoder.decode(head, final=False)
    if not text:
        return True
    bad = text.count("\ufffd") + sum(
        1 for c in text if (c < " " or c == "\x7f") and c not in _ALLOWED_CONTROLS
    )
    return bad <= len(text) * _MAX_BAD_SHARE


# --- Upload safety ----------------------------------------------------------------


def inspect_upload(*, path: Source, mime_type: str) -> None:
    """Refuse, before anything is stored, a file built to exhaust the extractor."""
    if mime_type == DOCX:
        inspect_archive(path=path, mime_type=mime_type)
    elif mime_type == PDF:
        inspect_pdf(path=path)


def inspect_pdf(*, path: Source) -> None:
    """Refuse a PDF whose page tree loops or holds more than MAX_PDF_PAGES pages.

    Only the page tree is read, not the pages' content, and by
    :func:`_count_pages`, which stops as soon as the limit is passed. pypdf's own
    count flattens the whole tree first: 4.8 s and 240 MB for an 8.5 MB file of
    100,000 empty pages, against 0.6 s and 46 MB here (``bench/pdf_inspect.py``).
    A PDF that cannot be opened is left for extraction to report, so that the
    document is kept as failed with a readable error.
    """
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    limit = settings.MAX_PDF_PAGES
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            return  # extraction says whether it opens
        pages = _count_pages(reader.trailer["/Root"].raw_get("/Pages"), limit)
    except UnsafeFile:
        raise
    except LimitReachedError as exc:  # e.g. a /Kids array of over 100,000 entries
        raise UnsafeFile(
            f"The PDF is beyond the reader's safety limits: {exc}",
            details={"reason": "parser_limit"},
        ) from exc
    except Exception:  # strict=False pypdf fails in many ways: extraction reports
        return
    if pages > limit:
        raise UnsafeFile(
            f"The PDF has more than {limit:,} pages; at most {limit:,} are allowed.",
            details={"reason": "too_many_pages", "max_pages": limit},
        )


def _count_pages(root, limit: int) -> int:
    """The pages under the page tree `root`, counted up to ``limit + 1``.

    Walks the tree with a stack (no recursion, however deep it is nested) and
    visits each node once: a node met again means the tree loops, or shares a
    subtree, which can multiply the pages a reader sees far beyond the file's
    size. Interior nodes are bounded too, so a tree of empty ``/Pages`` nodes
    cannot make the walk long either.
    """
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    seen: set[tuple[int, int]] = set()
    stack = [root]
    pages = nodes = 0
    while stack and pages <= limit:
        reference = stack.pop()
        if isinstance(reference, IndirectObject):
            if (reference.idnum, reference.generation) in seen:
                raise UnsafeFile(
                    "The PDF's page tree refers back to itself or repeats a node.",
                    details={"reason": "cyclic_page_tree"},
                )
            seen.add((reference.idnum, reference.generation))
        node = reference.get_object()
        if not isinstance(node, DictionaryObject):
            continue  # a broken reference: extraction reports it
        nodes += 1
        if nodes > 2 * limit + 1:
            raise UnsafeFile(
                "The PDF's page tree has far more nodes than pages.",
                details={"reason": "oversized_page_tree"},
            )
        kids = node.get("/Kids")
        if kids is None:
            pages += 1  # a leaf is a page, whatever its /Type says
            continue
        kids = kids.get_object()
        if isinstance(kids, ArrayObject):
            stack.extend(reversed(kids))
    return pages


def inspect_archive(*, path: Source, mime_type: str) -> None:
    """Refuse a DOCX that would expand to far more than it weighs.

    Only the zip's central directory is read. Python's zipfile never yields more than
    a member's declared size, so checking the declared sizes bounds what extraction
    can decompress. An archive that cannot be opened is left for extraction to
    report, so that the document is kept as failed with a readable error.
    """
    if mime_type != DOCX:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return
    if len(members) > _MAX_ZIP_MEMBERS:
        raise UnsafeFile(
            f"The DOCX file holds {len(members):,} parts; at most "
            f"{_MAX_ZIP_MEMBERS:,} are allowed.",
            details={"reason": "too_many_members", "members": len(members)},
        )
    limit = getattr(settings, "MAX_DOCX_UNCOMPRESSED_BYTES", 200 * 1024 * 1024)
    total = sum(member.file_size for member in members)
    if total > limit:
        raise UnsafeFile(
            f"The DOCX file would expand to {total / 2**20:,.0f} MB; at most "
            f"{limit / 2**20:,.0f} MB are allowed.",
            details={
                "reason": "too_large",
                "uncompressed_bytes": total,
                "limit": limit,
            },
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_CHECK_MIN_BYTES and ratio > _MAX_ZIP_RATIO:
            raise UnsafeFile(
                f"The DOCX file looks like a decompression bomb: '{member.filename}' "
                f"is compressed {ratio:,.0f} to 1.",
                details={"reason": "compression_ratio", "member": member.filename},
            )


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
    encoding = "utf-16" if bom in _UTF16_BOMS else "utf-8-sig"
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
            blocks.append(text)
    return blocks


# --- Chunking ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkSpan:
    text: str
    start_char: int
    end_char: int  # text == extracted.text[start_char:end_char]
    page: int | None  # 1-based page of start_char (PDFs)


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
        return [
            ChunkSpan(text[s:e], s, e, None)
            for s, e in _spans(text, 0, len(text), size, overlap)
        ]
    # PDF chunks never straddle a page, so each one cites the page it came from.
    bounds = [*starts, len(text)]
    return [
        ChunkSpan(text[s:e], s, e, page)
        for page, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False), start=1)
        for s, e in _spans(text, lo, hi, size, overlap)
    ]


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


_SENTENCE_SPLIT = re.compile(
    r"(?<=[.!?])\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])"
    r"|(?<=[.!?][\"'’”)\]])\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])"
)
_BLOCK_START = re.compile(r"#|[-*+] |\d+[.)] |\||```")


def _pieces(text: str) -> Iterator[str]:
    """Paragraphs with wrapped lines joined. A heading is a piece of its own; a
    list item, table row or code fence starts a new piece."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
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
