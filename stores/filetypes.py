"""What an upload really is, and whether it is safe to parse.

The extension is a client's claim: the content must agree with it. Archives and
PDFs built to exhaust a parser (decompression bombs, looping or huge page trees)
are refused here, before anything is stored, by reading only their directories.
"""

from __future__ import annotations

import codecs
import os
import zipfile
from pathlib import Path
from typing import IO

from django.conf import settings

from flamehaven.errors import UnsafeFile, UnsupportedFileType

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
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Share of characters (controls, undecodable bytes) above which "text" is binary.
_MAX_BAD_SHARE = 0.1
_ALLOWED_CONTROLS = frozenset("\t\n\r\f")

_MAX_ZIP_MEMBERS = 10_000
_MAX_ZIP_RATIO = 100
_RATIO_CHECK_MIN_BYTES = 1024 * 1024

Source = str | os.PathLike[str] | IO[bytes]


def suffix_for(mime_type: str) -> str:
    """The file suffix stored files of this type get."""
    return next(ext for ext, mime in SUPPORTED_TYPES.items() if mime == mime_type)


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
    if head.startswith(UTF16_BOMS):
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
