"""Saved views: named filter sets of the queue and the dashboard, one click to open.

A view holds only filters: the query string as the screen's own filter form cleans it
(``QueueFilterForm`` with the saver's own choices, ``DashboardFilterForm``), normalised (the
form's field order, defaults and empty values left out, unknown and invalid parameters dropped
and named). Opening one is a link to the screen with that query, so it goes through the
screen's form again, with the *viewer's* choices: a blind auditor opening a view an adjudicator
saved with ``status=confirmed`` gets a status they may use (``visibility.status_choices``), and
one without the queue's "needs discussion" filter gets none. The list describes each view as it
will open for the viewer (``describe``), and says when some of its filters are not theirs.

A view is its owner's, or shared with the team (``shared``). Names are unique per owner and
screen. Owners delete their own; staff may delete shared ones too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import QueryDict
from django.urls import reverse

from audit.models import SavedView, SavedViewScreen
from audit.permissions import AUDITOR, has_role, is_staff
from audit.review import queue as queues
from audit.review.forms import QueueFilterForm

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from audit.metrics.forms import DashboardFilterForm

# The screen -> the URL name it opens.
URLS = {SavedViewScreen.QUEUE: "queue", SavedViewScreen.DASHBOARD: "dashboard"}
# How many views the screens' "Saved views" menus list (the page /views/ lists every one).
MENU_LIMIT = 30


@dataclass(frozen=True)
class Normalised:
    """A query as a screen's form cleans it: what a view stores, and what was left out."""

    query: str
    # One sentence per parameter left out ("flag: not one of the choices").
    dropped: tuple[str, ...] = ()


def screens_for(viewer: User) -> list[SavedViewScreen]:
    """The screens whose views the viewer may save and open: the queue needs the auditor role
    (everyone else is sent to the dashboard), the dashboard is every logged-in user's."""
    shown = [SavedViewScreen.QUEUE] if has_role(viewer, AUDITOR) else []
    return [*shown, SavedViewScreen.DASHBOARD]


def _dropped(form: Any, query: QueryDict, ignored: tuple[str, ...]) -> tuple[str, ...]:
    """Why each given parameter is left out: unknown to the form, or an invalid value."""
    form.is_valid()
    notes = []
    for name, values in query.lists():
        if name in ignored or not any(v.strip() for v in values):
            continue
        if name not in form.fields:
            notes.append(f"{name}: not a filter of this screen (for you)")
        elif name in form.errors:
            notes.append(f"{name}: {form.errors[name][0]}")
    return tuple(notes)


def _queue_form(query: QueryDict, viewer: User) -> QueueFilterForm:
    return QueueFilterForm(query, viewer=viewer)


def normalise_queue(query: QueryDict, *, viewer: User) -> Normalised:
    """The queue's filters of ``query`` as ``viewer``'s queue form cleans them (without the
    page position)."""
    form = _queue_form(query, viewer)
    values = form.filters().as_dict()
    base = queues.defaults(values)
    clean = {
        name: text
        for name in form.fields
        if name in values and name not in queues.POSITION
        for text in ["" if values[name] is None else str(values[name])]
        if text and text != base[name]
    }
    return Normalised(urlencode(clean), _dropped(form, query, queues.POSITION))


def dashboard_form(query: QueryDict) -> DashboardFilterForm:
    from audit.metrics.views import filter_form

    return filter_form(query)


def normalise_dashboard(query: QueryDict, *, viewer: User) -> Normalised:
    """The dashboard's filters of ``query`` as its form cleans them (valid values only)."""
    form = dashboard_form(query)
    if not form.is_bound:  # no filters at all
        return Normalised("")
    form.is_valid()
    clean = {}
    for name in form.fields:
        if name in form.errors:
            continue
        value = form.cleaned_data.get(name)
        text = value.isoformat() if isinstance(value, dt.date) else str(value or "").strip()
        if text:
            clean[name] = text
    return Normalised(urlencode(clean), _dropped(form, query, ()))


