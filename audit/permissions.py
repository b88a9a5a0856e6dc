"""Role checks. Roles are the groups ``auditor`` and ``adjudicator``; staff run imports,
exports, releases and users. A logged-in user without the role gets 403, not a login loop.

Who may try to log in is here too: the login throttle (django-axes, configured in settings) and
the page a locked-out login gets."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, Protocol

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
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
# Either reviewing role: for what both verdict screens link to (the raw record).
reviewer_required = _require(lambda user: has_role(user, AUDITOR) or has_role(user, ADJUDICATOR))


# --- login throttling ----------------------------------------------------------------------------


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check for logins made through a page (the login page, the admin's).
    ``authenticate()`` without a request (the test client's ``login()``, a shell) has no client
    address to count failures by, and axes would refuse it with an error."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed logins: after {settings.AXES_FAILURE_LIMIT} wrong passwords for this "
        f"username from this address, logging in as it from here is locked for {minutes} "
        "minutes after the last failed attempt. Try again later, or ask an administrator to "
        "lift the lock."
    )


def login_locked_out(
    request: HttpRequest, response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The lockout page (AXES_LOCKOUT_CALLABLE): the login page, saying why, with HTTP 429."""
    context = {
        "form": AuthenticationForm(request),
        "next": request.POST.get("next", "") or request.GET.get("next", ""),
        "locked_out": lockout_message(),
    }
    return render(request, "registration/login.html", context, status=429)


def login_username(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str | None:
    """The username failures are counted by (AXES_USERNAME_CALLABLE): what the login form was
    given, cut to the longest a username can be. Django's login form does not check the
    length, and axes keeps the name in a 255-character column, which PostgreSQL refuses to
    overflow: a 300-character name was a server error instead of a failed login. No user has a
    longer name, so the cut name is as good a key as the whole."""
    data = credentials if credentials else getattr(request, "POST", {})
    name = data.get("username")
    if not isinstance(name, str):
        return None
    return name[: get_user_model()._meta.get_field("username").max_length]


def client_address(request: HttpRequest) -> str | None:
    """The address failures are counted by (AXES_CLIENT_IP_CALLABLE). Behind
    ``AUDIT_PROXY_COUNT`` reverse proxies it is the entry that many from the right of
    X-Forwarded-For, the one the nearest trusted proxy saw; entries further left are whatever
    the client sent, so a client cannot pick its own address."""
    proxies: int = settings.AUDIT_PROXY_COUNT
    remote: str | None = request.META.get("REMOTE_ADDR")
    if not proxies:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    return hops[-proxies] if len(hops) >= proxies else remote
