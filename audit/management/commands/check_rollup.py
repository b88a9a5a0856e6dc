"""python manage.py check_rollup [--fix]

The rollup (``audit.rollup``) is a cache of counts that triggers keep in step with the
transcripts; a write that finds it out of step is refused rather than let it drift (the error
is "audit_rollup is out of step with audit_transcript"). This recounts it from the transcripts
and reports every combination that differs; ``--fix`` rebuilds it (and its triggers) in one
transaction. Exits non-zero when it finds differences and was not asked to fix them.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import rollup


class Command(BaseCommand):
    help = "Recount the rollup from the transcripts; report (or --fix) combinations that differ."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fix", action="store_true", help="rebuild the rollup")

    def handle(self, *args: Any, **options: Any) -> None:
        stored, counted = rollup.stored(), rollup.recount()
        differ = sorted(
            (key for key in stored.keys() | counted.keys() if stored.get(key) != counted.get(key)),
            key=repr,
        )
        missing = rollup.missing_triggers()
        for key in differ:
            combination = ", ".join(
                f"{name}={value!r}" for name, value in zip(rollup.DIMENSIONS, key, strict=True)
            )
            self.stdout.write(
                f"{combination}: stored {stored.get(key, 0)}, counted {counted.get(key, 0)}"
            )
        if missing:
            self.stdout.write(f"missing triggers: {', '.join(missing)}")
        if not differ and not missing:
            self.stdout.write(self.style.SUCCESS("The rollup matches the transcripts."))
            return
        if options["fix"]:
            rollup.rebuild()
            self.stdout.write(self.style.SUCCESS("Rebuilt the rollup from the transcripts."))
            return
        raise CommandError(
            f"{len(differ)} combination(s) differ, {len(missing)} trigger(s) missing; "
            "run with --fix"
        )
