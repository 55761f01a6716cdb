"""manage.py requeue_stuck: queue again documents a crashed worker left behind."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from stores.services import documents_requeue_stuck


class Command(BaseCommand):
    help = "Queue ingestion again for documents stuck in pending or processing."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=int,
            default=30,
            metavar="MINUTES",
            help="only documents untouched for this long (default 30)",
        )

    def handle(self, older_than: int, **options):
        requeued = documents_requeue_stuck(older_than=timedelta(minutes=older_than))
        self.stdout.write(f"Requeued {len(requeued)} document(s).")
