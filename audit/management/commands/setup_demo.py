"""python manage.py setup_demo [--count 1500] [--seed 7]

Makes a fresh database demo-ready, and is safe to run again: generates the demo transcripts
under VAR_DIR/demo (once per count and seed), imports them (a re-import adds nothing: every
line is a duplicate), and creates the demo users, or resets their passwords and roles.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from audit.demo.generator import write_jsonl
from audit.ingest.importer import import_file
from audit.models import Transcript
from audit.permissions import ADJUDICATOR, AUDITOR

DEMO_PASSWORD = "demo"
# username -> (is_staff and is_superuser, groups, what the role is for the printed summary)
DEMO_USERS: dict[str, tuple[bool, tuple[str, ...], str]] = {
    "demo": (True, (AUDITOR, ADJUDICATOR), "staff, auditor, adjudicator"),
    "auditor2": (False, (AUDITOR,), "auditor"),
    "adjudicator": (False, (AUDITOR, ADJUDICATOR), "auditor, adjudicator"),
}


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

        self.ensure_users()
        self.stdout.write(self.style.SUCCESS("\nDemo ready."))
        lines = [
            f"  Open:   {options['url']}",
            "  Log in with (password for all: demo):",
            *(f"    {name:<12} {label}" for name, (_, _, label) in DEMO_USERS.items()),
        ]
        self.stdout.write("\n".join(lines))

    @transaction.atomic
    def ensure_users(self) -> None:
        user_model = get_user_model()
        # The groups come from a data migration; get_or_create keeps this working regardless.
        groups = {
            name: Group.objects.get_or_create(name=name)[0] for name in (AUDITOR, ADJUDICATOR)
        }
        for username, (is_admin, group_names, _) in DEMO_USERS.items():
            user, _ = user_model.objects.get_or_create(username=username)
            # Reset, not just create: a rerun restores a demo user someone changed.
            user.set_password(DEMO_PASSWORD)
            user.is_active = True
            user.is_staff = is_admin
            user.is_superuser = is_admin
            user.save()
            user.groups.set([groups[name] for name in group_names])
