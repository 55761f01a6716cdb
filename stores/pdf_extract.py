"""PDF text extraction in a child process, bounded in time and memory.

pypdf has no time limit of its own, and signal alarms work only in the main
thread, so a hostile PDF (deeply nested content streams, huge images to
decode) could hold a worker thread for as long as it likes. The parent runs
``python -m stores.pdf_extract`` and kills it after ``timeout`` seconds; the
child caps its own address space first. The child imports only pypdf, not
Django: it starts in about a tenth of a second.

Protocol: the child prints one JSON object, ``{"pages": [text, ...]}`` or
``{"error": message}`` for a PDF it could not read.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class PdfError(Exception):
    """The PDF could not be read; str() is a message a user can act on."""


def extract_pages(
    path: str | os.PathLike[str], *, max_pages: int, timeout: float, memory_mb: int
) -> list[str]:
    """Each page's text, read by a child process; PdfError when it cannot be."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "stores.pdf_extract", os.fspath(path)]
            + [str(max_pages), str(memory_mb)],
            cwd=ROOT,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PdfError(
            f"Could not read PDF: it took longer than {timeout:g} s."
        ) from exc
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {}
    if "pages" in result:
        return result["pages"]
    if "error" in result:
        raise PdfError(result["error"])
    if b"MemoryError" in done.stderr:
        raise PdfError(f"Could not read PDF: it needs more than {memory_mb} MB.")
    raise PdfError("Could not read PDF: the reader stopped unexpectedly.")


def _read(path: str, max_pages: int) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    # A file object, not a path: pypdf then reads objects on demand instead of
    # loading the whole file.
    with open(path, "rb") as fh:
        try:
            reader = PdfReader(fh, strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                raise PdfError("PDF is encrypted with a password.")
            page_count = len(reader.pages)
        except PdfError:
            raise
        except FileNotDecryptedError as exc:
            raise PdfError("PDF is encrypted with a password.") from exc
        except MemoryError:
            raise
        except Exception as exc:  # strict=False pypdf fails in many ways
            raise PdfError("Could not read PDF: file is truncated or corrupt.") from exc
        if page_count == 0:
            raise PdfError("Could not read PDF: it has no pages.")
        if page_count > max_pages:
            raise PdfError(
                f"PDF has {page_count:,} pages; at most {max_pages:,} are allowed."
            )
        pages = []
        for number, page in enumerate(reader.pages, start=1):
            try:
                pages.append(page.extract_text() or "")
            except MemoryError:
                raise
            except Exception as exc:
                raise PdfError(
                    f"Could not read PDF: page {number} is damaged."
                ) from exc
        return pages


def main(argv: list[str]) -> int:
    path, max_pages, memory_mb = argv[0], int(argv[1]), int(argv[2])
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = {"pages": _read(path, max_pages)}
    except PdfError as exc:
        result = {"error": str(exc)}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
