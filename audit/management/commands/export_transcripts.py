"""python manage.py export_transcripts --output FILE [--reviewed-only] [--summary FILE] [--gzip]
[--filter key=value ...]"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import rollup
from audit.models import Transcript
from audit.publish import export as exporters
from audit.publish import selection


class Command(BaseCommand):
    help = (
        "Export transcripts as JSONL: the original records with final labels for reviewed ones "
        "and a review block (see audit/publish/export.py). Streams, so memory stays flat."
    )

    def add_arguments(self, parser: CommandParser) -> None:
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
        selection.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = selection.from_command(options)
        # The summary describes the whole selection, even when only its settled records are
        # written.
        selected = chosen.apply(Transcript.objects.all())
        queryset = selected.settled() if options["reviewed_only"] else selected
        output = Path(options["output"])
        if not output.parent.is_dir():
            raise CommandError(f"{output.parent} is not a directory")
        written = exporters.write_jsonl(queryset, output, compress=options["gzip"])
        self.stdout.write(
            f"{output}: {written.records} records, {written.size} bytes of JSONL, "
            f"sha256 {written.sha256}"
        )
        if options["summary"]:
            # Its counts from the rollup where it answers the selection (as a release's).
            counts = rollup.scope(chosen).rollup_rows
            file_counts = None
            if counts is not None:
                file_counts = {
                    output.name: counts.settled() if options["reviewed_only"] else counts
                }
            summary = exporters.build_summary(
                selected, files={output.name: queryset}, counts=counts, file_counts=file_counts
            )
            Path(options["summary"]).write_text(exporters.dump_summary(summary), encoding="utf-8")
            self.stdout.write(f"{options['summary']}: summary of {selected.count()} records")
