"""python manage.py verify_release DIR"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.publish.verify import verify_release


class Command(BaseCommand):
    help = (
        "Check a release: every SHA256SUMS line, the manifest's sha256 and size per file, no "
        "unlisted files, and record counts. Exits non-zero naming each mismatch."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", metavar="DIR")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = verify_release(options["path"])
        if problems:
            # Once, in the error Django prints (and tests and scripts catch): one per line.
            raise CommandError(
                f"{options['path']}: {len(problems)} problem(s):\n"
                + "\n".join(f"  {problem}" for problem in problems)
            )
        self.stdout.write(self.style.SUCCESS(f"{options['path']}: OK"))
