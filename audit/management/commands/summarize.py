"""python manage.py summarize [--as-imported | --current | --settled-before | --settled-after]
[--session-id S] [--batch ID] [--filter key=value ...] [--json]"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit import rollup
from audit.metrics.summaries import VIEWS, summarize
from audit.publish import selection

VIEW_HELP = {
    "as_imported": "the labels and flags as imported (the exporter's own figures)",
    "current": "each record as an export has it: settled labels if settled, else as imported",
    "settled_before": "only the settled records, as imported",
    "settled_after": "only the settled records, after review",
}


class Command(BaseCommand):
    help = (
        "Print the exporter-compatible summary (export_summary() keys and arithmetic) on each "
        "basis, or on the one asked for."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        basis = parser.add_mutually_exclusive_group()
        for name, text in VIEW_HELP.items():
            basis.add_argument(
                f"--{name.replace('_', '-')}",
                action="store_const",
                dest="view",
                const=name,
                help=text,
            )
        parser.add_argument("--session-id", metavar="S")
        parser.add_argument("--batch", type=int, metavar="ID")
        selection.add_arguments(parser)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = selection.from_command(options, batch="batch", session="session_id")
        # Counts from the rollup where it answers the selection (not for one session).
        scope = rollup.scope(chosen)
        views = [options["view"]] if options["view"] else list(VIEWS)
        summaries = {}
        for view in views:
            basis, settled = VIEWS[view]
            summaries[view] = summarize(
                scope.counts.settled() if settled else scope.counts,
                basis=basis,
                session_id=options["session_id"],
                records=scope.records.settled() if settled else scope.records,
            )
        if options["json"]:
            payload = summaries[views[0]] if len(views) == 1 else summaries
            self.stdout.write(json.dumps(payload, indent=1, sort_keys=True))
            return
        for view, summary in summaries.items():
            heading = f"{view.replace('_', ' ').capitalize()}: {VIEW_HELP[view]}"
            self.stdout.write(self.style.MIGRATE_HEADING(heading))
            for key, value in summary.items():
                if key == "alignment_distribution":
                    for category, count in value.items():
                        self.stdout.write(f"  {'category ' + category:<32} {count}")
                else:
                    self.stdout.write(f"  {key:<32} {value}")
