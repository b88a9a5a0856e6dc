"""API tokens: made, found, revoked. A token is ``audit_`` plus 32 random bytes (urlsafe
base64, from ``secrets``); the database keeps its sha256 only, so the secret is shown once,
when it is made, and a copy of the database gives no working token.

Who may hold which scope is the same rule as in the web app (``audit.permissions``): an ingest
token is for staff, since import is staff-only; any active user may hold a read token, and each
read endpoint asks the rule of what it shows. The API checks the rules again on every request
(``audit.api.auth``), so a token of a user who loses the right stops working with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils import timezone

from audit.models import ApiScope, ApiToken
from audit.permissions import is_staff

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PREFIX = "audit_"
SECRET_BYTES = 32
# Characters of the secret kept to tell tokens apart: "audit_" and six more.
SHOWN_PREFIX = len(PREFIX) + 6
# ``last_used_at`` is stamped at most this often per token, so a busy run's requests do not
# each write (on SQLite, each write waits for the one write lock).
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length or 100


class TokenError(ValueError):
    """A token that cannot be made as asked; the message says why."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def clean_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes sorted and without repeats; TokenError naming an unknown one or none."""
    chosen = sorted({str(scope).strip() for scope in scopes})
    unknown = [scope for scope in chosen if scope not in ApiScope.values]
    if unknown:
        raise TokenError(
            f"unknown scope {unknown[0]!r}; use one or more of: {', '.join(ApiScope.values)}"
        )
    if not chosen:
        raise TokenError(f"a token needs at least one scope: {', '.join(ApiScope.values)}")
    return chosen


def scope_refusal(user: User, scope: str) -> str:
    """Why ``user`` may not use a token of ``scope`` now ("" when they may)."""
    if not user.is_active:
        return f"user {user.username!r} is inactive"
    if scope == ApiScope.INGEST and not is_staff(user):
        return f"ingest is for staff (as imports are), and user {user.username!r} is not staff"
    return ""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    # The secret itself: shown once, never stored.
    secret: str


def issue_token(user: User, *, scopes: Iterable[str], name: str = "") -> IssuedToken:
    """A new token for ``user``; TokenError when a scope is unknown or not theirs to hold."""
    chosen = clean_scopes(scopes)
    for scope in chosen:
        if refusal := scope_refusal(user, scope):
            raise TokenError(f"cannot make a {scope} token: {refusal}")
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH or "\x00" in name:
        raise TokenError(f"a token's name is at most {NAME_MAX_LENGTH} characters, without NUL")
    secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        digest=digest(secret),
        prefix=secret[:SHOWN_PREFIX],
        scopes=" ".join(chosen),
    )
    return IssuedToken(token=token, secret=secret)


def find_token(secret: str) -> ApiToken | None:
    """The token with this secret, revoked or not, with its user; None when there is none."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    return ApiToken.objects.select_related("user").filter(digest=digest(secret)).first()


def mark_used(token: ApiToken) -> None:
    """Stamp ``last_used_at``: one UPDATE, and only when the stamp is older than
    LAST_USED_RESOLUTION."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now


def revoke(tokens: Iterable[ApiToken]) -> int:
    """Revoke the tokens not revoked yet; how many that was."""
    pks = [token.pk for token in tokens]
    return ApiToken.objects.live().filter(pk__in=pks).update(revoked_at=timezone.now())
