"""manage.py maintenance: one round of the periodic work, for cron."""

from django.core.management.base import BaseCommand

from stores import maintenance, ownership


class Command(BaseCommand):
    help = (
        "Queue again the ingestion of documents whose process died, and tidy up "
        "after crashed processes. Workers also do this by themselves."
    )

    def handle(self, **options):
        ownership.set_kind("command")
        done = maintenance.run()
        self.stdout.write(
            f"Requeued {done['requeued']} document(s) and the vectors of "
            f"{done['vectors_requeued']}; marked "
            f"{done['tasks_failed']} task(s) of dead workers failed; "
            f"forgot {done['workers_forgotten']} dead worker(s); removed "
            f"{done['temp_files_removed']} abandoned upload file(s)."
        )
