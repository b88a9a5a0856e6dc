"""Views of saved views (``audit.team.saved_views``) and of the queue's bulk actions
(``audit.team.bulk``).

Saved views: ``/views/`` lists the viewer's views and the shared ones (GET) and saves one
(POST, from the "Save this view" form of the queue and the dashboard); ``/views/menu/`` is the
screens' "Saved views" list, fetched when the menu is opened so neither screen's own queries
grow; ``/views/<id>/delete/`` deletes one. Bulk: ``/queue/bulk/`` (POST only), for those who
oversee the queue; "all matching" answers first with a confirmation that says the count.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.models import SAVED_VIEW_NAME_MAX_LENGTH, SavedViewScreen
from audit.permissions import AuditRequest
from audit.review import queue as queues
from audit.review.forms import QueueFilterForm
from audit.review.views import MAX_FILTERS_CHARS, _skipped
from audit.team import bulk
from audit.team import saved_views as views_
from audit.team.assignment_views import AuditorChoice
from audit.team.assignments import MAX_K, NAME_MAX_LENGTH, assignable

# --- saved views ---------------------------------------------------------------------------------


class SaveViewForm(forms.Form):
    screen = forms.ChoiceField(choices=SavedViewScreen.choices, widget=forms.HiddenInput)
    name = forms.CharField(
        max_length=SAVED_VIEW_NAME_MAX_LENGTH,
        label="Name",
        error_messages={
            "required": "Give the view a name.",
            "max_length": "A name can be at most %(limit_value)d characters "
            "(this has %(show_value)d).",
        },
    )
    shared = forms.BooleanField(required=False, label="Share with the team")
    # The screen's current filters as its URL holds them (normalised again on the server).
    query = forms.CharField(
        required=False,
        max_length=MAX_FILTERS_CHARS,
        strip=False,
        widget=forms.HiddenInput,
        error_messages={
            "max_length": "The filters are too long to save as a view (at most "
            "%(limit_value)d characters; these have %(show_value)d)."
        },
    )


def _listing(request: AuditRequest, *, screen: str | None = None) -> list[views_.ListedView]:
    return [
        views_.listed(view, request.user)
        for view in views_.visible_views(request.user, screen=screen)
    ]


def _page(
    request: AuditRequest, form: SaveViewForm | None = None, status: int = 200
) -> HttpResponse:
    listed = _listing(request)
    groups = [
        {
            "screen": screen,
            "label": screen.label,
            "views": [item for item in listed if item.view.screen == screen],
        }
        for screen in views_.screens_for(request.user)
    ]
    return render(
        request,
        "audit/saved_views.html",
        {"nav": "views", "groups": groups, "form": form, "total": len(listed)},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def saved_views(request: AuditRequest) -> HttpResponse:
    """GET: the list. POST: save the screen's current filters as a view, then open it; a
    refused save shows the form again here, saying why (400)."""
    if request.method == "GET":
        return _page(request)
    form = SaveViewForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            view, normalised = views_.save_view(
                owner=request.user,
                screen=data["screen"],
                name=data["name"],
                query=data["query"],
                shared=data["shared"],
            )
        except views_.SavedViewError as error:
            form.add_error("name", str(error))
        else:
            shared = " and shared it with the team" if view.shared else ""
            messages.success(request, f"Saved the view {view.name!r}{shared}.")
            for note in normalised.dropped:
                messages.warning(request, f"Left out of the view: {note}.")
            return redirect(views_.open_url(view))
    if form.has_error("screen"):
        form.add_error(None, "Which screen's view this is is missing or unknown.")
    return _page(request, form, status=400)


@require_GET
def saved_views_menu(request: AuditRequest) -> HttpResponse:
    """The "Saved views" list of one screen (``?screen=queue``), as a fragment."""
    screen = request.GET.get("screen", "")
    if screen not in views_.screens_for(request.user):
        raise Http404("No such screen, or not one of yours.")
    listed = _listing(request, screen=screen)
    return render(
        request,
        "audit/_saved_views_menu.html",
        {
            "views": listed[: views_.MENU_LIMIT],
            "more": max(0, len(listed) - views_.MENU_LIMIT),
        },
    )


@require_POST
def delete_saved_view(request: AuditRequest, pk: int) -> HttpResponse:
    """Delete a view: one's own, or (staff) a shared one. Others' private views are no one
    else's to see: 404."""
    view = get_object_or_404(views_.visible_views(request.user), pk=pk)
    if not views_.may_delete(view, request.user):
        raise PermissionDenied("Only its owner (or staff, for a shared view) can delete a view.")
    view.delete()
    messages.success(request, f"Deleted the view {view.name!r}.")
    return redirect("saved_views")


