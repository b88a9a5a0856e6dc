"""The guidelines pages: the current rubric, any version, the history, a diff, and the editor.

Anyone with a role reads them (auditors, adjudicators, staff): the guidelines hold no review
of anyone, so blindness is not at stake. Only staff edit; every save is a new version
(``audit.team.guidelines.save_version``), and a save made from a version someone else has
since replaced is refused with the editor's text kept.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from audit.models import GuidelineVersion
from audit.permissions import (
    ADJUDICATOR,
    AUDITOR,
    AuditRequest,
    has_role,
    is_staff,
    staff_required,
)
from audit.team import guidelines

HISTORY_PAGE_SIZE = 50


def may_read(user: Any) -> bool:
    """Whether ``user`` may read the guidelines: anyone with a role."""
    return has_role(user, AUDITOR) or has_role(user, ADJUDICATOR) or is_staff(user)


def reader_required[**P](
    view: Callable[P, HttpResponse],
) -> Callable[P, HttpResponse]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        request = args[0]
        if not may_read(getattr(request, "user", None)):
            raise PermissionDenied
        return view(*args, **kwargs)

    return wrapped


def _version_context(version: GuidelineVersion, *, current: GuidelineVersion) -> dict[str, Any]:
    parsed = guidelines.parse(version.text)
    return {
        "nav": "guidelines",
        "version": version,
        "current": current,
        "is_current": version.number == current.number,
        "html": parsed.html,
        "warnings": parsed.warnings,
        "may_edit": False,
    }


@require_GET
@reader_required
def guidelines_page(request: AuditRequest) -> HttpResponse:
    current = guidelines.current_version()
    context = _version_context(current, current=current)
    context["may_edit"] = is_staff(request.user)
    return render(request, "audit/guidelines.html", context)


@require_GET
@reader_required
def guideline_version(request: AuditRequest, number: int) -> HttpResponse:
    current = guidelines.current_version()
    version = guidelines.get_version(number)
    if version is None:
        return _no_version(request, number, current=current)
    return render(request, "audit/guidelines.html", _version_context(version, current=current))


def _no_version(
    request: AuditRequest, number: int | str, *, current: GuidelineVersion
) -> HttpResponse:
    return render(
        request,
        "audit/guidelines_error.html",
        {
            "nav": "guidelines",
            "problem": f"There is no guidelines version {number}: the versions are 1 to "
            f"{current.number}.",
        },
        status=404,
    )


@require_GET
@reader_required
def guideline_history(request: AuditRequest) -> HttpResponse:
    current = guidelines.current_version()
    versions = GuidelineVersion.objects.select_related("created_by").defer("text")
    page = Paginator(versions, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "audit/guidelines_history.html",
        {"nav": "guidelines", "current": current, "page": page, "versions": list(page)},
    )


def _number(raw: str | None, *, name: str) -> int | None:
    """A version number typed into the diff's query (None when absent); junk is refused by
    name."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        raise ValueError(f"{name}: {raw[:40]!r} is not a version number (a whole number from 1).")
    return int(text)


@require_GET
@reader_required
def guideline_diff(request: AuditRequest) -> HttpResponse:
    """The line diff between two versions (``?from=&to=``; default: the current version against
    the one before it)."""
    current = guidelines.current_version()
    try:
        newer_number = _number(request.GET.get("to"), name="to") or current.number
        older_number = _number(request.GET.get("from"), name="from")
    except ValueError as error:
        return render(
            request,
            "audit/guidelines_error.html",
            {"nav": "guidelines", "problem": str(error)},
            status=400,
        )
    if older_number is None:
        older_number = max(newer_number - 1, 1)
    older, newer = guidelines.get_version(older_number), guidelines.get_version(newer_number)
    if older is None or newer is None:
        return _no_version(
            request, older_number if older is None else newer_number, current=current
        )
    lines = guidelines.diff(older.text, newer.text)
    return render(
        request,
        "audit/guidelines_diff.html",
        {
            "nav": "guidelines",
            "current": current,
            "older": older,
            "newer": newer,
            "lines": lines,
            "added": sum(1 for line in lines if line.kind == "added"),
            "removed": sum(1 for line in lines if line.kind == "removed"),
            "numbers": list(range(1, current.number + 1)),
        },
    )


