"""python manage.py import_transcripts PATH [PATH ...] [--skip-invalid] [--rejects FILE]
[--dry-run] [--json] [--reviews K] [--model M] [--run-source S]"""

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from audit.ingest.importer import (
    ImportResult,
    RunMetadataError,
    clean_run_metadata,
    import_file,
)
from audit.models import RUN_METADATA_MAX_LENGTH


class Command(BaseCommand):
    help = (
        "Import SENTINEL transcript JSONL files (plain or gzip). By default a file with any bad "
        "line imports nothing; --skip-invalid imports the good lines and keeps the bad ones."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid lines; keep each rejected line verbatim on the batch",
        )
        parser.add_argument(
            "--rejects", metavar="FILE", help="also write rejected lines verbatim to FILE"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check and count everything, write nothing"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--reviews",
            type=int,
            default=None,
            metavar="K",
            help="independent reviews each imported item needs "
            "(default: AUDIT_DEFAULT_REQUIRED_REVIEWS)",
        )
        parser.add_argument(
            "--model",
            default="",
            metavar="M",
            help="the model the run used, kept on each batch and exported as malt.model "
            f"(at most {RUN_METADATA_MAX_LENGTH} characters; default: unknown)",
        )
        parser.add_argument(
            "--run-source",
            default="",
            metavar="S",
            help="where the run comes from (e.g. a policy or an experiment), kept on each batch "
            f"and exported as malt.run_source (at most {RUN_METADATA_MAX_LENGTH} characters; "
            "default: unknown)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rejects"] and not options["skip_invalid"]:
            raise CommandError(
                "--rejects needs --skip-invalid (without it nothing is rejected "
                "line by line: a bad line refuses the whole file)"
            )
        if options["reviews"] is not None and options["reviews"] < 1:
            raise CommandError("--reviews must be at least 1")
        for option, name in (("model", "--model"), ("run_source", "--run-source")):
            try:
                options[option] = clean_run_metadata(options[option], name=name)
            except RunMetadataError as exc:
                raise CommandError(str(exc)) from None
        results: list[ImportResult] = []
        with ExitStack() as stack:
            rejects = None
            if options["rejects"]:
                rejects = stack.enter_context(Path(options["rejects"]).open("wb"))
            for path in options["paths"]:
                results.append(self.import_one(Path(path), rejects_file=rejects, options=options))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "batches": [
                            {
                                "file": r.file,
                                "sha256": r.sha256,
                                "lines": r.lines,
                                "imported": r.imported,
                                "duplicates": r.duplicates,
                                "rejected": r.rejected,
                                "errors": [{"line": e.line, "error": e.error} for e in r.errors],
                                "batch_id": r.batch_id,
                                "failed": r.failed,
                                "dry_run": r.dry_run,
                            }
                            for r in results
                        ]
                    },
                    indent=2,
                )
            )
        else:
            for result in results:
                self.print_result(result)
        if any(result.failed for result in results):
            raise CommandError("some files were not imported; see the errors above", returncode=1)

    def import_one(
        self, path: Path, *, rejects_file: IO[bytes] | None, options: dict[str, Any]
    ) -> ImportResult:
        show_progress = not options["json"] and sys.stderr.isatty() and path.is_file()
        bar = tqdm(
            total=path.stat().st_size if show_progress else None,
            unit="B",
            unit_scale=True,
            desc=path.name,
            disable=not show_progress,
            leave=True,
        )
        with bar:
            return import_file(
                path,
                skip_invalid=options["skip_invalid"],
                dry_run=options["dry_run"],
                rejects=rejects_file,
                required_reviews=options["reviews"],
                model=options["model"],
                run_source=options["run_source"],
                progress=(lambda done: bar.update(done - bar.n)) if show_progress else None,
            )

    def print_result(self, result: ImportResult) -> None:
        for line in result.report_lines():
            self.stderr.write(line)
        if result.failed:
            verdict = self.style.ERROR("not imported")
        elif result.dry_run:
            verdict = self.style.WARNING("dry run, nothing written")
        elif result.batch_id:
            verdict = self.style.SUCCESS(f"batch #{result.batch_id}")
        else:
            verdict = "nothing new"
        self.stdout.write(
            f"{result.file}: {result.lines} lines, {result.imported} imported, "
            f"{result.duplicates} duplicates, {result.rejected} rejected ({verdict})"
        )
