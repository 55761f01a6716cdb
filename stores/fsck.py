"""Find, and on request repair, every disagreement between rows and what they describe.

``manage.py fsck`` runs :data:`CHECKS` in order. A check is a function of a
:class:`Scope` returning :class:`Finding`\\ s; a finding carries the callable that
repairs it, or none when only a person can decide. With ``fix=True`` each
check's findings are repaired before the next check runs, so a check sees what
the ones before it left: the stray files deleted, then the folders they leave
empty; the chunks of a document whose file is gone deleted, then the index.

The service may be running meanwhile, so nothing that can be in use is touched:
documents being ingested (pending or processing) are left to ingestion and its
own recovery, and files, folders and remote stores younger than
``Scope.min_age`` may belong to an upload or a store creation that has not
committed its row yet. A repair checks its condition again just before it acts,
where a request could have changed it since the check.

To add a check, write ``def check_x(scope) -> list[Finding]`` and add it to
:data:`CHECKS`.
"""

from __future__ import annotations

import errno
import importlib
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from flamehaven.errors import ApiError
from stores import embedding, ownership, services, uploads
from stores.models import Chunk, Document, Embedding, Store

log = structlog.get_logger(__name__)

MISSING_FILE_ERROR = "The stored file is missing; upload it again."
DOCUMENTS_FOLDER = "documents"
DEFAULT_MIN_AGE = timedelta(hours=1)
# Statuses of a document whose ingestion is under way: ingestion (and the
# recovery of stuck documents) owns its chunks and remote copy until it ends.
IN_FLIGHT = (Document.Status.PENDING, Document.Status.PROCESSING)


@dataclass(frozen=True)
class Finding:
    kind: str  # what is wrong, as a stable name: "missing_file", "stray_file", ...
    subject: str  # what it is about: "document 12", a storage name, a remote name
    message: str
    remedy: str = ""  # what the fix does, for people; "" when there is no fix
    fix: Callable[[], None] | None = field(default=None, repr=False, compare=False)


class Skipped(Exception):
    """Raised by a check that has nothing it can check here; the reason is shown."""


@dataclass(frozen=True)
class Scope:
    store: Store | None = None  # None: every store, and what belongs to none
    min_age: timedelta = DEFAULT_MIN_AGE

    def stores(self) -> QuerySet[Store]:
        stores = Store.objects.all()
        return stores.filter(pk=self.store.pk) if self.store else stores

    def documents(self) -> QuerySet[Document]:
        documents = Document.objects.order_by("pk")
        return documents.filter(store=self.store) if self.store else documents

    def is_old(self, modified) -> bool:
        return timezone.now() - modified >= self.min_age


@dataclass
class Outcome:
    finding: Finding
    fixed: bool = False
    error: str = ""  # why the fix failed


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # check name -> reason

    @property
    def left(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.fixed]


def run(
    *,
    store: Store | None = None,
    fix: bool = False,
    min_age: timedelta = DEFAULT_MIN_AGE,
) -> Report:
    """Run every check over one store (or all); repair what can be with ``fix``."""
    scope = Scope(store=store, min_age=min_age)
    report = Report()
    for name, check in CHECKS:
        try:
            findings = check(scope)
        except Skipped as skipped:
            report.skipped[name] = str(skipped)
            continue
        for finding in findings:
            outcome = Outcome(finding)
            report.outcomes.append(outcome)
            if fix and finding.fix is not None:
                _repair(outcome)
    return report


