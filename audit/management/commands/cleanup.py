"""python manage.py cleanup [--dry-run] [--releases DIR] [--register-orphans]"""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit.publish.release import ReleaseError, reconcile_releases
from audit.tasks import clean_up_jobs, worker_hint


class Command(BaseCommand):
    help = (
        "Tidy up after crashes: mark web imports whose worker died failed and remove uploads "
        "and progress files no job needs; name queued imports no worker has started; remove "
        "the rows killed imports left unfinished and what interrupted publishes left in the "
        "releases directory. Safe to run at any time (a cron job, after a restart)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would be done")
        parser.add_argument(
            "--releases",
            metavar="DIR",
            default=None,
            help="the releases directory to reconcile (default: RELEASES_ROOT)",
        )
        parser.add_argument(
            "--register-orphans",
            action="store_true",
            help="register each release folder that has no Release row and verifies",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        would = "would be " if dry_run else ""
        jobs = clean_up_jobs(dry_run=dry_run)
        for job_id in jobs.failed:
            self.stdout.write(
                f"import job {job_id}: its worker died; {would}marked failed, its files removed"
            )
        for path in jobs.removed:
            self.stdout.write(f"{path}: no job needs it; {would}removed")
        for job_id, waited in jobs.waiting:
            self.stdout.write(f"import job {job_id}: queued, but {worker_hint(waited)}")
        if jobs.discarded is None:
            self.stdout.write(
                "an import is running: what killed imports left in the database is removed "
                "after it (or by the next import)"
            )
        for batch_id in jobs.discarded or ():
            self.stdout.write(
                f"import batch {batch_id}: left unfinished by a killed import (never visible); "
                f"{would}removed with its rows"
            )
        releases = Path(options["releases"] or settings.RELEASES_ROOT)
        try:
            found = reconcile_releases(
                releases, dry_run=dry_run, register_orphans=options["register_orphans"]
            )
        except ReleaseError as exc:
            raise CommandError(str(exc)) from None
        for name in found.staging:
            self.stdout.write(
                f"{releases / name}: staging of an interrupted publish; {would}removed"
            )
        for version in found.uncommitted:
            self.stdout.write(
                f"release {version}: its publish was interrupted before it committed; "
                f"{would}removed"
            )
        for version in found.committed:
            self.stdout.write(f"release {version}: published; {would}marked complete")
        for version in found.registered:
            self.stdout.write(f"release {version}: registered (it verifies)")
        for version, problems in found.not_registered:
            self.stderr.write(
                f"release {version}: not registered:\n"
                + "\n".join(f"  {problem}" for problem in problems)
            )
        if not options["register_orphans"] or dry_run:
            for version in found.orphans:
                self.stdout.write(
                    f"{releases / version}: a release folder with no Release row; "
                    "--register-orphans registers it if it verifies"
                )
        if not (jobs.failed or jobs.removed or jobs.waiting or jobs.discarded != ()) and not (
            found.staging or found.uncommitted or found.committed or found.orphans
        ):
            self.stdout.write("nothing to clean up")
