"""manage.py db_worker: django-tasks-db's worker, as a process that owns its work.

Over the stock worker it adds what a worker needs in production:
- its worker id is its stores.ownership id, with a heartbeat, so a worker that
  dies (even by ``kill -9``) is seen as gone and its documents are ingested again;
- the periodic maintenance runs in it (see stores.maintenance);
- it outlives a database restart: a lost connection is logged once, and the
  loop waits and carries on, instead of the process exiting for good.
"""

import time

import structlog
from django.db import DatabaseError, connection, connections
from django_tasks_db.management.commands import db_worker

from stores import maintenance, ownership

log = structlog.get_logger(__name__)

RETRY_MAX_SEC = 10.0


def _until_database_answers(action, *, on_recovery=None):
    """Run ``action`` until no database error stops it; back off meanwhile.

    Each outage is logged once when it starts and once when the database
    answers again.
    """
    pause, down_since = 0.5, None
    while True:
        try:
            if down_since is not None:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                log.info(
                    "worker_database_available",
                    down_sec=round(time.monotonic() - down_since, 1),
                )
                if on_recovery is not None:
                    on_recovery()
                pause, down_since = 0.5, None
            return action()
        except DatabaseError as exc:
            if down_since is None:
                down_since = time.monotonic()
                log.warning("worker_database_unavailable", error=str(exc))
            connections.close_all()
            time.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_SEC)


class Worker(db_worker.Worker):
    def run(self) -> None:
        # The stock loop returns when it is done (--batch, --max-tasks, a signal)
        # and raises on a database error; only the error starts it again. A task
        # it had claimed then stays RUNNING under this live worker: mark it
        # failed, so its document is an orphan for the maintenance round.
        _until_database_answers(super().run, on_recovery=self._drop_claimed_tasks)

    def _drop_claimed_tasks(self) -> None:
        dropped = ownership.fail_lost_tasks(dropped_by=self.worker_id)
        if dropped:
            log.warning("worker_tasks_dropped", count=dropped)


class Command(db_worker.Command):
    help = (
        "Run a database task worker that survives database restarts and "
        "re-queues the work of dead workers."
    )

    def handle(self, *args, **options):
        ownership.set_kind("worker")
        options["worker_id"] = _until_database_answers(ownership.register)
        if not options.get("batch"):
            maintenance.start_in_background()
        db_worker.Worker = Worker  # the stock handle() builds the loop by this name
        return super().handle(*args, **options)