def _repair(outcome: Outcome) -> None:
    finding = outcome.finding
    try:
        finding.fix()
    except ApiError as exc:
        outcome.error = exc.message
    except (OSError, DatabaseError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    else:
        outcome.fixed = True
        log.info("fsck_fixed", kind=finding.kind, subject=finding.subject)
        return
    log.warning(
        "fsck_fix_failed",
        kind=finding.kind,
        subject=finding.subject,
        error=outcome.error,
    )


# --- Ingestions whose owner is gone ----------------------------------------------


def check_orphaned_ingestions(scope: Scope) -> list[Finding]:
    """Pending or processing documents that nobody alive will finish."""
    active = scope.documents().filter(status__in=IN_FLIGHT)
    return [
        Finding(
            "orphaned_ingestion",
            f"document {orphan.pk}",
            f"document {orphan.pk} is {orphan.status}, but "
            + (
                f"its worker {orphan.owner} is gone"
                if orphan.owner
                else "no queued task holds it"
            ),
            "queue its ingestion again (or fail it after INGEST_MAX_ATTEMPTS)",
            partial(services.document_recover, orphan),
        )
        for orphan in ownership.orphans(list(active.values_list("pk", flat=True)))
    ]


# --- Temporary upload files ------------------------------------------------------


def check_abandoned_uploads(scope: Scope) -> list[Finding]:
    """Temporary upload files whose process was killed while a body streamed in."""
    if scope.store is not None:
        raise Skipped("they belong to no store; run without --store")
    return [
        Finding(
            "abandoned_upload",
            str(path),
            f"{path.name}: a temporary upload file whose process is gone",
            "delete it",
            partial(path.unlink, missing_ok=True),
        )
        for path in uploads.abandoned_temp_files()
    ]


# --- Stored files ------------------------------------------------------------------


def check_missing_files(scope: Scope) -> list[Finding]:
    """Documents whose stored file is gone: mark them failed, drop their chunks.

    When every checked document's file is gone, the storage itself is the likely
    fault (a volume not mounted): that is reported alone, and nothing is changed.
    """
    documents = (
        scope.documents()
        .exclude(status__in=IN_FLIGHT)
        .exclude(status=Document.Status.FAILED, error=MISSING_FILE_ERROR)
        .select_related("store")
    )
    checked = 0
    missing = []
    for document in documents.iterator():
        checked += 1
        if not _file_exists(document.file.name):
            missing.append(document)
    if len(missing) > 1 and len(missing) == checked:
        return [
            Finding(
                "storage_unavailable",
                str(getattr(default_storage, "location", "storage")),
                f"none of the {checked} documents' stored files exist: is the "
                "storage (MEDIA_ROOT) mounted? Nothing is changed.",
            )
        ]
    return [
        Finding(
            "missing_file",
            f"document {document.pk}",
            f"document {document.pk} {document.filename!r} in store "
            f"'{document.store.name}': its stored file "
            f"{document.file.name or '(none)'} is missing",
            "mark it failed and remove its chunks",
            partial(_fail_missing_file, document.pk),
        )
        for document in missing
    ]


def _file_exists(name: str) -> bool:
    return bool(name) and default_storage.exists(name)


def _fail_missing_file(document_id: int) -> None:
    with transaction.atomic():
        document = (
            Document.objects.select_for_update()
            .exclude(status__in=IN_FLIGHT)
            .filter(pk=document_id)
            .first()
        )
        if document is None or _file_exists(document.file.name):
            return
        Chunk.objects.filter(document_id=document_id).delete()
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.FAILED,
            error=MISSING_FILE_ERROR,
            chunk_count=0,
            char_count=0,
            updated_at=timezone.now(),
        )
        services.store_bump_revision(store_id=document.store_id)


def check_stray_files(scope: Scope) -> list[Finding]:
    """Files under MEDIA_ROOT/documents/ that no document refers to, and empty
    store folders (folders only on a local disk: other storages have none)."""
    root = (
        f"{DOCUMENTS_FOLDER}/{scope.store.uid.hex}" if scope.store else DOCUMENTS_FOLDER
    )
    referenced = set(Document.objects.values_list("file", flat=True))
    findings = []
    for name in _files_under(root):
        if name in referenced or not scope.is_old(_modified(name)):
            continue
        findings.append(
            Finding(
                "stray_file",
                name,
                f"{name}: no document refers to this file",
                "delete it",
                partial(_delete_stray_file, name),
            )
        )
    if isinstance(default_storage, FileSystemStorage):
        for folder in _empty_folders(root, scope):
            findings.append(
                Finding(
                    "empty_folder",
                    folder,
                    f"{folder}/: an empty store folder",
                    "remove it",
                    partial(_remove_empty_folder, folder),
                )
            )
    return findings