NORMALISERS: dict[str, Callable[..., Normalised]] = {
    SavedViewScreen.QUEUE: normalise_queue,
    SavedViewScreen.DASHBOARD: normalise_dashboard,
}


def normalise(screen: str, query: QueryDict | str, *, viewer: User) -> Normalised:
    data = query if isinstance(query, QueryDict) else QueryDict(query)
    return NORMALISERS[screen](data, viewer=viewer)


class SavedViewError(ValueError):
    """A view that cannot be saved; the message says why, for the person."""


def save_view(
    *, owner: User, screen: str, name: str, query: QueryDict | str, shared: bool = False
) -> tuple[SavedView, Normalised]:
    """Save ``query`` (normalised for ``owner``) as the owner's view ``name`` of ``screen``."""
    if screen not in screens_for(owner):
        raise SavedViewError(f"You cannot save views of the {screen} screen.")
    name = " ".join((name or "").split())
    if not name:
        raise SavedViewError("Give the view a name.")
    normalised = normalise(screen, query, viewer=owner)
    label = SavedViewScreen(screen).label.lower()
    taken = SavedViewError(
        f"You already have a {label} view named {name!r}: choose another name, or delete "
        "that one first (on the Saved views page)."
    )
    if SavedView.objects.filter(owner=owner, screen=screen, name=name).exists():
        raise taken
    try:
        with transaction.atomic():
            view = SavedView.objects.create(
                owner=owner, screen=screen, name=name, shared=shared, query=normalised.query
            )
    except IntegrityError as error:  # saved at the same moment elsewhere
        raise taken from error
    return view, normalised


def visible_views(viewer: User, *, screen: str | None = None) -> Any:
    """The viewer's own views and the team's shared ones (of ``screen``, else of every screen
    the viewer has), with their owners: one query."""
    screens = [screen] if screen else screens_for(viewer)
    return (
        SavedView.objects.filter(screen__in=screens)
        .filter(Q(owner=viewer) | Q(shared=True))
        .select_related("owner")
        .order_by("screen", "-shared", "name", "id")
    )


def may_delete(view: SavedView, viewer: User) -> bool:
    """Owners delete their own views; staff may delete shared ones too."""
    return view.owner_id == viewer.pk or (view.shared and is_staff(viewer))


def open_url(view: SavedView) -> str:
    """The link that opens the view: its screen with the stored query."""
    base = reverse(URLS[SavedViewScreen(view.screen)])
    return f"{base}?{view.query}" if view.query else base


@dataclass(frozen=True)
class ListedView:
    """A view as a list shows it to one viewer."""

    view: SavedView
    url: str
    # The filters as they open for the viewer, in words ("" for the screen's defaults).
    description: str
    # Filters of the view the viewer's own form leaves out (a finer status than theirs).
    not_theirs: int
    deletable: bool


def _describe_dashboard(query: QueryDict) -> str:
    labels = {
        "batch": "Batch #",
        "task": "Task: ",
        "session": "Session: ",
        "date_from": "From ",
        "date_to": "To ",
    }
    return " · ".join(
        f"{labels[name]}{query[name]}" for name in labels if query.get(name, "").strip()
    )


def listed(view: SavedView, viewer: User) -> ListedView:
    """``view`` as ``viewer``'s list shows it; no query (the forms are only built)."""
    query = QueryDict(view.query)
    not_theirs = 0
    if view.screen == SavedViewScreen.QUEUE:
        # As the viewer's own queue form will read it.
        mine = normalise_queue(query, viewer=viewer)
        description = queues.describe(_queue_form(QueryDict(mine.query), viewer).filters())
        not_theirs = len(mine.dropped)
    else:
        description = _describe_dashboard(query)
    return ListedView(
        view=view,
        url=open_url(view),
        description=description,
        not_theirs=not_theirs,
        deletable=may_delete(view, viewer),
    )
