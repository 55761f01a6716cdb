"""Who will finish a document's ingestion, and how to tell that they are gone.

A pending or processing document names its owner (``Document.owner``): the
:class:`~stores.models.Worker` id of the process that queued it in-process or is
running it, or ``""`` while it waits in the database task queue. Every process
that takes work registers once and keeps its row's heartbeat fresh from a daemon
thread. An owner is gone when its heartbeat is older than ``WORKER_LEASE_SEC``,
or at once when it ran on this host and its process no longer exists (a
``kill -9`` is seen by the next sweep, not a lease later).

Every change of a document's ingestion state is a conditional UPDATE on the
state and owner read before it, so two requests, two sweeps or a sweep and a
late worker can never both win: the loser's UPDATE matches no row.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import psutil
import structlog
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F
from django.utils import timezone

from stores.models import Document, Worker

log = structlog.get_logger(__name__)

ACTIVE = (Document.Status.PENDING, Document.Status.PROCESSING)

_lock = threading.Lock()
_registered: dict[int, str] = {}  # pid -> Worker id: a forked child registers anew
_kind = "web"
# Documents this process has queued in-process or is ingesting. One it owns but
# does not hold was dropped (an error escaped the pipeline, say, while the
# database was away): it is an orphan although its owner lives.
_held: set[int] = set()


def set_kind(kind: str) -> None:
    """Name what this process is ("web", "worker", "command") before it registers."""
    global _kind
    _kind = kind


def register() -> str:
    """This process's Worker id; the first call saves it and starts its heartbeat."""
    pid = os.getpid()
    with _lock:
        worker_id = _registered.get(pid)
        if worker_id is None:
            hostname = socket.gethostname()
            worker_id = f"{_kind}:{hostname[:32]}:{pid}:{secrets.token_hex(4)}"
            _save(worker_id, hostname, pid)
            _registered[pid] = worker_id
            _start_heartbeat(worker_id, hostname, pid)
            log.info("worker_registered", worker=worker_id)
    return worker_id


def current() -> str | None:
    """This process's Worker id, if it has registered."""
    return _registered.get(os.getpid())


def hold(document_id: int) -> None:
    with _lock:
        _held.add(document_id)


def release(document_id: int) -> None:
    with _lock:
        _held.discard(document_id)


def reset() -> None:
    """Forget this process's registration and holdings (tests roll rows back)."""
    global _kind
    with _lock:
        _registered.clear()
        _held.clear()
        _kind = "web"


def _save(worker_id: str, hostname: str, pid: int) -> None:
    now = timezone.now()
    Worker.objects.update_or_create(
        pk=worker_id,
        defaults={"heartbeat_at": now},
        create_defaults={
            "kind": _kind,
            "hostname": hostname,
            "pid": pid,
            "started_at": now,
            "heartbeat_at": now,
        },
    )


def _start_heartbeat(worker_id: str, hostname: str, pid: int) -> None:
    if settings.WORKER_HEARTBEAT_SEC > 0:  # 0: none (the test process)
        threading.Thread(
            target=_heartbeat,
            args=(worker_id, hostname, pid),
            name="flamehaven-heartbeat",
            daemon=True,
        ).start()


def _heartbeat(worker_id: str, hostname: str, pid: int) -> None:
    """Renew the lease until the process ends; survive database outages."""
    failing = False
    while True:
        time.sleep(settings.WORKER_HEARTBEAT_SEC)
        try:
            _save(worker_id, hostname, pid)
        except DatabaseError as exc:
            if not failing:
                log.warning("heartbeat_failed", worker=worker_id, error=str(exc))
            failing = True
            connection.close()  # a fresh connection next time
        else:
            if failing:
                log.info("heartbeat_resumed", worker=worker_id)
            failing = False


def live_workers() -> set[str]:
    """Ids of the workers whose lease holds and whose process still exists."""
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_LEASE_SEC)
    here = socket.gethostname()
    return {
        worker.id
        for worker in Worker.objects.filter(heartbeat_at__gte=cutoff)
        if worker.hostname != here or _process_exists(worker.pid, worker.started_at)
    }


def _process_exists(pid: int, started_at) -> bool:
    try:
        process = psutil.Process(pid)
        # A pid handed to a newer process after ours died is not ours.
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.create_time() <= started_at.timestamp() + 1
        )
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Orphan:
    """An active document whose owner is gone, as it was when found."""

    pk: int
    status: str
    owner: str
    attempts: int


def orphans(document_ids: list[int] | None = None) -> list[Orphan]:
    """Pending or processing documents that nobody alive will finish.

    The documents are read before the owners, so an owner that registered in
    between cannot own anything read here; the caller's conditional UPDATE
    then skips a document whose state changed since.
    """
    active = Document.objects.filter(status__in=ACTIVE)
    if document_ids is not None:
        active = active.filter(pk__in=document_ids)
    found = list(active.values_list("pk", "status", "owner", "attempts"))
    if not found:
        return []
    queued = queued_document_ids() if any(not row[2] for row in found) else set()
    with _lock:
        held = set(_held)
    gone = abandoned([(row[0], row[2]) for row in found], queued=queued, held=held)
    return [Orphan(*row) for row in found if row[0] in gone]


