import io
import random
import re
import time
import zipfile

import pytest

from flamehaven.errors import UnsafeFile, UnsupportedFileType
from stores.backends.local import split_sentences
from stores.extraction import (
    ChunkSpan,
    ExtractedText,
    ExtractionError,
    chunk_text,
    extract_text,
)
from stores.filetypes import (
    DOCX,
    PDF,
    SUPPORTED_TYPES,
    detect_mime_type,
    inspect_archive,
    inspect_pdf,
)
from tests.factories import (
    corrupt_docx,
    corrupt_pdf,
    make_cyclic_pdf,
    make_docx,
    make_encrypted_pdf,
    make_many_pages_pdf,
    make_nested_pdf,
    make_pdf,
    make_png,
    make_shared_subtree_pdf,
    make_zip_bomb_docx,
)


@pytest.fixture
def write(tmp_path):
    def write(name: str, data: bytes | str):
        path = tmp_path / name
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)
        return path

    return write


def sentences(count: int, start: int = 0) -> str:
    return " ".join(
        f"Sentence number {i} talks about topic {i % 7}."
        for i in range(start, start + count)
    )


# --- detect_mime_type -------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("notes.txt", b"Plain text\r\nwith lines\n", "text/plain"),
        ("README.MD", "# Título\n\n* ünïcode".encode(), "text/markdown"),
        ("guide.markdown", b"# Guide\n", "text/markdown"),
        ("utf16.txt", "hello world".encode("utf-16"), "text/plain"),
        ("report.pdf", make_pdf(["x"])[:8192], PDF),
        ("padded.pdf", b"\r\n  %PDF-1.4\n...", PDF),
        ("letter.docx", make_docx(["x"])[:8192], DOCX),
    ],
)
def test_detect_mime_type_accepts_matching_content(filename, head, expected):
    assert detect_mime_type(filename=filename, head=head) == expected


def test_detect_mime_type_tolerates_multibyte_character_cut_by_head():
    head = ("é" * 5000).encode()[:8191]  # ends inside a two-byte sequence
    assert detect_mime_type(filename="a.txt", head=head) == "text/plain"


def test_detect_mime_type_tolerates_a_few_latin1_bytes():
    head = "Café au lait, crème brûlée and a long line of plain words.".encode(
        "latin-1"
    )
    assert detect_mime_type(filename="menu.txt", head=head) == "text/plain"


@pytest.mark.parametrize(
    ("filename", "head", "message"),
    [
        (
            "photo.pdf",
            make_png(),
            "'photo.pdf' is named .pdf but its content is not a PDF",
        ),
        ("photo.docx", make_png(), "its content is not a DOCX"),
        ("report.docx", make_pdf(["x"]), "its content is not a DOCX"),
        ("nuls.txt", bytes(8192), "its content is not text"),
        ("binary.txt", bytes(range(1, 256)) * 32, "its content is not text"),
        ("controls.md", b"\x01\x02\x03\x04\x05\x06\x07\x08abc" * 100, "not text"),
        ("empty.pdf", b"", "not a PDF"),
    ],
)
def test_detect_mime_type_rejects_content_that_does_not_match(filename, head, message):
    with pytest.raises(UnsupportedFileType) as info:
        detect_mime_type(filename=filename, head=head)
    assert message in info.value.message
    assert info.value.details == {
        "filename": filename,
        "supported": [".docx", ".markdown", ".md", ".pdf", ".txt"],
    }
    assert info.value.status_code == 415


@pytest.mark.parametrize(
    "filename", ["setup.exe", "image.png", "Makefile", "a.pdf.exe"]
)
def test_detect_mime_type_rejects_unsupported_extensions(filename):
    with pytest.raises(UnsupportedFileType) as info:
        detect_mime_type(filename=filename, head=b"hello")
    assert "is not supported" in info.value.message
    assert info.value.details["filename"] == filename


def test_supported_types_lists_md_before_markdown():
    # Callers map a mime type back to a storage suffix with the first match.
    suffix = next(
        ext for ext, mime in SUPPORTED_TYPES.items() if mime == "text/markdown"
    )
    assert suffix == ".md"


