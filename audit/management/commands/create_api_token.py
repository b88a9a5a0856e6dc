"""python manage.py create_api_token USER --scope ingest|read [--scope ...] [--name TEXT]
[--json]"""

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.api.tokens import TokenError, issue_token
from audit.models import ApiScope


class Command(BaseCommand):
    help = (
        "Make an API token for USER and print it, once: only its sha256 is kept. Scopes: "
        "ingest (post transcripts; staff only) and read (releases, transcripts, summaries)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER")
        parser.add_argument(
            "--scope",
            action="append",
            required=True,
            choices=ApiScope.values,
            help="what the token may do (repeatable)",
        )
        parser.add_argument("--name", default="", help="what the token is for")
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object with the token"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"there is no user {options['username']!r}") from None
        try:
            issued = issue_token(user, scopes=options["scope"], name=options["name"])
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        token = issued.token
        if options["json"]:
            payload = {
                "token": issued.secret,
                "prefix": token.prefix,
                "user": user.username,
                "scopes": token.scope_list,
                "name": token.name,
            }
            self.stdout.write(json.dumps(payload))
            return
        # The secret alone on stdout (TOKEN=$(manage.py create_api_token ...)); the rest is talk.
        self.stderr.write(
            f"API token {token.prefix}… for {user.username} ({token.scopes}). Keep it now: it "
            "is not stored and cannot be shown again. Revoke it with "
            f"`manage.py revoke_api_token {user.username} {token.prefix}`."
        )
        self.stdout.write(issued.secret)
