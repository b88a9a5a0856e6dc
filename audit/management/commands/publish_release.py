"""python manage.py publish_release --version X.Y.Z [--filter key=value ...] [--include-unreviewed]
--output DIR"""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import rollup
from audit.publish import selection
from audit.publish.release import DEFAULT_LICENSE, ReleaseError, publish_release


class Command(BaseCommand):
    help = (
        "Publish an immutable, versioned release into DIR/<version>: data/*.jsonl, summary.json, "
        "manifest.json, README.md, croissant.json, SHA256SUMS."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # --version names the release here; it replaces Django's "print the version" flag.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--version", required=True, dest="release_version", metavar="X.Y.Z")
        parser.add_argument(
            "--output",
            metavar="DIR",
            default=None,
            help="parent directory; the release goes in DIR/<version> (default: RELEASES_ROOT)",
        )
        selection.add_arguments(parser)
        parser.add_argument(
            "--include-unreviewed",
            action="store_true",
            help="also write data/unreviewed.jsonl (labels as imported)",
        )
        parser.add_argument("--license", default=DEFAULT_LICENSE, help="license id for the card")

    def handle(self, *args: Any, **options: Any) -> None:
        output = Path(options["output"]) if options["output"] else Path(settings.RELEASES_ROOT)
        try:
            chosen = selection.from_command(options)
            # The summary's counts from the rollup where it answers the selection.
            found = rollup.scope(chosen)
            release = publish_release(
                found.records,
                version=options["release_version"],
                filters=chosen.as_dict(),
                include_unreviewed=options["include_unreviewed"],
                output_dir=output,
                license=options["license"],
                rollup_counts=found.rollup_rows,
            )
        except ReleaseError as exc:
            raise CommandError(str(exc)) from None
        counts = ", ".join(f"{key} {value}" for key, value in release.counts.items())
        self.stdout.write(self.style.SUCCESS(f"release {release.version}: {release.path}"))
        self.stdout.write(f"  {counts}")
