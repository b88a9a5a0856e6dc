"""Token authentication for the API: ``Authorization: Bearer audit_...``, and nothing else.

The session cookie is never consulted: a browser's logged-in session reaching the API is
refused like any request without a token (401), so no API write can be forged from another
site and the API needs no CSRF token. A valid token sets ``request.user`` to its user, so every
rule the endpoints ask (``audit.permissions``, ``audit.review.visibility``) judges the token's
user. Refusals are JSON: 401 for a missing, unknown or revoked token or an inactive user, 403
for a token outside its scope or a user who no longer holds the right to it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import HttpBearer

from audit.api import tokens
from audit.models import ApiToken


class TokenAuth(HttpBearer):
    """A token with ``scope``. One class for every scope, so the OpenAPI document has one
    security scheme (``TokenAuth``, HTTP bearer)."""

    def __init__(self, scope: str) -> None:  # an ApiScope value
        super().__init__()
        self.scope = str(scope)

    def __call__(self, request: HttpRequest) -> ApiToken:
        header = request.headers.get(self.header, "")
        if not header:
            raise AuthenticationError(
                message="no API token: send it as 'Authorization: Bearer audit_...' "
                "(the API does not use the login session)"
            )
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.openapi_scheme:
            raise AuthenticationError(
                message=f"the Authorization header must be 'Bearer <token>', not {scheme[:20]!r}"
            )
        return self.authenticate(request, secret.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        found = tokens.find_token(token)
        if found is None:
            raise AuthenticationError(message="unknown API token")
        if found.is_revoked:
            raise AuthenticationError(message=f"API token {found.prefix}… was revoked")
        if not found.user.is_active:
            raise AuthenticationError(message=f"user {found.user.username!r} is inactive")
        if not found.has_scope(self.scope):
            raise AuthorizationError(
                message=f"API token {found.prefix}… has scope {found.scopes!r}; this endpoint "
                f"needs {self.scope!r}"
            )
        if refusal := tokens.scope_refusal(found.user, self.scope):
            raise AuthorizationError(message=f"API token {found.prefix}…: {refusal}")
        tokens.mark_used(found)
        request.user = found.user
        return found


def token_user(request: HttpRequest) -> Any:
    """The user of the request's token (``TokenAuth`` has run)."""
    token: ApiToken = request.auth  # type: ignore[attr-defined]
    return token.user
