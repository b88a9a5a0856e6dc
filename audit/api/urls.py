"""The API's routes (``audit.urls`` includes them at /api/v1/). Every one is exempt from the
login redirect (``LoginRequiredMiddleware``): the API authenticates by token
(``audit.api.auth``) and answers JSON, never a login page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, re_path

from audit.api.views import api


def _token_only(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _token_only(pattern.url_patterns)
        else:
            login_not_required(pattern.callback)
    return patterns


def _unmatched(request: HttpRequest) -> JsonResponse:
    """A path under the API that no route takes: JSON, like every other API answer, not
    Django's HTML page (a path parameter holding a newline matches no route's pattern)."""
    return JsonResponse({"detail": "not found"}, status=404)


_patterns, _app, _namespace = api.urls
app_name = "api"
# [\s\S]: any character, the newline included, which "." leaves out.
urlpatterns = _token_only([*_patterns, re_path(r"^[\s\S]*\Z", _unmatched)])