# --- bulk actions --------------------------------------------------------------------------------


class BulkForm(forms.Form):
    action = forms.ChoiceField(
        choices=list(bulk.ACTIONS.items()),
        error_messages={"required": "Choose an action.", "invalid_choice": "Choose an action."},
    )
    target = forms.ChoiceField(
        choices=[(bulk.CHOSEN, "The rows chosen"), (bulk.ALL, "All matching")],
        error_messages={
            "required": "Say what to act on: the rows chosen, or all matching.",
            "invalid_choice": "Say what to act on: the rows chosen, or all matching.",
        },
    )
    k = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_K,
        label="K",
        error_messages={"invalid": f"K must be a whole number from 1 to {MAX_K}."},
    )
    auditors = AuditorChoice(queryset=assignable(), required=False, label="Auditors")
    name = forms.CharField(required=False, max_length=NAME_MAX_LENGTH, label="Assignment name")
    # The queue's filters as its URL held them: "all matching" evaluates them again here.
    filters = forms.CharField(required=False, max_length=MAX_FILTERS_CHARS, strip=False)
    confirm = forms.BooleanField(required=False)
    # The count the confirmation showed.
    expected = forms.IntegerField(required=False, min_value=0)


def _queue_filters(request: AuditRequest, query: str) -> queues.QueueFilters:
    form = QueueFilterForm(QueryDict(query), viewer=request.user, skipped=_skipped(request))
    return form.filters()


def _queue_url(query: str) -> str:
    return queues.url(QueryDict(query))


def _refused(request: AuditRequest, problems: list[str], query: str) -> HttpResponse:
    return render(
        request,
        "audit/bulk_confirm.html",
        {"nav": "queue", "problems": problems, "back": _queue_url(query)},
        status=400,
    )


def _hidden(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The confirmation's copy of the action's input (no ids: it is "all matching")."""
    fields = [(name, data[name]) for name in ("action", "target", "k", "name", "filters")]
    return [
        *((name, "" if value is None else str(value)) for name, value in fields),
        *(("auditors", str(user.pk)) for user in data["auditors"]),
    ]


@require_POST
def queue_bulk(request: AuditRequest) -> HttpResponse:
    """One bulk action on the rows chosen or on all matching (``audit.team.bulk``)."""
    user = request.user
    if not queues.oversees_queue(user):
        raise PermissionDenied("Bulk actions are for adjudicators and staff.")
    form = BulkForm(request.POST)
    query = str(request.POST.get("filters", ""))[:MAX_FILTERS_CHARS]
    if not form.is_valid():
        problems = [
            f"{form.fields[name].label or name}: {error}" if name != "__all__" else str(error)
            for name, errors in form.errors.items()
            for error in errors
        ]
        return _refused(request, problems, query)
    data = form.cleaned_data
    filters = _queue_filters(request, data["filters"])
    try:
        action = bulk.check(
            user,
            action=data["action"],
            k=data["k"],
            auditors=list(data["auditors"]),
            name=data["name"],
            default_name=f"From the queue: {queues.describe(filters) or 'the whole queue'}",
        )
        if data["target"] == bulk.ALL:
            target = bulk.matching(filters)
            selection = {"queue": data["filters"], "filter": filters.selection().as_dict()}
        else:
            ids = bulk.parse_ids(request.POST.getlist("ids"))
            target = bulk.chosen(ids)
            selection = {"pks": ids}
    except PermissionError as error:
        raise PermissionDenied(str(error)) from error
    except bulk.BulkError as error:
        return _refused(request, [str(error)], data["filters"])
    if target.kind == bulk.ALL and not data["confirm"]:
        return render(
            request,
            "audit/bulk_confirm.html",
            {
                "nav": "queue",
                "action": action,
                "target": target,
                "hidden": _hidden(data),
                "back": _queue_url(data["filters"]),
            },
        )
    try:
        said = bulk.perform(action, target, by=user, selection=selection)
    except ValueError as error:
        return _refused(request, [f"Nothing was done: {error}."], data["filters"])
    messages.success(request, said)
    if target.unknown:
        messages.warning(request, f"{target.unknown:,} chosen id(s) are no item and were ignored.")
    expected = data["expected"]
    if target.kind == bulk.ALL and expected is not None and expected != target.count:
        messages.info(
            request,
            f"{expected:,} items matched when you confirmed; {target.count:,} matched when it "
            "ran (the queue changed meanwhile): it acted on those.",
        )
    return redirect(_queue_url(data["filters"]))
