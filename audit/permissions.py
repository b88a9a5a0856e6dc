"""Role checks. Roles are the groups ``auditor`` and ``adjudicator``; staff run imports,
exports, releases and users. A logged-in user without the role gets 403, not a login loop."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

AUDITOR = "auditor"
ADJUDICATOR = "adjudicator"


def has_role(user: Any, role: str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    cache = getattr(user, "_audit_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._audit_groups = cache
    return role in cache


def is_staff(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def _require(check: Callable[[Any], bool]) -> Callable:
    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


auditor_required = _require(lambda user: has_role(user, AUDITOR))
adjudicator_required = _require(lambda user: has_role(user, ADJUDICATOR))
staff_required = _require(is_staff)
