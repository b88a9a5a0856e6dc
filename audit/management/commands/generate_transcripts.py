"""python manage.py generate_transcripts --count N --seed S --output FILE

Writes synthetic SENTINEL transcripts in the exporter's JSONL format (gzip when FILE ends in
.gz), for demos and benchmarks; see ``audit.demo.generator``.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.demo.generator import write_jsonl


class Command(BaseCommand):
    help = (
        "Write N realistic, deterministic SENTINEL transcripts as exporter-format JSONL "
        "(gzip-compressed when the output name ends in .gz)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="number of records")
        parser.add_argument(
            "--seed", type=int, default=0, help="random seed; the same seed gives the same file"
        )
        parser.add_argument("--output", required=True, metavar="FILE", help="file to write")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        if count <= 0:
            raise CommandError(f"--count must be a positive number of records, got {count}")
        output = Path(options["output"])
        if not output.parent.is_dir():
            raise CommandError(f"--output: directory {output.parent} does not exist")
        written = write_jsonl(output, count=count, seed=options["seed"])
        self.stdout.write(f"Wrote {written} records to {output} (seed {options['seed']}).")
