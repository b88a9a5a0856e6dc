"""How every screen answers: one view for page and fragment, and the pager's links (numbered
pages, or the queue's keyset pages).

A view renders the whole page, or, for an htmx request, only the region it swaps
(``"screen.html#region"``, a Django 6 partial). A history restore (htmx asking for a page it has
no cached copy of, after the back button) is an htmx request too, but it wants the whole page:
htmx puts the response in place of ``<body>``. Every such response says ``Vary: HX-Request``,
so a cache never serves a fragment for a page or the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.paginator import Page
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect


def wants_fragment(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.history_restore_request


def render_screen(
    request: HttpRequest,
    template: str,
    fragment: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    """``template``, or only its partial ``fragment`` when ``wants_fragment``. The context's
    ``fragment`` says which, for what a fragment carries itself (its title, its messages)."""
    partial = wants_fragment(request)
    name = f"{template}#{fragment}" if partial else template
    response = render(request, name, {**context, "fragment": partial}, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


def go_to(request: HttpRequest, url: str) -> HttpResponse:
    """Go to another screen: a redirect, or for htmx a full page load, since the current
    screen's swap target would not fit the other one."""
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def pager(page: Page, url: Callable[[int], str], *, last: int | None = None) -> dict[str, str]:
    """The context ``_pager.html`` takes for ``page``; ``url(n)`` is page n's address and
    ``last`` caps how far the links go (the queue bounds its offsets)."""
    pages = min(page.paginator.num_pages, last or page.paginator.num_pages)
    has_next = page.has_next() and page.number < pages
    return {
        "page_label": f"Page {page.number} of {pages}" if pages > 1 else "",
        "prev_url": url(page.number - 1) if page.has_previous() else "",
        "next_url": url(page.number + 1) if has_next else "",
    }


def cursor_pager(
    *, first_url: str, prev_url: str, next_url: str, label: str = ""
) -> dict[str, str]:
    """The context ``_pager.html`` takes for a keyset page (``audit.review.queue``): links to
    the first page and to the neighbouring ones (each empty when there is none). Keyset pages
    have no number, so ``label`` says only what is known (e.g. "First page")."""
    return {
        "page_label": label,
        "first_url": first_url,
        "prev_url": prev_url,
        "next_url": next_url,
    }
