"""python manage.py setup_demo [--count 1500] [--seed 7]

Makes a fresh database demo-ready, and is safe to run again: generates the demo transcripts
under VAR_DIR/demo (once per count and seed), imports them (a re-import adds nothing: every
line is a duplicate), and creates the demo users, or resets their passwords and roles.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from audit.demo.generator import write_jsonl
from audit.demo.users import DEMO_PASSWORD, DEMO_USERS, ensure_users
from audit.ingest.importer import import_file
from audit.models import Transcript


class Command(BaseCommand):
    help = "Generate and import demo transcripts and create the demo users (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=1500, help="demo records (default 1500)")
        parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000/", help="where the app will be served"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        seed: int = options["seed"]
        if count <= 0:
            raise CommandError(f"--count must be a positive number of records, got {count}")
        if Transcript._meta.db_table not in connection.introspection.table_names():
            raise CommandError(
                "The database has no tables yet: run python manage.py migrate first."
            )

        demo_dir = settings.VAR_DIR / "demo"
        demo_dir.mkdir(parents=True, exist_ok=True)
        path = demo_dir / f"demo_{seed}_{count}.jsonl"
        if path.exists():
            self.stdout.write(f"Using {path}")
        else:
            write_jsonl(path, count=count, seed=seed)
            self.stdout.write(f"Generated {count} transcripts in {path}")

        result = import_file(path, file_name=path.name)
        if result.failed or result.rejected:
            errors = "\n".join(f"  line {e.line}: {e.error}" for e in result.errors[:10])
            raise CommandError(f"importing {path} failed:\n{errors}")
        self.stdout.write(
            f"Imported {result.imported} new, {result.duplicates} already present "
            f"({result.lines} lines)."
        )

        ensure_users()
        self.stdout.write(self.style.SUCCESS("\nDemo ready."))
        lines = [
            f"  Open:   {options['url']}",
            f"  Log in with (password for all: {DEMO_PASSWORD}):",
            *(f"    {user.username:<12} {user.label}" for user in DEMO_USERS),
        ]
        self.stdout.write("\n".join(lines))