# --- inspect_archive --------------------------------------------------------------


def test_inspect_archive_rejects_zip_bomb(write):
    path = write("bomb.docx", make_zip_bomb_docx())
    with pytest.raises(UnsafeFile) as info:
        inspect_archive(path=path, mime_type=DOCX)
    assert info.value.details["reason"] == "too_large"
    assert info.value.details["uncompressed_bytes"] > 300 * 1024 * 1024
    assert "300 MB" in info.value.message


def test_inspect_archive_rejects_high_compression_ratio_under_the_size_limit(write):
    path = write("small-bomb.docx", make_zip_bomb_docx(20 * 1024 * 1024))
    with pytest.raises(UnsafeFile) as info:
        inspect_archive(path=path, mime_type=DOCX)
    assert info.value.details == {
        "reason": "compression_ratio",
        "member": "word/document.xml",
    }


def test_inspect_archive_honours_size_setting(write, settings):
    settings.MAX_DOCX_UNCOMPRESSED_BYTES = 1000
    path = write("doc.docx", make_docx(["A normal document."]))
    with pytest.raises(UnsafeFile) as info:
        inspect_archive(path=path, mime_type=DOCX)
    assert info.value.details["reason"] == "too_large"


def test_inspect_archive_rejects_too_many_members(write):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(10_001):
            zf.writestr(f"part{i}.xml", "")
    with pytest.raises(UnsafeFile) as info:
        inspect_archive(path=write("many.docx", out.getvalue()), mime_type=DOCX)
    assert info.value.details == {"reason": "too_many_members", "members": 10_001}


def test_inspect_archive_accepts_normal_docx_from_path_or_file(write):
    path = write("doc.docx", make_docx(["Hello."]))
    assert inspect_archive(path=path, mime_type=DOCX) is None
    with open(path, "rb") as fh:
        inspect_archive(path=fh, mime_type=DOCX)
        assert not fh.closed


def test_inspect_archive_leaves_unreadable_zips_and_other_types_alone(write):
    inspect_archive(path=write("bad.docx", corrupt_docx()), mime_type=DOCX)
    inspect_archive(path=write("bomb.pdf", make_zip_bomb_docx(2**21)), mime_type=PDF)


# --- inspect_pdf --------------------------------------------------------------------


def refusal(write, name: str, data: bytes) -> dict:
    with pytest.raises(UnsafeFile) as caught:
        inspect_pdf(path=write(name, data))
    return caught.value.details


def test_inspect_pdf_counts_pages_up_to_the_limit(write, settings):
    settings.MAX_PDF_PAGES = 50
    inspect_pdf(path=write("fifty.pdf", make_many_pages_pdf(50)))
    inspect_pdf(path=write("nested.pdf", make_nested_pdf(depth=10, pages=50)))

    assert refusal(write, "fifty-one.pdf", make_many_pages_pdf(51)) == {
        "reason": "too_many_pages",
        "max_pages": 50,
    }
    assert refusal(write, "deep.pdf", make_nested_pdf(depth=10, pages=51)) == {
        "reason": "too_many_pages",
        "max_pages": 50,
    }


def test_inspect_pdf_refuses_what_pypdf_will_not_parse(write, settings):
    settings.MAX_PDF_PAGES = 200_000
    # pypdf reads at most 100,000 entries of an array: extraction would fail.
    details = refusal(write, "wide.pdf", make_many_pages_pdf(100_001))

    assert details == {"reason": "parser_limit"}


def test_inspect_pdf_refuses_a_loop_and_a_shared_subtree(write):
    assert refusal(write, "loop.pdf", make_cyclic_pdf())["reason"] == (
        "cyclic_page_tree"
    )
    # 2**60 pages to a reader that follows every reference: refused at the
    # second visit of the first shared node.
    assert refusal(write, "laughs.pdf", make_shared_subtree_pdf(60))["reason"] == (
        "cyclic_page_tree"
    )