def _files_under(folder: str) -> Iterator[str]:
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in sorted(files):
        yield f"{folder}/{name}"
    for name in sorted(folders):
        yield from _files_under(f"{folder}/{name}")


def _modified(name: str) -> datetime:
    try:
        return default_storage.get_modified_time(name)
    except FileNotFoundError:
        return timezone.now()  # deleted meanwhile: young, so left alone
    except NotImplementedError:
        return timezone.now() - timedelta(days=3650)  # no dates: treat it as old


def _delete_stray_file(name: str) -> None:
    if Document.objects.filter(file=name).exists():
        return  # an upload committed its row meanwhile
    default_storage.delete(name)
    folder = name.rpartition("/")[0]
    if (
        isinstance(default_storage, FileSystemStorage)
        and folder != DOCUMENTS_FOLDER
        and not _is_store_folder(folder)
    ):
        # No upload can be writing into a deleted store's folder.
        _remove_empty_folder(folder)


def _is_store_folder(folder: str) -> bool:
    """Whether the folder is that of a store that exists (documents/<uid hex>)."""
    parent, _, name = folder.partition("/")
    if parent != DOCUMENTS_FOLDER or "/" in name:
        return False
    try:
        uid = uuid.UUID(hex=name)
    except ValueError:
        return False
    return Store.objects.filter(uid=uid).exists()


def _empty_folders(root: str, scope: Scope) -> list[str]:
    """Folders under ``root`` holding nothing but empty folders, deepest first.

    A live store's folder is left alone while young: an upload creates the folder
    just before it moves its file in.
    """
    base = default_storage.path("")
    empty: set[str] = set()
    found = []
    for path, dirs, files in os.walk(default_storage.path(root), topdown=False):
        if files or any(os.path.join(path, name) not in empty for name in dirs):
            continue
        folder = os.path.relpath(path, base).replace(os.sep, "/")
        if folder == DOCUMENTS_FOLDER:
            continue
        if _is_store_folder(folder):
            modified = datetime.fromtimestamp(os.stat(path).st_mtime, tz=UTC)
            if not scope.is_old(modified):
                continue
        empty.add(path)
        found.append(folder)
    return found


def _remove_empty_folder(folder: str) -> None:
    try:
        os.rmdir(default_storage.path(folder))
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # Not empty any more: a file arrived meanwhile, and the folder is in use.


# --- Chunks --------------------------------------------------------------------------


def check_chunks(scope: Scope) -> list[Finding]:
    """Documents whose chunk_count is not their number of chunks, and chunks filed
    under another store than their document's.

    A document being ingested is left alone: its count is set when ingestion
    ends. Re-running ingestion is too heavy for fsck, so a ready document gets its
    real count (re-index it to get its passages back), and a failed one, which no
    search may return, loses its chunks.
    """
    findings = []
    miscounted = (
        scope.documents()
        .exclude(status__in=IN_FLIGHT)
        .annotate(real=Count("chunks"))
        .exclude(chunk_count=F("real"))
        .select_related("store")
    )
    for document in miscounted:
        failed = document.status == Document.Status.FAILED
        findings.append(
            Finding(
                "chunk_count",
                f"document {document.pk}",
                f"document {document.pk} {document.filename!r} in store "
                f"'{document.store.name}' ({document.status}) records "
                f"{document.chunk_count} chunks and has {document.real}",
                "delete its chunks" if failed else "record the real count",
                partial(
                    _delete_failed_chunks if failed else _recount_chunks, document.pk
                ),
            )
        )
    misfiled = Chunk.objects.exclude(store_id=F("document__store_id"))
    if scope.store is not None:
        misfiled = misfiled.filter(document__store=scope.store)
    for row in (
        misfiled.values("document_id", "store_id", "document__store_id")
        .annotate(n=Count("id"))
        .order_by("document_id", "store_id")
    ):
        findings.append(
            Finding(
                "chunk_store",
                f"document {row['document_id']}",
                f"{row['n']} chunks of document {row['document_id']} are filed "
                f"under store id {row['store_id']}, not its store "
                f"(id {row['document__store_id']})",
                "file them under the document's store",
                partial(_refile_chunks, row["document_id"]),
            )
        )
    return findings


