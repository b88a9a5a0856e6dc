"""python manage.py export_transcripts --output FILE [--reviewed-only] [--summary FILE] [--gzip]
[--filter key=value ...]"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.models import Transcript
from audit.publish import export as exporters
from audit.publish.release import FILTER_KEYS, ReleaseError, apply_filters, parse_filters


class Command(BaseCommand):
    help = (
        "Export transcripts as JSONL: the original records with final labels for reviewed ones "
        "and a review block (see audit/exporters.py). Streams, so memory stays flat."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--output", required=True, metavar="FILE", help="JSONL file to write")
        parser.add_argument(
            "--reviewed-only",
            action="store_true",
            help="only confirmed, relabeled and adjudicated records",
        )
        parser.add_argument("--summary", metavar="FILE", help="also write summary.json here")
        parser.add_argument(
            "--gzip", action="store_true", help="gzip the output (reproducible: no timestamp)"
        )
        parser.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"restrict the selection; keys: {', '.join(FILTER_KEYS)} (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            filters = parse_filters(options["filter"])
        except ReleaseError as exc:
            raise CommandError(str(exc)) from None
        selection = apply_filters(Transcript.objects.all(), filters)
        queryset = exporters.select(selection, reviewed_only=options["reviewed_only"])
        output = Path(options["output"])
        if not output.parent.is_dir():
            raise CommandError(f"{output.parent} is not a directory")
        written = exporters.write_jsonl(queryset, output, compress=options["gzip"])
        self.stdout.write(
            f"{output}: {written.records} records, {written.size} bytes of JSONL, "
            f"sha256 {written.sha256}"
        )
        if options["summary"]:
            summary = exporters.build_summary(selection)
            Path(options["summary"]).write_text(exporters.dump_summary(summary), encoding="utf-8")
            self.stdout.write(f"{options['summary']}: summary of {selection.count()} records")
