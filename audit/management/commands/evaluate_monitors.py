"""python manage.py evaluate_monitors [--batch ID] [--session-id S] [--filter key=value ...]
[--resamples N] [--seed S] [--json]

How well each SENTINEL signal separates misbehavior from benign actions, against the final
labels of the selection's settled items: naive and weighted for the whole selection
(``audit.metrics.monitors``)."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import rollup
from audit.metrics import monitors
from audit.publish import selection


class Command(BaseCommand):
    help = (
        "Evaluate each monitor signal (AUROC with bootstrap interval, TPR at fixed FPR, "
        "calibration) against the settled labels, naive and weighted for the whole selection."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--session-id", metavar="S")
        parser.add_argument("--batch", type=int, metavar="ID")
        selection.add_arguments(parser)
        parser.add_argument(
            "--resamples",
            type=int,
            default=monitors.RESAMPLES,
            help=f"bootstrap resamples (default {monitors.RESAMPLES}; 0: no intervals)",
        )
        parser.add_argument(
            "--seed", type=int, default=monitors.SEED, help="bootstrap seed (default %(default)s)"
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["resamples"] < 0:
            raise CommandError(f"--resamples must be 0 or more, got {options['resamples']}")
        chosen = selection.from_command(options, batch="batch", session="session_id")
        scope = rollup.scope(chosen)
        report = monitors.evaluate(
            scope.records,
            population=monitors.count_population(scope.counts),
            resamples=options["resamples"],
            seed=options["seed"],
        )
        if options["json"]:
            payload = {"selection": chosen.as_dict(), **report}
            self.stdout.write(json.dumps(payload, indent=1, sort_keys=True, allow_nan=False))
            return
        self.stdout.write(f"Selection filters: {json.dumps(chosen.as_dict(), sort_keys=True)}")
        for line in monitors.report_lines(report):
            self.stdout.write(line)
