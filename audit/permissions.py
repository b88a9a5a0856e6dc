"""Role checks. Roles are the groups ``auditor`` and ``adjudicator``; staff run imports,
exports, releases and users. A logged-in user without the role gets 403, not a login loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Concatenate, Protocol

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    # Type-only: the auth models need the app registry, and the checks need nothing from them.
    from django.contrib.auth.models import AnonymousUser, User

AUDITOR = "auditor"
ADJUDICATOR = "adjudicator"

# Per-instance cache of the user's group names, as Django's ModelBackend caches permissions.
_GROUPS_CACHE = "_audit_groups"


class AuditRequest(HttpRequest):
    """The request a view of this app gets: every view is behind LoginRequiredMiddleware (or
    one of the decorators below), so ``user`` is a real user, and HtmxMiddleware sets ``htmx``.
    Only for annotations; Django still passes a plain HttpRequest."""

    user: User
    htmx: HtmxDetails


def has_role(user: User | AnonymousUser, role: str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cache: set[str] | None = getattr(user, _GROUPS_CACHE, None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        setattr(user, _GROUPS_CACHE, cache)
    return role in cache


def is_staff(user: User | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


class ViewDecorator(Protocol):
    """A decorator that keeps the view's own signature (request type, URL arguments, result)."""

    def __call__[Request: HttpRequest, **P, R](
        self, view: Callable[Concatenate[Request, P], R], /
    ) -> Callable[Concatenate[Request, P], R]: ...


def _require(check: Callable[[User | AnonymousUser], bool]) -> ViewDecorator:
    def decorator[Request: HttpRequest, **P, R](
        view: Callable[Concatenate[Request, P], R],
    ) -> Callable[Concatenate[Request, P], R]:
        @wraps(view)
        def wrapped(request: Request, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


auditor_required = _require(lambda user: has_role(user, AUDITOR))
adjudicator_required = _require(lambda user: has_role(user, ADJUDICATOR))
staff_required = _require(is_staff)
