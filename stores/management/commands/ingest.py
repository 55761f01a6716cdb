"""manage.py ingest FOLDER --store NAME: add every supported file under a folder."""

import os
from collections.abc import Iterator
from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from flamehaven.errors import ApiError, StoreNotFound
from stores import ownership, services
from stores.filetypes import SUPPORTED_TYPES
from stores.models import Document, Store


class Command(BaseCommand):
    help = (
        "Add every supported file under FOLDER (recursively) to a store. Hidden "
        "files and folders and symbolic links are left out; a file already in the "
        "store is reported as existing, so running it again is safe."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--store", default="default", help="store name")
        parser.add_argument(
            "--create", action="store_true", help="create the store if it is missing"
        )

    def handle(self, folder: Path, store: str, create: bool, **options):
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        ownership.set_kind("command")  # owns what it ingests in-process
        target = self._store(store, create)

        paths, skipped = _walk(folder)
        counts = {"added": 0, "existing": 0, "failed": 0, "skipped": len(skipped)}
        # tqdm writes to stderr, and only to a terminal (disable=None), so piped
        # or captured output holds just the report below.
        progress = tqdm(
            paths, unit="file", disable=True if not options["verbosity"] else None
        )
        for path in progress:
            progress.set_postfix_str(path.name[:30])
            relative = path.relative_to(folder).as_posix()
            if path.suffix.lower() not in SUPPORTED_TYPES:
                counts["skipped"] += 1
                skipped.append(
                    f"{relative}: unsupported type '{path.suffix or '(none)'}'"
                )
                continue
            try:
                with path.open("rb") as handle:
                    document, created = services.document_add(
                        store=target, file=File(handle), name=path.name
                    )
            except ApiError as exc:
                counts["skipped"] += 1
                skipped.append(f"{relative}: {exc.message}")
                continue
            # With the immediate task backend ingestion has run by now; with a
            # worker the document is still pending and counts as added.
            document.refresh_from_db()
            if not created:
                counts["existing"] += 1
            elif document.status == Document.Status.FAILED:
                counts["failed"] += 1
                skipped.append(f"{relative}: failed: {document.error}")
            else:
                counts["added"] += 1
        for line in sorted(skipped):
            self.stdout.write(f"  {line}")
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Store '{store}': {summary}."))

    def _store(self, name: str, create: bool) -> Store:
        try:
            return services.store_get(name=name)
        except StoreNotFound:
            if not create:
                raise CommandError(
                    f"Store '{name}' not found (use --create to make it)"
                ) from None
        try:
            store = services.store_create(name=name)
        except ApiError as exc:
            raise CommandError(
                f"Cannot create store '{name}': {_describe(exc)}"
            ) from exc
        self.stdout.write(f"Created store '{name}'.")
        return store


def _describe(exc: ApiError) -> str:
    """The error's message, with field messages when validation failed."""
    problems = [
        message
        for messages in exc.details.values()
        if isinstance(messages, list)
        for message in messages
    ]
    return " ".join(problems) or exc.message


def _walk(folder: Path) -> tuple[list[Path], list[str]]:
    """Regular files under ``folder`` in a stable order, and what was left out.

    Hidden entries (``.env``, ``.git``) are never meant for a search index, and a
    symbolic link may point anywhere on the machine, so neither is followed; each
    is reported once rather than every file beneath it.
    """
    files: list[Path] = []
    left_out: list[str] = []
    for path, reason in _entries(folder):
        if reason:
            left_out.append(f"{path.relative_to(folder).as_posix()}: {reason}")
        else:
            files.append(path)
    return files, left_out


def _entries(folder: Path) -> Iterator[tuple[Path, str]]:
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            yield path, "hidden, ignored"
        elif entry.is_symlink():
            yield path, "symbolic link, ignored"
        elif entry.is_dir(follow_symlinks=False):
            yield from _entries(path)
        elif entry.is_file(follow_symlinks=False):
            yield path, ""
        else:
            yield path, "not a regular file, ignored"