def _recount_chunks(document_id: int) -> None:
    real = (
        Chunk.objects.filter(document_id=OuterRef("pk"))
        .order_by()
        .values("document_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    Document.objects.filter(pk=document_id).exclude(status__in=IN_FLIGHT).update(
        chunk_count=Coalesce(Subquery(real), 0)
    )


def _delete_failed_chunks(document_id: int) -> None:
    with transaction.atomic():
        document = (
            Document.objects.select_for_update()
            .filter(pk=document_id, status=Document.Status.FAILED)
            .first()
        )
        if document is None:
            return
        Chunk.objects.filter(document_id=document_id).delete()
        Document.objects.filter(pk=document_id).update(chunk_count=0)
        services.store_bump_revision(store_id=document.store_id)


def _refile_chunks(document_id: int) -> None:
    with transaction.atomic():
        document = Document.objects.filter(pk=document_id).first()
        if document is None:
            return
        chunks = Chunk.objects.filter(document_id=document_id).exclude(
            store_id=document.store_id
        )
        wrong = set(chunks.values_list("store_id", flat=True))
        chunks.update(store_id=document.store_id)
        for store_id in wrong | {document.store_id}:
            services.store_bump_revision(store_id=store_id)


# --- The full-text index -------------------------------------------------------------

# On SQLite, migration 0002's FTS5 table (rowid = chunk id) and its triggers. The
# table stores only the index; its _docsize shadow table has one row per indexed
# chunk, which is what is compared with the chunks here (a plain SELECT on an
# external-content table reads the chunks themselves, not the index).
FTS_TABLE = "stores_chunk_fts"
FTS_TRIGGERS = (
    "stores_chunk_fts_insert",
    "stores_chunk_fts_delete",
    "stores_chunk_fts_update",
)


def check_fulltext(scope: Scope) -> list[Finding]:
    """The SQLite FTS5 index against the chunks: its triggers, a row per chunk, no
    row without a chunk, and FTS5's own integrity check against the chunk text.

    PostgreSQL has nothing to check: its index is a stored generated column of
    the chunk row, computed by the database in the same statement, so it cannot
    drift from the chunk.
    """
    if connection.vendor != "sqlite":
        raise Skipped(
            f"{connection.vendor} keeps the index in a generated column of each "
            "chunk: nothing can drift"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
            ["stores_chunk"],
        )
        present = {name for (name,) in cursor.fetchall()}
    missing_triggers = [name for name in FTS_TRIGGERS if name not in present]
    if missing_triggers:
        # Without them nothing else is worth comparing: the rebuild redoes it all.
        return [
            Finding(
                "fulltext_triggers",
                FTS_TABLE,
                f"the triggers that keep the index in step are missing "
                f"({', '.join(missing_triggers)}): a migration rebuilt stores_chunk",
                "create them again and rebuild the index",
                _restore_fulltext_triggers,
            )
        ]
    findings = _fulltext_missing_rows(scope)
    if scope.store is None:
        findings += _fulltext_orphan_rows()
        if not findings and not _fulltext_consistent():
            findings.append(
                Finding(
                    "fulltext_stale",
                    FTS_TABLE,
                    "the index does not match the chunks' text (FTS5 integrity-check)",
                    "rebuild the index",
                    _rebuild_fulltext,
                )
            )
    return findings


def _fulltext_missing_rows(scope: Scope) -> list[Finding]:
    sql = (
        f"SELECT c.store_id, c.id FROM stores_chunk AS c WHERE c.id NOT IN "
        f"(SELECT id FROM {FTS_TABLE}_docsize)"
    )
    params: list = []
    if scope.store is not None:
        sql += " AND c.store_id = %s"
        params.append(scope.store.pk)
    with connection.cursor() as cursor:
        cursor.execute(sql + " ORDER BY c.id", params)
        by_store: dict[int, list[int]] = defaultdict(list)
        for store_id, chunk_id in cursor.fetchall():
            by_store[store_id].append(chunk_id)
    names = dict(Store.objects.filter(pk__in=by_store).values_list("pk", "name"))
    return [
        Finding(
            "fulltext_missing_rows",
            f"store {names.get(store_id, store_id)}",
            f"store '{names.get(store_id, store_id)}': {len(ids)} chunks are not "
            f"in the full-text index (ids {_abbreviate(ids)})",
            "index them",
            partial(_index_chunks, store_id, ids),
        )
        for store_id, ids in sorted(by_store.items())
    ]


def _fulltext_orphan_rows() -> list[Finding]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {FTS_TABLE}_docsize "
            "WHERE id NOT IN (SELECT id FROM stores_chunk) ORDER BY id"
        )
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    # An index row can only be removed with the text it was made from, which
    # went with its chunk: the index is rebuilt from the chunks instead.
    return [
        Finding(
            "fulltext_orphan_rows",
            FTS_TABLE,
            f"{len(ids)} full-text index rows belong to no chunk "
            f"(rowids {_abbreviate(ids)})",
            "rebuild the index",
            _rebuild_fulltext,
        )
    ]


