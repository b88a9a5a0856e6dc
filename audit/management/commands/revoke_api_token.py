"""python manage.py revoke_api_token USER [PREFIX ...] [--all]"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.api.tokens import revoke
from audit.models import ApiToken


class Command(BaseCommand):
    help = (
        "Revoke API tokens of USER: those whose secret starts with PREFIX (as "
        "create_api_token and the admin show it), or all of them with --all. Without either, "
        "list the user's tokens."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER")
        parser.add_argument("prefixes", nargs="*", metavar="PREFIX")
        parser.add_argument("--all", action="store_true", help="every token of the user")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"there is no user {options['username']!r}") from None
        tokens = ApiToken.objects.filter(user=user)
        if not options["prefixes"] and not options["all"]:
            for token in tokens:
                state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "live"
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                self.stdout.write(
                    f"{token.prefix}…  {token.scopes:<12} {state:<24} last used {used}  "
                    f"{token.name}"
                )
            return
        if options["prefixes"] and options["all"]:
            raise CommandError("give PREFIX or --all, not both")
        chosen = list(tokens)
        if options["prefixes"]:
            chosen = []
            for prefix in options["prefixes"]:
                # The admin and the command show the prefix with an ellipsis after it.
                prefix = prefix.rstrip("…").strip()
                found = [token for token in tokens if token.prefix == prefix]
                if not found:
                    raise CommandError(f"user {user.username} has no token {prefix}…")
                chosen += found
        count = revoke(chosen)
        self.stdout.write(f"revoked {count} token{'s' if count != 1 else ''} of {user.username}")
