"""python manage.py assign --name NAME --to alice,bob --k K [--batch ID] [--session S]
[--filter key=value ...] [--sample N --seed S] [--all] [--json]
python manage.py assign --list [--json]

Assigns a selection's queued items to named auditors with K (``audit.team.assignments``):
each item to min(K, auditors) of them, round-robin; "Next" serves them first. ``--list``
shows every assignment with its progress (tasks done, settled without their auditor, open).
"""

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import Assignment
from audit.publish import selection
from audit.team import assignments


class Command(BaseCommand):
    help = "Assign a selection to named auditors with K, or list assignments with progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--list", action="store_true", help="list assignments with progress")
        parser.add_argument("--name", help="what the assignment is called")
        parser.add_argument("--to", metavar="USERS", help="auditors' usernames, comma-separated")
        parser.add_argument("--k", type=int, help="reviews each item needs (1 to 10)")
        parser.add_argument("--batch", type=int, metavar="ID")
        parser.add_argument("--session", metavar="S")
        selection.add_arguments(parser)
        parser.add_argument("--sample", type=int, metavar="N", help="a random N queued items")
        parser.add_argument("--seed", type=int, help="seed of the sample (default 0)")
        parser.add_argument("--all", action="store_true", help="every transcript")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self._list(as_json=options["json"])
            return
        missing = [f"--{name}" for name in ("name", "to", "k") if options[name] in (None, "")]
        if missing:
            raise CommandError(f"missing {', '.join(missing)} (or use --list)")
        chosen_by = ("batch", "session", "filter", "sample", "all")
        # (--sample 0 is a choice, refused below with its own reason.)
        if not any(
            options[name] not in (None, [], "") and options[name] is not False for name in chosen_by
        ):
            raise CommandError(
                "choose a selection: --batch, --session, --filter, --sample or --all"
            )
        chosen = selection.from_command(options, batch="batch", session="session")
        auditors = _users(options["to"])
        try:
            transcripts = assignments.select(chosen, sample=options["sample"], seed=options["seed"])
            result = assignments.assign(
                transcripts,
                auditors=auditors,
                k=options["k"],
                by=None,
                name=options["name"],
                selection=chosen.as_dict(),
                sample=options["sample"],
                seed=(options["seed"] or 0) if options["sample"] is not None else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            entry = assignments.report([result.assignment])[0]
            entry["outside_queue"] = result.outside_queue
            entry["k_changed"] = result.k_changed
            self.stdout.write(json.dumps(entry, indent=2))
        else:
            self.stdout.write(self.style.SUCCESS(result.describe()))

    def _list(self, *, as_json: bool) -> None:
        listed = list(Assignment.objects.select_related("created_by"))
        entries = assignments.report(listed)
        if as_json:
            self.stdout.write(json.dumps(entries, indent=2))
            return
        if not entries:
            self.stdout.write("No assignments.")
        for entry in entries:
            self.stdout.write("\n".join(assignments.report_lines(entry)))


def _users(names: str) -> list[Any]:
    """The users ``--to`` names, in its order; CommandError names any that does not exist."""
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if not wanted:
        raise CommandError("--to names no user")
    found = {u.get_username(): u for u in get_user_model().objects.filter(username__in=wanted)}
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise CommandError(f"unknown user(s): {', '.join(unknown)}")
    return [found[name] for name in wanted]