def _fulltext_consistent() -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rank) "
                "VALUES ('integrity-check', 1)"
            )
    except DatabaseError:  # "database disk image is malformed": out of step
        return False
    return True


def _index_chunks(store_id: int, chunk_ids: list[int]) -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            for start in range(0, len(chunk_ids), 500):
                batch = chunk_ids[start : start + 500]
                marks = ", ".join(["%s"] * len(batch))
                cursor.execute(
                    f"INSERT INTO {FTS_TABLE} (rowid, text, store_id) "
                    f"SELECT id, text, store_id FROM stores_chunk WHERE id IN "
                    f"({marks}) AND id NOT IN (SELECT id FROM {FTS_TABLE}_docsize)",
                    batch,
                )
        services.store_bump_revision(store_id=store_id)


def _rebuild_fulltext() -> None:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('rebuild')")
        services.stores_bump_revisions()  # rankings use the whole index's stats


def _restore_fulltext_triggers() -> None:
    migration = importlib.import_module("stores.migrations.0002_fulltext")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'stores_chunk'"
            )
            present = {name for (name,) in cursor.fetchall()}
            for statement in migration.SQLITE_FORWARD:
                if "CREATE TRIGGER" not in statement:
                    continue
                name = statement.split("CREATE TRIGGER", 1)[1].split()[0]
                if name not in present:
                    cursor.execute(statement)
        _rebuild_fulltext()


def _abbreviate(ids: list[int], shown: int = 10) -> str:
    text = ", ".join(map(str, ids[:shown]))
    return text + (f", … {len(ids) - shown} more" if len(ids) > shown else "")


# --- Remote copies (Gemini) ----------------------------------------------------------


def _gemini():
    if not settings.GEMINI_API_KEY:
        raise Skipped("GEMINI_API_KEY is not set")
    from stores.backends import gemini

    return gemini


