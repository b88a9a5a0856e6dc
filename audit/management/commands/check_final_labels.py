"""python manage.py check_final_labels [--fix] [--batch ID]

The final labels on a transcript are a cache of its reviews. This recomputes them from the reviews
and reports every transcript whose stored values differ; ``--fix`` stores the recomputed values.
Exits non-zero when it finds mismatches and was not asked to fix them.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import Transcript
from audit.publish import selection
from audit.review.workflow import find_mismatches, recompute_final_labels


class Command(BaseCommand):
    help = "Recompute final labels from the reviews; report (or --fix) transcripts that differ."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="store the recomputed values")
        parser.add_argument("--batch", type=int, metavar="ID", help="only this import batch")
        selection.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = selection.from_command(options, batch="batch")
        queryset = chosen.apply(Transcript.objects.all())
        found = 0
        for mismatch in find_mismatches(queryset):
            found += 1
            self.stdout.write(mismatch.describe())
            if options["fix"]:
                recompute_final_labels(mismatch.transcript)
        if not found:
            self.stdout.write(self.style.SUCCESS("Final labels match the reviews."))
        elif options["fix"]:
            self.stdout.write(self.style.SUCCESS(f"Fixed {found} transcript(s)."))
        else:
            raise CommandError(f"{found} transcript(s) differ from their reviews; run with --fix")
