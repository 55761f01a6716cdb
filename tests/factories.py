"""Real files as bytes, for uploads and extraction tests.

Each builder gives the same bytes for the same input, so tests can rely on sha256
deduplication.
"""

import io
import struct
import zipfile
import zlib
from datetime import UTC, datetime

_FIXED_DATE = datetime(2024, 1, 1, tzinfo=UTC)
_FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per item (keep items under ~50 lines or they spill onto
    another page); an empty string makes a page without text."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def make_encrypted_pdf(pages: list[str], *, user_password: str = "secret") -> bytes:
    """A PDF that needs `user_password` to open ("" opens it without one)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(
        user_password=user_password, owner_password="owner", algorithm="AES-128"
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(paragraphs: list[str], *, table: list[list[str]] | None = None) -> bytes:
    """A Word document with these paragraphs, then `table` (rows of cells) if given."""
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=max(map(len, table)))
        for row, values in zip(grid.rows, table, strict=False):
            for cell, value in zip(row.cells, values, strict=False):
                cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return _fixed_zip_times(buffer.getvalue())


def _fixed_zip_times(data: bytes) -> bytes:
    """The same zip with fixed member timestamps (python-docx stamps the time)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for member in src.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, src.read(member))
    return out.getvalue()


def make_zip_bomb_docx(uncompressed_bytes: int = 300 * 1024 * 1024) -> bytes:
    """A DOCX-shaped zip whose document.xml is `uncompressed_bytes` of zeros.

    Written in blocks, so building it never holds the expanded content in memory;
    the result is about a thousandth of the declared size.
    """
    out = io.BytesIO()
    block = bytes(1024 * 1024)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("[Content_Types].xml", date_time=_FIXED_ZIP_TIME)
        zf.writestr(info, '<?xml version="1.0"?><Types/>')
        info = zipfile.ZipInfo("word/document.xml", date_time=_FIXED_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as member:
            left = uncompressed_bytes
            while left > 0:
                member.write(block[: min(left, len(block))])
                left -= len(block)
    return out.getvalue()


def make_png() -> bytes:
    """A valid 1x1 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


_GARBAGE = bytes((i * 151 + 7) % 256 for i in range(2048))


def corrupt_pdf() -> bytes:
    """Looks like a PDF from its first bytes; nothing after them parses."""
    return b"%PDF-1.7\n" + _GARBAGE


def corrupt_docx() -> bytes:
    """Looks like a zip from its first bytes; nothing after them parses."""
    return b"PK\x03\x04" + _GARBAGE


def _raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF written object by object (1 0 obj is the catalog), with its xref."""
    out = bytearray(b"%PDF-1.4\n")  # bytes += would be quadratic in big files
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def make_shared_subtree_pdf(levels: int) -> bytes:
    """Each level lists the next one twice: 2**levels pages to a naive reader."""
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            *[
                b"<< /Type /Pages /Kids [%d 0 R %d 0 R] /Count %d >>"
                % (level + 3, level + 3, 2 ** (levels - level))
                for level in range(levels)
            ],
            b"<< /Type /Page /MediaBox [0 0 10 10] >>",
        ]
    )


def make_nested_pdf(depth: int, pages: int = 1) -> bytes:
    """`depth` /Pages nodes, each the only kid of the one above, then `pages`."""
    last = depth + 1  # the number of the deepest /Pages node
    kids = b" ".join(b"%d 0 R" % (last + 1 + n) for n in range(pages))
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            *[
                b"<< /Type /Pages /Kids [%d 0 R] /Count %d >>" % (number + 1, pages)
                for number in range(2, last)
            ],
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
            *[b"<< /Type /Page /MediaBox [0 0 10 10] >>"] * pages,
        ]
    )


def make_cyclic_pdf() -> bytes:
    """A PDF whose page tree lists itself among its own kids."""
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
        ]
    )


def make_many_pages_pdf(pages: int, per_node: int | None = None) -> bytes:
    """A file of `pages` empty pages (about 100 bytes each with their references).

    With `per_node`, the pages hang from /Pages nodes of at most that many kids
    each, under the root; without it, all of them are the root's kids.
    """
    per_node = per_node or pages
    groups = [
        range(start, min(start + per_node, pages))
        for start in range(0, pages, per_node)
    ]
    first_page = 3 + len(groups)  # catalog, root, then one node per group

    def refs(numbers) -> bytes:
        return b" ".join(b"%d 0 R" % number for number in numbers)

    if len(groups) == 1:
        first_page = 3
        nodes = []
        root_kids = refs(first_page + n for n in range(pages))
    else:
        nodes = [
            b"<< /Type /Pages /Parent 2 0 R /Kids [%s] /Count %d >>"
            % (refs(first_page + n for n in group), len(group))
            for group in groups
        ]
        root_kids = refs(3 + g for g in range(len(groups)))
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (root_kids, pages),
            *nodes,
            *[b"<< /Type /Page /MediaBox [0 0 10 10] >>"] * pages,
        ]
    )


def make_text_pdf(pages: list[str]) -> bytes:
    """A PDF with one page of text per item, written directly: hundreds of pages
    in milliseconds (fpdf2 takes seconds), for tests that need a slow ingestion.
    Each item is one line per 90 characters, ASCII only."""
    count = len(pages)
    font = 3 + 2 * count  # catalog, root, then a page and its stream per item
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (3 + 2 * n) for n in range(count)), count),
    ]
    for n, text in enumerate(pages):
        lines = [text[i : i + 90] for i in range(0, len(text), 90)] or [""]
        escaped = [
            line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            for line in lines
        ]
        stream = "BT /F1 10 Tf 40 800 Td 12 TL " + " ".join(
            f"({line}) Tj T*" for line in escaped
        )
        stream += " ET"
        data = stream.encode("ascii")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
            % (font, 4 + 2 * n)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _raw_pdf(objects)


def multipart_body(filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one ``file`` part, and its Content-Type:
    for tests that send it by hand (slowly, chunked, over a raw socket)."""
    boundary = "flamehaven-test-boundary"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"