def check_remote_documents(scope: Scope) -> list[Finding]:
    """Each Gemini store's remote documents against its rows.

    A remote document with no row, or not the one its row names, or the copy of
    a failed document (which no search may cite), is deleted. A ready document
    whose remote copy is gone is re-indexed (through the service,
    which queues ingestion like the API's re-index): only that makes it
    searchable in Gemini again, and clearing its remote name alone would leave a
    "ready" document that Gemini never answers from. Documents being ingested
    are left alone: their remote copy is on its way.
    """
    gemini = _gemini()
    stores = scope.stores().filter(backend=Store.Backend.GEMINI)
    findings = []
    for store in stores:
        if not store.remote_name:
            findings.append(
                Finding(
                    "remote_store_missing",
                    f"store {store.name}",
                    f"Gemini store '{store.name}' has no remote store",
                )
            )
            continue
        try:
            remote = gemini.list_remote_documents(store)
        except ApiError as exc:
            kind = "remote_unreachable"
            if exc.details.get("upstream_status") == 404:
                kind = "remote_store_missing"
            findings.append(
                Finding(
                    kind,
                    store.remote_name,
                    f"store '{store.name}': cannot list {store.remote_name}: "
                    f"{exc.message}",
                )
            )
            continue
        findings += _compare_remote_documents(store, remote, gemini)
    return findings


def _compare_remote_documents(store: Store, remote: list, gemini) -> list[Finding]:
    rows = {
        str(pk): (remote_name, status)
        for pk, remote_name, status in Document.objects.filter(store=store).values_list(
            "pk", "remote_name", "status"
        )
    }
    findings = []
    for copy in remote:
        row = rows.get(copy.document_id or "")
        if row is not None and row[1] == Document.Status.FAILED and row[0] == copy.name:
            findings.append(
                Finding(
                    "remote_copy_of_failed",
                    copy.name,
                    f"store '{store.name}': document {copy.document_id} failed, but "
                    f"its remote copy {copy.name} is still searchable",
                    "delete the remote copy",
                    partial(_drop_failed_copy, int(copy.document_id), copy.name),
                )
            )
            continue
        if row is not None and (row[1] in IN_FLIGHT or row[0] == copy.name):
            continue
        if row is None:
            why = (
                f"document {copy.document_id} does not exist"
                if copy.document_id
                else "it carries no document id"
            )
        else:
            why = f"document {copy.document_id}'s copy is {row[0] or '(none)'}"
        findings.append(
            Finding(
                "remote_orphan_document",
                copy.name,
                f"store '{store.name}': remote document {copy.name} "
                f"({copy.display_name!r}) is left over: {why}",
                "delete the remote document",
                partial(gemini.delete_remote_document, copy.name),
            )
        )
    present = {copy.name for copy in remote}
    for pk, (remote_name, status) in rows.items():
        if status != Document.Status.READY or remote_name in present:
            continue
        findings.append(
            Finding(
                "remote_copy_missing",
                f"document {pk}",
                f"store '{store.name}': document {pk} is ready but its remote "
                f"copy {remote_name or '(none)'} does not exist",
                "re-index it",
                partial(_reindex, int(pk), remote_name),
            )
        )
    return findings


def _drop_failed_copy(document_id: int, remote_name: str) -> None:
    from stores.backends import gemini

    gemini.delete_remote_document(remote_name)
    Document.objects.filter(
        pk=document_id, status=Document.Status.FAILED, remote_name=remote_name
    ).update(remote_name="")


def _reindex(document_id: int, remote_name: str) -> None:
    document = Document.objects.filter(
        pk=document_id, status=Document.Status.READY, remote_name=remote_name
    ).first()
    if document is not None:
        services.document_reindex(document=document)