def test_inspect_pdf_walks_any_depth_without_recursion(write, settings):
    settings.MAX_PDF_PAGES = 3000
    # Deeper than Python's recursion limit; pypdf's own walk recurses.
    inspect_pdf(path=write("deep.pdf", make_nested_pdf(depth=2500)))


def test_inspect_pdf_bounds_interior_nodes(write, settings):
    settings.MAX_PDF_PAGES = 100
    # 201 /Pages nodes over one page: more nodes than any tree of 100 pages needs.
    assert refusal(write, "hollow.pdf", make_nested_pdf(depth=201)) == {
        "reason": "oversized_page_tree"
    }
    inspect_pdf(path=write("fine.pdf", make_nested_pdf(depth=150)))


def test_inspect_pdf_leaves_unreadable_and_encrypted_pdfs_to_extraction(write):
    inspect_pdf(path=write("bad.pdf", corrupt_pdf()))
    inspect_pdf(path=write("locked.pdf", make_encrypted_pdf(["Locked page."])))
    inspect_pdf(path=write("doc.pdf", make_pdf(["One page."])))


# --- extract_text -----------------------------------------------------------------


def test_extract_plain_text_normalises_newlines_and_bad_bytes(write):
    path = write("a.txt", b"\xef\xbb\xbfline one\r\nline two\rline \xff three\x00\n")
    extracted = extract_text(path=path, mime_type="text/plain")
    assert extracted == ExtractedText(
        "line one\nline two\nline \ufffd three\n", None, None
    )


def test_extract_utf16_text(write):
    path = write("a.md", "# Überschrift\r\n\r\nText".encode("utf-16"))
    extracted = extract_text(path=path, mime_type="text/markdown")
    assert extracted.text == "# Überschrift\n\nText"


def test_extract_pdf_text_and_page_starts(write):
    path = write("a.pdf", make_pdf(["First page text.", "Second page here.", "Third."]))
    extracted = extract_text(path=path, mime_type=PDF)
    assert extracted.text == "First page text.\n\nSecond page here.\n\nThird."
    assert extracted.page_starts == (0, 18, 37)
    assert extracted.page_count == 3
    assert extracted.text[37:].startswith("Third")


def test_pdf_chunks_carry_their_page(write):
    pages = [sentences(12, 12 * n) for n in range(3)]  # page n holds 12n..12n+11
    extracted = extract_text(path=write("a.pdf", make_pdf(pages)), mime_type=PDF)
    chunks = chunk_text(extracted, size=200, overlap=40)
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)
    assert {c.page for c in chunks} == {1, 2, 3}
    checked = 0
    for chunk in chunks:
        if match := re.match(r"Sentence number (\d+) ", chunk.text):
            assert chunk.page == int(match[1]) // 12 + 1
            checked += 1
    assert checked >= 6
    assert chunks[-1].page == 3
    assert chunks[-1].text.endswith("Sentence number 35 talks about topic 0.")


def test_extract_docx_paragraphs_and_table(write):
    data = make_docx(
        ["Introduction paragraph.", "", "Second paragraph."],
        table=[["Item", "Price"], ["Apple", "3 EUR"]],
    )
    extracted = extract_text(path=write("a.docx", data), mime_type=DOCX)
    assert extracted == ExtractedText(
        "Introduction paragraph.\n\nSecond paragraph.\n\nItem | Price\n\nApple | 3 EUR",
        None,
        None,
    )


def test_extract_accepts_str_paths(write):
    path = write("a.docx", make_docx(["Hello there."]))
    assert extract_text(path=str(path), mime_type=DOCX).text == "Hello there."