class GuidelineEditForm(forms.Form):
    text = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 32, "spellcheck": "true", "class": "mono"}),
        label="Guidelines (Markdown)",
        error_messages={"required": "The guidelines cannot be empty."},
    )
    note = forms.CharField(
        required=False,
        max_length=guidelines.NOTE_MAX_LENGTH,
        label="What changed (shown in the history)",
        error_messages={
            "max_length": "At most %(limit_value)d characters (this has %(show_value)d)."
        },
    )
    based_on = forms.IntegerField(
        widget=forms.HiddenInput,
        min_value=1,
        max_value=guidelines.MAX_NUMBER,
        error_messages=dict.fromkeys(
            ("required", "invalid", "min_value", "max_value"),
            "This edit does not say which version it was made from, so it was not saved. "
            "Reload the editor and edit again.",
        ),
    )
    accept_gaps = forms.BooleanField(required=False, label="Save with these gaps")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No maxlength in the page: the server's error says how long the text is instead.
        self.fields["text"].widget.attrs.pop("maxlength", None)


def _edit_page(
    request: AuditRequest,
    form: GuidelineEditForm,
    *,
    current: GuidelineVersion,
    status: int = 200,
    preview: Any = None,
    conflict: bool = False,
) -> HttpResponse:
    text = form.data.get("text") if form.is_bound else current.text
    warnings = guidelines.missing_values(text or "")
    context = {
        "nav": "guidelines",
        "form": form,
        "current": current,
        "warnings": warnings,
        "preview": preview,
        "conflict": conflict,
        "conflict_lines": guidelines.diff(current.text, text or "") if conflict else [],
        "offer_gaps": bool(warnings) and form.is_bound,
    }
    return render(request, "audit/guidelines_edit.html", context, status=status)


@require_http_methods(["GET", "POST"])
@staff_required
def guideline_edit(request: AuditRequest) -> HttpResponse:
    current = guidelines.current_version()
    if request.method == "GET":
        form = GuidelineEditForm(initial={"text": current.text, "based_on": current.number})
        return _edit_page(request, form, current=current)
    form = GuidelineEditForm(request.POST)
    if not form.is_valid():
        return _edit_page(request, form, current=current, status=422)
    data = form.cleaned_data
    if request.POST.get("action") == "preview":
        return _edit_page(
            request, form, current=current, preview=guidelines.parse(data["text"]).html
        )
    try:
        version = guidelines.save_version(
            data["text"],
            by=request.user,
            note=data["note"],
            based_on=data["based_on"],
            accept_gaps=data["accept_gaps"],
        )
    except ValidationError as error:
        return _refused(request, form, error)
    messages.success(request, f"Saved guidelines version {version.number}.")
    return redirect("guidelines")


def _refused(
    request: AuditRequest, form: GuidelineEditForm, error: ValidationError
) -> HttpResponse:
    """The editor again after a refused save, the text kept. After a conflict the form is
    based on the version saved meanwhile, so saving again (having compared) replaces it."""
    current = guidelines.current_version()
    codes = {e.code for e in error.error_list} if not hasattr(error, "error_dict") else set()
    conflict = guidelines.CONFLICT in codes
    if conflict:
        posted = form.data
        assert isinstance(posted, QueryDict)  # a bound form of a POST
        data = posted.copy()
        data["based_on"] = str(current.number)
        form = GuidelineEditForm(data)
        form.is_valid()
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)
    return _edit_page(
        request, form, current=current, status=409 if conflict else 422, conflict=conflict
    )
