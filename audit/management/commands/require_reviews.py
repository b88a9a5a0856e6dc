"""python manage.py require_reviews --k 2 [--batch ID] [--session S] [--sample N --seed S] [--all]

Sets how many independent reviews (K) a selection of transcripts needs, e.g. a calibration sample
reviewed blind by two auditors. ``--sample`` draws N of the selection's queued items reproducibly
(same data and seed, same sample). Items that already have reviews get their status re-derived.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.models import ImportBatch, Transcript
from audit.review.workflow import sample_ids, set_required_reviews


class Command(BaseCommand):
    help = "Set the number of reviews (K) a selection of transcripts needs."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--k", type=int, required=True, help="reviews needed (at least 1)")
        parser.add_argument("--batch", type=int, metavar="ID")
        parser.add_argument("--session", metavar="S")
        parser.add_argument("--sample", type=int, metavar="N", help="a random N queued items")
        parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
        parser.add_argument("--all", action="store_true", help="every transcript")
        parser.add_argument("--dry-run", action="store_true", help="say what would change")

    def handle(self, *args: Any, **options: Any) -> None:
        k = options["k"]
        if k < 1:
            raise CommandError("--k must be at least 1")
        if not (options["batch"] or options["session"] or options["sample"] or options["all"]):
            raise CommandError("choose a selection: --batch, --session, --sample or --all")
        queryset = Transcript.objects.all()
        batch = None
        if options["batch"] is not None:
            batch = ImportBatch.objects.filter(pk=options["batch"]).first()
            if batch is None:
                raise CommandError(f"there is no import batch #{options['batch']}")
            queryset = queryset.filter(batch=batch)
        if options["session"]:
            queryset = queryset.filter(session_id=options["session"])
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
        whole_batch = batch is not None and not options["session"] and not options["sample"]
        if whole_batch:
            ImportBatch.objects.filter(pk=batch.pk).update(required_reviews=k)
        self.stdout.write(
            self.style.SUCCESS(f"K = {k} on {selected} transcript(s); {changed} changed.")
        )