@pytest.mark.parametrize(
    ("name", "data", "mime_type", "message"),
    [
        (
            "c.pdf",
            corrupt_pdf(),
            PDF,
            "Could not read PDF: file is truncated or corrupt.",
        ),
        ("t.pdf", make_pdf(["Some text."])[:400], PDF, "Could not read PDF"),
        ("c.docx", corrupt_docx(), DOCX, "Could not read DOCX"),
        ("blank.pdf", make_pdf(["", ""]), PDF, "No text could be extracted"),
        ("empty.txt", b" \n\n\t ", "text/plain", "No text could be extracted"),
        ("e.pdf", make_encrypted_pdf(["Hidden."]), PDF, "PDF is encrypted"),
    ],
)
def test_extract_failures_have_readable_messages(write, name, data, mime_type, message):
    with pytest.raises(ExtractionError) as info:
        extract_text(path=write(name, data), mime_type=mime_type)
    assert str(info.value).startswith(message)
    assert "Traceback" not in str(info.value)


def test_extract_docx_missing_document_part(write):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
    with pytest.raises(ExtractionError, match="Could not read DOCX"):
        extract_text(path=write("a.docx", out.getvalue()), mime_type=DOCX)


def test_extract_pdf_encrypted_with_empty_user_password(write):
    path = write("e.pdf", make_encrypted_pdf(["Readable anyway."], user_password=""))
    assert extract_text(path=path, mime_type=PDF).text == "Readable anyway."


def test_extract_pdf_page_limit(write, settings):
    settings.MAX_PDF_PAGES = 2
    path = write("a.pdf", make_pdf(["one", "two", "three"]))
    with pytest.raises(ExtractionError, match="PDF has 3 pages; at most 2 are allowed"):
        extract_text(path=path, mime_type=PDF)


# --- chunk_text -------------------------------------------------------------------


def plain(text: str) -> ExtractedText:
    return ExtractedText(text, None, None)


def assert_chunk_invariants(text: str, chunks: list[ChunkSpan], size: int) -> None:
    assert chunks
    for chunk in chunks:
        assert chunk.text == text[chunk.start_char : chunk.end_char]
        assert chunk.text.strip() == chunk.text != ""
        assert len(chunk.text) <= size
    starts = [c.start_char for c in chunks]
    ends = [c.end_char for c in chunks]
    assert starts == sorted(set(starts))
    assert ends == sorted(set(ends))
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start_char : chunk.end_char] = b"\x01" * len(chunk.text)
    missing = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
    assert missing == []


def test_chunk_text_short_text_is_one_chunk():
    text = "\n\n  A short note.  \n"
    assert chunk_text(plain(text), size=100, overlap=20) == [
        ChunkSpan("A short note.", 4, 17, None)
    ]


def test_chunk_text_invariants_and_overlap():
    text = "\n\n".join(sentences(8, 8 * p) for p in range(10))
    chunks = chunk_text(plain(text), size=400, overlap=80)
    assert_chunk_invariants(text, chunks, 400)
    assert len(chunks) >= len(text) // 400
    for before, after in zip(chunks, chunks[1:], strict=False):
        shared = before.end_char - after.start_char
        assert 0 < shared <= 80
        # The overlap starts at a sentence or a word.
        assert text[after.start_char - 1].isspace()
        assert after.text.startswith("Sentence") or after.text[0].isalnum()


def test_chunk_text_prefers_paragraph_boundaries():
    paragraphs = [sentences(5, 5 * p) for p in range(6)]  # ~205 chars each
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(plain(text), size=500, overlap=0)
    assert_chunk_invariants(text, chunks, 500)
    assert [c.text for c in chunks] == [
        "\n\n".join(paragraphs[0:2]),
        "\n\n".join(paragraphs[2:4]),
        "\n\n".join(paragraphs[4:6]),
    ]


def test_chunk_text_overlap_starts_at_sentence():
    text = sentences(30)
    chunks = chunk_text(plain(text), size=300, overlap=100)
    assert_chunk_invariants(text, chunks, 300)
    assert all(c.text.startswith("Sentence number") for c in chunks)


def test_chunk_text_splits_run_on_sentence_at_words():
    text = " ".join(f"word{i}" for i in range(2000))
    chunks = chunk_text(plain(text), size=100, overlap=20)
    assert_chunk_invariants(text, chunks, 100)
    assert all(c.text.startswith("word") and c.text[-1].isdigit() for c in chunks)
    assert all(text[c.end_char : c.end_char + 1] in (" ", "") for c in chunks)