def abandoned(
    rows: list[tuple[int, str]], *, queued: set[int], held: set[int]
) -> set[int]:
    """Of these (document id, owner) rows, read before the owners, the ids whose
    work nobody alive will do: queued ("" owner) but in no waiting or running
    task, this process's but not held by it, or another process's that is gone.
    """
    alive = live_workers()
    me = current()

    def orphaned(pk: int, owner: str) -> bool:
        if not owner:
            return pk not in queued
        if owner == me:
            return pk not in held
        return owner not in alive

    return {pk for pk, owner in rows if orphaned(pk, owner)}


def _ingest_tasks(task=None):
    """Waiting and running tasks of the database queue (ingestion, or ``task``):
    id, status, arguments, and the worker running it (None while it waits)."""
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from stores.tasks import ingest_document

    rows = DBTaskResult.objects.filter(
        task_path=(task or ingest_document).module_path,
        status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING],
    ).values_list("pk", "status", "args_kwargs", "worker_ids")
    return [
        (pk, status, args_kwargs or {}, worker_ids[-1] if worker_ids else None)
        for pk, status, args_kwargs, worker_ids in rows
    ]


def queued_document_ids(task=None) -> set[int]:
    """Documents held by a waiting ingestion task (or ``task``, whose first
    argument is a document id or a list of them), or by one a live worker runs."""
    tasks = _ingest_tasks(task)
    alive = live_workers() if any(task[3] for task in tasks) else set()
    held = set()
    for _, _, args_kwargs, worker in tasks:
        if worker is not None and worker not in alive:
            continue
        args = args_kwargs.get("args") or []
        document_id = (
            args[0] if args else args_kwargs.get("kwargs", {}).get("document_id")
        )
        if isinstance(document_id, int):
            held.add(document_id)
        elif isinstance(document_id, list):
            held.update(i for i in document_id if isinstance(i, int))
    return held


def fail_lost_tasks(*, dropped_by: str | None = None) -> int:
    """Mark failed the running tasks whose worker is gone, or that the live
    worker ``dropped_by`` let go of (its loop restarted after a database error),
    so the task table tells the truth and their documents become orphans that
    the next maintenance round re-queues."""
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from stores.tasks import embed_documents

    tasks = [
        task
        for task in [*_ingest_tasks(), *_ingest_tasks(embed_documents)]
        if task[3] is not None
    ]
    if not tasks:
        return 0
    alive = live_workers() - {dropped_by}
    lost = [pk for pk, _, _, worker in tasks if worker not in alive]
    return DBTaskResult.objects.filter(
        pk__in=lost, status=TaskResultStatus.RUNNING
    ).update(
        status=TaskResultStatus.FAILED,
        finished_at=timezone.now(),
        exception_class_path="stores.ownership.WorkerLost",
        traceback="The worker running this task stopped.",
    )


def take(orphan: Orphan, *, owner: str) -> bool:
    """Make an orphan pending again under ``owner``; False if its state moved on."""
    return bool(
        Document.objects.filter(
            pk=orphan.pk, status=orphan.status, owner=orphan.owner
        ).update(status=Document.Status.PENDING, owner=owner, error="")
    )


def queue_again(document_id: int, *, owner: str) -> bool:
    """Re-index: a finished (ready or failed) document becomes pending again."""
    return bool(
        Document.objects.filter(
            pk=document_id,
            status__in=[Document.Status.READY, Document.Status.FAILED],
        ).update(status=Document.Status.PENDING, owner=owner, error="", attempts=0)
    )


def claim(document_id: int, *, owner: str) -> bool:
    """Start the ingestion of a pending document; False if another owner has it.

    Pending documents are claimed whatever their recorded owner, since the task
    that was queued for them is the one running; a processing document is
    never claimed twice.
    """
    return bool(
        Document.objects.filter(pk=document_id, status=Document.Status.PENDING).update(
            status=Document.Status.PROCESSING,
            owner=owner,
            attempts=F("attempts") + 1,
        )
    )


def forget_dead_workers() -> int:
    """Delete the rows of workers gone for a day that own nothing any more."""
    cutoff = timezone.now() - timedelta(days=1)
    owners = Document.objects.filter(status__in=ACTIVE).values("owner")
    vector_owners = Document.objects.exclude(vector_owner="").values("vector_owner")
    deleted, _ = (
        Worker.objects.filter(heartbeat_at__lt=cutoff)
        .exclude(pk__in=owners)
        .exclude(pk__in=vector_owners)
        .delete()
    )
    return deleted
