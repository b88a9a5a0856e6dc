"""The assignment pages: every assignment with its progress and the form that makes one
(staff), one assignment's progress per auditor (staff), and "my work" (an auditor's own
assignments, with their own progress only, and the button that starts Next on them).

Progress counts tasks (``assignments.Progress``), never verdict values; a plain auditor sees
only their own tasks. The form speaks the selection vocabulary (``audit.publish.selection``),
its status choices as the viewer may see them (``visibility.status_choices``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from audit.htmx import pager
from audit.models import MAX_ID, Assignment, Flag, parse_id
from audit.permissions import AuditRequest, auditor_required, staff_required
from audit.publish.selection import FILTERS, Selection, SelectionError
from audit.review import visibility
from audit.team import assignments

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PER_PAGE = 25
# The selection keys the form offers as free text (batch, flag and status have their own).
TEXT_KEYS = ("session", "task", "worker", "decision", "category", "mbtype")


class AuditorChoice(forms.ModelMultipleChoiceField):
    """Auditors to assign to (``assignments.assignable``), by username. An id outside the
    range of row ids is refused as invalid before any query sees it (SQLite raises
    OverflowError on one past 2**63 - 1)."""

    def label_from_instance(self, obj: Any) -> str:
        return str(obj.get_username())

    def clean(self, value: Any) -> Any:
        for pk in value if isinstance(value, list | tuple) else ():
            text = str(pk)
            # parse_id: ASCII digits of a length a row id can have (int() of a 5,000-digit
            # text raises, and isdigit() takes digits int() refuses).
            if parse_id(text) is None:
                raise forms.ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": text[:40]},
                )
        return super().clean(value)


class AssignmentForm(forms.Form):
    """Make an assignment: a name, the selection, an optional sample, K and the auditors."""

    name = forms.CharField(max_length=assignments.NAME_MAX_LENGTH)
    batch = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, label=FILTERS["batch"].label
    )
    flag = forms.ChoiceField(
        required=False, choices=[("", "Any flag"), *Flag.choices], label=FILTERS["flag"].label
    )
    status = forms.ChoiceField(label=FILTERS["status"].label)
    sample = forms.IntegerField(
        required=False,
        min_value=1,
        label="Sample N",
        help_text="a reproducible random N of the selection's queued items",
    )
    seed = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_ID, label="Seed", help_text="0 when empty"
    )
    k = forms.IntegerField(
        min_value=1,
        max_value=assignments.MAX_K,
        initial=2,
        label="Reviews per item (K)",
        help_text="each item goes to min(K, auditors) of them",
    )
    auditors = AuditorChoice(
        queryset=get_user_model().objects.none(), widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, viewer: User | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key in TEXT_KEYS:
            self.fields[key] = forms.CharField(required=False, max_length=200)
            self.fields[key].label = FILTERS[key].label
        # The selection first, in the vocabulary's order, then the rest.
        order = ["name", *(key for key in FILTERS if key in self.fields)]
        self.order_fields([*order, "sample", "seed", "k", "auditors"])
        status = self.fields["status"]
        assert isinstance(status, forms.ChoiceField)
        status.choices = visibility.status_choices(viewer)
        status.initial = visibility.OPEN
        auditors = self.fields["auditors"]
        assert isinstance(auditors, forms.ModelMultipleChoiceField)
        auditors.queryset = assignments.assignable()

    def selection_fields(self) -> list[forms.BoundField]:
        return [self[key] for key in FILTERS if key in self.fields]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        mapping: dict[str, list[Any]] = {
            key: [data.get(key)] for key in FILTERS if key not in ("status",)
        }
        members = visibility.STATUS_MEMBERS.get(data.get("status") or visibility.ANY)
        mapping["status"] = list(members or ())
        try:
            self.chosen = Selection.of(mapping)
        except SelectionError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data

    def save(self, *, by: User | None) -> assignments.AssignmentResult | None:
        """Make the assignment; None, with the reason as a form error, when it is refused."""
        data = self.cleaned_data
        try:
            transcripts = assignments.select(self.chosen, sample=data["sample"], seed=data["seed"])
            return assignments.assign(
                transcripts,
                auditors=list(data["auditors"]),
                k=data["k"],
                by=by,
                name=data["name"],
                selection=self.chosen.as_dict(),
                sample=data["sample"],
                seed=data["seed"] if data["sample"] is not None else None,
            )
        except ValueError as exc:
            self.add_error(None, str(exc))
            return None


@dataclass(frozen=True)
class Row:
    """One assignment with its progress: per auditor (staff) or the viewer's own."""

    assignment: Assignment
    auditors: list[assignments.AuditorProgress]
    tasks: assignments.Progress
    settled_items: int


def rows_for(page: Any) -> list[Row]:
    listed = list(page)
    per_auditor = assignments.progress(listed)
    settled = assignments.settled_items(listed)
    return [
        Row(
            a,
            per_auditor[a.pk],
            assignments.total(per_auditor[a.pk]),
            settled.get(a.pk, 0),
        )
        for a in listed
    ]


@require_http_methods(["GET", "POST"])
@staff_required
def assignment_list(request: AuditRequest) -> HttpResponse:
    form = AssignmentForm(request.POST or None, viewer=request.user)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            result = form.save(by=request.user)
            if result is not None:
                messages.success(request, result.describe())
                return redirect("assignment_detail", result.assignment.pk)
        status = 422
    page = Paginator(
        Assignment.objects.select_related("created_by").order_by("-created_at", "-id"), PER_PAGE
    ).get_page(request.GET.get("page"))
    context = {
        "rows": rows_for(page),
        "page": page,
        "form": form,
        "nav": "assignments",
        **pager(page, lambda n: f"?page={n}"),
    }
    return render(request, "audit/assignments.html", context, status=status)


@require_GET
@staff_required
def assignment_detail(request: AuditRequest, pk: int) -> HttpResponse:
    assignment = get_object_or_404(Assignment.objects.select_related("created_by"), pk=pk)
    (row,) = rows_for([assignment])
    context = {"row": row, "a": assignment, "nav": "assignments"}
    return render(request, "audit/assignments_detail.html", context)


@dataclass(frozen=True)
class MyRow:
    assignment: Assignment
    progress: assignments.Progress


@require_GET
@auditor_required
def my_work(request: AuditRequest) -> HttpResponse:
    page = Paginator(
        assignments.of_auditor(request.user).order_by("-created_at", "-id"), PER_PAGE
    ).get_page(request.GET.get("page"))
    listed = list(page)
    mine = assignments.progress_of(request.user, listed)
    rows = [MyRow(a, mine.get(a.pk, assignments.Progress())) for a in listed]
    context = {
        "rows": rows,
        "page": page,
        # Items, not tasks: an item can be in two of one's assignments.
        "waiting": assignments.open_tasks(request.user).values("transcript").distinct().count(),
        "nav": "my_work",
        **pager(page, lambda n: f"?page={n}"),
    }
    return render(request, "audit/my_work.html", context)