def check_remote_stores(scope: Scope) -> list[Finding]:
    """Remote stores named like ours (flamehaven-<name>) that no store row owns.

    Two installations sharing one API key see each other's stores as orphans:
    give each its own key.
    """
    gemini = _gemini()
    owned = set(
        Store.objects.exclude(remote_name="").values_list("remote_name", flat=True)
    )
    wanted = f"{gemini.STORE_DISPLAY_PREFIX}{scope.store.name}" if scope.store else None
    try:
        remote = gemini.list_remote_stores()
    except ApiError as exc:
        return [
            Finding(
                "remote_unreachable", "fileSearchStores", f"cannot list: {exc.message}"
            )
        ]
    findings = []
    for copy in remote:
        if not copy.display_name.startswith(gemini.STORE_DISPLAY_PREFIX):
            continue  # not ours
        if copy.name in owned or (wanted and copy.display_name != wanted):
            continue
        if copy.create_time is not None and not scope.is_old(copy.create_time):
            continue  # a store being created: its row is saved after it
        findings.append(
            Finding(
                "remote_orphan_store",
                copy.name,
                f"remote store {copy.name} ({copy.display_name!r}) has no store row",
                "delete the remote store",
                partial(gemini.delete_remote_store, copy.name),
            )
        )
    return findings


# --- Vectors ------------------------------------------------------------------------


def check_vectors(scope: Scope) -> list[Finding]:
    """Ready documents of local stores whose vectors nobody alive will compute,
    vectors of another model than the configured one, and vectors that describe
    no current passage (of a document no longer ready, or of chunks it no longer
    has).

    Vectors are left alone with EMBEDDINGS=off: turned on again, they are used.
    """
    model = embedding.model_name()
    if model is None:
        raise Skipped("EMBEDDINGS=off")
    findings = []
    for pk, owner in embedding.orphans():
        if scope.store is not None and not scope.documents().filter(pk=pk).exists():
            continue
        findings.append(
            Finding(
                "vectors_missing",
                f"document {pk}",
                f"document {pk} has no vectors and "
                + (f"its owner {owner} is gone" if owner else "no task will make them"),
                "queue its vectors",
                partial(embedding.requeue, pk, owner=owner),
            )
        )
    rows = Embedding.objects.select_related("document__store").order_by("pk")
    if scope.store is not None:
        rows = rows.filter(document__store=scope.store)
    current: dict[int, set[int]] = defaultdict(set)
    for document_id, chunk_id in Chunk.objects.filter(
        document__in=rows.values("pk")
    ).values_list("document_id", "pk"):
        current[document_id].add(chunk_id)
    for row in rows.defer("vectors"):
        document = row.document
        subject = f"document {document.pk}"
        usable = (
            document.status == Document.Status.READY
            and document.store.backend == Store.Backend.LOCAL
            and row.store_id == document.store_id
        )
        described = set(embedding.load_chunk_ids(row).tolist())
        if not usable or described != current[document.pk]:
            findings.append(
                Finding(
                    "vectors_orphaned",
                    subject,
                    f"the vectors of document {document.pk} {document.filename!r} "
                    + (
                        "describe other passages than it has"
                        if usable
                        else f"remain although it is {document.status}"
                    ),
                    "delete them" + (" and queue new ones" if usable else ""),
                    partial(_drop_vectors, document.pk),
                )
            )
        elif row.model != model:
            findings.append(
                Finding(
                    "vectors_stale",
                    subject,
                    f"document {document.pk} {document.filename!r} has vectors of "
                    f"{row.model!r}, not of the configured {model!r}",
                    "queue new ones (or run manage.py embed)",
                    partial(embedding.requeue, document.pk),
                )
            )
    return findings


def _drop_vectors(document_id: int) -> None:
    with transaction.atomic():
        document = Document.objects.select_for_update().filter(pk=document_id).first()
        if document is None:
            return
        Embedding.objects.filter(document_id=document_id).delete()
        services.store_bump_revision(store_id=document.store_id)
    embedding.requeue(document_id)


# In the order they run: each sees what the repairs before it left.
CHECKS: list[tuple[str, Callable[[Scope], list[Finding]]]] = [
    ("ingestions", check_orphaned_ingestions),
    ("uploads", check_abandoned_uploads),
    ("files", check_missing_files),
    ("stray files", check_stray_files),
    ("chunks", check_chunks),
    ("full-text index", check_fulltext),
    ("vectors", check_vectors),
    ("remote documents", check_remote_documents),
    ("remote stores", check_remote_stores),
]
