"""What the upload-time PDF check costs against a hostile page count.

At upload, before anything is stored, ``stores.filetypes.inspect_pdf`` counts a
PDF's pages and refuses more than MAX_PDF_PAGES. It walks the page tree itself and
stops past the limit; pypdf's ``len(reader.pages)`` flattens the whole tree first.
For files of empty pages (about 100 bytes a page, so a 50 MB upload holds some
500,000), in one /Kids array or in nodes of ``--per-node`` pages, this prints for
both ways the median time of a few runs and the peak memory Python allocated
(tracemalloc), in one process:

    .venv/bin/python bench/pdf_inspect.py
    .venv/bin/python bench/pdf_inspect.py --pages 2001 20000 --runs 5
    .venv/bin/python bench/pdf_inspect.py --pages 300000 --per-node 30000
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(work: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median seconds over `runs`, and the peak MB of one traced run."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, nargs="+")
    parser.add_argument(
        "--per-node", type=int, help="pages per /Pages node (default: all in one)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flamehaven.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.conf import settings
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    from flamehaven.errors import UnsafeFile
    from stores.filetypes import inspect_pdf
    from tests.factories import make_many_pages_pdf

    def walk(path: str) -> str:
        try:
            inspect_pdf(path=path)
        except UnsafeFile as refused:
            return refused.details["reason"]
        return "accepted"

    def flatten(path: str) -> str:
        try:
            return f"{len(PdfReader(path, strict=False).pages):,} pages"
        except LimitReachedError:  # pypdf's own cap: 100,000 array entries
            return "limit reached"

    print(f"MAX_PDF_PAGES={settings.MAX_PDF_PAGES}, medians of {args.runs}")
    print(
        f"{'pages':>8} {'per node':>8} {'file MB':>8} | "
        f"{'inspect_pdf s':>13} {'peak MB':>8} {'answer':>14} | "
        f"{'pypdf len(pages) s':>18} {'peak MB':>8} {'answer':>14} | ratio"
    )
    files = (
        [(pages, args.per_node) for pages in args.pages]
        if args.pages
        else [(2001, None), (100_000, None), (500_000, None), (500_000, 50_000)]
    )
    with tempfile.TemporaryDirectory() as folder:
        for pages, per_node in files:
            path = os.path.join(folder, f"{pages}-{per_node}.pdf")
            Path(path).write_bytes(make_many_pages_pdf(pages, per_node))
            size = os.path.getsize(path) / 2**20
            answer = walk(path)
            ours, ours_peak = measure(functools.partial(walk, path), args.runs)
            theirs, theirs_peak = measure(functools.partial(flatten, path), args.runs)
            print(
                f"{pages:>8,} {per_node or pages:>8,} {size:>8.1f} | "
                f"{ours:>13.3f} {ours_peak:>8.1f} {answer:>14} | "
                f"{theirs:>18.3f} {theirs_peak:>8.1f} {flatten(path):>14} | "
                f"{theirs / ours:.1f}x"
            )


if __name__ == "__main__":
    main()
