"""The API's routes (``audit.urls`` includes them at /api/v1/). Every one is exempt from the
login redirect (``LoginRequiredMiddleware``): the API authenticates by token
(``audit.api.auth``) and answers JSON, never a login page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.urls import URLPattern, URLResolver

from audit.api.views import api


def _token_only(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _token_only(pattern.url_patterns)
        else:
            login_not_required(pattern.callback)
    return patterns


_patterns, _app, _namespace = api.urls
app_name = "api"
urlpatterns = _token_only(_patterns)
