"""python manage.py summarize [--as-imported | --reviewed] [--session-id S] [--batch ID]
[--filter key=value ...] [--json]"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.metrics.summaries import AS_IMPORTED, REVIEWED, summarize
from audit.models import Transcript
from audit.publish import selection


class Command(BaseCommand):
    help = "Print the exporter-compatible summary (export_summary() keys and arithmetic)."

    def add_arguments(self, parser: CommandParser) -> None:
        basis = parser.add_mutually_exclusive_group()
        basis.add_argument(
            "--as-imported",
            action="store_const",
            dest="basis",
            const=AS_IMPORTED,
            help="from the labels and flags as imported",
        )
        basis.add_argument(
            "--reviewed",
            action="store_const",
            dest="basis",
            const=REVIEWED,
            help="from the final labels (after review)",
        )
        parser.add_argument("--session-id", metavar="S")
        parser.add_argument("--batch", type=int, metavar="ID")
        selection.add_arguments(parser)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = selection.from_command(options, batch="batch", session="session_id")
        queryset = chosen.apply(Transcript.objects.all())
        bases = [options["basis"]] if options["basis"] else [AS_IMPORTED, REVIEWED]
        summaries = {
            basis: summarize(queryset, basis=basis, session_id=options["session_id"])
            for basis in bases
        }
        if options["json"]:
            payload = summaries[bases[0]] if len(bases) == 1 else summaries
            self.stdout.write(json.dumps(payload, indent=1, sort_keys=True))
            return
        for basis, summary in summaries.items():
            self.stdout.write(self.style.MIGRATE_HEADING(basis.replace("_", " ").capitalize()))
            for key, value in summary.items():
                if key == "alignment_distribution":
                    for category, count in value.items():
                        self.stdout.write(f"  {'category ' + category:<32} {count}")
                else:
                    self.stdout.write(f"  {key:<32} {value}")
