"""python manage.py require_reviews --k 2 [--batch ID] [--session S] [--filter key=value ...]
[--sample N --seed S] [--all]

Sets how many independent reviews (K) a selection of transcripts needs, e.g. a calibration sample
reviewed blind by two auditors. ``--sample`` draws N of the selection's queued items reproducibly
(same data and seed, same sample). Items that already have reviews get their status re-derived.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import ImportBatch, Transcript
from audit.publish import selection
from audit.review.workflow import sample_ids, set_required_reviews


class Command(BaseCommand):
    help = "Set the number of reviews (K) a selection of transcripts needs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--k", type=int, required=True, help="reviews needed (at least 1)")
        parser.add_argument("--batch", type=int, metavar="ID")
        parser.add_argument("--session", metavar="S")
        selection.add_arguments(parser)
        parser.add_argument("--sample", type=int, metavar="N", help="a random N queued items")
        parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
        parser.add_argument("--all", action="store_true", help="every transcript")
        parser.add_argument("--dry-run", action="store_true", help="say what would change")

    def handle(self, *args: Any, **options: Any) -> None:
        k = options["k"]
        if k < 1:
            raise CommandError("--k must be at least 1")
        chosen_by = ("batch", "session", "filter", "sample", "all")
        if not any(options[name] for name in chosen_by):
            raise CommandError(
                "choose a selection: --batch, --session, --filter, --sample or --all"
            )
        chosen = selection.from_command(options, batch="batch", session="session")
        queryset = chosen.apply(Transcript.objects.all())
        if options["sample"] is not None:
            if options["sample"] < 1:
                raise CommandError("--sample must be at least 1")
            ids = sample_ids(
                queryset.filter(in_queue=True), options["sample"], seed=options["seed"]
            )
            queryset = Transcript.objects.filter(pk__in=ids)
        selected = queryset.count()
        if options["dry_run"]:
            self.stdout.write(f"Would set K = {k} on {selected} transcript(s).")
            return
        changed = set_required_reviews(queryset, k)
        batches = chosen.filters.get("batch", ())
        if list(chosen.filters) == ["batch"] and len(batches) == 1 and not options["sample"]:
            # The whole batch was selected, so the batch's own K follows.
            ImportBatch.objects.filter(pk=int(batches[0])).update(required_reviews=k)
        self.stdout.write(
            self.style.SUCCESS(f"K = {k} on {selected} transcript(s); {changed} changed.")
        )
