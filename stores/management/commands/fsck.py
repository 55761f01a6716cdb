"""manage.py fsck [--fix] [--store NAME] [--json]: rows, chunks, index, files, copies.

Exit status: 0 when nothing is wrong (or everything found was repaired), 1 when
something found is left, 2 for a store that does not exist.
"""

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from flamehaven.errors import StoreNotFound
from stores import fsck, services


class Command(BaseCommand):
    help = (
        "Report every mismatch between documents, chunks, the full-text index, "
        "stored files, temporary upload files and Gemini copies; repair them "
        "with --fix. Safe while the service runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="repair what it can")
        parser.add_argument("--store", help="check only this store")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--min-age",
            type=int,
            default=int(fsck.DEFAULT_MIN_AGE.total_seconds()),
            metavar="SECONDS",
            help=(
                "leave alone files, folders and remote stores younger than this "
                "(default %(default)s): an upload or store creation may not have "
                "saved its row yet. 0 when the service is stopped."
            ),
        )

    def handle(self, fix: bool, store: str | None, min_age: int, **options):
        target = None
        if store is not None:
            try:
                target = services.store_get(name=store)
            except StoreNotFound as exc:
                raise CommandError(exc.message, returncode=2) from exc
        report = fsck.run(store=target, fix=fix, min_age=timedelta(seconds=min_age))
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(report), indent=2))
        else:
            self._print(report, fix)
        if report.left:
            raise CommandError(
                f"{len(report.left)} of {len(report.outcomes)} problem(s) left"
                + ("" if fix else "; run with --fix to repair what can be"),
                returncode=1,
            )

    def _print(self, report: fsck.Report, fix: bool) -> None:
        for outcome in report.outcomes:
            finding = outcome.finding
            if outcome.fixed:
                note = self.style.SUCCESS(f"fixed: {finding.remedy}")
            elif outcome.error:
                note = self.style.ERROR(f"not fixed: {outcome.error}")
            elif not finding.remedy:
                note = "no automatic fix"
            else:
                note = f"--fix: {finding.remedy}" if not fix else "not fixed"
            self.stdout.write(f"{finding.kind}: {finding.message} ({note})")
        for name, reason in report.skipped.items():
            self.stdout.write(f"{name}: not checked: {reason}")
        found, left = len(report.outcomes), len(report.left)
        if not found:
            self.stdout.write(self.style.SUCCESS("No problems found."))
        else:
            self.stdout.write(
                f"{found} problem(s) found, {found - left} fixed, {left} left."
            )


def _as_json(report: fsck.Report) -> dict:
    return {
        "problems": [
            {
                "kind": outcome.finding.kind,
                "subject": outcome.finding.subject,
                "message": outcome.finding.message,
                "fix": outcome.finding.remedy or None,
                "fixed": outcome.fixed,
                "error": outcome.error or None,
            }
            for outcome in report.outcomes
        ],
        "skipped": report.skipped,
        "found": len(report.outcomes),
        "fixed": len(report.outcomes) - len(report.left),
        "left": len(report.left),
    }