def test_chunk_text_uses_settings(settings):
    settings.CHUNK_SIZE = 120
    settings.CHUNK_OVERLAP = 30
    text = sentences(40)
    chunks = chunk_text(plain(text))
    assert_chunk_invariants(text, chunks, 120)
    assert max(len(c.text) for c in chunks) > 90


def test_chunk_text_defaults_from_settings():
    text = sentences(200)
    chunks = chunk_text(plain(text))
    assert_chunk_invariants(text, chunks, 1000)
    assert chunks[0].end_char - chunks[1].start_char <= 150


@pytest.mark.parametrize(
    "text",
    [
        "x" * 50_000,
        "\n" * 50_000 + "end",
        "!?." * 20_000,
        " " * 50_000 + "a",
        ". " * 25_000,
        "a\n" * 25_000,
        "word " * 10_000 + "y" * 20_000,
        "\u00a0\u2003 x " * 10_000,
    ],
    ids=[
        "one-word",
        "newlines",
        "punctuation",
        "spaces",
        "dots",
        "lines",
        "mixed",
        "nbsp",
    ],
)
def test_chunk_text_pathological_inputs_terminate(text):
    started = time.perf_counter()
    chunks = chunk_text(plain(text), size=1000, overlap=150)
    assert time.perf_counter() - started < 2
    assert_chunk_invariants(text, chunks, 1000)


def test_chunk_text_empty_and_whitespace_only():
    assert chunk_text(plain(""), size=100, overlap=10) == []
    assert chunk_text(plain("\n \n\t"), size=100, overlap=10) == []


def test_chunk_text_is_fast():
    docs = [plain("\n\n".join(sentences(10, 10 * p) for p in range(11))[:5000])] * 2000
    started = time.perf_counter()
    total = sum(len(chunk_text(doc, size=1000, overlap=150)) for doc in docs)
    elapsed = time.perf_counter() - started
    assert total >= 2000 * 5
    assert elapsed < 1.0, f"chunking 2,000 x 5 KB took {elapsed:.2f}s"


# --- split_sentences --------------------------------------------------------------


def test_split_sentences():
    text = (
        'First one. Second one! "Quoted third?" 4th starts with a digit. Then e.g. '
        "not split here.\nA new line\n\n  another line"
    )
    assert split_sentences(text) == [
        "First one.",
        "Second one!",
        '"Quoted third?"',
        "4th starts with a digit.",
        "Then e.g. not split here.",
        "A new line",
        "another line",
    ]


def test_split_sentences_is_linear_on_long_whitespace():
    started = time.perf_counter()
    assert split_sentences("a" + " " * 100_000 + "b") == ["a" + " " * 100_000 + "b"]
    assert time.perf_counter() - started < 1


def test_chunk_text_random_inputs_keep_invariants():
    rng = random.Random(7)
    tokens = ["word", "Big", ". ", "! ", "? ", " ", "  ", "\n", "\n\n", "\n \n", '." ']
    tokens += ["x" * 300, "\t", "é", "."]
    for _ in range(300):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 400)))
        size = rng.randint(2, 400)
        overlap = rng.randint(0, size)
        chunks = chunk_text(plain(text), size=size, overlap=overlap)
        if text.strip():
            assert_chunk_invariants(text, chunks, size)
        else:
            assert chunks == []


# --- Sections ---------------------------------------------------------------------


def test_headings_are_found_in_markdown_and_restructuredtext():
    from stores.extraction import headings

    text = (
        "# Guide\n\nIntro.\n\n## Install  ##\n\nSteps.\n\n"
        "Configure\n=========\n\nText.\n\n"
        "a | b\n--- | ---\n\n"  # a Markdown table rule is no heading
        "Not a title\n--\n"  # nor is a rule shorter than three characters
    )

    assert [title for _, title in headings(text)] == ["Guide", "Install", "Configure"]
